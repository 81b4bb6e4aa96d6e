"""JSON-RPC 2.0 over WebSocket: connect to /ws and send requests as text messages.

    python examples/jsonrpc_ws.py [URL]    # default http://127.0.0.1:8000

Methods: sum (an array of numbers), echo (anything), rpc.list (the method names).
Try: {"jsonrpc": "2.0", "id": 1, "method": "sum", "params": [1, 2, 3]}
HTTP POST to /rpc works too. Ctrl-C or SIGTERM stops it.
"""

import argparse
import json

from pymongoose import MG_EV_HTTP_MSG, MG_EV_WS_MSG, WEBSOCKET_OP_TEXT, Manager, Rpc

rpc = Rpc()


def rpc_sum(req):
    numbers = req.params
    if not isinstance(numbers, list) or not all(
            isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
        req.err(-32602, "sum takes an array of numbers")
        return
    req.ok(json.dumps(sum(numbers)))


def rpc_echo(req):
    req.ok(json.dumps(req.params))


def rpc_list(req):
    req.ok(json.dumps(rpc.methods))


rpc.add("sum", rpc_sum)
rpc.add("echo", rpc_echo)
rpc.add("rpc.list", rpc_list)


def handler(conn, ev, data):
    if ev == MG_EV_HTTP_MSG:
        if data.uri == "/ws":
            conn.ws_upgrade(data)
        elif data.uri == "/rpc" and data.method == "POST":
            response = rpc.process(data.body_bytes)
            if response:
                conn.reply(200, response, headers={"Content-Type": "application/json"})
            else:
                conn.reply(204)  # a notification: nothing to answer
        else:
            conn.reply(404, "JSON-RPC lives at /ws (WebSocket) and /rpc (POST)\n")
    elif ev == MG_EV_WS_MSG:
        response = rpc.process(data.data)
        if response:  # notifications get none
            conn.ws_send(response, WEBSOCKET_OP_TEXT)


def main():
    parser = argparse.ArgumentParser(description="Serve JSON-RPC 2.0 over WebSocket.")
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    args = parser.parse_args()

    mgr = Manager(handler, events=(MG_EV_HTTP_MSG, MG_EV_WS_MSG))
    listener = mgr.listen(args.url)
    ip, port, is_ipv6 = listener.local_addr
    host = f"[{ip}]" if is_ipv6 else ip
    ready = f"JSON-RPC on ws://{host}:{port}/ws and http://{host}:{port}/rpc"
    # run() prints it once Ctrl-C and SIGTERM are handled, then serves until
    # either arrives and closes everything.
    mgr.run(on_ready=lambda: print(ready, flush=True))


if __name__ == "__main__":
    main()
