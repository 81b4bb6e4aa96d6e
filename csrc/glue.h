/* pymongoose C glue: the part of the binding that is cheaper in C than in
 * Python. It owns event routing (which events cross into Python), the
 * per-connection routing state, and a few helpers that would otherwise cost
 * several Python-to-C calls each.
 *
 * This file is read twice: by the C compiler (glue.c includes it after
 * mongoose.h) and by cffi as a cdef. It therefore holds plain declarations
 * only: no preprocessor lines, no inline code. */

/* The manager wrapper is opaque to Python; see glue.c. */
struct pymg_manager;

/* Protocols a connection can speak, chosen at listen/connect time. */
enum pymg_proto {
  PYMG_PROTO_RAW = 0,  /* plain TCP or UDP: MG_EV_READ only */
  PYMG_PROTO_HTTP = 1, /* HTTP parsing: MG_EV_HTTP_MSG and friends */
  PYMG_PROTO_WS = 2    /* WebSocket client: sends the upgrade handshake */
};

/* Mongoose's MG_IO_SIZE: the most one read takes, so the largest UDP datagram a
 * Mongoose connection receives whole (the rest of a longer one is cut off). */
enum { PYMG_IO_SIZE = 16384 };

/* Largest payload pymg_wakeup() passes on. */
enum { PYMG_WAKEUP_MAX = 1048576 };

/* Bits of pymg_conn_flags(): Mongoose's bit-fields, which cffi cannot read. */
enum pymg_conn_flag {
  PYMG_LISTENING = 1,
  PYMG_CLIENT = 2,
  PYMG_ACCEPTED = 4,
  PYMG_UDP = 8,
  PYMG_TLS = 16,
  PYMG_WEBSOCKET = 32,
  PYMG_DRAINING = 64,
  PYMG_CLOSING = 128,
  PYMG_FULL = 256,
  PYMG_READABLE = 512,
  PYMG_WRITABLE = 1024,
  PYMG_RESOLVING = 2048,
  PYMG_CONNECTING = 4096,
  PYMG_TLS_HS = 8192
};

/* An address as Python wants it: raw IP bytes, host-order port. */
struct pymg_addr {
  unsigned char ip[16];
  unsigned short port;
  unsigned char is_ip6;
};

/* Events that carry no data for Python (MG_EV_POLL, MG_EV_READ, MG_EV_WRITE,
 * MG_EV_OPEN, MG_EV_ACCEPT, MG_EV_CONNECT, MG_EV_RESOLVE, MG_EV_TLS_HS), and
 * WebSocket messages up to PYMG_BATCH_MESSAGE_MAX bytes (copied into an
 * arena), are not sent one call at a time: C appends (connection id, event,
 * end, flags) entries to the manager's queue, in order, and Python delivers the
 * batch before the next event it is sent directly (pymg_on_event's `pending`),
 * when pymg_poll returns, and before any MG_EV_CLOSE, so a connection is alive
 * while its queued events are delivered. `end` is the arena's length after the
 * entry (payloads are stored in order: a message's payload starts where the
 * previous entry's `end` was, and runs to its own), `flags` a message's first
 * header byte (0 for other events). Plain small numbers: Python reads them
 * without arithmetic.
 * Whoever reports a count (pymg_on_event, pymg_poll, pymg_queue_take) empties
 * the queue: Python reads item 0 (arena bytes in use) and the entries from
 * item 1 on, and the arena, before any handler runs. */
enum { PYMG_QUEUE_ENTRY = 4, PYMG_QUEUE_CAP = 4096, PYMG_ARENA_SIZE = 262144, PYMG_BATCH_MESSAGE_MAX = 16384 };
uint64_t *pymg_queue_items(struct pymg_manager *m);
char *pymg_queue_arena(struct pymg_manager *m);
size_t pymg_queue_take(struct pymg_manager *m);

/* Manager life cycle. `slot` is the Python-side index that pymg_on_event
 * receives, so Python finds its Manager without a pointer lookup. */
struct pymg_manager *pymg_manager_new(unsigned slot, int enable_wakeup);
void pymg_manager_free(struct pymg_manager *m);
struct mg_mgr *pymg_manager_mgr(struct pymg_manager *m);
/* One Mongoose poll; returns (and takes) how many events wait in the queue. */
size_t pymg_poll(struct pymg_manager *m, int timeout_ms);
/* The live connection with this id, or NULL. */
struct mg_connection *pymg_find_conn(struct pymg_manager *m, unsigned long conn_id);
unsigned long pymg_wakeup_id(struct pymg_manager *m);
/* The thread that called pymg_poll last, as Python's threading.get_ident() numbers
 * it (pthread_self()), or 0 before the first poll. Recorded in C, since asking
 * Python for it on every poll costs more than the rest of the poll's Python. */
unsigned long pymg_poll_thread(struct pymg_manager *m);
/* Mongoose's epoll descriptor (readable when any connection has I/O), or -1:
 * lets another event loop (asyncio) wait for it instead of pymg_poll. */
int pymg_poll_fd(struct pymg_manager *m);
int pymg_wakeup(struct pymg_manager *m, unsigned long conn_id, const char *buf, size_t len);

/* Timers. A timer's callback reaches Python through pymg_on_event with
 * ev == PYMG_EV_TIMER and the timer's id in place of a connection id. A
 * cancelled timer never fires again; C frees it after the poll that saw it
 * cancelled or done, never while Mongoose walks its timer list. pymg_poll
 * waits no longer than the next timer is due. */
enum { PYMG_EV_TIMER = -1 };
int pymg_timer_add(struct pymg_manager *m, unsigned long id, uint64_t ms, int repeat,
                   int run_now);
int pymg_timer_cancel(struct pymg_manager *m, unsigned long id);

/* The connection whose event is being dispatched right now (Python needs the
 * pointer only once, when it first wraps a connection). */
struct mg_connection *pymg_event_conn(struct pymg_manager *m);

/* Opening connections. `interest` is a bit mask of MG_EV_* codes below 64
 * that are routed to Python (codes from 64 up always are). pymg_listen stores
 * errno (0 when the URL itself was refused) in *err when it returns NULL. */
struct mg_connection *pymg_listen(struct pymg_manager *m, const char *url, int proto,
                                  uint64_t interest, int *err);
struct mg_connection *pymg_connect(struct pymg_manager *m, const char *url, int proto,
                                   uint64_t interest, const char *ws_headers);

/* Routing state of one connection. */
void pymg_set_interest(struct mg_connection *c, uint64_t interest);
unsigned long pymg_origin_id(struct mg_connection *c);
/* During or right after a request's MG_EV_HTTP_MSG: 1 when its handler has
 * written to the response (the send buffer grew since the event began). */
int pymg_http_answer_started(struct mg_connection *c);
void pymg_mark_wrapped(struct mg_connection *c);
/* Walk the connections pymongoose routes: NULL gives the newest, then older ones. */
struct mg_connection *pymg_next_conn(struct pymg_manager *m, struct mg_connection *c);

/* Connection state. */
unsigned pymg_conn_flags(struct mg_connection *c);
void pymg_conn_close(struct mg_connection *c);
void pymg_conn_drain(struct mg_connection *c);
int pymg_conn_addr(struct mg_connection *c, int remote, struct pymg_addr *out);
size_t pymg_recv_consume(struct mg_connection *c, size_t len);

/* HTTP helpers. pymg_http_reply writes status line, `headers` (already
 * "Name: value\r\n" lines), Content-Length and body in one go. */
void pymg_http_reply(struct mg_connection *c, int status, const char *headers,
                     size_t headers_len, const char *body, size_t body_len);
/* The head of a response whose length is not known up front (chunked, or a
 * Server-Sent Events stream): status line and headers, no Content-Length. */
void pymg_http_reply_head(struct mg_connection *c, int status, const char *headers,
                          size_t headers_len);
/* mg_error with a plain message: MG_EV_ERROR, then the connection closes. */
void pymg_error(struct mg_connection *c, const char *message);
void pymg_http_serve(struct mg_connection *c, struct mg_http_message *hm, const char *path,
                     int is_file, const char *extra_headers, const char *mime_types,
                     const char *page404);
void pymg_ws_upgrade(struct mg_connection *c, struct mg_http_message *hm,
                     const char *extra_headers);
int pymg_http_status(struct mg_http_message *hm);

/* Mongoose's own log lines, collected line by line: to Python (pymg_on_event
 * with mgr_slot 0, ev PYMG_EV_LOG and the line as a char * in ev_data) once
 * pymg_log_to_python(1) was called, to stderr before. */
enum { PYMG_EV_LOG = -2 };
void pymg_log_init(int level);
void pymg_log_to_python(int enable);

/* Streamed request bodies. An HTTP server handler calls pymg_stream_body
 * during MG_EV_HTTP_HDRS: the head is consumed, Mongoose's HTTP parser steps
 * aside, and the body (Content-Length or chunked; none counts as empty) is
 * passed to Python in pieces as PYMG_EV_HTTP_BODY (ev_data: struct mg_str *)
 * followed by one PYMG_EV_HTTP_BODY_END (ev_data NULL). The parser is then
 * reattached for the next request on the connection. Returns 0 when it
 * started, -1 when the connection is not a server-side HTTP connection, -2
 * for an unsupported Transfer-Encoding, -3 for an invalid Content-Length. */
enum { PYMG_EV_HTTP_BODY = 60, PYMG_EV_HTTP_BODY_END = 61 };
int pymg_stream_body(struct mg_connection *c, struct mg_http_message *hm);
/* Flow control: a paused connection reads nothing more from its socket and
 * passes no more body pieces on; resuming continues both. */
void pymg_pause(struct mg_connection *c, int paused);
int pymg_is_paused(struct mg_connection *c);
/* 1 while a request is being received or answered, or data waits to be sent. */
int pymg_conn_busy(struct mg_connection *c);
/* Mark the current HTTP response as complete (after writing it with mg_send). */
void pymg_http_end(struct mg_connection *c);
/* Adopt an already bound and listening TCP socket (the caller passes a
 * descriptor Mongoose may own and close) as a listener. */
struct mg_connection *pymg_listen_fd(struct pymg_manager *m, int fd, int proto,
                                     uint64_t interest);
