/* Private interface between glue.c's route_event and conn_limits.c (never a cdef).
 * A guard is the per-connection state of conn_limits.c; glue.c keeps a pointer to
 * it in each connection's route and calls the three hooks below. */
#ifndef PYMG_GUARD_H
#define PYMG_GUARD_H

struct pymg_guard;

/* The slot in c's route that holds its guard (NULL when c is not routed). */
struct pymg_guard **pymg_route_guard(struct mg_connection *c);

/* On an accepted connection's MG_EV_OPEN: a guard following the listener's
 * limits (NULL when the listener has none or memory ran out). Sets *silent
 * when the connection is refused before any event should reach Python. */
struct pymg_guard *pymg_guard_accept(struct mg_connection *c, struct pymg_guard *listener,
                                     int *silent);

/* Before an event is routed: 0 means drop it (never to Python). */
int pymg_guard_event(struct mg_connection *c, struct pymg_guard *g, int ev, void *ev_data);

/* After MG_EV_HTTP_HDRS reached Python (which saw the head as the client sent
 * it), before Mongoose acts on it: what Mongoose must see of the framing. */
void pymg_guard_after_hdrs(struct mg_connection *c, struct pymg_guard *g,
                           struct mg_http_message *hm);

/* A body streamed by pymg_stream_body has announced `declared` bytes so far:
 * 0 (and a 413, closing) when that is over max_body_size. */
int pymg_guard_streamed_body(struct mg_connection *c, struct pymg_guard *g, uint64_t declared);

/* On MG_EV_CLOSE, after routing. */
void pymg_guard_free(struct pymg_guard *g);

#endif
