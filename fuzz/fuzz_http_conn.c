/* libFuzzer target: bytes arriving on one connection, through Mongoose's HTTP
 * and WebSocket parsers and pymongoose's event routing (csrc/glue.c), with a
 * handler that does what the Python layer does with each event.
 *
 * The connection is fake (no socket): it is made as Mongoose makes an accepted
 * (or, for client mode, a connecting) connection, its receive buffer is filled
 * in chunks and MG_EV_READ is raised, as mg_mgr_poll would. What the handler
 * sends is discarded after each chunk, as if the socket took it.
 *
 * Input: byte 0 picks the mode and the handler's answers, bytes 1..4 the chunk
 * sizes (cycled), the rest is what the peer sends. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mongoose.h"
#include "glue.h"

static struct pymg_manager *s_mgr;
static struct mg_connection *s_listener;
static mg_event_handler_t s_http_pfn, s_ws_pfn;
static char s_root[64];
static unsigned s_flags;

/* The arena and queue invariants Python relies on: every queued entry names a
 * live connection and an event, and a message's bytes lie inside the arena's
 * used part. Python would read out of bounds otherwise. */
static void check_queue(size_t pending) {
  uint64_t *items = pymg_queue_items(s_mgr);
  uint64_t used = items[0];
  size_t i;
  if (used > PYMG_ARENA_SIZE || pending > PYMG_QUEUE_CAP) abort();
  for (i = 0; i < pending; i++) {
    uint64_t *e = &items[1 + 3 * i];
    int ev = (int) e[1];
    if (ev == MG_EV_WS_MSG) {
      uint64_t at = e[2] & 0xfffff, len = (e[2] >> 20) & 0xfffff;
      struct mg_connection *c = pymg_find_conn(s_mgr, (unsigned long) e[0]);
      if (at + len > used || len > PYMG_BATCH_MESSAGE_MAX) abort();
      /* Echo it, as the README's WebSocket example does. */
      if (c != NULL && !c->is_closing) {
        mg_ws_send(c, pymg_queue_arena(s_mgr) + at, (size_t) len,
                   (int) ((e[2] >> 40) & 15));
      }
    } else if (ev < 0 || ev >= MG_EV_USER) {
      abort();
    }
  }
}

static void read_request(struct mg_http_message *hm) {
  /* What HttpMessage's accessors call. */
  char small[8];
  struct mg_str *ct = mg_http_get_header(hm, "Content-Type");
  size_t qsize = hm->query.len + 1, bsize = hm->body.len + 1, ofs = 0;
  char *q = malloc(qsize), *b = malloc(bsize);
  struct mg_http_part part;
  int i;
  (void) pymg_http_status(hm);
  for (i = 0; i < MG_MAX_HTTP_HEADERS && hm->headers[i].name.len > 0; i++) {
    (void) hm->headers[i].value.len;
  }
  if (ct != NULL) (void) mg_http_get_header_var(*ct, mg_str("boundary"));
  (void) mg_http_get_var(&hm->query, "a", q, qsize);
  (void) mg_http_get_var(&hm->body, "a", b, bsize);
  (void) mg_http_get_var(&hm->body, "name", small, sizeof(small));
  while ((ofs = mg_http_next_multipart(hm->body, ofs, &part)) > 0) {
  }
  free(q);
  free(b);
}

static void answer(struct mg_connection *c, struct mg_http_message *hm) {
  unsigned action = (s_flags >> 2) % 6;
  if (hm->uri.len >= 3 && memcmp(hm->uri.buf, "/ws", 3) == 0) {
    pymg_ws_upgrade(c, hm, (s_flags & 2) ? "X-Fuzz: 1\r\n" : NULL);
    return;
  }
  switch (action) {
    case 0:
      pymg_http_reply(c, 200, "X-A: b\r\n", 8, hm->body.buf, hm->body.len);
      break;
    case 1:
      pymg_http_reply_head(c, 200, "Transfer-Encoding: chunked\r\n", 28);
      mg_http_write_chunk(c, hm->uri.buf, hm->uri.len);
      mg_http_write_chunk(c, "", 0);
      break;
    case 2:
      pymg_http_serve(c, hm, s_root, 0, "", "", "");
      break;
    case 3: {
      char path[128];
      snprintf(path, sizeof(path), "%s/index.html", s_root);
      pymg_http_serve(c, hm, path, 1, "X-B: c\r\n", "txt=text/plain", "");
      break;
    }
    case 4:
      pymg_error(c, "fuzz says no");
      break;
    default:
      pymg_http_reply(c, 304, "", 0, "", 0);
      break;
  }
}

/* Python's side of the one entry point, played in C. */
void pymg_on_event(unsigned mgr_slot, unsigned long conn_id, int ev, void *ev_data,
                   size_t pending) {
  struct mg_connection *c;
  (void) mgr_slot;
  if (ev == PYMG_EV_LOG) return;
  check_queue(pending);
  /* As Manager._adopt: the connection is the one being dispatched. During
   * MG_EV_CLOSE (and what http_cb still delivers while closing) Mongoose has
   * already unlinked it, so it may no longer be found by id. */
  c = pymg_event_conn(s_mgr);
  if (c == NULL || c->id != conn_id) abort();
  if (ev == MG_EV_CLOSE) return;
  if (ev == MG_EV_HTTP_MSG) {
    struct mg_http_message *hm = (struct mg_http_message *) ev_data;
    read_request(hm);
    if (!c->is_client) answer(c, hm);
  } else if (ev == MG_EV_WS_MSG) {
    struct mg_ws_message *wm = (struct mg_ws_message *) ev_data;
    mg_ws_send(c, wm->data.buf, wm->data.len, wm->flags & 15);
  } else if (ev == MG_EV_WS_OPEN) {
    read_request((struct mg_http_message *) ev_data);
  } else if (ev == MG_EV_ERROR) {
    (void) strlen((const char *) ev_data);
  }
}

static void make_root(void) {
  FILE *f;
  char path[128];
  snprintf(s_root, sizeof(s_root), "/tmp/pymg-fuzz-root-%d", (int) getpid());
  mkdir(s_root, 0700);
  snprintf(path, sizeof(path), "%s/index.html", s_root);
  if ((f = fopen(path, "w")) != NULL) {
    fputs("<p>hello</p>\n", f);
    fclose(f);
  }
  snprintf(path, sizeof(path), "%s/sub", s_root);
  mkdir(path, 0700);
}

/* A connection as Mongoose makes one, without a socket. */
static struct mg_connection *fake_conn(int client, mg_event_handler_t pfn) {
  struct mg_mgr *mgr = pymg_manager_mgr(s_mgr);
  struct mg_connection *c = mg_alloc_conn(mgr);
  if (c == NULL) abort();
  c->next = mgr->conns;
  mgr->conns = c;
  c->pfn = pfn;
  c->fn = s_listener->fn;
  if (client) {
    /* Outbound connections own their route from the start (pymg_connect). */
    /* A fresh routing state as pymg_connect makes it: glue.c's struct
     * pymg_route is private, but its first field is the interest mask and
     * the rest starts zeroed (64 bytes is more than it needs). route_event
     * fills in the owner and frees it on MG_EV_CLOSE. */
    uint64_t *route = (uint64_t *) calloc(1, 64);
    if (route == NULL) abort();
    route[0] = ~(uint64_t) 0;
    c->is_client = 1;
    c->fn_data = route;
  } else {
    c->is_accepted = 1;
    c->fn_data = s_listener->fn_data;
    mg_call(c, MG_EV_OPEN, NULL);
    mg_call(c, MG_EV_ACCEPT, NULL);
  }
  return c;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  int err = 0;
  struct mg_connection *c;
  struct mg_http_message hm;
  static const char upgrade[] =
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  (void) argc;
  (void) argv;
  pymg_log_init(MG_LL_NONE);
  /* mg_hexdump of a bad request ignores the level: lines go to the stand-in
   * pymg_on_event (as they go to Python's logging), which drops them. */
  pymg_log_to_python(1);
  make_root();
  s_mgr = pymg_manager_new(1, 0);
  s_listener = pymg_listen(s_mgr, "http://127.0.0.1:0", PYMG_PROTO_HTTP, ~(uint64_t) 0, &err);
  if (s_listener == NULL) abort();
  s_http_pfn = s_listener->pfn;
  /* mg_ws_upgrade installs the WebSocket parser as the protocol handler. */
  c = fake_conn(0, s_http_pfn);
  if (mg_http_parse(upgrade, sizeof(upgrade) - 1, &hm) <= 0) abort();
  mg_ws_upgrade(c, &hm, NULL);
  s_ws_pfn = c->pfn;
  c->is_closing = 1;
  mg_close_conn(c);
  pymg_queue_take(s_mgr);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct mg_connection *c;
  unsigned long id;
  size_t ofs = 5, step = 0;
  int mode;
  if (size < 5) return 0;
  s_flags = data[0];
  mode = s_flags & 1;
  /* mode 0: server (request parsing, replies, upgrades, then WebSocket frames);
   * mode 1: client (response parsing, or with bit 1 a WebSocket client after
   * its handshake). */
  c = mode == 0 ? fake_conn(0, s_http_pfn) : fake_conn(1, (s_flags & 2) ? s_ws_pfn : s_http_pfn);
  id = c->id;
  while (ofs < size) {
    size_t n = (size_t) data[1 + step++ % 4] % 97 + 1;
    long got;
    if (n > size - ofs) n = size - ofs;
    if (mg_iobuf_add(&c->recv, c->recv.len, data + ofs, n) == 0) break;
    ofs += n;
    got = (long) n;
    mg_call(c, MG_EV_READ, &got);
    if (pymg_find_conn(s_mgr, id) == NULL) break;
    mg_call(c, MG_EV_POLL, NULL);
    c->send.len = 0; /* the socket took it */
    if (c->is_closing) break;
  }
  /* Deliver what is still queued, as pymg_poll's return would. */
  check_queue(pymg_queue_take(s_mgr));
  /* As mg_mgr_poll closes: is_closing is set first (mg_http_serve_file, say,
   * relies on it to not start a transfer while the connection closes). */
  c->is_closing = 1;
  mg_close_conn(c);
  check_queue(pymg_queue_take(s_mgr));
  return 0;
}
