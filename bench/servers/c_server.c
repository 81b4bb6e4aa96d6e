/* The C baseline: the benchmark workloads served by plain Mongoose, no Python.
 *
 * Built from the same mongoose.c with the same flags as pymongoose (bench/run.py
 * does it). Usage: c_server MODE [ROOT_DIR], MODE one of hello, ws, static, post.
 * Listens on 127.0.0.1, port 0, and prints "PORT <n>" once it is listening.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mongoose.h"

enum mode { HELLO, WS, STATIC, POST };

static const char *s_root = ".";
static volatile sig_atomic_t s_stop = 0;

static void on_signal(int signo) {
  (void) signo;
  s_stop = 1;
}

static void handle(struct mg_connection *c, int ev, void *ev_data) {
  enum mode mode = (enum mode) (size_t) c->fn_data;
  if (ev == MG_EV_HTTP_MSG) {
    struct mg_http_message *hm = (struct mg_http_message *) ev_data;
    switch (mode) {
      case HELLO:
        mg_http_reply(c, 200, "Content-Type: application/json\r\n",
                      "{\"message\":\"Hello, World!\"}");
        break;
      case WS:
        mg_ws_upgrade(c, hm, NULL);
        break;
      case STATIC: {
        struct mg_http_serve_opts opts;
        memset(&opts, 0, sizeof(opts));
        opts.root_dir = s_root;
        mg_http_serve_dir(c, hm, &opts);
        break;
      }
      case POST:
        /* Not mg_http_reply("%.*s"): its printf copies the body a byte at a time. */
        mg_printf(c,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Length: %lu\r\n\r\n",
                  (unsigned long) hm->body.len);
        mg_send(c, hm->body.buf, hm->body.len);
        c->is_resp = 0; /* response complete: Mongoose may parse the next request */
        break;
    }
  } else if (ev == MG_EV_WS_MSG) {
    struct mg_ws_message *wm = (struct mg_ws_message *) ev_data;
    mg_ws_send(c, wm->data.buf, wm->data.len, WEBSOCKET_OP_BINARY);
  }
}

int main(int argc, char *argv[]) {
  struct mg_mgr mgr;
  struct mg_connection *lsn;
  enum mode mode;
  if (argc < 2) {
    fprintf(stderr, "usage: %s hello|ws|static|post [ROOT_DIR]\n", argv[0]);
    return 2;
  }
  if (strcmp(argv[1], "hello") == 0) mode = HELLO;
  else if (strcmp(argv[1], "ws") == 0) mode = WS;
  else if (strcmp(argv[1], "static") == 0) mode = STATIC;
  else if (strcmp(argv[1], "post") == 0) mode = POST;
  else {
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
  }
  if (argc > 2) s_root = argv[2];
  mg_log_set(MG_LL_ERROR);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  mg_mgr_init(&mgr);
  lsn = mg_http_listen(&mgr, "http://127.0.0.1:0", handle, (void *) (size_t) mode);
  if (lsn == NULL) {
    fprintf(stderr, "cannot listen\n");
    return 1;
  }
  printf("PORT %u\n", (unsigned) mg_ntohs(lsn->loc.port));
  fflush(stdout);
  while (!s_stop) mg_mgr_poll(&mgr, 100);
  mg_mgr_free(&mgr);
  return 0;
}
