"""Differential tests: one script of client actions run against a fresh mosquitto 2.0
and a fresh MqttBroker, asserting the same observable outcome (what each client
receives, session-present flags, reason codes). Where mosquitto departs from the MQTT
specification the test follows the specification and says so.

The clients are raw sockets (tests/mqtt_helpers.RawMqtt): a test must be able to withhold
an acknowledgement, drop a connection mid-flow and see DUP flags, which paho-mqtt does
for you. ``sync()`` (PINGREQ/PINGRESP) is the barrier: a broker answers a client's
packets in order, so what it had to send before the PINGRESP has arrived by then.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from mqtt_helpers import PUBACK, PUBCOMP, PUBREC, PUBREL, RawMqtt, Target, publishes, target

pytestmark = pytest.mark.timeout(60)

BROKERS = ("mosquitto", "pymongoose")

# MQTT 5 property ids used below.
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
SUBSCRIPTION_ID, SESSION_EXPIRY, ASSIGNED_ID = 0x0B, 0x11, 0x12
SERVER_KEEP_ALIVE, WILL_DELAY, RECEIVE_MAXIMUM = 0x13, 0x18, 0x21
TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS, USER_PROPERTY, MAXIMUM_PACKET_SIZE = 0x22, 0x23, 0x26, 0x27

# SUBSCRIBE options
NO_LOCAL, RETAIN_AS_PUBLISHED = 4, 8


def both(tmp_path: Path, script: Callable[[Target], Any], mosquitto_conf: str = "", *,
         mosquitto_deviates: Callable[[Any], Any] = lambda outcome: outcome,
         **broker_kwargs: Any) -> Any:
    """Run ``script`` against each broker; assert equal outcomes; return it.

    ``mosquitto_deviates`` turns mosquitto's outcome into what the specification asks,
    where mosquitto 2.0.11 departs from it (each use says why)."""
    outcomes = {}
    for name in BROKERS:
        with target(name, tmp_path, mosquitto_conf, **broker_kwargs) as t:
            outcomes[name] = script(t)
    outcomes["mosquitto"] = mosquitto_deviates(outcomes["mosquitto"])
    assert outcomes["pymongoose"] == outcomes["mosquitto"], outcomes
    return outcomes["pymongoose"]


def sent(client: RawMqtt, topic: str, payload: bytes, qos: int, **kwargs: Any) -> None:
    """Publish and complete the flow (PUBACK; PUBREC, PUBREL, PUBCOMP) before going on:
    a broker may deliver QoS 2 at PUBLISH or at PUBREL (MQTT 4.3.3), so only then is
    the order of messages from one publisher the same everywhere."""
    client.publish(topic, payload, qos, **kwargs)
    client.sync()


def persistent(version: int, expiry: int = 300) -> dict[str, Any]:
    """RawMqtt arguments for a session that outlives its connection."""
    if version == 5:
        return {"version": 5, "clean": False, "props": [(SESSION_EXPIRY, expiry)]}
    return {"version": 4, "clean": False}


VERSIONS = pytest.mark.parametrize("version", [4, 5])


# -- routing and QoS ---------------------------------------------------------------------


@VERSIONS
def test_qos_is_the_lower_of_publish_and_subscription(tmp_path: Path, version: int) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "sub", version=version)
        pub = RawMqtt(t.port, "pub", version=version)
        granted = sub.subscribe(("q/0", 0), ("q/1", 1), ("q/2", 2))
        assert granted is not None
        for topic in ("q/0", "q/1", "q/2"):
            for qos in (0, 1, 2):
                pub.publish(topic, f"{qos}".encode(), qos)
        pub.sync()
        got = [(p.topic, p.payload, p.qos) for p in sub.sync()]
        pub.disconnect()
        sub.disconnect()
        return granted.codes, sorted(got)

    codes, got = both(tmp_path, script)
    assert codes == b"\0\1\2"
    assert got == sorted((f"q/{s}", f"{p}".encode(), min(s, p))
                         for s in range(3) for p in range(3))


# -- sessions ----------------------------------------------------------------------------


@VERSIONS
def test_session_keeps_subscriptions_and_queues_qos1_and_2(tmp_path: Path,
                                                          version: int) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "keeper", **persistent(version))
        first_present = sub.connack.session_present
        sub.subscribe(("s/#", 2))
        sub.disconnect()
        pub = RawMqtt(t.port, "pub", version=version)
        sent(pub, "s/a", b"qos0 is not queued", 0)
        sent(pub, "s/b", b"one", 1)
        sent(pub, "s/c", b"two", 2)
        sent(pub, "s/d", b"three", 1)
        again = RawMqtt(t.port, "keeper", **persistent(version))
        got = publishes(again.sync())
        # A clean start ends the session: nothing kept, nothing queued.
        again.disconnect()
        clean = RawMqtt(t.port, "keeper", version=version)
        pub.publish("s/e", b"after the clean start", 1)
        pub.sync()
        after_clean = publishes(clean.sync())
        clean.disconnect()
        pub.disconnect()
        return first_present, again.connack.session_present, got, \
            clean.connack.session_present, after_clean

    assert both(tmp_path, script) == (
        False, True, [("s/b", b"one", 1, False), ("s/c", b"two", 2, False),
                      ("s/d", b"three", 1, False)], False, [])


@VERSIONS
def test_unacknowledged_messages_are_resent_with_dup_in_order(tmp_path: Path,
                                                              version: int) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "slow", auto_ack=False, **persistent(version))
        sub.subscribe(("r/#", 2))
        pub = RawMqtt(t.port, "pub", version=version)
        sent(pub, "r/1", b"first", 1)
        sent(pub, "r/2", b"second", 2)
        sent(pub, "r/3", b"third", 1)
        first = sub.sync()
        ids = {p.topic: p.packet_id for p in first}
        # Acknowledge the QoS 2 one half way (PUBREC), then vanish.
        sub.ack(PUBREC, ids["r/2"])
        assert sub.expect("PUBREL").packet_id == ids["r/2"]
        sub.drop()
        back = RawMqtt(t.port, "slow", auto_ack=False, **persistent(version))
        resent = back.sync()
        seen = [(p.kind, p.topic, p.dup, p.qos, p.packet_id == ids.get(p.topic, ids["r/2"]))
                for p in resent]
        for p in resent:
            back.ack(PUBACK if p.kind == "PUBLISH" else PUBCOMP, p.packet_id)
        # Everything acknowledged: a third connection gets nothing more.
        back.sync()
        back.drop()
        last = RawMqtt(t.port, "slow", **persistent(version))
        rest = last.sync()
        last.disconnect()
        pub.disconnect()
        return [(p.topic, p.dup) for p in first], seen, rest

    first, seen, rest = both(tmp_path, script)
    assert first == [("r/1", False), ("r/2", False), ("r/3", False)]
    # The PUBREL of r/2 first or in its place: both brokers keep the send order.
    assert sorted(seen) == sorted([("PUBLISH", "r/1", True, 1, True),
                                   ("PUBREL", "", False, 1, True),
                                   ("PUBLISH", "r/3", True, 1, True)])
    assert rest == []


@VERSIONS
def test_qos2_from_a_client_is_delivered_once_across_reconnects(tmp_path: Path,
                                                                version: int) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "sub", version=version)
        sub.subscribe(("x/#", 2))
        pub = RawMqtt(t.port, "pub2", auto_ack=False, **persistent(version))
        pub.publish("x/once", b"exactly once", 2, packet_id=7)
        rec = pub.expect("PUBREC").packet_id
        pub.publish("x/once", b"exactly once", 2, packet_id=7, dup=True)  # a resend
        rec2 = pub.expect("PUBREC").packet_id
        pub.drop()
        pub = RawMqtt(t.port, "pub2", auto_ack=False, **persistent(version))
        pub.publish("x/once", b"exactly once", 2, packet_id=7, dup=True)  # after reconnect
        rec3 = pub.expect("PUBREC").packet_id
        pub.ack(PUBREL, 7)
        comp = pub.expect("PUBCOMP").packet_id
        pub.sync()
        got = publishes(sub.sync())
        pub.disconnect()
        sub.disconnect()
        return (rec, rec2, rec3, comp), got

    assert both(tmp_path, script) == ((7, 7, 7, 7), [("x/once", b"exactly once", 2, False)])


@VERSIONS
def test_a_second_connection_takes_the_session_over(tmp_path: Path, version: int) -> None:
    def script(t: Target) -> Any:
        first = RawMqtt(t.port, "twin", **persistent(version))
        first.subscribe(("t/#", 1))
        second = RawMqtt(t.port, "twin", **persistent(version))
        ended = [(p.kind, p.reason) for p in first.closed_by_broker()]
        pub = RawMqtt(t.port, "pub", version=version)
        pub.publish("t/x", b"to the new one", 1)
        pub.sync()
        got = publishes(second.sync())
        second.disconnect()
        pub.disconnect()
        return second.connack.session_present, ended, got

    expected_end = [("DISCONNECT", 0x8E)] if version == 5 else []

    def deviation(outcome: Any) -> Any:
        # MQTT 5 (3.1.4-3, 4.13): the Server sends DISCONNECT 0x8E (Session taken over)
        # to the existing client; mosquitto 2.0.11 just closes the connection.
        present, _ended, got = outcome
        return present, expected_end, got

    assert both(tmp_path, script, mosquitto_deviates=deviation) == (
        True, expected_end, [("t/x", b"to the new one", 1, False)])


def test_empty_client_id_needs_a_clean_session_in_mqtt311(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        refused = RawMqtt(t.port, "", clean=False, expect_refusal=True)
        code = refused.connack.reason
        refused.drop()
        ok = RawMqtt(t.port, "")
        ok.disconnect()
        return code, ok.connack.reason

    assert both(tmp_path, script) == (2, 0)


# -- MQTT 5 ------------------------------------------------------------------------------


def test_v5_session_expiry_ends_the_session(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        brief = RawMqtt(t.port, "brief", version=5, clean=False, props=[(SESSION_EXPIRY, 1)])
        brief.subscribe(("e/#", 1))
        brief.disconnect()
        soon = RawMqtt(t.port, "brief", version=5, clean=False, props=[(SESSION_EXPIRY, 1)])
        present_soon = soon.connack.session_present
        soon.disconnect()
        time.sleep(2.5)  # the expiry itself: real time must pass
        late = RawMqtt(t.port, "brief", version=5, clean=False)
        late.disconnect()
        none = RawMqtt(t.port, "zero", version=5, clean=False)  # expiry 0: ends at close
        none.disconnect()
        none2 = RawMqtt(t.port, "zero", version=5, clean=False)
        none2.disconnect()
        return present_soon, late.connack.session_present, none2.connack.session_present

    assert both(tmp_path, script) == (True, False, False)


def test_v5_assigned_client_identifier(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        anon = RawMqtt(t.port, "", version=5)
        assigned = anon.connack.prop(ASSIGNED_ID)
        anon.disconnect()
        named = RawMqtt(t.port, "named", version=5)
        named.disconnect()
        return bool(assigned), named.connack.prop(ASSIGNED_ID)

    assert both(tmp_path, script) == (True, None)


def test_v5_topic_alias_from_the_client(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "sub", version=5)
        sub.subscribe(("alias/#", 0))
        pub = RawMqtt(t.port, "pub", version=5)
        maximum = pub.connack.prop(TOPIC_ALIAS_MAXIMUM)
        pub.publish("alias/long/topic", b"sets alias 1", 0, props=[(TOPIC_ALIAS, 1)])
        pub.publish("", b"uses alias 1", 0, props=[(TOPIC_ALIAS, 1)])
        pub.sync()
        got = publishes(sub.sync())
        pub.publish("alias/x", b"alias 0", 0, props=[(TOPIC_ALIAS, 0)])
        zero = [(p.kind, p.reason) for p in pub.closed_by_broker()]
        pub = RawMqtt(t.port, "pub", version=5)
        pub.publish("alias/x", b"too high", 0, props=[(TOPIC_ALIAS, maximum + 1)])
        high = [(p.kind, p.reason) for p in pub.closed_by_broker()]
        sub.disconnect()
        return maximum, got, zero, high

    def deviation(outcome: Any) -> Any:
        # Topic alias 0 is "Topic Alias invalid" (0x94, MQTT 5 3.3.2.3.4, 4.13);
        # mosquitto 2.0.11 says 0x81 (Malformed Packet) for alias 0.
        maximum, got, zero, high = outcome
        assert zero == [("DISCONNECT", 0x81)]
        return maximum, got, [("DISCONNECT", 0x94)], high

    maximum, got, zero, high = both(tmp_path, script, mosquitto_deviates=deviation)
    assert maximum == 10
    assert got == [("alias/long/topic", b"sets alias 1", 0, False),
                   ("alias/long/topic", b"uses alias 1", 0, False)]
    assert zero == high == [("DISCONNECT", 0x94)]


def test_v5_receive_maximum_limits_messages_in_flight(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "narrow", version=5, auto_ack=False,
                      props=[(RECEIVE_MAXIMUM, 2)])
        sub.subscribe(("rm/#", 1))
        pub = RawMqtt(t.port, "pub", version=5)
        for n in range(5):
            pub.publish(f"rm/{n}", b"x", 1)
        pub.sync()
        window = sub.sync()
        sub.ack(PUBACK, window[0].packet_id)
        more = sub.sync()
        for p in window[1:] + more:
            sub.ack(PUBACK, p.packet_id)
        rest = sub.sync()
        for p in rest:
            sub.ack(PUBACK, p.packet_id)
        sub.disconnect()
        pub.disconnect()
        return [p.topic for p in window], [p.topic for p in more], [p.topic for p in rest]

    def deviation(outcome: Any) -> Any:
        # MQTT 5 3.3.4: never more than Receive Maximum (2) unacknowledged PUBLISH. With
        # rm/1 still unacknowledged mosquitto 2.0.11 sends rm/2 and rm/3 (3 in flight).
        window, more, rest = outcome
        assert more == ["rm/2", "rm/3"]
        return window, ["rm/2"], ["rm/3", *rest]

    assert both(tmp_path, script, mosquitto_deviates=deviation) == (
        ["rm/0", "rm/1"], ["rm/2"], ["rm/3", "rm/4"])


def test_v5_maximum_packet_size_skips_what_a_client_cannot_take(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "small", version=5, props=[(MAXIMUM_PACKET_SIZE, 64)])
        sub.subscribe(("mp/#", 1))
        pub = RawMqtt(t.port, "pub", version=5)
        pub.publish("mp/big", b"x" * 100, 0)
        pub.publish("mp/big1", b"x" * 100, 1)
        pub.publish("mp/small", b"fits", 1)
        pub.sync()
        got = publishes(sub.sync())
        sub.disconnect()
        pub.disconnect()
        return got

    assert both(tmp_path, script) == [("mp/small", b"fits", 1, False)]


def test_v5_message_expiry(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "away", **persistent(5))
        sub.subscribe(("me/#", 1))
        sub.disconnect()
        pub = RawMqtt(t.port, "pub", version=5)
        pub.publish("me/short", b"expires", 1, props=[(MESSAGE_EXPIRY, 1)])
        pub.publish("me/long", b"stays", 1, props=[(MESSAGE_EXPIRY, 100)])
        pub.sync()
        time.sleep(2.2)  # the expiry itself: real time must pass
        back = RawMqtt(t.port, "away", **persistent(5))
        got = [(p.topic, 0 < p.prop(MESSAGE_EXPIRY, -1) < 100) for p in back.sync()]
        back.disconnect()
        pub.disconnect()
        return got

    assert both(tmp_path, script) == [("me/long", True)]


def test_v5_shared_subscription_gives_each_message_to_one_member(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        a = RawMqtt(t.port, "a", version=5)
        b = RawMqtt(t.port, "b", version=5)
        a.subscribe(("$share/workers/jobs/#", 1))
        b.subscribe(("$share/workers/jobs/#", 1))
        pub = RawMqtt(t.port, "pub", version=5)
        for n in range(6):
            pub.publish(f"jobs/{n}", b"job", 1)
        pub.sync()
        got_a = [p.topic for p in a.sync()]
        got_b = [p.topic for p in b.sync()]
        for c in (a, b, pub):
            c.disconnect()
        return sorted(got_a + got_b), len(got_a), len(got_b)

    assert both(tmp_path, script) == ([f"jobs/{n}" for n in range(6)], 3, 3)


def test_v5_no_local_and_retain_as_published(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        me = RawMqtt(t.port, "me", version=5)
        me.subscribe(("nl/mine", 1 | NO_LOCAL), ("nl/rap", 1 | RETAIN_AS_PUBLISHED),
                     ("nl/plain", 1))
        me.publish("nl/mine", b"not to me", 1)
        me.expect("PUBACK")
        other = RawMqtt(t.port, "other", version=5)
        other.publish("nl/mine", b"from other", 1)
        other.publish("nl/rap", b"kept flag", 1, retain=True)
        other.publish("nl/plain", b"flag cleared", 1, retain=True)
        other.sync()
        got = publishes(me.sync())
        me.publish("nl/rap", b"", 0, retain=True)
        me.publish("nl/plain", b"", 0, retain=True)
        me.disconnect()
        other.disconnect()
        return got

    assert both(tmp_path, script) == [("nl/mine", b"from other", 1, False),
                                      ("nl/rap", b"kept flag", 1, True),
                                      ("nl/plain", b"flag cleared", 1, False)]


def test_v5_retain_handling(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        pub = RawMqtt(t.port, "pub", version=5)
        pub.publish("rh/t", b"retained", 1, retain=True)
        pub.expect("PUBACK")
        sub = RawMqtt(t.port, "sub", version=5)
        out = []
        for options in (0x01, 0x11, 0x21):  # send always, if new, never
            sub.subscribe(("rh/t", options))
            out.append(publishes(sub.sync()))
        sub.unsubscribe("rh/t")
        sub.subscribe(("rh/t", 0x11))  # new again
        out.append(publishes(sub.sync()))
        pub.publish("rh/t", b"", 0, retain=True)
        pub.disconnect()
        sub.disconnect()
        return out

    retained = [("rh/t", b"retained", 1, True)]
    assert both(tmp_path, script) == [retained, [], [], retained]


def test_v5_subscription_identifiers(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        sub = RawMqtt(t.port, "ids", version=5)
        sub.subscribe(("si/#", 1), props=[(SUBSCRIPTION_ID, 5)])
        sub.subscribe(("si/x", 1), props=[(SUBSCRIPTION_ID, 70000)])
        sub.subscribe(("si/plain/+", 1))
        pub = RawMqtt(t.port, "pub", version=5)
        pub.publish("si/x", b"both", 1)
        pub.publish("si/y", b"one", 1)
        pub.publish("si/plain/z", b"no id from the plain one", 1)
        pub.sync()
        ids: dict[str, list[int]] = {}
        for p in sub.sync():
            ids.setdefault(p.topic, []).extend(p.props_all(SUBSCRIPTION_ID))
        sub.disconnect()
        pub.disconnect()
        return {topic: sorted(found) for topic, found in ids.items()}

    # For overlapping subscriptions mosquitto sends one copy per subscription, each
    # with its identifier; MqttBroker one copy with all of them. MQTT 5 (3.3.4) allows
    # both: the test compares the identifiers each topic brought in all.
    assert both(tmp_path, script) == {"si/plain/z": [5], "si/x": [5, 70000], "si/y": [5]}


def test_v5_will_properties_and_delay(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        watcher = RawMqtt(t.port, "watcher", version=5)
        watcher.subscribe(("will/#", 1))
        props = [(CONTENT_TYPE, "text/plain"), (USER_PROPERTY, ("k", "v")),
                 (WILL_DELAY, 1)]
        dying = RawMqtt(t.port, "dying", version=5, clean=False,
                        props=[(SESSION_EXPIRY, 60)], will=("will/dying", b"gone", 1, False),
                        will_props=props)
        dying.drop()
        early = publishes(watcher.sync())  # the delay holds it back
        deadline = time.monotonic() + 10
        late = []
        while not late and time.monotonic() < deadline:
            late = [(p.topic, p.payload, p.prop(CONTENT_TYPE), p.props_all(USER_PROPERTY))
                    for p in watcher.sync()]
            time.sleep(0.1)
        # Back before the delay is over: no will.
        back = RawMqtt(t.port, "back", version=5, clean=False, props=[(SESSION_EXPIRY, 60)],
                       will=("will/back", b"never", 1, False), will_props=[(WILL_DELAY, 5)])
        back.drop()
        back = RawMqtt(t.port, "back", version=5, clean=False, props=[(SESSION_EXPIRY, 60)])
        back.sync()
        watcher.sync()
        back.disconnect()
        never = publishes(watcher.sync())
        watcher.disconnect()
        return early, late, never

    assert both(tmp_path, script) == (
        [], [("will/dying", b"gone", "text/plain", [("k", "v")])], [])


def test_v5_reason_codes(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        c = RawMqtt(t.port, "codes", version=5)
        unsub = c.unsubscribe("never/subscribed").codes
        c.publish("nobody/listens", b"x", 1)
        no_match = c.expect("PUBACK").reason
        c.disconnect()
        return unsub, no_match

    def choice(outcome: Any) -> Any:
        # PUBACK 0x10 (No matching subscribers) is a MAY (MQTT 5, 3.4.2.1): mosquitto
        # sends it, MqttBroker sends 0x00 (Success; C acknowledges before routing).
        unsub, no_match = outcome
        assert no_match == 0x10
        return unsub, 0

    assert both(tmp_path, script, mosquitto_deviates=choice) == (b"\x11", 0)


def test_v5_unsupported_authentication_method_is_refused(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        c = RawMqtt(t.port, "auth", version=5, props=[(0x15, "SCRAM-SHA-1")],
                    expect_refusal=True)
        code = c.connack.reason
        rest = c.closed_by_broker()
        return code, rest

    assert both(tmp_path, script) == (0x8C, [])


@pytest.mark.parametrize("version", [4, 5])
def test_paho_clients_resume_their_session(tmp_path: Path, version: int) -> None:
    """The same with paho-mqtt, as applications use it: a persistent subscriber goes
    away, messages published meanwhile arrive once it is back."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    def client(port: int, client_id: str, persistent: bool) -> tuple[Any, dict[str, Any]]:
        state: dict[str, Any] = {"messages": [], "connected": threading.Event(),
                                 "subscribed": threading.Event()}
        if version == 5:
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=paho.MQTTv5)
        else:
            c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                            protocol=paho.MQTTv311, clean_session=not persistent)

        def on_connect(cl: Any, ud: Any, flags: Any, reason: Any, props: Any) -> None:
            state["present"] = bool(flags.session_present)
            state["connected"].set()

        c.on_connect = on_connect
        c.on_subscribe = lambda *a: state["subscribed"].set()
        c.on_message = lambda cl, ud, m: state["messages"].append((m.topic, m.payload, m.qos))
        if version == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300 if persistent else 0
            c.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
        else:
            c.connect("127.0.0.1", port)
        c.loop_start()
        assert state["connected"].wait(10)
        return c, state

    def stop(c: Any) -> None:
        c.disconnect()
        with contextlib.suppress(AttributeError):  # see mqtt_helpers.Paho.close
            c.loop_stop()

    def script(t: Target) -> Any:
        sub, s1 = client(t.port, "paho-sub", True)
        sub.subscribe("paho/#", 1)
        assert s1["subscribed"].wait(10)
        stop(sub)
        pub, _ = client(t.port, "paho-pub", False)
        for n in range(3):
            pub.publish(f"paho/{n}", f"m{n}".encode(), 1).wait_for_publish(10)
        stop(pub)
        sub, s2 = client(t.port, "paho-sub", True)
        deadline = time.monotonic() + 10
        while len(s2["messages"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # paho delivers on its own thread
        stop(sub)
        return s1["present"], s2["present"], s2["messages"]

    assert both(tmp_path, script) == (False, True, [(f"paho/{n}", f"m{n}".encode(), 1)
                                                    for n in range(3)])


def test_v5_server_keep_alive(tmp_path: Path) -> None:
    def script(t: Target) -> Any:
        eager = RawMqtt(t.port, "eager", version=5, keepalive=3600)
        slow = eager.connack.prop(SERVER_KEEP_ALIVE)
        eager.disconnect()
        modest = RawMqtt(t.port, "modest", version=5, keepalive=20)
        ok = modest.connack.prop(SERVER_KEEP_ALIVE)
        modest.disconnect()
        return slow, ok

    assert both(tmp_path, script, mosquitto_conf="max_keepalive 60\n",
                max_keepalive=60) == (60, None)
