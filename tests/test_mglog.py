"""Mongoose's own log lines: those that repeat an exception we raise are not printed a
second time (demoted to DEBUG), the others keep their level; a refused connection's
MG_EV_ERROR names the errno."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator

import pytest
from subprocess_helpers import run_to_end

from pymongoose import MG_EV_CLOSE, MG_EV_ERROR, Connection, ListenError, Manager
from pymongoose._mglog import demoted_level, repeated_by_exception

MONGOOSE = "pymongoose.mongoose"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_listen_on_a_busy_port_raises_without_mongoose_logging_an_error(
        busy_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=MONGOOSE)
    manager = Manager()
    try:
        with pytest.raises(ListenError) as raised:
            manager.listen(f"http://127.0.0.1:{busy_port}")
    finally:
        manager.close()
    assert raised.value.errno == errno.EADDRINUSE
    mongoose = [r for r in caplog.records if r.name == MONGOOSE]
    assert [r for r in mongoose if r.levelno >= logging.WARNING] == []
    # still there for whoever turns on DEBUG
    assert any(f"bind: {errno.EADDRINUSE}" in r.getMessage() for r in mongoose)


def test_a_refused_connection_names_the_errno_and_its_log_line_keeps_its_level(
        closed_port: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=MONGOOSE)
    errors: list[str] = []
    closed: list[bool] = []

    def handler(conn: Connection, ev: int, data: object) -> None:
        if ev == MG_EV_ERROR:
            errors.append(str(data))
        elif ev == MG_EV_CLOSE:
            closed.append(True)

    manager = Manager()
    try:
        manager.connect(f"http://127.0.0.1:{closed_port}", handler)
        for _ in range(200):
            if closed:
                break
            manager.poll(50)
    finally:
        manager.close()
    refused = errno.ECONNREFUSED
    assert errors == [f"socket error: Connection refused (errno {refused})"]
    # No exception reports it, so Mongoose's own line is not demoted.
    assert any(r.levelno == logging.ERROR and "socket error" in r.getMessage()
               for r in caplog.records if r.name == MONGOOSE)


def test_only_the_named_functions_are_demoted_and_only_inside_the_block() -> None:
    bind = "7e284  1 mongoose.c:14465:mg_open_liste bind: 98"
    other = "7e285  1 mongoose.c:2624:mg_error       4 6 socket error"
    assert demoted_level(bind, logging.ERROR) == logging.ERROR
    with repeated_by_exception("mg_listen", "mg_open_listener"):
        assert demoted_level(bind, logging.ERROR) == logging.DEBUG
        assert demoted_level(other, logging.ERROR) == logging.ERROR
        with repeated_by_exception("mg_error"):
            assert demoted_level(other, logging.ERROR) == logging.DEBUG
        assert demoted_level(other, logging.ERROR) == logging.ERROR
    assert demoted_level(bind, logging.ERROR) == logging.ERROR


def test_the_command_line_prints_a_busy_port_once(busy_port: int) -> None:
    result = run_to_end("-m", "pymongoose", "--listen", f"http://127.0.0.1:{busy_port}")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"python -m pymongoose: error: cannot listen on http://127.0.0.1:{busy_port}: "
        "Address already in use"]
