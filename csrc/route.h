/* Per-connection routing state shared by glue.c and tls.c (C only: cffi never
 * reads this header). Kept in c->fn_data; accepted connections get their own
 * copy of the listener's, made on their MG_EV_OPEN. */
#ifndef PYMG_ROUTE_H
#define PYMG_ROUTE_H

#include <stdint.h>

struct pymg_tls_conf;
struct pymg_guard;

struct pymg_route {
  uint64_t interest;       /* bit N set: event N goes to Python */
  unsigned long owner_id;  /* id of the connection this route belongs to */
  unsigned long origin_id; /* for accepted connections, the listener's id */
  int wrapped;             /* Python holds a Connection object for it */
  int head_request;        /* the request being answered is a HEAD */
  int active;              /* read or wrote since the last idle sweep */
  int connected;           /* a client saw MG_EV_CONNECT */
  int error_seen;          /* MG_EV_ERROR was raised on it */
  /* Listener: applied to each accepted connection. Client: applied at
   * MG_EV_CONNECT, then freed. Owned; NULL on accepted connections. */
  struct pymg_tls_conf *tls;
  uint64_t tls_deadline;   /* mg_millis() by which the handshake must be done, or 0 */
  struct pymg_guard *guard; /* conn_limits.c's state, NULL when no limits apply */
  /* Streamed request body (pymg_stream_body): framing, progress, saved parser. */
  int body_mode;           /* BODY_NONE, BODY_LENGTH or BODY_CHUNKED */
  int chunk_state;         /* where the chunked parser is, CHUNK_* */
  int paused;              /* pymg_pause: no reading, no body pieces */
  uint64_t body_left;      /* bytes left: of the body, or of the current chunk */
  uint64_t body_declared;  /* body bytes announced so far (Content-Length, chunk sizes) */
  mg_event_handler_t saved_pfn; /* Mongoose's HTTP parser, reattached at the end */
  int in_hdrs;             /* MG_EV_HTTP_HDRS is being handled: stream_body may start */
  int ws_fresh;            /* upgraded by pymg_ws_upgrade; bytes behind the request
                              are still to be read as frames (see route_event) */
  size_t send_mark;        /* send buffer length when the request's MG_EV_HTTP_MSG began */
  int tls_await;           /* a TLS connection with no options, whose handler wants
                              MG_EV_ACCEPT (server) or MG_EV_CONNECT (client): that
                              event is delivered at once and must call tls_init */
};

/* Hooks route_event calls (tls.c). */
/* An accepted connection's MG_EV_OPEN, `listener` being the listener's route. */
void pymg_tls_on_accept(struct mg_connection *c, struct pymg_route *r,
                        const struct pymg_route *listener);
/* After MG_EV_ACCEPT or MG_EV_CONNECT was routed with tls_await set: a handler
 * that did not call tls_init fails the connection rather than speak plain text. */
void pymg_tls_after_handler(struct mg_connection *c, struct pymg_route *r);
/* A client's MG_EV_CONNECT; returns 0 when TLS could not be set up (the
 * connection is closing with MG_EV_ERROR and MG_EV_CONNECT is not routed). */
int pymg_tls_on_connect(struct mg_connection *c, struct pymg_route *r);
/* A client's MG_EV_CLOSE, before it is routed: a handshake the server ended
 * without a word (it refused our certificate, say) still gets an MG_EV_ERROR. */
void pymg_tls_before_close(struct mg_connection *c, struct pymg_route *r);
/* The route is being freed. */
void pymg_tls_on_close(struct pymg_route *r);
/* Once a second: close connections whose handshake outlived its deadline. */
void pymg_tls_check_deadline(struct mg_connection *c, struct pymg_route *r, uint64_t now);
/* MG_EV_ERROR text as Python should see it: Mongoose's handshake errors
 * ("failed to verify hostname") gain a "TLS handshake failed: " prefix (in a
 * per-thread buffer, valid until the next such error on the thread). */
const char *pymg_tls_error_text(struct mg_connection *c, const char *text);

/* What protocol modules (mqtt.c) borrow from glue.c so that their connections
 * are routed to Python like every other. */
mg_event_handler_t pymg_route_handler(void);
void *pymg_route_alloc(uint64_t interest);

#endif
