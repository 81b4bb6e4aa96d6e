"""Keeping a broker's retained messages and sessions in SQLite (``MqttBroker(persist=)``).

WAL mode, one transaction per event the broker handles, committed before the poll writes
any acknowledgement that event queued: a broker killed at any moment has on disk every
message it acknowledged. ``synchronous=NORMAL``: a process crash loses nothing; a power
cut may lose the last transactions (``durable=True`` makes every commit reach the disk).
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from . import wire
from .sessions import NEVER, Message, Outgoing, Session, Subscription

__all__: list[str] = []

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    props BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, version INTEGER NOT NULL, expiry INTEGER NOT NULL,
    subscriptions TEXT NOT NULL, awaiting_rel TEXT NOT NULL, next_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    row INTEGER PRIMARY KEY AUTOINCREMENT, client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
    released INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
    props BLOB NOT NULL, expires_at REAL, sub_ids TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_client ON messages (client_id, row);
"""


def _props_blob(message: Message) -> bytes:
    return wire.encode_properties(message.props)


def _props_from(blob: bytes) -> tuple[tuple[int, object], ...]:
    return tuple(wire.decode_properties(blob, 0)[0])


class Store:
    """The SQLite file behind a persistent broker."""

    def __init__(self, path: str, *, durable: bool = False) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL").close()
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}").close()
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise OSError(f"MqttBroker(persist={path!r}): cannot use it as an SQLite "
                          f"store: {exc}") from exc
        self._in_tx = False

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> int:
        """Run one write in the open transaction (opened if need be): its last row id."""
        if not self._in_tx:
            self._db.execute("BEGIN").close()
            self._in_tx = True
        cursor = self._db.execute(sql, args)
        row = cursor.lastrowid
        # Closed now: on PyPy a cursor left to the GC keeps its statement busy, and
        # COMMIT refuses to run while one is.
        cursor.close()
        return int(row or 0)

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        cursor = self._db.execute(sql)
        rows = cursor.fetchall()
        cursor.close()
        return rows

    def commit(self) -> None:
        """Make everything written since the last commit durable."""
        if self._in_tx:
            self._db.execute("COMMIT").close()
            self._in_tx = False

    def close(self) -> None:
        """Commit and close the file."""
        self.commit()
        self._db.close()

    # -- loading ----------------------------------------------------------------------

    def load(self) -> tuple[list[Session], list[Message]]:
        """The sessions (all offline, their queues and messages in flight restored) and
        the retained messages that were stored."""
        now = time.time()
        retained = []
        for topic, payload, qos, props, expires_at in self._rows(
                "SELECT topic, payload, qos, props, expires_at FROM retained"):
            if expires_at is None or expires_at > now:
                retained.append(Message(topic, payload, qos, True, _props_from(props),
                                        expires_at))
        sessions = {}
        for client_id, version, expiry, subs, awaiting, next_id in self._rows(
                "SELECT client_id, version, expiry, subscriptions, awaiting_rel, next_id "
                "FROM sessions"):
            session = Session(client_id, version, expiry)
            for full_filter, options, identifier in json.loads(subs):
                group = None
                topic_filter = full_filter
                if full_filter.startswith("$share/"):
                    _share, group, topic_filter = full_filter.split("/", 2)
                session.subscriptions[full_filter] = Subscription(topic_filter, options,
                                                                  identifier, group)
            session.awaiting_rel = set(json.loads(awaiting))
            session.next_id = next_id
            if expiry != NEVER:  # the clock restarts with the broker
                session.expires_at = time.monotonic() + expiry
            sessions[client_id] = session
        for (row, client_id, packet_id, qos, retain, released, topic, payload, props,
             expires_at, sub_ids) in self._rows(
                "SELECT row, client_id, packet_id, qos, retain, released, topic, payload, "
                "props, expires_at, sub_ids FROM messages ORDER BY row"):
            owner = sessions.get(client_id)
            if owner is None:
                continue
            message = Message(topic, payload, qos, bool(retain), _props_from(props),
                              expires_at)
            out = Outgoing(message, qos, bool(retain), tuple(json.loads(sub_ids)))
            out.row = row
            out.released = bool(released)
            if packet_id:
                out.packet_id = packet_id
                owner.inflight[packet_id] = out
            else:
                owner.queue.append(out)
                owner.queued_bytes += message.size
        return list(sessions.values()), retained

    # -- writing ----------------------------------------------------------------------

    def save_session(self, session: Session) -> None:
        """Store ``session``'s own fields (not its messages); only a session that
        outlives its connection is stored."""
        if session.expiry == 0:
            return
        subs = json.dumps([[f, s.options, s.identifier]
                           for f, s in session.subscriptions.items()])
        self._exec("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
                   (session.client_id, session.version, session.expiry, subs,
                    json.dumps(sorted(session.awaiting_rel)), session.next_id))

    def delete_session(self, client_id: str) -> None:
        """Forget a session and its messages."""
        self._exec("DELETE FROM sessions WHERE client_id = ?", (client_id,))
        self._exec("DELETE FROM messages WHERE client_id = ?", (client_id,))

    def add(self, session: Session, out: Outgoing) -> None:
        """A message queued for, or sent to, ``session``."""
        if session.expiry == 0:
            return
        m = out.message
        out.row = self._exec(
            "INSERT INTO messages (client_id, packet_id, qos, retain, released, topic, "
            "payload, props, expires_at, sub_ids) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (session.client_id, out.packet_id, out.qos, int(out.retain), int(out.released),
             m.topic, m.payload, _props_blob(m), m.expires_at, json.dumps(list(out.sub_ids))))

    def sent(self, session: Session, out: Outgoing) -> None:
        """``out`` got its packet id and went out."""
        if out.row:
            self._exec("UPDATE messages SET packet_id = ? WHERE row = ?",
                       (out.packet_id, out.row))
        else:
            self.add(session, out)

    def released(self, out: Outgoing) -> None:
        """QoS 2: the client sent PUBREC, PUBREL went out."""
        if out.row:
            self._exec("UPDATE messages SET released = 1 WHERE row = ?", (out.row,))

    def remove(self, out: Outgoing) -> None:
        """``out`` is done with (acknowledged, expired, too big)."""
        if out.row:
            self._exec("DELETE FROM messages WHERE row = ?", (out.row,))
            out.row = 0

    def save_retained(self, message: Message) -> None:
        """A retained message, replacing the topic's previous one."""
        self._exec("INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?)",
                   (message.topic, message.payload, message.qos, _props_blob(message),
                    message.expires_at))

    def delete_retained(self, topic: str) -> None:
        """The topic's retained message was cleared."""
        self._exec("DELETE FROM retained WHERE topic = ?", (topic,))
