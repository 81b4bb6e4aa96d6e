"""Topic names and filters: checking them and matching one against the other."""

from __future__ import annotations

from .properties import _utf8_field

__all__ = ["check_topic_filter", "check_topic_name", "topic_matches"]


def _check_qos(qos: object, what: str = "qos") -> int:
    if not isinstance(qos, int) or isinstance(qos, bool):
        raise TypeError(f"{what} must be an int (0, 1 or 2), not {type(qos).__name__}")
    if not 0 <= qos <= 2:
        raise ValueError(f"{what} must be 0, 1 or 2, not {qos}")
    return qos



def check_topic_name(topic: object, what: str = "topic") -> bytes:
    """A topic to publish to, UTF-8 encoded: non-empty, no ``+`` or ``#`` wildcards."""
    raw = _utf8_field(topic, what, allow_empty=False)
    if b"+" in raw or b"#" in raw:
        raise ValueError(f"{what} {topic!r}: wildcards (+, #) are for subscriptions only")
    return raw


def check_topic_filter(topic: object, what: str = "topic") -> bytes:
    """A subscription filter, UTF-8 encoded: ``+`` fills one whole level, ``#`` the last."""
    raw = _utf8_field(topic, what, allow_empty=False)
    levels = raw.split(b"/")
    for index, level in enumerate(levels):
        if b"#" in level and (level != b"#" or index != len(levels) - 1):
            raise ValueError(f"{what} {topic!r}: '#' must be a whole level and the last one")
        if b"+" in level and level != b"+":
            raise ValueError(f"{what} {topic!r}: '+' must be a whole level")
    return raw


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (``+`` one level, ``#`` the rest).

    Topics starting with ``$`` (``$SYS/...``) match only filters that start with ``$``.
    """
    if not isinstance(topic_filter, str) or not isinstance(topic, str):
        raise TypeError("topic_filter and topic must be str")
    wanted = topic_filter.split("/")
    levels = topic.split("/")
    if topic.startswith("$") and not topic_filter.startswith("$"):
        return False
    for index, part in enumerate(wanted):
        if part == "#":
            return True
        if index >= len(levels):
            return False
        if part != "+" and part != levels[index]:
            return False
    return len(wanted) == len(levels)
