/* pymongoose C glue: WebSocket sends from Python. See ws_send.h. */
#include "mongoose.h"
#include "ws_send.h"

long pymg_ws_send(struct mg_connection *c, const char *buf, size_t len, int op) {
  switch (op) {
    case WEBSOCKET_OP_CONTINUE:
    case WEBSOCKET_OP_TEXT:
    case WEBSOCKET_OP_BINARY:
    case WEBSOCKET_OP_CLOSE:
    case WEBSOCKET_OP_PING:
    case WEBSOCKET_OP_PONG:
      return (long) mg_ws_send(c, buf, len, op);
    default:
      return -1;
  }
}
