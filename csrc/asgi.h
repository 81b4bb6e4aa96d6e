/* pymongoose C helpers for the ASGI server (pymongoose/asgi.py), which answers
 * requests after their MG_EV_HTTP_MSG handler returned.
 *
 * Read twice, like glue.h: by the C compiler (asgi.c) and by cffi as a cdef.
 * Plain declarations only. */

/* Queue `len` bytes of a response (head, body or both, already framed by
 * Python) and write what the socket takes at once (plain TCP). With `end` set
 * the response is complete: Mongoose may then parse the connection's next
 * request (it holds pipelined requests back until then). Returns 0 when the
 * send buffer could not grow, 2 when nothing is left for a poll to do (all
 * sent, nothing received waiting), 1 otherwise. */
int pymg_asgi_send(struct mg_connection *c, const char *data, size_t len, int end);

/* Complete a WebSocket handshake whose request has expired: `key` is the
 * client's Sec-WebSocket-Key, `extra_headers` ("Name: value\r\n" lines, may
 * be empty) go into the 101 response. The connection speaks WebSocket from
 * then on (MG_EV_WS_MSG, MG_EV_WS_CTL). */
void pymg_asgi_ws_accept(struct mg_connection *c, const char *key, size_t key_len,
                         const char *extra_headers);
