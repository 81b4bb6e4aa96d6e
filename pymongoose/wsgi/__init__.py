"""A WSGI (PEP 3333) server on Mongoose.

The event loop thread does the HTTP: it parses requests, streams request bodies into
``wsgi.input`` (never buffering a whole upload: reading pauses while the app is behind)
and sends what the app produces. The app runs in a thread pool, so it never blocks the
loop; its response pieces come back to the loop through the lossless
``Manager.wakeup``. ``workers`` are processes (:mod:`pymongoose.workers`), ``threads``
the app's thread pool in each of them.

    from pymongoose.wsgi import serve
    serve(app, "http://127.0.0.1:8000", workers=2, threads=8)
"""

from ._environ import FileWrapper
from ._environ import build_environ as _build_environ  # noqa: F401 - cymongoose's name
from .server import ClientDisconnected, WSGIServer, serve

__all__ = ["ClientDisconnected", "FileWrapper", "WSGIServer", "serve"]
