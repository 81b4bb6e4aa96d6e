/* pymongoose C limits and input checks for server connections: request size
 * and time limits, connection caps, and the RFC 9112 / RFC 6455 checks that
 * Mongoose 7.23's parsers leave out. See conn_limits.c.
 *
 * Read twice, like glue.h: by the C compiler and by cffi as a cdef. Plain
 * declarations only. */

/* What one listener allows each connection it accepts. 0 means "no limit"
 * in every field. Sizes are bytes, times milliseconds. */
struct pymg_limits {
  uint64_t max_header_size;     /* request line + headers: over it, 431 and close */
  uint64_t max_body_size;       /* Content-Length or chunked total: 413 and close */
  uint64_t max_ws_message_size; /* one WebSocket message (reassembled): close 1009 */
  uint64_t idle_timeout_ms;     /* no byte in or out, no request pending: close */
  uint64_t request_timeout_ms;  /* first byte to complete request: 408 and close */
  uint64_t max_connections;     /* accepted and open at once: over it, 503 and close */
  int check_http;               /* apply the HTTP and WebSocket rules at all */
};

/* Attach `limits` (copied) to a listener; the connections it accepts from now
 * on follow them. Returns 0 when out of memory. */
int pymg_set_limits(struct mg_connection *listener, const struct pymg_limits *limits);

/* permessage-deflate was negotiated on WebSocket connection c: its frame
 * checks let RSV1 through on the first frame of a data message. Returns the
 * message size limit that applies to c (0: none), UINT64_MAX when c has no
 * limits attached (a client connection; nothing is checked in C then). */
uint64_t pymg_ws_deflate_on(struct mg_connection *c);

/* Fail WebSocket connection c with close `code` (RFC 6455 7.1.7): nothing more
 * it sends is delivered, the CLOSE goes out, then the connection closes. */
void pymg_ws_fail(struct mg_connection *c, int code);
