/* pymongoose SNTP client. See sntp.h.
 *
 * Mongoose's own (mg_sntp_connect) closes the connection without a word when a
 * reply is malformed or none comes within 3 s, logs an error for each bad
 * datagram, and trusts the reply's origin timestamp, so a stray or forged reply
 * can set any time. This protocol handler keeps Mongoose's request format and
 * its latency correction, checks the reply (RFC 4330 section 5), and tells the
 * user what went wrong. */
#include <string.h>

#include "mongoose.h"
#include "sntp.h"

#define SNTP_PACKET 48
#define NTP_UNIX_OFFSET 2208988800ULL /* seconds from 1900 to 1970 */

/* Protocol state, kept in c->data (MG_DATA_SIZE bytes of scratch space). */
struct sntp_state {
  uint64_t deadline;   /* mg_millis() by which a reply must arrive; 0: none */
  uint32_t sent[2][2]; /* transmit timestamps of our last two requests, as sent */
  unsigned timeout_ms; /* how long to wait after each request */
  unsigned char wanted; /* a request should go out as soon as the address is known */
};

typedef char sntp_state_fits[sizeof(struct sntp_state) <= MG_DATA_SIZE ? 1 : -1];

static uint32_t get_be32(const unsigned char *p) {
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* An NTP timestamp as Unix milliseconds; era 1 (from 2036) when the top bit is 0. */
static int64_t ntp_to_unix_ms(const unsigned char *p) {
  uint64_t sec = get_be32(p), frac = get_be32(p + 4);
  if (!(sec & 0x80000000U)) sec += 0x100000000ULL;
  return (int64_t) (sec - NTP_UNIX_OFFSET) * 1000 + (int64_t) ((frac * 1000 + (1ULL << 31)) >> 32);
}

static void send_request(struct mg_connection *c) {
  struct sntp_state *s = (struct sntp_state *) c->data;
  unsigned char buf[SNTP_PACKET];
  uint64_t now = mg_millis();
  uint32_t sec = (uint32_t) (now / 1000 + NTP_UNIX_OFFSET);
  uint32_t frac = (uint32_t) (((now % 1000) << 32) / 1000);
  memset(buf, 0, sizeof(buf));
  buf[0] = (0 << 6) | (4 << 3) | 3; /* no leap warning, version 4, client */
  /* Like Mongoose, the transmit time is the monotonic clock: the reply echoes
   * it as its origin time, which gives the round trip. */
  memcpy(s->sent[1], s->sent[0], sizeof(s->sent[0]));
  s->sent[0][0] = mg_htonl(sec);
  s->sent[0][1] = mg_htonl(frac);
  memcpy(buf + 40, s->sent[0], 8);
  s->deadline = now + s->timeout_ms;
  s->wanted = 0;
  mg_send(c, buf, sizeof(buf));
}

/* Checks one datagram; returns an error message, or NULL with *ms set. A reply
 * to another request (origin mismatch) sets *ms to -1: it is ignored. */
static const char *parse_reply(struct mg_connection *c, const unsigned char *p, size_t len,
                               int64_t *ms) {
  const struct sntp_state *s = (const struct sntp_state *) c->data;
  int mode, version;
  int64_t t1, t2, t3, t4;
  const uint32_t *sent;
  *ms = -1;
  if (len < SNTP_PACKET) return "SNTP: reply too short";
  mode = p[0] & 7;
  version = (p[0] >> 3) & 7;
  if (mode != 4) return "SNTP: not a server reply";
  if (version < 1 || version > 4) return "SNTP: unsupported NTP version";
  if (p[1] == 0) return "SNTP: kiss-o'-death from server";
  if (p[1] > 15) return "SNTP: bad stratum in reply";
  if ((p[0] >> 6) == 3) return "SNTP: server clock is not synchronised";
  if (get_be32(p + 40) == 0 && get_be32(p + 44) == 0) return "SNTP: reply has no time";
  /* The origin time must be one we sent (the last request, or the one before it
   * when sntp_request() followed soon): otherwise the reply is not ours. */
  if (memcmp(p + 24, s->sent[0], 8) == 0) {
    sent = s->sent[0];
  } else if (memcmp(p + 24, s->sent[1], 8) == 0 && (s->sent[1][0] | s->sent[1][1]) != 0) {
    sent = s->sent[1];
  } else {
    return NULL; /* ignore it */
  }
  /* Round trip from the echoed origin time (monotonic), less the server's
   * processing time: the same correction Mongoose makes. */
  t1 = (int64_t) (mg_ntohl(sent[0]) - NTP_UNIX_OFFSET) * 1000 +
       (int64_t) (((uint64_t) mg_ntohl(sent[1]) * 1000 + (1ULL << 31)) >> 32);
  t4 = (int64_t) mg_millis();
  t2 = ntp_to_unix_ms(p + 32);
  t3 = ntp_to_unix_ms(p + 40);
  if (t3 < 0) return "SNTP: reply time is before 1970";
  *ms = t3 + ((t4 - t1) - (t3 - t2 > 0 ? t3 - t2 : 0)) / 2;
  if (*ms < t3) *ms = t3;
  return NULL;
}

static void sntp_fn(struct mg_connection *c, int ev, void *ev_data) {
  struct sntp_state *s = (struct sntp_state *) c->data;
  if (ev == MG_EV_CONNECT) {
    if (s->wanted) send_request(c);
  } else if (ev == MG_EV_READ) {
    int64_t ms = -1;
    const char *problem;
    if (c->is_closing) return;
    problem = parse_reply(c, c->recv.buf, c->recv.len, &ms);
    c->recv.len = 0;
    if (problem != NULL) {
      mg_error(c, "%s", problem);
    } else if (ms >= 0) {
      /* Unlike Mongoose's own client, leave mg_boot_timestamp_ms alone: on a host
       * the OS clock is the truth, and TLS checks certificate dates against it. */
      s->deadline = 0;
      mg_call(c, MG_EV_SNTP_TIME, &ms);
      c->is_closing = 1;
    }
  } else if (ev == MG_EV_POLL) {
    if (s->deadline != 0 && !c->is_closing && *(uint64_t *) ev_data > s->deadline) {
      s->deadline = 0;
      mg_error(c, "SNTP: no reply within %u ms", s->timeout_ms);
    }
  }
}

void pymg_sntp_attach(struct mg_connection *c, unsigned timeout_ms) {
  struct sntp_state *s = (struct sntp_state *) c->data;
  memset(s, 0, sizeof(*s));
  s->timeout_ms = timeout_ms;
  c->pfn = sntp_fn;
  c->pfn_data = NULL;
  s->wanted = 1;
  /* An address that needed no lookup is already connected (UDP connects at
   * once): send now. Otherwise MG_EV_CONNECT sends it. */
  if (!c->is_resolving && !c->is_closing) send_request(c);
}

int pymg_sntp_request(struct mg_connection *c) {
  struct sntp_state *s = (struct sntp_state *) c->data;
  if (c->pfn != sntp_fn) return -1;
  if (c->is_closing) return 0;
  if (c->is_resolving) {
    s->wanted = 1;
    return 0;
  }
  send_request(c);
  return 1;
}
