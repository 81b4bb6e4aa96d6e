/* WebSocket frames sent from Python: the per-message checks done in C.
 *
 * Read twice, like glue.h: by the C compiler (ws_send.c) and by cffi as a cdef.
 * Plain declarations only. */

/* mg_ws_send() of len bytes at buf with opcode op, once op is checked: returns
 * the bytes queued (header included; less than that when the send buffer could
 * not grow), or -1, with nothing sent, when op is not a WEBSOCKET_OP_* code. */
long pymg_ws_send(struct mg_connection *c, const char *buf, size_t len, int op);
