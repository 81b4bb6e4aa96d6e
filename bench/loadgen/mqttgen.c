/*
 * mqttgen: MQTT broker load generator for the pymongoose benchmarks.
 *
 *   mqttgen --port P [--publishers 1] [--subscribers 50] [--qos 0] [--size 64]
 *           [--window 16] [--duration 4] [--warmup 1] [--timeout 10]
 *
 * Same approach as loadgen.c (plain C, libc only, one thread, epoll, no Mongoose):
 * N publishers and M subscribers connect with MQTT 3.1.1 (clean session), every
 * subscriber subscribes to "bench/#" at --qos, then each publisher publishes
 * --size byte messages to "bench/pN" at --qos. Closed loop: a publisher keeps
 * --window messages outstanding; a message is complete once all M subscribers got
 * it. Each payload carries the publisher, a sequence number and the send time;
 * a subscriber records the latency of every delivery in a 1-microsecond histogram.
 * QoS 1: the broker's PUBACKs are read, subscribers PUBACK every message.
 * Prints one JSON line:
 *
 *   {"publishers":1,"subscribers":50,"qos":0,"delivered":123,"seconds":4.0,
 *    "deliveries_per_sec":...,"p50_us":...,"p99_us":...,"errors":0,"stalled":0}
 *
 * Build: cc -O2 -o mqttgen mqttgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 2000000 /* latencies up to 2 s, 1 us buckets; beyond goes to the last */
#define MAX_WINDOW 1024

struct conn {
  int fd;
  int is_pub;
  int index;
  int ready;   /* CONNACK (and SUBACK for subscribers) seen */
  uint8_t *in;
  size_t in_len, in_cap;
  uint8_t *out;
  size_t out_len, out_cap;
  /* publishers */
  uint32_t next_seq;
  int outstanding;
  uint16_t next_id;
  uint16_t *counts; /* deliveries per window slot */
  uint64_t last_progress;
};

static int opt_port, opt_pubs = 1, opt_subs = 50, opt_qos = 0, opt_size = 64, opt_window = 16;
static double opt_duration = 4, opt_warmup = 1, opt_timeout = 10;
static struct conn *conns;
static int nconns, epfd;
static uint32_t *hist;
static uint64_t delivered, measure_start, measure_end, errors, stalled;
static int measuring;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

static void append(struct conn *c, const void *data, size_t n) {
  if (c->out_len + n > c->out_cap) {
    c->out_cap = (c->out_len + n) * 2;
    c->out = realloc(c->out, c->out_cap);
    if (c->out == NULL) die("realloc");
  }
  memcpy(c->out + c->out_len, data, n);
  c->out_len += n;
}

static void flush(struct conn *c) {
  while (c->out_len > 0) {
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) break;
      errors++;
      return;
    }
    memmove(c->out, c->out + n, c->out_len - (size_t) n);
    c->out_len -= (size_t) n;
  }
  struct epoll_event ev = {.events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static size_t put_len(uint8_t *p, size_t n) {
  size_t i = 0;
  do {
    uint8_t b = n & 0x7f;
    n >>= 7;
    p[i++] = b | (n ? 0x80 : 0);
  } while (n);
  return i;
}

static void send_connect(struct conn *c) {
  char id[32];
  uint8_t pkt[64];
  int idlen = snprintf(id, sizeof(id), "%s%d-%d", c->is_pub ? "p" : "s", c->index, getpid());
  size_t body = 10 + 2 + (size_t) idlen, i = 0;
  pkt[i++] = 0x10;
  i += put_len(pkt + i, body);
  memcpy(pkt + i, "\0\4MQTT\4\2\0\0", 10); /* level 4, clean session, keepalive 0 */
  i += 10;
  pkt[i++] = 0;
  pkt[i++] = (uint8_t) idlen;
  memcpy(pkt + i, id, (size_t) idlen);
  append(c, pkt, i + (size_t) idlen);
}

static void send_subscribe(struct conn *c) {
  static const char topic[] = "bench/#";
  uint8_t pkt[32];
  size_t i = 0, tl = sizeof(topic) - 1;
  pkt[i++] = 0x82;
  pkt[i++] = (uint8_t) (2 + 2 + tl + 1);
  pkt[i++] = 0;
  pkt[i++] = 1;
  pkt[i++] = 0;
  pkt[i++] = (uint8_t) tl;
  memcpy(pkt + i, topic, tl);
  i += tl;
  pkt[i++] = (uint8_t) opt_qos;
  append(c, pkt, i);
}

static void publish_one(struct conn *c) {
  uint8_t pkt[4096];
  char topic[32];
  int tl = snprintf(topic, sizeof(topic), "bench/p%d", c->index);
  size_t body = 2 + (size_t) tl + (opt_qos ? 2 : 0) + (size_t) opt_size, i = 0;
  uint32_t seq = c->next_seq++;
  uint64_t t = now_ns();
  pkt[i++] = (uint8_t) (0x30 | (opt_qos << 1));
  i += put_len(pkt + i, body);
  pkt[i++] = 0;
  pkt[i++] = (uint8_t) tl;
  memcpy(pkt + i, topic, (size_t) tl);
  i += (size_t) tl;
  if (opt_qos) {
    if (++c->next_id == 0) c->next_id = 1;
    pkt[i++] = (uint8_t) (c->next_id >> 8);
    pkt[i++] = (uint8_t) c->next_id;
  }
  memset(pkt + i, 'x', (size_t) opt_size);
  memcpy(pkt + i, &c->index, 4);
  memcpy(pkt + i + 4, &seq, 4);
  memcpy(pkt + i + 8, &t, 8);
  c->counts[seq % (uint32_t) opt_window] = 0;
  c->outstanding++;
  append(c, pkt, i + (size_t) opt_size);
}

static void fill_window(struct conn *c) {
  while (c->outstanding < opt_window) publish_one(c);
}

static void on_delivery(const uint8_t *payload, size_t n) {
  int pub;
  uint32_t seq;
  uint64_t t, lat;
  if (n < 16) {
    errors++;
    return;
  }
  memcpy(&pub, payload, 4);
  memcpy(&seq, payload + 4, 4);
  memcpy(&t, payload + 8, 8);
  if (pub < 0 || pub >= opt_pubs) {
    errors++;
    return;
  }
  uint64_t now = now_ns();
  if (measuring) {
    delivered++;
    lat = (now - t) / 1000;
    hist[lat < HIST_US ? lat : HIST_US - 1]++;
  }
  struct conn *p = &conns[pub];
  if (++p->counts[seq % (uint32_t) opt_window] == (uint16_t) opt_subs) {
    p->outstanding--;
    p->last_progress = now;
    fill_window(p);
    flush(p);
  }
}

static int all_ready(void) {
  for (int i = 0; i < nconns; i++)
    if (!conns[i].ready) return 0;
  return 1;
}

static void on_packet(struct conn *c, const uint8_t *p, size_t hlen, size_t rlen) {
  int type = p[0] >> 4;
  const uint8_t *body = p + hlen;
  if (type == 2) { /* CONNACK */
    if (rlen < 2 || body[1] != 0) {
      fprintf(stderr, "mqttgen: CONNECT refused\n");
      exit(2);
    }
    if (c->is_pub) c->ready = 1;
    else send_subscribe(c);
  } else if (type == 9) { /* SUBACK */
    c->ready = 1;
  } else if (type == 3) { /* PUBLISH to a subscriber */
    int qos = (p[0] >> 1) & 3;
    size_t tl = (size_t) (body[0] << 8 | body[1]), off = 2 + tl;
    if (qos) {
      uint8_t ack[4] = {0x40, 2, body[off], body[off + 1]};
      append(c, ack, 4);
      off += 2;
    }
    on_delivery(body + off, rlen - off);
  } else if (type == 4) { /* PUBACK to a publisher */
  } else {
    errors++;
  }
}

static void on_readable(struct conn *c) {
  for (;;) {
    if (c->in_cap - c->in_len < 65536) {
      c->in_cap = c->in_cap * 2 + 65536;
      c->in = realloc(c->in, c->in_cap);
      if (c->in == NULL) die("realloc");
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n == 0) {
      fprintf(stderr, "mqttgen: broker closed a connection\n");
      exit(2);
    }
    if (n < 0) {
      if (errno == EAGAIN) break;
      die("recv");
    }
    c->in_len += (size_t) n;
  }
  size_t pos = 0;
  while (c->in_len - pos >= 2) {
    size_t rlen = 0, hlen = 1;
    int shift = 0, done = 0;
    while (pos + hlen < c->in_len && hlen < 5) {
      uint8_t b = c->in[pos + hlen++];
      rlen |= (size_t) (b & 0x7f) << shift;
      shift += 7;
      if (!(b & 0x80)) {
        done = 1;
        break;
      }
    }
    if (!done || pos + hlen + rlen > c->in_len) break;
    on_packet(c, c->in + pos, hlen, rlen);
    pos += hlen + rlen;
  }
  memmove(c->in, c->in + pos, c->in_len - pos);
  c->in_len -= pos;
  flush(c);
}

static void loop_for(uint64_t until, int need_ready) {
  struct epoll_event evs[256];
  while (now_ns() < until) {
    if (need_ready && all_ready()) return;
    int n = epoll_wait(epfd, evs, 256, 50);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (evs[i].events & EPOLLIN) on_readable(c);
      if (evs[i].events & EPOLLOUT) flush(c);
    }
    if (!need_ready) {
      uint64_t now = now_ns();
      for (int i = 0; i < opt_pubs; i++) {
        struct conn *p = &conns[i];
        if (p->outstanding && now - p->last_progress > 2000000000ULL) {
          /* a message lost on the way: count it, and give the window back */
          stalled++;
          p->outstanding = 0;
          p->last_progress = now;
          fill_window(p);
          flush(p);
        }
      }
    }
  }
  if (need_ready) {
    fprintf(stderr, "mqttgen: clients not ready in time\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--port")) opt_port = atoi(v);
    else if (!strcmp(k, "--publishers")) opt_pubs = atoi(v);
    else if (!strcmp(k, "--subscribers")) opt_subs = atoi(v);
    else if (!strcmp(k, "--qos")) opt_qos = atoi(v);
    else if (!strcmp(k, "--size")) opt_size = atoi(v);
    else if (!strcmp(k, "--window")) opt_window = atoi(v);
    else if (!strcmp(k, "--duration")) opt_duration = atof(v);
    else if (!strcmp(k, "--warmup")) opt_warmup = atof(v);
    else if (!strcmp(k, "--timeout")) opt_timeout = atof(v);
    else {
      fprintf(stderr, "mqttgen: unknown option %s\n", k);
      return 2;
    }
  }
  if (opt_port <= 0 || opt_pubs < 1 || opt_subs < 1 || opt_subs > 65535 || opt_qos < 0 ||
      opt_qos > 1 || opt_size < 16 || opt_size > 2048 || opt_window < 1 ||
      opt_window > MAX_WINDOW) {
    fprintf(stderr, "usage: mqttgen --port P [--publishers N] [--subscribers M] [--qos 0|1]"
                    " [--size 16..2048] [--window 1..1024] [--duration S] [--warmup S]\n");
    return 2;
  }
  hist = calloc(HIST_US, sizeof(*hist));
  nconns = opt_pubs + opt_subs;
  conns = calloc((size_t) nconns, sizeof(*conns));
  epfd = epoll_create1(0);
  if (hist == NULL || conns == NULL || epfd < 0) die("setup");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t) opt_port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* subscribers first: every message must reach all of them */
  for (int i = 0; i < nconns; i++) {
    struct conn *c = &conns[i];
    c->is_pub = i < opt_pubs;
    c->index = c->is_pub ? i : i - opt_pubs;
    c->counts = calloc(MAX_WINDOW, sizeof(*c->counts));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *) &addr, sizeof(addr)) != 0) die("connect");
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    send_connect(c);
    flush(c);
  }
  loop_for(now_ns() + (uint64_t) (opt_timeout * 1e9), 1);
  uint64_t t0 = now_ns();
  for (int i = 0; i < opt_pubs; i++) {
    conns[i].last_progress = t0;
    fill_window(&conns[i]);
    flush(&conns[i]);
  }
  loop_for(t0 + (uint64_t) (opt_warmup * 1e9), 0);
  measuring = 1;
  measure_start = now_ns();
  loop_for(measure_start + (uint64_t) (opt_duration * 1e9), 0);
  measure_end = now_ns();
  measuring = 0;
  double secs = (double) (measure_end - measure_start) / 1e9;
  uint64_t seen = 0, p50 = 0, p99 = 0;
  for (uint64_t us = 0; us < HIST_US; us++) {
    seen += hist[us];
    if (!p50 && seen * 2 >= delivered && delivered) p50 = us ? us : 1;
    if (!p99 && seen * 100 >= delivered * 99 && delivered) {
      p99 = us ? us : 1;
      break;
    }
  }
  printf("{\"publishers\":%d,\"subscribers\":%d,\"qos\":%d,\"size\":%d,\"window\":%d,"
         "\"delivered\":%llu,\"seconds\":%.3f,\"deliveries_per_sec\":%.1f,\"p50_us\":%llu,"
         "\"p99_us\":%llu,\"errors\":%llu,\"stalled\":%llu}\n",
         opt_pubs, opt_subs, opt_qos, opt_size, opt_window, (unsigned long long) delivered,
         secs, (double) delivered / secs, (unsigned long long) p50, (unsigned long long) p99,
         (unsigned long long) errors, (unsigned long long) stalled);
  return 0;
}
