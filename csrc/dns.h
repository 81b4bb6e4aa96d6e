/* pymongoose DNS helpers: the resolver's server and timeout, lookups on an
 * existing connection, and a guard against a Mongoose resolver loop (dns.c).
 *
 * Read twice, like glue.h: by the C compiler (dns.c) and by cffi as a cdef.
 * Plain declarations only. */

/* Point Mongoose's resolver at `url` ("udp://IP:port"; NULL keeps the current
 * one) for both its A and its AAAA lookups, and set its timeout (ms, > 0; 0
 * keeps it). `url` must stay valid while the manager lives. Returns 0 when
 * lookups are in flight (then nothing changes), 1 otherwise. */
int pymg_dns_configure(struct mg_mgr *mgr, const char *url, int timeout_ms);
int pymg_dns_timeout(struct mg_mgr *mgr);
int pymg_dns_pending(struct mg_mgr *mgr);

/* Look up url's host and (re)connect client connection `c` there: its socket,
 * if any, is closed first and its buffers emptied. MG_EV_RESOLVE follows (then
 * MG_EV_CONNECT), or MG_EV_ERROR. Returns 0, or -1 when `c` is not a plain
 * (non-TLS) client connection. */
int pymg_resolve(struct mg_connection *c, const char *url);
/* Forget the lookup in progress: no MG_EV_RESOLVE, MG_EV_ERROR or timeout
 * follows. The connection stays, without a socket, until closed or resolved
 * again. */
void pymg_resolve_cancel(struct mg_connection *c);

/* Called before each poll (glue.c): see dns.c. */
void pymg_dns_guard(struct mg_mgr *mgr);
