"""MQTT 3.1.1 and 5: the client side (``Manager.mqtt_connect``, ``Connection.mqtt_*``) and a
broker (:class:`MqttBroker`).

One module per concern: :mod:`.constants` (packet types, property ids), :mod:`.message`
(the received-packet view), :mod:`.properties`, :mod:`.topics` (checks and matching),
:mod:`.client` (what the Manager and Connection methods do), :mod:`.packets` (parsing
what clients send a broker) and :mod:`.broker`.
"""

from __future__ import annotations

from .broker import *  # noqa: F403
from .broker import __all__ as _broker_all
from .constants import *  # noqa: F403
from .constants import __all__ as _constants_all
from .message import *  # noqa: F403
from .message import __all__ as _message_all
from .packets import *  # noqa: F403
from .packets import __all__ as _packets_all
from .properties import *  # noqa: F403
from .properties import __all__ as _properties_all
from .topics import *  # noqa: F403
from .topics import __all__ as _topics_all

__all__ = sorted(_constants_all + _message_all + _properties_all + _topics_all
                 + _packets_all + _broker_all)
