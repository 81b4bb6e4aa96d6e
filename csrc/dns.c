/* pymongoose DNS helpers. See dns.h. */
#include <unistd.h>

#include "mongoose.h"
#include "dns.h"

int pymg_dns_pending(struct mg_mgr *mgr) {
  return mgr->active_dns_requests != NULL;
}

/* A DNS connection that must stop being used: it closes at the next poll
 * without Mongoose's handler, whose MG_EV_CLOSE would fail every lookup in
 * the manager, not just its own (there are none: see pymg_dns_configure). */
static void retire(struct mg_dns *dns) {
  if (dns->c != NULL) {
    dns->c->pfn = NULL;
    dns->c->is_closing = 1;
    dns->c = NULL;
  }
}

int pymg_dns_configure(struct mg_mgr *mgr, const char *url, int timeout_ms) {
  if (url != NULL) {
    if (mgr->active_dns_requests != NULL) return 0;
    retire(&mgr->dns4);
    retire(&mgr->dns6);
    /* The AAAA fallback goes to the same server, never to Mongoose's default
     * (a public IPv6 resolver). */
    mgr->dns4.url = url;
    mgr->dns6.url = url;
  }
  if (timeout_ms > 0) mgr->dnstimeout = timeout_ms;
  return 1;
}

int pymg_dns_timeout(struct mg_mgr *mgr) {
  return mgr->dnstimeout;
}

int pymg_resolve(struct mg_connection *c, const char *url) {
  int fd = (int) (size_t) c->fd;
  if (!c->is_client || c->is_listening || c->is_tls) return -1;
  mg_resolve_cancel(c);
  if (fd >= 0) {
    close(fd); /* also leaves Mongoose's epoll set */
    c->fd = (void *) (size_t) MG_INVALID_SOCKET;
  }
  c->recv.len = c->send.len = 0;
  c->is_connecting = c->is_readable = c->is_writable = 0;
  c->is_resolving = 0;
  mg_resolve(c, url);
  return 0;
}

void pymg_resolve_cancel(struct mg_connection *c) {
  mg_resolve_cancel(c);
}

/* When an A lookup finds nothing, Mongoose asks its IPv6 server (dns6) for an
 * AAAA record; when that finds nothing too, its reply handler asks dns6 again,
 * and again: a lookup of an unknown name never ends (Mongoose 7.23, built with
 * IPv6). It stops asking only when use_dns6 is set, so that flag is set while
 * dns6's replies are handled: the second miss then fails the lookup. Mongoose
 * creates the dns6 connection inside a poll; its first reply can only arrive
 * in a later one, so wrapping its handler before each poll is soon enough. */
static mg_event_handler_t s_mongoose_dns_fn;

static void dns6_reply_guard(struct mg_connection *c, int ev, void *ev_data) {
  bool saved = c->mgr->use_dns6;
  if (ev == MG_EV_READ) c->mgr->use_dns6 = true;
  s_mongoose_dns_fn(c, ev, ev_data);
  c->mgr->use_dns6 = saved;
}

void pymg_dns_guard(struct mg_mgr *mgr) {
  struct mg_connection *c = mgr->dns6.c;
  if (c != NULL && c->pfn != NULL && c->pfn != dns6_reply_guard) {
    s_mongoose_dns_fn = c->pfn; /* the same function for every manager */
    c->pfn = dns6_reply_guard;
  }
}
