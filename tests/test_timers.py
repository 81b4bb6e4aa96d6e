"""Manager.timer_add: one-shot and repeating timers, cancellation, errors, lifetime."""

from __future__ import annotations

import gc
import threading
import time
from typing import Callable

import pytest

from pymongoose import Manager, ManagerClosedError, Timer

DEADLINE = 10.0


def poll_until(mgr: Manager, condition: Callable[[], bool], what: str) -> None:
    """Poll ``mgr`` until ``condition()`` holds; fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        mgr.poll(50)


def poll_for(mgr: Manager, seconds: float) -> None:
    """Keep polling for ``seconds`` (lets due timers fire; asserts nothing about time)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mgr.poll(10)


def test_one_shot_timer_fires_once_then_is_inactive() -> None:
    calls: list[int] = []
    with Manager() as mgr:
        timer = mgr.timer_add(20, lambda: calls.append(1))
        assert isinstance(timer, Timer) and timer.active and not timer.repeat
        poll_until(mgr, lambda: calls == [1], "the timer")
        poll_for(mgr, 0.1)
        assert calls == [1]
        assert not timer.active


def test_repeating_timer_fires_until_cancelled() -> None:
    calls: list[int] = []
    with Manager() as mgr:
        timer = mgr.timer_add(5, lambda: calls.append(1), repeat=True)
        poll_until(mgr, lambda: len(calls) >= 5, "five ticks")
        timer.cancel()
        timer.cancel()  # twice is fine
        fired = len(calls)
        poll_for(mgr, 0.1)
        assert len(calls) == fired
        assert not timer.active


def test_run_now_fires_at_the_next_poll() -> None:
    calls: list[int] = []
    with Manager() as mgr:
        mgr.timer_add(60_000, lambda: calls.append(1), run_now=True)
        mgr.poll(0)
        assert calls == [1]


def test_cancel_from_inside_its_own_callback() -> None:
    calls: list[int] = []
    with Manager() as mgr:
        def tick() -> None:
            calls.append(1)
            if len(calls) == 3:
                timer.cancel()
        timer = mgr.timer_add(1, tick, repeat=True)
        poll_until(mgr, lambda: len(calls) == 3, "three ticks")
        poll_for(mgr, 0.1)
        assert len(calls) == 3


def test_a_callback_cancels_other_timers_and_adds_new_ones() -> None:
    fired: list[str] = []
    with Manager() as mgr:
        victims = [mgr.timer_add(1, lambda: fired.append("victim"), repeat=True)
                   for _ in range(5)]

        def killer() -> None:
            fired.append("killer")
            for victim in victims:
                victim.cancel()
            mgr.timer_add(1, lambda: fired.append("newcomer"))

        # Added last, so it sits first in Mongoose's list and runs before the victims.
        mgr.timer_add(0, killer, run_now=True)
        poll_until(mgr, lambda: "newcomer" in fired, "the timer added by a callback")
        poll_for(mgr, 0.05)
        assert fired.count("killer") == 1
        assert "victim" not in fired
        assert not any(victim.active for victim in victims)


def test_a_dropped_timer_still_fires() -> None:
    calls: list[int] = []
    with Manager() as mgr:
        mgr.timer_add(5, lambda: calls.append(1))
        gc.collect()
        poll_until(mgr, lambda: calls == [1], "the unreferenced timer")


def test_callback_errors_go_to_the_error_handler_and_the_timer_keeps_going() -> None:
    errors: list[BaseException] = []
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        raise KeyError("boom")

    with Manager(error_handler=errors.append) as mgr:
        mgr.timer_add(1, flaky, repeat=True)
        poll_until(mgr, lambda: len(calls) >= 3, "three ticks despite errors")
    assert len(errors) >= 3 and all(isinstance(e, KeyError) for e in errors)


def test_callback_errors_are_logged_without_an_error_handler(
        caplog: pytest.LogCaptureFixture) -> None:
    with Manager() as mgr:
        mgr.timer_add(0, lambda: 1 / 0, run_now=True)
        mgr.poll(0)
    assert any("timer callback raised" in r.getMessage() and r.exc_info
               for r in caplog.records)


def test_poll_wakes_for_a_due_timer_instead_of_waiting_its_full_timeout() -> None:
    fired = threading.Event()
    mgr = Manager()
    mgr.timer_add(20, fired.set)

    def long_polls() -> None:
        while not fired.is_set():
            mgr.poll(60_000)  # without the cap this would sleep for a minute

    poller = threading.Thread(target=long_polls, daemon=True)
    poller.start()
    try:
        assert fired.wait(DEADLINE), "a 20 ms timer did not fire during a 60 s poll"
        poller.join(DEADLINE)
        assert not poller.is_alive()
    finally:
        mgr.close()


def test_closing_the_manager_retires_its_timers() -> None:
    calls: list[int] = []
    mgr = Manager()
    timer = mgr.timer_add(1, lambda: calls.append(1), repeat=True)
    mgr.close()
    assert not timer.active
    timer.cancel()  # harmless after close
    assert calls == []


def test_closing_the_manager_from_a_timer_callback() -> None:
    mgr = Manager()
    mgr.timer_add(1, mgr.close)
    poll_until(mgr, lambda: mgr.closed, "close() from a timer")


@pytest.mark.parametrize(("args", "error"), [
    (("10", print), TypeError),
    ((1.5, print), TypeError),
    ((True, print), TypeError),
    ((-1, print), ValueError),
    ((10, "not callable"), TypeError),
])
def test_bad_arguments(args: tuple[object, object], error: type[Exception]) -> None:
    with Manager() as mgr, pytest.raises(error):
        mgr.timer_add(*args)  # type: ignore[arg-type]


def test_timer_add_on_a_closed_manager() -> None:
    mgr = Manager()
    mgr.close()
    with pytest.raises(ManagerClosedError):
        mgr.timer_add(10, print)


def test_repr() -> None:
    with Manager() as mgr:
        timer = mgr.timer_add(10, print, repeat=True)
        assert "repeating" in repr(timer) and "active" in repr(timer)
        timer.cancel()
        assert "done" in repr(timer)
