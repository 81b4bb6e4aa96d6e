"""Exceptions raised by pymongoose."""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectionClosedError",
    "ListenError",
    "ManagerClosedError",
    "MessageExpiredError",
    "PymongooseError",
    "UnknownSchemeError",
    "WrongThreadError",
]


class PymongooseError(Exception):
    """Base class of every pymongoose-specific exception."""


class ListenError(PymongooseError, OSError, RuntimeError):
    """A listener could not be opened (busy port, bad address or URL).

    An ``OSError`` (``errno`` is set when the system gave one); also a
    ``RuntimeError`` for code written against cymongoose.
    """


class ConnectError(PymongooseError, OSError, RuntimeError):
    """An outbound connection could not even be started (bad URL, out of memory).

    Also a ``RuntimeError``, as cymongoose raised.
    """


class UnknownSchemeError(PymongooseError, ValueError, RuntimeError):
    """A URL's scheme is none pymongoose can open (``ftp://``, ``invalid://``).

    A ``ValueError``; also a ``RuntimeError``, as cymongoose's listen() raised.
    """


class ManagerClosedError(PymongooseError, RuntimeError):
    """The Manager was closed; it and its connections can no longer be used."""


class ConnectionClosedError(PymongooseError, RuntimeError):
    """The Connection is closed; Mongoose has freed it."""


class MessageExpiredError(PymongooseError, RuntimeError):
    """A message view was used after the event handler that received it returned."""


class WrongThreadError(PymongooseError, RuntimeError):
    """A Manager was used from one thread while another thread was polling it.

    A Manager and its connections belong to the thread that polls them; other threads
    hand work over with :meth:`Manager.wakeup <pymongoose.Manager.wakeup>`.
    """
