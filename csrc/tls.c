/* pymongoose TLS glue: see tls.h (the Python-facing part) and route.h (the
 * hooks route_event calls). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mongoose.h"
#include "route.h"
#include "tls.h"

struct pymg_tls_conf {
  struct mg_tls_opts opts; /* its strings point into data[] */
  unsigned handshake_timeout_ms;
  char data[1];
};

static struct mg_str copy_into(char **at, const char *s, size_t len) {
  struct mg_str out = mg_str_n(NULL, 0);
  if (s == NULL || len == 0) return out;
  memcpy(*at, s, len);
  (*at)[len] = '\0';
  out = mg_str_n(*at, len);
  *at += len + 1;
  return out;
}

struct pymg_tls_conf *pymg_tls_conf_new(const char *ca, size_t ca_len, const char *cert,
                                        size_t cert_len, const char *key, size_t key_len,
                                        const char *name, size_t name_len,
                                        int skip_verification,
                                        unsigned handshake_timeout_ms) {
  size_t total = sizeof(struct pymg_tls_conf) + ca_len + cert_len + key_len + name_len + 4;
  struct pymg_tls_conf *conf = (struct pymg_tls_conf *) calloc(1, total);
  char *at;
  if (conf == NULL) return NULL;
  at = conf->data;
  conf->opts.ca = copy_into(&at, ca, ca_len);
  conf->opts.cert = copy_into(&at, cert, cert_len);
  conf->opts.key = copy_into(&at, key, key_len);
  conf->opts.name = copy_into(&at, name, name_len);
  conf->opts.skip_verification = skip_verification != 0;
  conf->handshake_timeout_ms = handshake_timeout_ms;
  return conf;
}

void pymg_tls_conf_free(struct pymg_tls_conf *conf) {
  free(conf);
}

/* mg_error, without its 63-character limit: our messages say what to do. */
static void fail(struct mg_connection *c, const char *message) {
  MG_ERROR(("%lu %s", c->id, message));
  c->is_closing = 1;
  mg_call(c, MG_EV_ERROR, (void *) message);
}

/* Mongoose checks certificate dates against mg_now(), and when it does not
 * know the wall-clock time yet it asks an SNTP server on the Internet before
 * verifying anything. A host OS knows the time: tell Mongoose, again before
 * every TLS set-up, since the host's clock may have been stepped (NTP, a VM
 * resumed) since the last one, while mg_millis() counts on undisturbed. */
static void set_wall_clock(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return;
  mg_boot_timestamp_ms =
      (uint64_t) ts.tv_sec * 1000U + (uint64_t) ts.tv_nsec / 1000000U - mg_millis();
}

/* mg_tls_init now; 1 when the connection is set for a handshake. */
static int apply(struct mg_connection *c, struct pymg_route *r,
                 const struct pymg_tls_conf *conf) {
  set_wall_clock();
  mg_tls_init(c, &conf->opts);
  if (c->tls == NULL || c->is_closing) return 0;
  r->tls_deadline = conf->handshake_timeout_ms > 0
                        ? mg_millis() + conf->handshake_timeout_ms : 0;
  return 1;
}

void pymg_tls_on_accept(struct mg_connection *c, struct pymg_route *r,
                        const struct pymg_route *listener) {
  if (listener->tls != NULL) {
    apply(c, r, listener->tls);
  } else if (c->is_tls && ((r->interest >> MG_EV_ACCEPT) & 1U) && !c->is_closing) {
    /* cymongoose's way: the handler calls conn.tls_init(opts) in MG_EV_ACCEPT,
     * which is then delivered at once (glue.c), before any byte is read. */
    r->tls_await = 1;
  } else if (c->is_tls) {
    /* An https:// or wss:// listener with no certificate: better no answer
     * than a plain-text one. */
    fail(c, "this TLS listener has no certificate: call "
         "listener.tls_init(TlsOpts(cert=..., key=...)) or pass tls= to listen() "
         "or mqtt_listen()");
  }
}

void pymg_tls_after_handler(struct mg_connection *c, struct pymg_route *r) {
  r->tls_await = 0;
  if (c->tls != NULL || c->is_closing) return;
  if (c->is_client) {
    fail(c, "this TLS connection has no TLS options: pass tls=TlsOpts(ca=...) to "
         "connect(), ws_connect() or mqtt_connect(), or call tls_init() right after it or "
         "in its MG_EV_CONNECT handler");
  } else {
    fail(c, "this TLS listener has no certificate and its MG_EV_ACCEPT handler did not "
         "call conn.tls_init(TlsOpts(cert=..., key=...)): pass tls= to listen() or call "
         "tls_init there");
  }
}

int pymg_tls_on_connect(struct mg_connection *c, struct pymg_route *r) {
  struct pymg_tls_conf *conf = r->tls;
  int ok;
  r->connected = 1;
  if (conf == NULL) {
    if (c->is_tls && c->tls == NULL && ((r->interest >> MG_EV_CONNECT) & 1U)) {
      r->tls_await = 1; /* the handler's MG_EV_CONNECT may call tls_init (cymongoose) */
      return 1;
    }
    if (c->is_tls && c->tls == NULL) {
      fail(c, "this TLS connection has no TLS options: pass tls=TlsOpts(ca=...) "
           "to connect(), ws_connect() or mqtt_connect(), or call tls_init() right after it");
      return 0;
    }
    return 1;
  }
  r->tls = NULL;
  ok = apply(c, r, conf);
  free(conf);
  return ok;
}

void pymg_tls_before_close(struct mg_connection *c, struct pymg_route *r) {
  if (c->is_client && c->tls != NULL && c->is_tls_hs && !r->error_seen) {
    fail(c, "the server closed the connection");
  }
}

void pymg_tls_on_close(struct pymg_route *r) {
  free(r->tls);
  r->tls = NULL;
}

void pymg_tls_check_deadline(struct mg_connection *c, struct pymg_route *r, uint64_t now) {
  if (r->tls_deadline == 0 || now < r->tls_deadline) return;
  r->tls_deadline = 0;
  if (c->is_tls_hs && !c->is_closing) {
    fail(c, "TLS handshake timed out");
  }
}

const char *pymg_tls_error_text(struct mg_connection *c, const char *text) {
  /* Not on route_event's stack: an array there costs every event a stack guard. */
  static __thread char buf[320];
  if (!c->is_tls || !c->is_tls_hs || c->tls == NULL) return text;
  snprintf(buf, sizeof(buf), "TLS handshake failed: %s", text);
  return buf;
}

int pymg_tls_set(struct mg_connection *c, struct pymg_tls_conf *conf) {
  struct pymg_route *r = (struct pymg_route *) c->fn_data;
  int ok;
  if (r == NULL || c->is_closing || c->is_udp) {
    free(conf);
    return PYMG_TLS_FAILED;
  }
  if (c->is_listening || (c->is_client && !r->connected)) {
    free(r->tls);
    r->tls = conf;
    c->is_tls = 1;
    return PYMG_TLS_STORED;
  }
  if (c->tls != NULL) {
    free(conf);
    return PYMG_TLS_ALREADY;
  }
  ok = apply(c, r, conf);
  free(conf);
  if (!ok) return PYMG_TLS_FAILED;
  if (c->is_client) mg_tls_handshake(c); /* already connected: say ClientHello now */
  return PYMG_TLS_STARTED;
}

void pymg_tls_free(struct mg_connection *c) {
  struct pymg_route *r = (struct pymg_route *) c->fn_data;
  if (r != NULL) pymg_tls_on_close(r);
  /* A listener or a client not yet connected just forgets its options (and
   * refuses to go on without TLS if its URL asked for it). */
  if (c->is_listening || (c->is_client && r != NULL && !r->connected)) return;
  if (c->tls != NULL) {
    mg_tls_free(c);
    c->is_tls = c->is_tls_hs = 0;
    c->is_closing = 1;
  }
}

void pymg_tls_listen_per_connection(struct mg_connection *c) {
  struct pymg_route *r = (struct pymg_route *) c->fn_data;
  if (r == NULL || !c->is_listening) return;
  pymg_tls_on_close(r);
  c->is_tls = 1; /* accepted connections inherit it: TLS or nothing */
}

int pymg_tls_listener_has_conf(struct mg_connection *c) {
  struct pymg_route *r = (struct pymg_route *) c->fn_data;
  return r != NULL && r->tls != NULL;
}

/* One INTEGER of the signature: leading zero bytes dropped, one put back when
 * the first remaining byte has its top bit set (DER integers are signed). */
static size_t der_integer(const uint8_t *value, uint8_t *out) {
  size_t skip = 0, len, pad;
  while (skip < 31 && value[skip] == 0) skip++;
  len = 32 - skip;
  pad = (value[skip] & 0x80) ? 1 : 0;
  out[0] = 0x02;
  out[1] = (uint8_t) (len + pad);
  if (pad) out[2] = 0;
  memcpy(out + 2 + pad, value + skip, len);
  return 2 + pad + len;
}

size_t pymg_tls_der_signature(const uint8_t *sig, uint8_t *out) {
  size_t len = der_integer(sig, out + 2);
  len += der_integer(sig + 32, out + 2 + len);
  out[0] = 0x30;
  out[1] = (uint8_t) len;
  return len + 2;
}
