/* pymongoose MQTT glue: our protocol handler for MQTT connections. See mqtt.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mongoose.h"
#include "glue.h"
#include "mqtt.h"
#include "route.h"

enum { ROLE_LISTENER, ROLE_BROKER_SIDE, ROLE_CLIENT };

/* Per-connection state, in c->pfn_data. A listener's is the template that the
 * connections it accepts copy on their MG_EV_OPEN. */
struct mqtt_state {
  int role;
  int connected;          /* broker side: CONNECT seen */
  uint32_t max_packet;    /* largest remaining length accepted */
  uint32_t timeout_ms;    /* broker side: wait at most this for CONNECT / a packet's end */
  uint64_t waiting_since; /* broker side: when that wait began, 0 when not waiting */
  uint64_t idle_ms;       /* broker side: 1.5 x keepalive; client: keepalive (0: none) */
  uint64_t last_io;       /* broker side: last packet read; client: last write */
  int broker_mode;        /* broker side: the handler resolves topic aliases (empty topics) */
};

static void mqtt_proto(struct mg_connection *c, int ev, void *ev_data);

int pymg_mqtt_version(struct mg_connection *c) {
  if (c->pfn != mqtt_proto) return 0;
  return c->is_mqtt5 ? 5 : 4;
}

const char *pymg_mqtt_connack_reason(int code, int version) {
  if (code == 0) return "accepted";
  if (version != 5) {
    switch (code) {
      case 1: return "unacceptable protocol version";
      case 2: return "client identifier rejected";
      case 3: return "server unavailable";
      case 4: return "bad user name or password";
      case 5: return "not authorized";
      default: return "unknown return code";
    }
  }
  switch (code) {
    case 0x80: return "unspecified error";
    case 0x81: return "malformed packet";
    case 0x82: return "protocol error";
    case 0x83: return "implementation specific error";
    case 0x84: return "unsupported protocol version";
    case 0x85: return "client identifier not valid";
    case 0x86: return "bad user name or password";
    case 0x87: return "not authorized";
    case 0x88: return "server unavailable";
    case 0x89: return "server busy";
    case 0x8A: return "banned";
    case 0x8C: return "bad authentication method";
    case 0x90: return "topic name invalid";
    case 0x95: return "packet too large";
    case 0x97: return "quota exceeded";
    case 0x99: return "payload format invalid";
    case 0x9A: return "retain not supported";
    case 0x9B: return "QoS not supported";
    case 0x9C: return "use another server";
    case 0x9D: return "server moved";
    case 0x9F: return "connection rate exceeded";
    default: return "unknown reason code";
  }
}

/* The fixed header at buf: 1 when complete (*hlen bytes, remaining length
 * *rlen), 0 when more bytes are needed, -1 when the length has a fifth byte. */
static int fixed_header(const uint8_t *buf, size_t len, size_t *hlen, uint32_t *rlen) {
  uint32_t value = 0;
  size_t i;
  for (i = 1; i < 5; i++) {
    if (i >= len) return 0;
    value |= (uint32_t) (buf[i] & 0x7f) << (7 * (i - 1));
    if ((buf[i] & 0x80) == 0) {
      *hlen = i + 1;
      *rlen = value;
      return 1;
    }
  }
  return -1;
}

/* MQTT's UTF-8: well formed, no surrogates, no U+0000 (spec 1.5.3). */
static int valid_utf8(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k, extra;
    uint8_t b = s[i];
    if (b == 0) return 0;
    if (b < 0x80) {
      i++;
      continue;
    }
    if (b >= 0xC2 && b <= 0xDF) {
      extra = 1, cp = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      extra = 2, cp = b & 0x0F;
    } else if (b >= 0xF0 && b <= 0xF4) {
      extra = 3, cp = b & 0x07;
    } else {
      return 0;
    }
    if (extra >= n - i) return 0;
    for (k = 1; k <= extra; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    if ((extra == 2 && cp < 0x800) || (extra == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += extra + 1;
  }
  return 1;
}

static uint16_t be16(const uint8_t *p) {
  return (uint16_t) ((p[0] << 8) | p[1]);
}

/* What a broker refuses from a client before any handler sees it. On refusal
 * the connection gets MG_EV_ERROR (message < 64 bytes: Mongoose's limit) and closes. */
static int check_from_client(struct mg_connection *c, struct mqtt_state *st, const uint8_t *p,
                             size_t hlen, uint32_t rlen) {
  int cmd = p[0] >> 4, flags = p[0] & 0x0F;
  const uint8_t *body = p + hlen;
  if (cmd == 0 || (cmd == MQTT_CMD_AUTH && !c->is_mqtt5)) {
    mg_error(c, "MQTT: unknown packet type %d", cmd);
    return 0;
  }
  if (!st->connected && cmd != MQTT_CMD_CONNECT) {
    mg_error(c, "MQTT: packet type %d before CONNECT", cmd);
    return 0;
  }
  switch (cmd) {
    case MQTT_CMD_CONNECT:
      if (st->connected) {
        mg_error(c, "MQTT: second CONNECT");
        return 0;
      }
      if (flags != 0 || rlen < 10 || memcmp(body, "\0\4MQTT", 6) != 0 ||
          (body[6] != 4 && body[6] != 5)) {
        mg_error(c, "MQTT: unsupported CONNECT (only MQTT 3.1.1 and 5)");
        return 0;
      }
      c->is_mqtt5 = body[6] == 5;
      st->connected = 1;
      st->idle_ms = (uint64_t) be16(body + 8) * 1500;
      return 1;
    case MQTT_CMD_PUBLISH: {
      uint16_t tlen;
      if ((flags & 6) == 6) {
        mg_error(c, "MQTT: PUBLISH with QoS 3");
        return 0;
      }
      if (rlen < 2 || (tlen = be16(body)) + 2U > rlen) {
        mg_error(c, "MQTT: truncated PUBLISH");
        return 0;
      }
      if (tlen == 0 && !(c->is_mqtt5 && st->broker_mode)) { /* else a topic alias */
        mg_error(c, "MQTT: PUBLISH with an empty topic");
        return 0;
      }
      if (!valid_utf8(body + 2, tlen) || memchr(body + 2, '+', tlen) != NULL ||
          memchr(body + 2, '#', tlen) != NULL) {
        mg_error(c, "MQTT: PUBLISH topic is not valid UTF-8 or has wildcards");
        return 0;
      }
      return 1;
    }
    case MQTT_CMD_PUBREL:
    case MQTT_CMD_SUBSCRIBE:
    case MQTT_CMD_UNSUBSCRIBE:
      if (flags != 2) break;
      if (cmd != MQTT_CMD_PUBREL && rlen < 5) {
        mg_error(c, "MQTT: packet type %d without a topic", cmd);
        return 0;
      }
      return 1;
    case MQTT_CMD_PUBACK:
    case MQTT_CMD_PUBREC:
    case MQTT_CMD_PUBCOMP:
    case MQTT_CMD_PINGREQ:
    case MQTT_CMD_DISCONNECT:
    case MQTT_CMD_AUTH:
      if (flags != 0) break;
      return 1;
    default: /* CONNACK, SUBACK, UNSUBACK, PINGRESP: only a broker sends those */
      mg_error(c, "MQTT: packet type %d is not sent to a broker", cmd);
      return 0;
  }
  mg_error(c, "MQTT: bad flags %d on packet type %d", flags, cmd);
  return 0;
}

/* Mongoose reads MQTT 5 PUBLISH properties only when more than two bytes
 * follow the packet id; otherwise they stay at the start of the payload. */
static int fix_v5_publish(struct mg_mqtt_message *mm) {
  const uint8_t *d = (const uint8_t *) mm->data.buf;
  uint32_t value = 0;
  size_t i, n = mm->data.len;
  if (mm->props_start != 0) return 1;
  for (i = 0; i < 4 && i < n; i++) {
    value |= (uint32_t) (d[i] & 0x7f) << (7 * i);
    if ((d[i] & 0x80) == 0) break;
  }
  if (i == 4 || i >= n || value > n - i - 1) return 0;
  mm->props_size = value;
  mm->props_start = (size_t) ((const char *) d + i + 1 - mm->dgram.buf);
  mm->data.buf += i + 1 + value;
  mm->data.len -= i + 1 + value;
  return 1;
}

static void send_id_packet(struct mg_connection *c, int cmd, int flags, uint16_t id) {
  uint8_t pkt[4];
  pkt[0] = (uint8_t) (cmd << 4 | flags);
  pkt[1] = 2;
  pkt[2] = (uint8_t) (id >> 8);
  pkt[3] = (uint8_t) (id & 0xff);
  if (!mg_send(c, pkt, sizeof(pkt))) mg_error(c, "OOM");
}

/* One complete packet of n bytes at the head of the receive buffer. */
static void handle_packet(struct mg_connection *c, struct mqtt_state *st, const uint8_t *p,
                          size_t n) {
  struct mg_mqtt_message mm;
  int cmd = p[0] >> 4;
  if (mg_mqtt_parse(p, n, c->is_mqtt5 ? 5 : 4, &mm) != MQTT_OK ||
      (cmd == MQTT_CMD_PUBLISH && (mm.qos == 3 || (c->is_mqtt5 && !fix_v5_publish(&mm))))) {
    mg_error(c, "MQTT: malformed packet of type %d", cmd);
    return;
  }
  switch (cmd) {
    case MQTT_CMD_CONNACK:
      mg_call(c, MG_EV_MQTT_OPEN, &mm.ack);
      break;
    case MQTT_CMD_PUBLISH:
      /* A two-byte acknowledgement means success in MQTT 3.1.1 and 5 alike. */
      if (mm.qos > 0) {
        send_id_packet(c, mm.qos == 2 ? MQTT_CMD_PUBREC : MQTT_CMD_PUBACK, 0, mm.id);
      }
      mg_call(c, MG_EV_MQTT_MSG, &mm);
      break;
    case MQTT_CMD_PUBREC:
      send_id_packet(c, MQTT_CMD_PUBREL, 2, mm.id);
      break;
    case MQTT_CMD_PUBREL:
      send_id_packet(c, MQTT_CMD_PUBCOMP, 0, mm.id);
      break;
    default:
      break;
  }
  mg_call(c, MG_EV_MQTT_CMD, &mm);
  if (cmd == MQTT_CMD_CONNACK && mm.ack != 0) {
    mg_error(c, "MQTT refused: %s (CONNACK %d)",
             pymg_mqtt_connack_reason(mm.ack, c->is_mqtt5 ? 5 : 4), mm.ack);
  }
}

static void on_read(struct mg_connection *c, struct mqtt_state *st) {
  uint64_t now = mg_millis();
  int progressed = 0;
  while (!c->is_closing && c->recv.len > 0) {
    const uint8_t *p = c->recv.buf;
    size_t hlen = 0;
    uint32_t rlen = 0;
    int rc = fixed_header(p, c->recv.len, &hlen, &rlen);
    if (rc < 0) {
      mg_error(c, "MQTT: malformed remaining length");
      return;
    }
    if (rc == 0) break;
    if (rlen > st->max_packet) {
      mg_error(c, "MQTT: packet of %lu bytes exceeds %lu", (unsigned long) rlen,
               (unsigned long) st->max_packet);
      return;
    }
    if (hlen + rlen > c->recv.len) break;
    if (st->role == ROLE_BROKER_SIDE) {
      if (!check_from_client(c, st, p, hlen, rlen)) return;
      st->last_io = now;
    }
    handle_packet(c, st, p, hlen + rlen);
    progressed = 1;
    /* A handler may have consumed the buffer itself: never delete past it. */
    mg_iobuf_del(&c->recv, 0, hlen + rlen < c->recv.len ? hlen + rlen : c->recv.len);
  }
  if (st->role == ROLE_BROKER_SIDE) {
    /* The clock runs from the first byte of the packet still incomplete, so a
     * client streaming packets back to back is never cut off mid-stream. */
    if (c->recv.len == 0 && st->connected) {
      st->waiting_since = 0;
    } else if (progressed || st->waiting_since == 0) {
      st->waiting_since = now;
    }
  }
}

static void on_poll(struct mg_connection *c, struct mqtt_state *st) {
  uint64_t now = mg_millis();
  if (c->is_closing) return;
  if (st->role == ROLE_BROKER_SIDE) {
    if (st->waiting_since != 0 && st->timeout_ms != 0 &&
        now - st->waiting_since > st->timeout_ms) {
      mg_error(c, st->connected ? "MQTT: packet incomplete after %lu ms"
                                : "MQTT: no CONNECT within %lu ms",
               (unsigned long) st->timeout_ms);
    } else if (st->connected && st->idle_ms != 0 && now - st->last_io > st->idle_ms) {
      mg_error(c, "MQTT: client silent past 1.5 x its keepalive");
    }
  } else if (st->role == ROLE_CLIENT && st->idle_ms != 0 && !c->is_connecting &&
             !c->is_resolving && now - st->last_io >= st->idle_ms) {
    mg_mqtt_ping(c);
    st->last_io = now;
  }
}

static void mqtt_proto(struct mg_connection *c, int ev, void *ev_data) {
  struct mqtt_state *st = (struct mqtt_state *) c->pfn_data;
  (void) ev_data;
  if (st == NULL) return;
  if (ev == MG_EV_OPEN && c->is_accepted && st->role == ROLE_LISTENER) {
    /* pfn_data is still the listener's: make this connection's own. */
    struct mqtt_state *own = (struct mqtt_state *) malloc(sizeof(*own));
    if (own == NULL) {
      c->pfn_data = NULL;
      c->is_closing = 1;
      return;
    }
    *own = *st;
    own->role = ROLE_BROKER_SIDE;
    own->waiting_since = own->last_io = mg_millis();
    c->pfn_data = own;
  } else if (ev == MG_EV_READ) {
    on_read(c, st);
  } else if (ev == MG_EV_POLL) {
    on_poll(c, st);
  } else if (ev == MG_EV_WRITE && st->role == ROLE_CLIENT) {
    st->last_io = mg_millis();
  } else if (ev == MG_EV_CLOSE) {
    free(st);
    c->pfn_data = NULL;
  }
}

void pymg_mqtt_broker_mode(struct mg_connection *c, int keepalive_s) {
  struct mqtt_state *st = (struct mqtt_state *) c->pfn_data;
  if (c->pfn != mqtt_proto || st == NULL || st->role != ROLE_BROKER_SIDE) return;
  st->broker_mode = 1;
  if (keepalive_s >= 0) st->idle_ms = (uint64_t) keepalive_s * 1500;
}

size_t pymg_send_many(struct mg_connection **cs, size_t n, const void *buf, size_t len) {
  size_t i, failed = 0;
  for (i = 0; i < n; i++) {
    if (!mg_send(cs[i], buf, len)) {
      mg_error(cs[i], "OOM");
      failed++;
    }
  }
  return failed;
}

static struct mqtt_state *state_new(int role, uint32_t max_packet) {
  struct mqtt_state *st = (struct mqtt_state *) calloc(1, sizeof(*st));
  if (st != NULL) {
    st->role = role;
    st->max_packet = max_packet;
    st->last_io = mg_millis();
  }
  return st;
}

struct mg_connection *pymg_mqtt_connect(struct pymg_manager *m, const char *url,
                                        const struct mg_mqtt_opts *opts, uint64_t interest,
                                        uint32_t max_packet) {
  void *r = pymg_route_alloc(interest);
  struct mqtt_state *st = state_new(ROLE_CLIENT, max_packet);
  struct mg_connection *c = NULL;
  if (r != NULL && st != NULL) {
    st->idle_ms = (uint64_t) opts->keepalive * 1000;
    c = mg_connect_svc(pymg_manager_mgr(m), url, pymg_route_handler(), r, mqtt_proto, st);
  }
  if (c == NULL) {
    free(r);
    free(st);
    return NULL;
  }
  mg_mqtt_login(c, opts);
  return c;
}

struct mg_connection *pymg_mqtt_listen(struct pymg_manager *m, const char *url,
                                       uint64_t interest, uint32_t max_packet,
                                       uint32_t timeout_ms, int *err) {
  void *r = pymg_route_alloc(interest);
  struct mqtt_state *st = state_new(ROLE_LISTENER, max_packet);
  struct mg_connection *c = NULL;
  *err = 0;
  if (r == NULL || st == NULL) {
    free(r);
    free(st);
    *err = ENOMEM;
    return NULL;
  }
  st->timeout_ms = timeout_ms;
  errno = 0;
  c = mg_listen(pymg_manager_mgr(m), url, pymg_route_handler(), r);
  if (c == NULL) {
    *err = errno;
    free(r);
    free(st);
    return NULL;
  }
  c->pfn = mqtt_proto;
  c->pfn_data = st;
  return c;
}
