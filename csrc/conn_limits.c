/* pymongoose limits and input checks for the connections a listener accepts.
 *
 * Mongoose 7.23 buffers whatever a client sends (up to MG_MAX_RECV_SIZE per
 * connection), waits forever for a request to finish, and its HTTP and
 * WebSocket parsers accept input RFC 9112 and RFC 6455 say must be refused
 * (request smuggling through duplicate or conflicting framing headers, bare
 * CRs, unmasked or fragmented control frames, ...). This file closes those
 * gaps from the outside, at the points where bytes arrive:
 *
 *  - MG_EV_READ (after Mongoose's HTTP parser ran): an unfinished head or an
 *    oversized buffer is refused before more is read.
 *  - MG_EV_HTTP_HDRS (a head is complete, before Mongoose acts on it): the
 *    RFC 9112 checks of the request line and header fields, the header and
 *    body size limits.
 *  - Mongoose's WebSocket protocol handler is wrapped: every frame header is
 *    checked before Mongoose unmasks and dispatches the frame.
 *  - MG_EV_POLL: the idle and request timeouts.
 *
 * A refused connection gets its answer (an HTTP status or a WebSocket CLOSE),
 * Mongoose's parser is detached so no further byte is interpreted, input is
 * discarded as it arrives, and once the answer is sent our side shuts down
 * and waits briefly for the client's EOF (so the answer is not lost to a
 * reset) before closing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mongoose.h"
#include "conn_limits.h"
#include "guard.h"
#include "chunked.h"

/* How long a refused connection waits for the client to close after our
 * answer went out, and at most for the answer to go out. */
#define PYMG_LINGER_MS 2000
#define PYMG_SEND_GRACE_MS 10000
/* Mongoose treats WebSocket frames over 1 GiB as "not buffered yet" forever. */
#define PYMG_WS_FRAME_HARD_MAX ((uint64_t) 1 << 30)
/* Room for chunk-size lines on top of a chunked body's payload. */
#define PYMG_CHUNK_SLACK 65536

/* Limits shared by a listener and the connections it accepted. */
struct pymg_policy {
  struct pymg_limits limits;
  unsigned long refs;
  uint64_t open; /* accepted connections counted against max_connections */
  uint64_t now;  /* mg_millis() of the current poll iteration */
};

struct pymg_guard {
  struct pymg_policy *policy;
  uint64_t last_io;       /* mg_millis() of the last byte read or written */
  uint64_t request_start; /* first byte of the request being received, 0: none */
  uint64_t deadline;      /* refused: when to give up waiting */
  int ws_fail;            /* a WebSocket message failed its check: its close code */
  int ws_close;           /* close code to send at the next poll, 0: none */
  unsigned char listener;
  unsigned char counted;   /* counts in policy->open */
  unsigned char silent;    /* refused before Python saw the connection */
  unsigned char rejecting; /* answered and discarding input */
  unsigned char shut;      /* our side shut down, waiting for the client's EOF */
  unsigned char ws_closed; /* the client's CLOSE frame was seen */
  unsigned char body_wait; /* the head's chunked body is not complete yet */
  unsigned char no_length; /* a POST or PUT without framing headers */
  unsigned char last;      /* the request whose head was seen ends the connection */
  unsigned char ended;     /* that request is being answered: nothing after it counts */
  unsigned char ws_deflate; /* permessage-deflate negotiated: RSV1 starts a message */
  unsigned char in_ws;      /* inside Mongoose's WebSocket handler (ws_guard_cb) */
  size_t ws_utf8_done; /* fragmented text message: bytes checked, up to a code point */
};

static mg_event_handler_t s_ws_cb; /* Mongoose's WebSocket protocol handler */
/* The time of the current poll iteration, as the policy saw it last (Mongoose
 * hands it to every MG_EV_POLL, which comes before the connection's reads and
 * writes; a listener and its connections belong to one thread). */
static uint64_t now_ms(const struct pymg_policy *p) {
  return p->now != 0 ? p->now : mg_millis();
}

/* -- refusing ------------------------------------------------------------------------- */

static const char *status_text(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

static void send_status(struct mg_connection *c, int status) {
  char buf[256];
  const char *text = status_text(status);
  int n = snprintf(buf, sizeof(buf),
                   "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                   "Connection: close\r\n\r\n%s\n",
                   status, text, (int) strlen(text) + 1, text);
  if (n > 0 && (size_t) n < sizeof(buf)) mg_send(c, buf, (size_t) n);
}

/* Answer with `status` (0: nothing), stop interpreting input, close soon. */
static void refuse(struct mg_connection *c, struct pymg_guard *g, int status) {
  if (g->rejecting) return;
  g->rejecting = 1;
  c->pfn = NULL; /* Mongoose's parser never sees another byte */
  c->pfn_data = NULL;
  c->recv.len = 0;
  c->is_resp = 0;
  if (status != 0) send_status(c, status);
  g->deadline = mg_millis() + PYMG_SEND_GRACE_MS;
}

/* The CLOSE frame goes out at the next poll, after Python has handled the
 * messages queued before the violation (their answers come first). */
static void ws_refuse(struct mg_connection *c, struct pymg_guard *g, int code) {
  refuse(c, g, 0);
  g->ws_close = code;
}

static void send_ws_close(struct mg_connection *c, struct pymg_guard *g) {
  unsigned char payload[2];
  payload[0] = (unsigned char) (g->ws_close >> 8);
  payload[1] = (unsigned char) (g->ws_close & 0xff);
  g->ws_close = 0;
  mg_ws_send(c, payload, sizeof(payload), WEBSOCKET_OP_CLOSE);
}

/* A refused connection: once the answer is out, shut our side and wait a
 * little for the client's EOF; close at the deadline either way. */
static void linger(struct mg_connection *c, struct pymg_guard *g, uint64_t now) {
  if (c->is_closing) return;
  if (g->ws_close != 0) send_ws_close(c, g);
  if (!g->shut && c->send.len == 0) {
    g->shut = 1;
    g->deadline = now + PYMG_LINGER_MS;
    if (c->is_tls) {
      c->is_draining = 1;
    } else {
      shutdown((int) (size_t) c->fd, SHUT_WR);
    }
  } else if (now >= g->deadline) {
    c->is_closing = 1;
  }
}

/* -- HTTP ----------------------------------------------------------------------------- */

/* RFC 9110 token characters (ALPHA, DIGIT, !#$%&'*+-.^_`|~), one bit each. */
static const uint32_t s_tchar_bits[8] = {0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff,
                                         0, 0, 0, 0};

static int is_tchar(unsigned char ch) {
  return (int) ((s_tchar_bits[ch >> 5] >> (ch & 31)) & 1U);
}

static int is_digit(unsigned char ch) {
  return ch >= '0' && ch <= '9';
}

static int name_is(const unsigned char *name, size_t len, const char *want) {
  size_t i, n = strlen(want);
  if (len != n) return 0;
  for (i = 0; i < n; i++) {
    unsigned char a = name[i], b = (unsigned char) want[i];
    if (a >= 'A' && a <= 'Z') a = (unsigned char) (a + 32);
    if (a != b) return 0;
  }
  return 1;
}

/* Length of the head at the start of buf (Mongoose's rule: up to an empty
 * line), 0 while unfinished. *bad is set on a CR not followed by LF, which
 * Mongoose's parser takes as "unfinished" forever. */
static size_t head_length(const unsigned char *buf, size_t len, int *bad) {
  size_t i;
  *bad = 0;
  for (i = 0; i < len; i++) {
    if (buf[i] == '\r' && i + 1 < len && buf[i + 1] != '\n') {
      *bad = 1;
      return 0;
    }
    if (buf[i] == '\n' && i > 0 &&
        (buf[i - 1] == '\n' || (i > 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
      return i + 1;
    }
  }
  return 0;
}

/* RFC 3986 unreserved and sub-delims: what a host name or userinfo is made of. */
static int is_authority_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || is_digit(ch) ||
         (ch != 0 && strchr("-._~!$&'()*+,;=", ch) != NULL);
}

static int is_hex(unsigned char ch) {
  return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* Skip authority characters (and pct-encoded triplets, and `extra`). */
static const unsigned char *skip_authority(const unsigned char *p, const unsigned char *end,
                                           const char *extra) {
  while (p < end) {
    if (*p == '%' && end - p >= 3 && is_hex(p[1]) && is_hex(p[2])) {
      p += 3;
    } else if (is_authority_char(*p) || (*p != 0 && strchr(extra, *p) != NULL)) {
      p++;
    } else {
      break;
    }
  }
  return p;
}

/* RFC 3986 authority = [ userinfo "@" ] host [ ":" port ], host not empty.
 * authority-form (CONNECT) has no userinfo and needs the port. */
static int is_authority(const unsigned char *p, const unsigned char *end, int connect) {
  const unsigned char *at = memchr(p, '@', (size_t) (end - p)), *host;
  if (at != NULL) {
    if (connect || skip_authority(p, at, ":") != at) return 0;
    p = at + 1;
  }
  host = p;
  if (p < end && *p == '[') { /* IP-literal: IPv6address or IPvFuture */
    p = skip_authority(p + 1, end, ":");
    if (p >= end || *p != ']' || p == host + 1) return 0;
    p++;
  } else {
    p = skip_authority(p, end, "");
    if (p == host) return 0;
  }
  if (p == end) return !connect;
  if (*p++ != ':' || (connect && p == end)) return 0;
  while (p < end && is_digit(*p)) p++;
  return p == end;
}

/* RFC 9112 3.2: origin-form, absolute-form (scheme "://" authority ...),
 * authority-form for CONNECT only, asterisk-form for OPTIONS only. */
static int is_request_target(const struct mg_str *method, const unsigned char *t, size_t len) {
  const unsigned char *end = t + len, *p = t, *auth;
  int connect = method->len == 7 && memcmp(method->buf, "CONNECT", 7) == 0;
  if (connect) return is_authority(t, end, 1);
  if (t[0] == '/') return 1;
  if (len == 1 && t[0] == '*') return method->len == 7 && memcmp(method->buf, "OPTIONS", 7) == 0;
  if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) return 0;
  while (p < end && (is_authority_char(*p) && strchr("!$&'()*,;=_~", *p) == NULL)) p++;
  if (end - p < 3 || memcmp(p, "://", 3) != 0) return 0; /* only hierarchical URIs */
  for (auth = p += 3; p < end && *p != '/' && *p != '?' && *p != '#'; p++) continue;
  return is_authority(auth, p, 0);
}

/* A Connection field value's options: 1 for close, 2 for keep-alive, ORed. */
static int connection_options(const unsigned char *v, const unsigned char *end) {
  int found = 0;
  while (v < end) {
    const unsigned char *start, *stop;
    while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) v++;
    for (start = v; v < end && *v != ','; v++) continue;
    for (stop = v; stop > start && (stop[-1] == ' ' || stop[-1] == '\t'); stop--) continue;
    if (name_is(start, (size_t) (stop - start), "close")) found |= 1;
    if (name_is(start, (size_t) (stop - start), "keep-alive")) found |= 2;
  }
  return found;
}

/* POST or PUT: the methods Mongoose mishandles without a length. */
static int is_post_or_put(const struct mg_str *m) {
  return (m->len == 4 && memcmp(m->buf, "POST", 4) == 0) ||
         (m->len == 3 && memcmp(m->buf, "PUT", 3) == 0);
}

/* RFC 9112 checks of a complete request head, and the size limits. Returns
 * 0 (after refusing the connection) when the request must not be served. */
static int check_head(struct mg_connection *c, struct pymg_guard *g,
                      const struct pymg_limits *l, struct mg_http_message *hm) {
  const unsigned char *q = (const unsigned char *) hm->head.buf, *t;
  const unsigned char *end = q + hm->head.len;
  size_t headers = 0, cl_count = 0, te_count = 0, host_count = 0, target;
  uint64_t content_length = 0;
  int http10, options = 0;
  if (g->ended) { /* a request before this one ended the connection (RFC 9112 9.6) */
    refuse(c, g, 0);
    return 0;
  }
  if (l->max_header_size != 0 && hm->head.len > l->max_header_size) goto too_large;
  /* request-line = method SP request-target SP HTTP-version */
  for (t = q; q < end && is_tchar(*q); q++) continue;
  if (q == t || q >= end || *q != ' ') goto bad;
  for (t = ++q; q < end && *q > 0x20 && *q != 0x7f; q++) continue;
  if (q == t || q >= end || *q != ' ') goto bad;
  target = (size_t) (q - t);
  q++;
  if (end - q < 9 || memcmp(q, "HTTP/", 5) != 0 || !is_digit(q[5]) || q[6] != '.' ||
      !is_digit(q[7])) {
    goto bad;
  }
  http10 = q[5] == '1' && q[7] == '0';
  if (!http10 && !(q[5] == '1' && q[7] == '1')) goto version;
  if (!is_request_target(&hm->method, q - 1 - target, target)) goto bad;
  q += 8;
  if (*q == '\r') q++;
  if (q >= end || *q != '\n') goto bad;
  q++;
  /* field-line = field-name ":" OWS field-value OWS; no obs-fold */
  while (q < end) {
    const unsigned char *line = q, *eol = memchr(q, '\n', (size_t) (end - q)), *stop, *v;
    size_t name_len;
    if (eol == NULL) goto bad;
    stop = eol > line && eol[-1] == '\r' ? eol - 1 : eol;
    if (stop == line) break; /* the empty line ending the head */
    for (; q < stop && is_tchar(*q); q++) continue;
    if (q == line || q >= stop || *q != ':') goto bad; /* also obs-fold, space before ':' */
    name_len = (size_t) (q - line);
    for (v = ++q; q < stop; q++) {
      if (*q != '\t' && (*q < 0x20 || *q == 0x7f)) goto bad;
    }
    while (v < stop && (*v == ' ' || *v == '\t')) v++;
    while (stop > v && (stop[-1] == ' ' || stop[-1] == '\t')) stop--;
    if (++headers > MG_MAX_HTTP_HEADERS) goto too_large; /* Mongoose would drop the rest */
    if (name_is(line, name_len, "content-length")) {
      cl_count++;
      if (v == stop) goto bad;
      for (content_length = 0; v < stop; v++) {
        if (!is_digit(*v) || content_length > (UINT64_MAX / 2 - 9) / 10) goto bad;
        content_length = content_length * 10 + (uint64_t) (*v - '0');
      }
    } else if (name_is(line, name_len, "transfer-encoding")) {
      te_count++;
      /* HTTP/1.0 has no transfer codings: faulty framing (RFC 9112 6.1). */
      if (http10 || !name_is(v, (size_t) (stop - v), "chunked")) goto bad;
    } else if (name_is(line, name_len, "host")) {
      host_count++;
    } else if (name_is(line, name_len, "connection")) {
      options |= connection_options(v, stop);
    }
    q = eol + 1;
  }
  if (cl_count > 1 || te_count > 1 || (cl_count > 0 && te_count > 0)) goto bad;
  if (host_count > 1) goto bad; /* RFC 9112 3.2 */
  if (l->max_body_size != 0 && content_length > l->max_body_size) goto body_too_large;
  g->body_wait = 0;
  if (te_count > 0) {
    unsigned char *body = (unsigned char *) hm->head.buf + hm->head.len;
    size_t have = (size_t) (c->recv.buf + c->recv.len - body);
    uint64_t declared;
    int plain;
    int64_t n = pymg_chunked_scan(body, have, &declared, &plain);
    if (n < 0) goto bad;
    if (l->max_body_size != 0 &&
        (declared > l->max_body_size || have > 2 * l->max_body_size + PYMG_CHUNK_SLACK)) {
      goto body_too_large;
    }
    /* Mongoose's chunk parser knows no extension and no trailer: a complete
     * body gets the plain form of the same length, an incomplete one is kept
     * from it (pymg_guard_after_hdrs) until it is complete. */
    if (n > 0 && !plain) pymg_chunked_flatten(body, (size_t) n);
    g->body_wait = n == 0;
  }
  /* Mongoose skips the head twice for a POST or PUT without a length (the
   * next pipelined request is lost): pymg_guard_after_hdrs says "no body". */
  g->no_length = cl_count == 0 && te_count == 0 && is_post_or_put(&hm->method);
  if (g->no_length) {
    size_t slot = 0;
    while (slot < MG_MAX_HTTP_HEADERS && hm->headers[slot].name.len > 0) slot++;
    if (slot == MG_MAX_HTTP_HEADERS) {
      refuse(c, g, 411);
      return 0;
    }
  }
  /* RFC 9112 9.3: HTTP/1.0 closes unless kept alive; 9.6: "close" closes. */
  g->last = (options & 1) != 0 || (http10 && (options & 2) == 0);
  return 1;
bad:
  refuse(c, g, 400);
  return 0;
version:
  refuse(c, g, 505);
  return 0;
too_large:
  refuse(c, g, 431);
  return 0;
body_too_large:
  refuse(c, g, 413);
  return 0;
}

/* The name of the Content-Length field pymg_guard_after_hdrs lends Mongoose. */
static const char s_lent_length[] = "Content-Length";

void pymg_guard_after_hdrs(struct mg_connection *c, struct pymg_guard *g,
                           struct mg_http_message *hm) {
  size_t slot = 0;
  if (g->rejecting) return;
  if (c->is_resp) { /* the handler took the request (stream_body): it is being answered */
    if (g->last) g->ended = 1;
    return;
  }
  if (g->body_wait) {
    /* Make Mongoose wait for more: a body of unknown length, not chunked. */
    for (; slot < MG_MAX_HTTP_HEADERS && hm->headers[slot].name.len > 0; slot++) {
      if (name_is((const unsigned char *) hm->headers[slot].name.buf,
                  hm->headers[slot].name.len, "transfer-encoding")) {
        hm->headers[slot].name = mg_str_n(s_lent_length, sizeof(s_lent_length) - 1);
        hm->body.len = (size_t) -1;
        return;
      }
    }
  } else if (g->no_length) {
    while (slot < MG_MAX_HTTP_HEADERS && hm->headers[slot].name.len > 0) slot++;
    if (slot < MG_MAX_HTTP_HEADERS) {
      hm->headers[slot].name = mg_str_n(s_lent_length, sizeof(s_lent_length) - 1);
      hm->headers[slot].value = mg_str("0");
    }
  }
}

/* The request reaches the handler as the client sent it: without the
 * Content-Length pymg_guard_after_hdrs lent Mongoose. */
static void take_back_length(struct mg_http_message *hm) {
  size_t slot;
  for (slot = 0; slot < MG_MAX_HTTP_HEADERS && hm->headers[slot].name.len > 0; slot++) {
    if (hm->headers[slot].name.buf == s_lent_length) {
      hm->headers[slot].name = mg_str_n(NULL, 0);
      hm->headers[slot].value = mg_str_n(NULL, 0);
      return;
    }
  }
}

/* After Mongoose's HTTP parser ran on new bytes: what is left is an unfinished
 * request (or, while the handler is still answering, pipelined ones). */
static int check_buffer(struct mg_connection *c, struct pymg_guard *g,
                        const struct pymg_limits *l, uint64_t now) {
  size_t len = c->recv.len, head;
  int bad;
  if (len == 0) {
    g->request_start = 0;
    return 1;
  }
  if (g->request_start == 0) g->request_start = now;
  if (c->pfn == NULL) return 1; /* the handler took over the connection */
  head = head_length(c->recv.buf, len, &bad);
  if (bad) {
    refuse(c, g, 400);
  } else if (head == 0 && l->max_header_size != 0 && len > l->max_header_size) {
    refuse(c, g, 431);
  } else if (head != 0 && l->max_body_size != 0 &&
             len - head > 2 * l->max_body_size + PYMG_CHUNK_SLACK) {
    refuse(c, g, 413); /* more than a request's worth waits in the buffer */
  }
  return !g->rejecting;
}

static void check_timeouts(struct mg_connection *c, struct pymg_guard *g,
                           const struct pymg_limits *l, uint64_t now) {
  if (c->is_websocket || c->is_closing || c->is_draining) return;
  if (c->is_resp) {
    /* The handler is still answering: not the client's fault. Pipelined
     * requests waiting meanwhile get their full time once it is done. */
    g->last_io = now;
    if (g->request_start != 0) g->request_start = now;
    return;
  }
  if (g->request_start != 0) {
    if (l->request_timeout_ms != 0 && now - g->request_start >= l->request_timeout_ms) {
      refuse(c, g, 408);
    }
  } else if (l->idle_timeout_ms != 0 && now - g->last_io >= l->idle_timeout_ms) {
    c->is_closing = 1;
  }
}

/* -- WebSocket ------------------------------------------------------------------------ */

/* Whether s holds valid UTF-8 (RFC 3629). With `partial`, s may end inside a
 * code point whose bytes so far can still become valid; *done is then set to
 * where that unfinished code point starts (len when none). */
#if defined(__GNUC__)
__attribute__((always_inline)) /* specialised per caller: the whole-message check stays lean */
#endif
static inline int utf8_check(const unsigned char *s, size_t len, int partial, size_t *done) {
  size_t i = 0;
  while (i < len) {
    unsigned char ch = s[i];
    size_t need, k;
    unsigned lo = 0x80, hi = 0xbf;
    if (ch < 0x80) {
      i++;
      continue;
    }
    if (ch >= 0xc2 && ch <= 0xdf) {
      need = 1;
    } else if (ch >= 0xe0 && ch <= 0xef) {
      need = 2;
      if (ch == 0xe0) lo = 0xa0; /* overlong */
      if (ch == 0xed) hi = 0x9f; /* surrogates */
    } else if (ch >= 0xf0 && ch <= 0xf4) {
      need = 3;
      if (ch == 0xf0) lo = 0x90; /* overlong */
      if (ch == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else {
      return 0;
    }
    for (k = 1; k <= need; k++) {
      unsigned char cc;
      if (i + k >= len) {
        if (!partial) return 0;
        *done = i; /* cut short, valid so far */
        return 1;
      }
      cc = s[i + k];
      if (cc < (k == 1 ? lo : 0x80) || cc > (k == 1 ? hi : 0xbf)) return 0;
    }
    i += need + 1;
  }
  if (partial) *done = len;
  return 1;
}

static int utf8_valid(const unsigned char *s, size_t len) {
  return utf8_check(s, len, 0, NULL);
}

/* RFC 6455 7.4: the status codes an endpoint may send (1012-1014, registered
 * later with IANA, are not among them). */
static int close_code_valid(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
         (code >= 3000 && code <= 4999);
}

/* The close code a client's CLOSE frame earns when its payload is invalid
 * (RFC 6455 5.5.1: empty, or a valid status code and a UTF-8 reason), else 0.
 * The payload is still masked: unmasked into a copy. */
static int check_close_payload(const unsigned char *mask, const unsigned char *p,
                               size_t len) {
  unsigned char plain[125];
  size_t i;
  if (len == 0) return 0;
  if (len == 1 || len > sizeof(plain)) return 1002;
  for (i = 0; i < len; i++) plain[i] = p[i] ^ mask[i & 3];
  if (!close_code_valid((unsigned) plain[0] << 8 | plain[1])) return 1002;
  return utf8_valid(plain + 2, len - 2) ? 0 : 1007;
}

/* Check the frame headers Mongoose has not processed yet (from its reassembly
 * offset on). Returns the offset of the first frame that violates RFC 6455 or
 * the size limit, with *code the close code to send, or the buffer's length.
 * A client CLOSE frame ends the buffer: nothing after it is processed. */
static size_t check_frames(struct mg_connection *c, struct pymg_guard *g,
                           const struct pymg_limits *l, int *code) {
  const unsigned char *buf = c->recv.buf;
  size_t len = c->recv.len, at = (size_t) c->pfn_data;
  int in_message = at > 0;
  uint64_t message = at > 0 ? at - 1 : 0; /* bytes of the fragmented message so far */
  *code = 0;
  while (len - at >= 2) {
    unsigned char b0 = buf[at], b1 = buf[at + 1], op = b0 & 0x0f;
    int fin = (b0 & 0x80) != 0;
    uint64_t size = b1 & 0x7f, header = 2;
    if (size == 126) {
      if (len - at < 4) break;
      size = ((uint64_t) buf[at + 2] << 8) | buf[at + 3];
      header = 4;
    } else if (size == 127) {
      int k;
      if (len - at < 10) break;
      for (size = 0, k = 2; k < 10; k++) size = size << 8 | buf[at + (size_t) k];
      header = 10;
    }
    if (b1 & 0x80) header += 4;
    if (!(b1 & 0x80)) {
      *code = 1002; /* unmasked client frame */
    } else if ((b0 & 0x70) != 0 &&
               ((b0 & 0x70) != 0x40 || !g->ws_deflate || (op != 1 && op != 2))) {
      /* RSV bits without an extension; RFC 7692 6.1: RSV1 marks the first frame
       * of a compressed data message, nothing else */
      *code = 1002;
    } else if (op >= 8) {
      if (op > 10 || !fin || size > 125) *code = 1002; /* control frames: short, whole */
    } else if (op == 0) {
      if (!in_message) *code = 1002; /* continuation of nothing */
      message += size;
    } else if (op == 1 || op == 2) {
      if (in_message) *code = 1002; /* a new message inside a fragmented one */
      message = size;
    } else {
      *code = 1002; /* reserved data opcode */
    }
    if (*code == 0 && size > PYMG_WS_FRAME_HARD_MAX) *code = 1009;
    if (*code == 0 && op < 8 && l->max_ws_message_size != 0 &&
        message > l->max_ws_message_size) {
      *code = 1009;
    }
    if (*code != 0) return at;
    if (len - at < header || len - at - header < size) break; /* still arriving */
    if (op == 8) {
      *code = check_close_payload(buf + at + header - 4, buf + at + header, (size_t) size);
      if (*code != 0) return at; /* answered with our code, not echoed */
      g->ws_closed = 1;
      return at + (size_t) (header + size);
    }
    at += (size_t) (header + size);
    if (op < 8) in_message = !fin;
  }
  return len;
}

/* RFC 6455 8.1, fail fast: the part of a fragmented text message received so
 * far (Mongoose keeps it at the start of the buffer: the first frame's header
 * byte, then the payloads) must be valid UTF-8 up to a code point still being
 * received. Checked from where the last check stopped. Returns the close code. */
static int check_fragments(struct mg_connection *c, struct pymg_guard *g) {
  size_t have = (size_t) c->pfn_data, done;
  const unsigned char *first = c->recv.buf;
  if (have <= 1 || (first[0] & 0x0f) != WEBSOCKET_OP_TEXT || (first[0] & 0x40) != 0) {
    return 0; /* nothing yet, binary, or compressed (checked once inflated) */
  }
  if (g->ws_utf8_done > have - 1) g->ws_utf8_done = 0;
  if (!utf8_check(first + 1 + g->ws_utf8_done, have - 1 - g->ws_utf8_done, 1, &done)) {
    return 1007;
  }
  g->ws_utf8_done += done;
  return 0;
}

/* Mongoose's WebSocket handler, behind the frame checks. It acts on MG_EV_READ
 * only (every other event passes straight through, as it always has): a
 * message that fails a check there is refused once Mongoose's loop is done. */
static void ws_guard_cb(struct mg_connection *c, int ev, void *ev_data) {
  struct pymg_guard **slot;
  struct pymg_guard *g;
  int code = 0;
  if (ev != MG_EV_READ) {
    s_ws_cb(c, ev, ev_data);
    return;
  }
  slot = pymg_route_guard(c);
  g = slot != NULL ? *slot : NULL;
  if (g == NULL) {
    s_ws_cb(c, ev, ev_data);
    return;
  }
  if (g->ws_closed) {
    c->recv.len = (size_t) c->pfn_data; /* after the client's CLOSE: ignored */
    return;
  }
  c->recv.len = check_frames(c, g, &g->policy->limits, &code);
  g->in_ws = 1;
  s_ws_cb(c, ev, ev_data); /* the frames before a violation are still served */
  g->in_ws = 0;
  if (g->rejecting) return;
  if (code == 0) code = g->ws_fail;
  if (code == 0 && c->pfn_data != NULL) code = check_fragments(c, g);
  if (code != 0) ws_refuse(c, g, code);
}

static int check_ws_message(struct mg_connection *c, struct pymg_guard *g,
                            const struct mg_ws_message *wm) {
  (void) c;
  g->ws_utf8_done = 0; /* the next fragmented message starts afresh */
  if (g->ws_fail != 0) return 0;
  /* A compressed message (RSV1) is checked by Python once inflated. */
  if ((wm->flags & 0x4f) == WEBSOCKET_OP_TEXT &&
      !utf8_valid((const unsigned char *) wm->data.buf, wm->data.len)) {
    g->ws_fail = 1007; /* closed by ws_guard_cb once Mongoose's loop is done */
    return 0;
  }
  return 1;
}

/* -- hooks ---------------------------------------------------------------------------- */

static void policy_release(struct pymg_policy *p) {
  if (--p->refs == 0) free(p);
}

int pymg_set_limits(struct mg_connection *listener, const struct pymg_limits *limits) {
  struct pymg_guard **slot = pymg_route_guard(listener);
  struct pymg_policy *p;
  struct pymg_guard *g;
  if (slot == NULL) return 0;
  p = (struct pymg_policy *) calloc(1, sizeof(*p));
  g = (struct pymg_guard *) calloc(1, sizeof(*g));
  if (p == NULL || g == NULL) {
    free(p);
    free(g);
    return 0;
  }
  p->limits = *limits;
  p->refs = 1;
  g->policy = p;
  g->listener = 1;
  if (*slot != NULL) pymg_guard_free(*slot);
  *slot = g;
  return 1;
}

struct pymg_guard *pymg_guard_accept(struct mg_connection *c, struct pymg_guard *listener,
                                     int *silent) {
  struct pymg_policy *p = listener->policy;
  struct pymg_guard *g = (struct pymg_guard *) calloc(1, sizeof(*g));
  *silent = 0;
  if (g == NULL) return NULL;
  g->policy = p;
  p->refs++;
  g->last_io = mg_millis();
  if (p->limits.max_connections != 0 && p->open >= p->limits.max_connections) {
    g->silent = 1;
    *silent = 1;
    refuse(c, g, p->limits.check_http ? 503 : 0);
  } else {
    p->open++;
    g->counted = 1;
  }
  return g;
}

int pymg_guard_event(struct mg_connection *c, struct pymg_guard *g, int ev, void *ev_data) {
  const struct pymg_limits *l = &g->policy->limits;
  if (g->listener) return 1;
  if (g->rejecting) {
    if (ev == MG_EV_READ) c->recv.len = 0;
    if (ev == MG_EV_POLL) linger(c, g, *(uint64_t *) ev_data);
    /* A silent refusal reaches Python only if Python wrapped the connection
     * meanwhile (Manager.connections): then its wrapper must see the close. */
    return g->silent ? ev == MG_EV_CLOSE : ev != MG_EV_READ;
  }
  switch (ev) {
    case MG_EV_READ:
      g->last_io = now_ms(g->policy);
      if (!l->check_http || c->is_websocket) return 1;
      return check_buffer(c, g, l, g->last_io);
    case MG_EV_WRITE:
      g->last_io = now_ms(g->policy);
      return 1;
    case MG_EV_POLL:
      g->policy->now = *(uint64_t *) ev_data;
      if (g->ended && !c->is_resp && !c->is_websocket) {
        refuse(c, g, 0); /* the last response is out: close once it is sent */
        return 1;
      }
      check_timeouts(c, g, l, g->policy->now);
      return 1;
    case MG_EV_HTTP_HDRS:
      return !l->check_http || check_head(c, g, l, (struct mg_http_message *) ev_data);
    case MG_EV_HTTP_MSG:
      /* Mongoose hands over an unfinished request when the client closes. */
      if (l->check_http && c->is_closing) return 0;
      g->request_start = 0;
      if (l->check_http) {
        take_back_length((struct mg_http_message *) ev_data);
        if (g->last) g->ended = 1;
      }
      return 1;
    case MG_EV_WS_OPEN:
      g->request_start = 0;
      if (l->check_http && c->pfn != NULL && c->pfn != ws_guard_cb) {
        s_ws_cb = c->pfn;
        c->pfn = ws_guard_cb;
      }
      return 1;
    case MG_EV_WS_MSG:
      return !l->check_http || check_ws_message(c, g, (const struct mg_ws_message *) ev_data);
    default:
      return 1;
  }
}

void pymg_guard_free(struct pymg_guard *g) {
  if (g == NULL) return;
  if (g->counted) g->policy->open--;
  policy_release(g->policy);
  free(g);
}

int pymg_guard_streamed_body(struct mg_connection *c, struct pymg_guard *g, uint64_t declared) {
  const struct pymg_limits *l = &g->policy->limits;
  if (l->max_body_size == 0 || declared <= l->max_body_size) return 1;
  refuse(c, g, 413);
  return 0;
}

/* -- WebSocket extensions (pymongoose/ws_deflate.py) ----------------------------------- */

uint64_t pymg_ws_deflate_on(struct mg_connection *c) {
  struct pymg_guard **slot = pymg_route_guard(c);
  struct pymg_guard *g = slot != NULL ? *slot : NULL;
  if (g == NULL || g->listener) return UINT64_MAX;
  g->ws_deflate = 1;
  return g->policy->limits.max_ws_message_size;
}

void pymg_ws_fail(struct mg_connection *c, int code) {
  struct pymg_guard **slot = pymg_route_guard(c);
  struct pymg_guard *g = slot != NULL ? *slot : NULL;
  unsigned char payload[2];
  if (c->is_closing || (g != NULL && g->rejecting)) return; /* already on its way out */
  if (g != NULL && !g->listener && c->pfn == ws_guard_cb) {
    if (g->in_ws) {
      /* Mongoose is still walking the buffer: ws_guard_cb refuses once it is done */
      if (g->ws_fail == 0) g->ws_fail = code;
    } else {
      ws_refuse(c, g, code);
    }
    return;
  }
  /* Unguarded (a client): the CLOSE goes out, then the connection ends. */
  payload[0] = (unsigned char) (code >> 8);
  payload[1] = (unsigned char) (code & 0xff);
  mg_ws_send(c, payload, sizeof(payload), WEBSOCKET_OP_CLOSE);
  c->is_draining = 1;
}
