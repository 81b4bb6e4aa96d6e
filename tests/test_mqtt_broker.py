"""MqttBroker behind Manager.mqtt_listen, driven by paho-mqtt clients."""

from __future__ import annotations

from mqtt_helpers import TIMEOUT, Paho, broker_thread

from pymongoose import topic_matches


def test_two_subscribers_get_exactly_their_messages() -> None:
    with broker_thread() as server:
        temps = Paho(server.port, "temps")
        everything = Paho(server.port, "everything")
        publisher = Paho(server.port, "publisher")
        try:
            temps.subscribe("sensors/+/temp", 1)
            everything.subscribe("sensors/#", 0)
            publisher.publish("sensors/kitchen/temp", b"21.5", 1)
            publisher.publish("sensors/kitchen/humidity", b"40", 0)
            publisher.publish("sensors/kitchen/temp/raw", b"2150", 1)
            publisher.publish("other/kitchen/temp", b"nobody", 1)
            publisher.publish("sensors/end/temp", b"end", 1)  # both see it last
            assert temps.receive_until("sensors/end/temp") == [
                ("sensors/kitchen/temp", b"21.5", 1, False),
                ("sensors/end/temp", b"end", 1, False),
            ]
            assert everything.receive_until("sensors/end/temp") == [
                ("sensors/kitchen/temp", b"21.5", 0, False),
                ("sensors/kitchen/humidity", b"40", 0, False),
                ("sensors/kitchen/temp/raw", b"2150", 0, False),
                ("sensors/end/temp", b"end", 0, False),
            ]
            assert publisher.messages.empty()
            assert sorted(server.broker.clients) == ["everything", "publisher", "temps"]
        finally:
            for client in (temps, everything, publisher):
                client.close()
        assert server.errors == []


def test_qos2_and_mqtt5_clients_mix() -> None:
    with broker_thread() as server:
        v5 = Paho(server.port, "v5-sub", version=5)
        v4 = Paho(server.port, "v4-pub")
        try:
            v5.subscribe("mixed/#", 2)
            v4.publish("mixed/a", b"x", 2)  # a one-byte payload: see fix_v5_publish in C
            v4.publish("mixed/b", b"exactly once", 2)
            assert v5.receive_until("mixed/b") == [("mixed/a", b"x", 2, False),
                                                   ("mixed/b", b"exactly once", 2, False)]
            v4.subscribe("back/#", 1)
            v5.publish("back/x", b"from a v5 client", 1)
            assert v4.receive_until("back/x") == [("back/x", b"from a v5 client", 1, False)]
        finally:
            v5.close()
            v4.close()
        assert server.errors == []


def test_retained_messages_and_clearing_them() -> None:
    with broker_thread() as server:
        publisher = Paho(server.port, "retainer")
        try:
            publisher.publish("status/door", b"open", 1, retain=True)
            # QoS 1: the PUBACK means the broker has handled it before `late` subscribes.
            publisher.publish("status/light", b"on", 1, retain=True)
            publisher.publish("status/light", b"", 1, retain=True)  # clears it
            late = Paho(server.port, "late")
            try:
                late.subscribe("status/#", 1)
                publisher.publish("status/end", b"end", 1)
                assert late.receive_until("status/end") == [
                    ("status/door", b"open", 1, True), ("status/end", b"end", 1, False)]
            finally:
                late.close()
            assert server.broker.retained == {"status/door": b"open"}
        finally:
            publisher.close()


def test_unsubscribe_stops_delivery() -> None:
    with broker_thread() as server:
        client = Paho(server.port, "unsub")
        try:
            client.subscribe("u/a", 0)
            client.subscribe("u/end", 0)
            client.unsubscribe("u/a")
            client.publish("u/a", b"gone", 1)
            client.publish("u/end", b"end", 1)
            assert client.receive_until("u/end") == [("u/end", b"end", 0, False)]
        finally:
            client.close()


def test_will_is_published_when_a_client_vanishes_not_when_it_disconnects() -> None:
    with broker_thread() as server:
        watcher = Paho(server.port, "watcher")
        polite = Paho(server.port, "polite", will=("wills/polite", b"bye", 1))
        rude = Paho(server.port, "rude", will=("wills/rude", b"vanished", 1))
        try:
            watcher.subscribe("wills/#", 1)
            polite.close()
            rude.vanish()
            topic, payload, _qos, _retain = watcher.messages.get(timeout=TIMEOUT)
            assert (topic, payload) == ("wills/rude", b"vanished")
            watcher.publish("wills/end", b"end", 1)
            assert [m[0] for m in watcher.receive_until("wills/end")] == ["wills/end"]
        finally:
            watcher.close()
        assert server.errors == []


def test_topic_matches() -> None:
    assert topic_matches("a/+/c", "a/b/c")
    assert not topic_matches("a/+/c", "a/b/c/d")
    assert topic_matches("a/#", "a")
    assert topic_matches("a/#", "a/b/c")
    assert topic_matches("#", "a/b")
    assert not topic_matches("#", "$SYS/x")
    assert topic_matches("+/+", "/x")
    assert not topic_matches("a/b", "a/b/c")



def test_mqtt5_properties_are_forwarded_to_mqtt5_subscribers() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    with broker_thread() as server:
        v5_sub = Paho(server.port, "props-v5", version=5)
        v4_sub = Paho(server.port, "props-v4")
        v5_pub = Paho(server.port, "props-pub", version=5)
        try:
            v5_sub.subscribe("props/#", 1)
            v4_sub.subscribe("props/#", 1)
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("trace", "abc"), ("hop", "1")]
            props.ContentType = "application/json"
            props.CorrelationData = b"\x00\x01"
            v5_pub.publish("props/x", b"{}", 1, retain=True, properties=props)
            assert v5_sub.receive_until("props/x") == [("props/x", b"{}", 1, False)]
            assert v4_sub.receive_until("props/x") == [("props/x", b"{}", 1, False)]
            got = v5_sub.properties["props/x"]
            assert got.UserProperty == [("trace", "abc"), ("hop", "1")]
            assert got.ContentType == "application/json"
            assert got.CorrelationData == b"\x00\x01"
            late = Paho(server.port, "props-late", version=5)
            try:
                late.subscribe("props/x", 1)
                assert late.receive_until("props/x") == [("props/x", b"{}", 1, True)]
                assert late.properties["props/x"].ContentType == "application/json"
            finally:
                late.close()
        finally:
            for client in (v5_sub, v4_sub, v5_pub):
                client.close()
        assert server.errors == []
