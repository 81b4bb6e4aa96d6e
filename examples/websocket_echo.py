"""WebSocket echo server: connect to /ws, every message comes back as it was sent.

    python examples/websocket_echo.py [URL]    # default http://127.0.0.1:8000

Open the printed http:// address in a browser for a small page that talks to /ws.
Ctrl-C or SIGTERM stops it.
"""

import argparse

from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, Manager

PAGE = """<!DOCTYPE html>
<title>pymongoose WebSocket echo</title>
<input id="msg" value="hello"> <button id="send">Send</button>
<pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
  const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/\\/?$/, "/ws"));
  ws.onopen = () => log("connected");
  ws.onmessage = (ev) => log("< " + ev.data);
  ws.onclose = () => log("closed");
  document.getElementById("send").onclick = () => {
    const text = document.getElementById("msg").value;
    log("> " + text);
    ws.send(text);
  };
</script>
"""


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri == "/ws":
            conn.ws_upgrade(data)  # the handshake; WebSocket frames follow
        else:
            conn.reply(200, PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    elif ev == MG_EV_WS_MSG:
        # data.op keeps the frame type: text comes back as text, binary as binary.
        conn.ws_send(data.data, data.op)


def main():
    parser = argparse.ArgumentParser(description="Echo WebSocket messages sent to /ws.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--listen", metavar="URL", help="same as the positional URL")
    args = parser.parse_args()

    mgr = Manager(handler, events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG))
    listener = mgr.listen(args.listen or args.url)
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"WebSocket echo on ws://{host}:{port}/ws (page at http://{host}:{port}/)"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
