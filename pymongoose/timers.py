"""Timer: a callback a Manager runs after a delay, once or repeatedly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .manager import Manager

__all__ = ["Timer", "TimerCallback"]

#: ``callback()``: what a timer runs; it takes no arguments.
TimerCallback = Callable[[], Any]


class Timer:
    """A timer made by :meth:`Manager.timer_add`.

    The Manager keeps the timer (and its callback) alive until it has fired for the last
    time or is cancelled, so dropping this object never leaves C with a dangling
    callback. The callback runs on the thread that polls the Manager, at the first poll
    after it is due; ``poll()`` never waits past the next due timer.
    """

    __slots__ = ("_active", "_callback", "_id", "_manager", "_repeat")

    def __init__(self, manager: Manager, timer_id: int, callback: TimerCallback,
                 repeat: bool) -> None:
        self._manager = manager
        self._id = timer_id
        self._callback = callback
        self._repeat = repeat
        self._active = True

    @property
    def id(self) -> int:
        """This timer's number, unique within its Manager."""
        return self._id

    @property
    def repeat(self) -> bool:
        """True for a timer that fires every period until cancelled."""
        return self._repeat

    @property
    def active(self) -> bool:
        """True until the timer has fired for the last time or was cancelled."""
        return self._active

    @property
    def callback(self) -> TimerCallback:
        """The function the timer runs."""
        return self._callback

    def cancel(self) -> None:
        """Stop the timer; safe to call twice, from inside its own callback, and from any
        thread (from another thread, a firing already under way may still finish)."""
        if self._active:
            self._active = False
            self._manager._cancel_timer(self._id)

    def __repr__(self) -> str:
        state = "active" if self._active else "done"
        kind = "repeating" if self._repeat else "one-shot"
        return f"<Timer id={self._id} {kind} {state}>"
