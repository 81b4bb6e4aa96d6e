"""Each server example (and ``python -m pymongoose``) exits 0 on a signal sent the moment
its URL line is read: the line is printed only once Manager.run() has installed its
SIGINT/SIGTERM handlers (``run(on_ready=...)``).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from subprocess_helpers import running

#: (script or -m module, arguments, the line that says it is ready)
SERVERS = [
    ("examples/hello_http.py", ("http://127.0.0.1:0",), r"Listening on http://"),
    ("examples/static_files.py", ("--listen", "http://127.0.0.1:0", "--root", "."),
     r"on http://"),
    ("examples/websocket_echo.py", ("--listen", "http://127.0.0.1:0"), r"ws://"),
    ("examples/tcp_echo.py", ("tcp://127.0.0.1:0",), r"tcp://"),
    ("examples/udp_echo.py", ("udp://127.0.0.1:0",), r"udp://"),
    ("examples/jsonrpc_ws.py", ("http://127.0.0.1:0",), r"JSON-RPC on ws://"),
    ("examples/mqtt_broker.py", ("mqtt://127.0.0.1:0",), r"MQTT broker on mqtt://"),
    ("examples/stream_download.py", ("http://127.0.0.1:0",), r"Downloads on http://"),
    ("examples/asyncio_server.py", ("http://127.0.0.1:0",), r"Listening on http://"),
    ("-m", ("pymongoose", "--listen", "http://127.0.0.1:0"), r"Serving .* at http://"),
]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("script, args, ready", SERVERS,
                         ids=[Path(a[1][0] if a[0] == "-m" else a[0]).stem for a in SERVERS])
def test_signal_right_after_the_url_line_exits_0(script: str, args: tuple[str, ...],
                                                 ready: str, sig: int) -> None:
    with running(script, *args) as child:
        child.wait_for(ready)
        assert child.stop(sig) == 0, child.stdout_lines
