"""The broker's names under their former module path; they live in :mod:`pymongoose.mqtt`."""

from __future__ import annotations

from .mqtt.broker import MqttBroker
from .mqtt.packets import MqttConnect, parse_connect, parse_subscribe, parse_unsubscribe
from .mqtt.topics import topic_matches

__all__ = [
    "MqttBroker",
    "MqttConnect",
    "parse_connect",
    "parse_subscribe",
    "parse_unsubscribe",
    "topic_matches",
]
