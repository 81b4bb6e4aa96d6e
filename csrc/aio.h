/* pymongoose C helper for event loops that wait on Mongoose's descriptor
 * (pymg_poll_fd) themselves, as pymongoose/aio.py does, and then call
 * pymg_poll with a zero timeout.
 *
 * Read twice, like glue.h: by the C compiler (aio.c) and by cffi as a cdef.
 * Plain declarations only. */

/* Mongoose asks epoll to report writability only at the start of a poll
 * (mg_iotest), for the connections that have data to send at that moment.
 * Data queued during a poll (a handler's reply, the next chunk of a static
 * file, a WebSocket handshake) would otherwise sit until some later poll, since
 * nothing makes the descriptor readable. Call this after pymg_poll and before
 * waiting on pymg_poll_fd: it does what mg_iotest would do before waiting (asks
 * for writability of every connection with data to send or a connect in
 * progress). Returns 1 when a connection needs the next poll soon whatever the
 * descriptor says (it is closing or draining, or TLS data is already
 * buffered), 0 otherwise. Without epoll it only reports. */
int pymg_prepare_wait(struct pymg_manager *m);
