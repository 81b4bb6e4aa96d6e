/* pymongoose SNTP client: Mongoose's request and time arithmetic, with every
 * failure reported as MG_EV_ERROR instead of a silent close (see sntp.c).
 *
 * Read twice, like glue.h: by the C compiler (sntp.c) and by cffi as a cdef.
 * Plain declarations only. */

/* Make `c` (a UDP client connection) an SNTP client: a request goes out now
 * (or once its address is resolved), the reply raises MG_EV_SNTP_TIME with the
 * server's time in milliseconds since the epoch, then the connection closes. A
 * malformed reply, or none within timeout_ms of the last request, raises
 * MG_EV_ERROR and closes it. */
void pymg_sntp_attach(struct mg_connection *c, unsigned timeout_ms);
/* Send another request (after a lost datagram). Returns 1 if one was sent, 0
 * if not needed (the answer came) or still resolving (one goes out then), -1
 * if `c` is not an SNTP connection. A reply to this or the previous request is
 * accepted. */
int pymg_sntp_request(struct mg_connection *c);
