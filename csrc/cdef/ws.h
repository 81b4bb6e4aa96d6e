/* cdef: Mongoose WebSocket (mongoose.h, "WebSocket" section). */

static const int WEBSOCKET_OP_CONTINUE;
static const int WEBSOCKET_OP_TEXT;
static const int WEBSOCKET_OP_BINARY;
static const int WEBSOCKET_OP_CLOSE;
static const int WEBSOCKET_OP_PING;
static const int WEBSOCKET_OP_PONG;

struct mg_ws_message {
  struct mg_str data;
  uint8_t flags;
};

/* Declared with char * (C takes void *) so Python bytes pass without a copy. */
size_t mg_ws_send(struct mg_connection *, const char *buf, size_t len, int op);
