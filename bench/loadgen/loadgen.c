/*
 * loadgen: a small single-threaded load generator for the pymongoose benchmarks.
 *
 *   loadgen ws   --port P [--host 127.0.0.1] [--path /ws] [--connections 50]
 *                [--inflight 16] [--size 64] [--duration 4] [--warmup 1]
 *                [--text] [--payload FILE] [--rsv1] [--extensions OFFER]
 *
 * --payload sends FILE's bytes as each message instead of --size letters;
 * --extensions adds a Sec-WebSocket-Extensions offer to the handshake and
 * --rsv1 marks every message compressed (FILE then holds a permessage-deflate
 * payload made without context takeover, so one buffer serves every message);
 * with either, echoed messages are counted without checking their size.
 *   loadgen idle --port P [--host 127.0.0.1] [--path /] [--connections 10000]
 *
 * Plain C, libc only, raw non-blocking sockets and epoll; it deliberately does
 * not use Mongoose, so the client and the servers it measures share no code.
 * The per-message cost is kept far below the servers': every WebSocket frame it
 * sends comes from one pre-built buffer, each readable event costs one recv()
 * and one send(), and parsing an echoed frame is a few byte loads.
 *
 * Build: cc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF_SIZE (256 * 1024)
#define MAX_EVENTS 512
#define HEAD_MAX 16384              /* largest HTTP response head accepted */
#define MAX_ATTEMPTS 6              /* connect attempts per connection */
#define RETRY_DELAY_NS (100 * 1000000LL)
#define MAX_ERROR_REPORTS 5         /* stderr lines, so 10000 failures stay readable */
#define MAX_FRAME_BUFFER (1UL << 30)

enum mode { MODE_WS, MODE_IDLE };

enum state {
    ST_NEW,         /* not started yet */
    ST_WAITING,     /* waiting to retry a failed connect */
    ST_CONNECTING,
    ST_HEAD,        /* request sent, reading the response head */
    ST_BODY,        /* idle: reading the response body */
    ST_OPEN,        /* ws: handshake done, echo traffic running */
    ST_READY,       /* idle: response complete, connection held */
    ST_FAILED,
};

/* chunked transfer-encoding parser states (idle mode) */
enum { CH_SIZE = 1, CH_EXT, CH_DATA, CH_DATA_END, CH_TRAILER };

struct conn {
    int fd;
    uint8_t state;
    uint8_t attempts;
    uint8_t got_bytes;      /* the server answered: a failure now is not retried */
    uint8_t want_out;       /* EPOLLOUT is registered */
    uint8_t fh_len;         /* ws: bytes of a split frame header collected */
    uint8_t fop;            /* ws: first header byte of the current frame */
    uint8_t in_payload;     /* ws: inside a frame's payload */
    uint8_t chunk_state;    /* idle: 0 unless the body is chunked */
    uint8_t fh[14];
    uint32_t head_len, head_cap;
    char *head;             /* response head, only while it is being read */
    uint64_t left;          /* ws: payload bytes left; idle: body bytes left */
    uint64_t msg_len;       /* ws: payload bytes of the message so far */
    size_t owed;            /* ws: frame bytes still to send */
    size_t out_off;         /* ws: where the next send starts in g_out */
    int64_t retry_at;
    uint32_t line_len;      /* idle: length of the current chunked trailer line */
};

static struct {
    enum mode mode;
    const char *host;
    const char *path;
    int port;
    int nconn;
    int inflight;
    long size;
    double duration;
    double warmup;
    double timeout;
    int max_pending;
    int text;               /* ws: text frames instead of binary */
    int rsv1;               /* ws: RSV1 on every frame sent */
    const char *payload;    /* ws: file whose bytes each message carries */
    const char *extensions; /* ws: Sec-WebSocket-Extensions offer */
    struct sockaddr_storage addr;
    socklen_t addr_len;
} opt;

static int g_ep = -1;
static struct conn *g_conns;
static int g_next_new;          /* next connection never started */
static int *g_retry;            /* FIFO of connections waiting to retry */
static int g_rhead, g_rcount;
static int g_pending;           /* started, neither established nor failed */
static int g_finished;          /* established or failed for good */
static int g_no_retry;
static int g_established;
static uint64_t g_messages;
static uint64_t g_errors;
static uint64_t g_dropped;      /* idle: held connections the server closed */
static int g_reports;
static int g_mismatch_reported;

static char g_request[1024];
static size_t g_request_len;
static uint8_t *g_out;          /* ws: inflight + 1 copies of one masked frame */
static size_t g_frame_len;
static unsigned char g_rbuf[READ_BUF_SIZE];

static volatile sig_atomic_t g_stop;
static sigset_t g_origmask;
static int g_watch_stdin = 1;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int ms_until(int64_t now, int64_t when, int cap)
{
    int64_t ms = (when - now + 999999) / 1000000;
    if (ms < 0)
        ms = 0;
    return ms > cap ? cap : (int)ms;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void report(struct conn *c, const char *what, int err)
{
    if (g_reports >= MAX_ERROR_REPORTS)
        return;
    if (++g_reports == MAX_ERROR_REPORTS) {
        fprintf(stderr, "loadgen: connection %d: %s%s%s (further errors not shown)\n",
                (int)(c - g_conns), what, err ? ": " : "", err ? strerror(err) : "");
    } else {
        fprintf(stderr, "loadgen: connection %d: %s%s%s\n", (int)(c - g_conns), what,
                err ? ": " : "", err ? strerror(err) : "");
    }
}

static int in_setup(const struct conn *c)
{
    return c->state != ST_OPEN && c->state != ST_READY && c->state != ST_FAILED;
}

static int retryable(int err)
{
    return err == ECONNREFUSED || err == EAGAIN || err == ETIMEDOUT ||
           err == ECONNRESET || err == EADDRNOTAVAIL || err == EPIPE;
}

static void drop_head(struct conn *c)
{
    free(c->head);
    c->head = NULL;
    c->head_len = c->head_cap = 0;
}

/* Closes the connection; before the server has answered, a refused or reset
 * connect is queued for another attempt, since that is usually a full backlog. */
static void conn_fail(struct conn *c, const char *what, int err)
{
    int setup = in_setup(c);

    if (c->state == ST_FAILED)
        return;
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    drop_head(c);
    c->want_out = 0;
    if (setup && !c->got_bytes && retryable(err) && c->attempts < MAX_ATTEMPTS &&
        !g_no_retry && !g_stop) {
        c->state = ST_WAITING;
        c->retry_at = now_ns() + RETRY_DELAY_NS;
        g_retry[(g_rhead + g_rcount++) % opt.nconn] = (int)(c - g_conns);
        return;
    }
    if (c->state == ST_READY)
        g_dropped++;
    else
        report(c, what, err);
    c->state = ST_FAILED;
    g_errors++;
    if (setup) {
        g_pending--;
        g_finished++;
    }
}

static void conn_established(struct conn *c)
{
    drop_head(c);
    g_pending--;
    g_finished++;
    g_established++;
}

static int set_events(struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};

    if (epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_fail(c, "epoll_ctl", errno);
        return -1;
    }
    return 0;
}

static void conn_start(struct conn *c)
{
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    int one = 1;

    c->attempts++;
    c->got_bytes = 0;
    c->state = ST_CONNECTING;
    c->fd = socket(opt.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(c, "socket", errno);
        return;
    }
    /* Small frames must leave at once, not wait for the previous ones' ACK. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&opt.addr, opt.addr_len) < 0 && errno != EINPROGRESS) {
        conn_fail(c, "connect", errno);
        return;
    }
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        conn_fail(c, "epoll_ctl", errno);
}

/* Starts due retries and new connections while fewer than max_pending are in
 * progress, so the server's listen backlog is never flooded. */
static void pump_connects(int64_t now)
{
    while (g_rcount > 0) {
        struct conn *c = &g_conns[g_retry[g_rhead]];
        if (c->retry_at > now)
            break;
        g_rhead = (g_rhead + 1) % opt.nconn;
        g_rcount--;
        if (c->state == ST_WAITING)
            conn_start(c);
    }
    while (g_pending < opt.max_pending && g_next_new < opt.nconn) {
        g_pending++;
        conn_start(&g_conns[g_next_new++]);
    }
}

static void on_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    ssize_t w;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(c, "connect", err);
        return;
    }
    w = send(c->fd, g_request, g_request_len, MSG_NOSIGNAL);
    if (w != (ssize_t)g_request_len) {
        conn_fail(c, "send request", w < 0 ? errno : EIO);
        return;
    }
    c->state = ST_HEAD;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

/* ---- HTTP response heads ------------------------------------------------ */

/* Returns -1 if the head is too large, 0 if it is incomplete (all of p was
 * taken), or how many bytes of p completed it (the rest is body or frames). */
static int head_feed(struct conn *c, const unsigned char *p, size_t n)
{
    size_t old = c->head_len;
    size_t take = n < HEAD_MAX - old ? n : HEAD_MAX - old;
    size_t from = old >= 3 ? old - 3 : 0;
    char *e;

    if (c->head_cap < old + take) {
        size_t cap = c->head_cap ? c->head_cap : 512;
        char *h;
        while (cap < old + take)
            cap *= 2;
        if (cap > HEAD_MAX)
            cap = HEAD_MAX;
        h = realloc(c->head, cap + 1);
        if (h == NULL)
            return -1;
        c->head = h;
        c->head_cap = (uint32_t)cap;
    }
    memcpy(c->head + old, p, take);
    c->head_len = (uint32_t)(old + take);
    c->head[c->head_len] = '\0';
    e = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
    if (e != NULL) {
        size_t end = (size_t)(e - c->head) + 4;
        c->head_len = (uint32_t)end;
        c->head[end] = '\0';
        return (int)(end - old);
    }
    return c->head_len >= HEAD_MAX ? -1 : 0;
}

static int head_status(const char *h)
{
    if (strncmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' ||
        h[9] < '0' || h[9] > '9' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9')
        return -1;
    return (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
}

/* The value of header `name` (case-insensitive), or NULL. */
static const char *head_value(const char *h, const char *name)
{
    size_t nl = strlen(name);
    const char *line;

    for (line = strstr(h, "\r\n"); line != NULL; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

static int value_contains(const char *v, const char *word)
{
    size_t wl = strlen(word);

    for (; *v != '\0' && *v != '\r'; v++)
        if (strncasecmp(v, word, wl) == 0)
            return 1;
    return 0;
}

/* ---- WebSocket mode ----------------------------------------------------- */

/* The bytes of --payload FILE (malloc'd) and their count, or NULL. */
static uint8_t *read_payload(size_t *len)
{
    FILE *f = fopen(opt.payload, "rb");
    uint8_t *buf;
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "loadgen: cannot read --payload %s\n", opt.payload);
        if (f != NULL)
            fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "loadgen: cannot read --payload %s\n", opt.payload);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static int ws_build(void)
{
    static const uint8_t mask[4] = {0x3a, 0x91, 0xc4, 0x5e};
    uint8_t *payload = NULL;
    size_t size = (size_t)opt.size;
    size_t hl, i;
    uint8_t *f;
    int n;

    if (opt.payload != NULL) {
        payload = read_payload(&size);
        if (payload == NULL)
            return -1;
        opt.size = (long)size;
    }
    hl = size < 126 ? 2 : size <= 0xffff ? 4 : 10;
    n = snprintf(g_request, sizeof g_request,
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s%s%s:%d\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Key: cHltb25nb29zZS1iZW5jaA==\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "%s%s%s"
                 "\r\n",
                 opt.path, strchr(opt.host, ':') ? "[" : "", opt.host,
                 strchr(opt.host, ':') ? "]" : "", opt.port,
                 opt.extensions ? "Sec-WebSocket-Extensions: " : "",
                 opt.extensions ? opt.extensions : "", opt.extensions ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof g_request) {
        fprintf(stderr, "loadgen: --path is too long\n");
        return -1;
    }
    g_request_len = (size_t)n;

    g_frame_len = hl + 4 + size;
    if (g_frame_len > MAX_FRAME_BUFFER / ((size_t)opt.inflight + 1)) {
        fprintf(stderr, "loadgen: --size times --inflight is too large\n");
        return -1;
    }
    /* One copy more than inflight: a partial send can leave the next one
     * starting mid-frame with up to inflight frames' worth still owed. */
    g_out = malloc(g_frame_len * ((size_t)opt.inflight + 1));
    if (g_out == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return -1;
    }
    f = g_out;
    f[0] = (uint8_t)(0x80 | (opt.rsv1 ? 0x40 : 0) | (opt.text ? 0x1 : 0x2));
    if (size < 126) {
        f[1] = (uint8_t)(0x80 | size);
    } else if (size <= 0xffff) {
        f[1] = 0x80 | 126;
        f[2] = (uint8_t)(size >> 8);
        f[3] = (uint8_t)size;
    } else {
        f[1] = 0x80 | 127;
        for (i = 0; i < 8; i++)
            f[2 + i] = (uint8_t)((uint64_t)size >> (56 - 8 * i));
    }
    memcpy(f + hl, mask, 4);
    for (i = 0; i < size; i++)
        f[hl + 4 + i] = (uint8_t)(payload ? payload[i] : 'a' + i % 26) ^ mask[i & 3];
    free(payload);
    for (i = 1; i <= (size_t)opt.inflight; i++)
        memcpy(g_out + i * g_frame_len, g_out, g_frame_len);
    return 0;
}

static size_t ws_head_size(uint8_t b1)
{
    size_t n = 2 + ((b1 & 0x7f) == 126 ? 2 : (b1 & 0x7f) == 127 ? 8 : 0);
    return n + ((b1 & 0x80) ? 4 : 0);
}

static int ws_frame_end(struct conn *c, uint64_t *done)
{
    unsigned op = c->fop & 0x0f;

    if (op == 0x8) {
        conn_fail(c, "server sent a close frame", 0);
        return -1;
    }
    if (op > 0x2 || !(c->fop & 0x80))
        return 0;   /* ping, pong, reserved, or more fragments to come */
    if (c->msg_len == (uint64_t)opt.size || opt.rsv1 || opt.extensions) {
        g_messages++;
    } else {
        g_errors++;
        if (!g_mismatch_reported) {
            g_mismatch_reported = 1;
            fprintf(stderr, "loadgen: echoed message has %" PRIu64 " bytes, expected %ld\n",
                    c->msg_len, opt.size);
        }
    }
    c->msg_len = 0;
    (*done)++;
    return 0;
}

/* Parses the server's frames in p; each complete data message adds to *done.
 * Returns -1 if the connection was closed. */
static int ws_feed(struct conn *c, const uint8_t *p, size_t n, uint64_t *done)
{
    const uint8_t *end = p + n;

    while (p < end) {
        const uint8_t *h;
        uint64_t len;

        if (c->in_payload) {
            size_t avail = (size_t)(end - p);
            if (c->left > avail) {
                c->left -= avail;
                return 0;
            }
            p += c->left;
            c->left = 0;
            c->in_payload = 0;
            if (ws_frame_end(c, done) < 0)
                return -1;
            continue;
        }
        if (c->fh_len == 0 && end - p >= 2 && (size_t)(end - p) >= ws_head_size(p[1])) {
            h = p;
            p += ws_head_size(p[1]);
        } else {
            /* a header split across reads: collect it byte by byte */
            c->fh[c->fh_len++] = *p++;
            if (c->fh_len < 2 || c->fh_len < ws_head_size(c->fh[1]))
                continue;
            h = c->fh;
            c->fh_len = 0;
        }
        len = h[1] & 0x7f;
        if (len == 126) {
            len = (uint64_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            int i;
            len = 0;
            for (i = 2; i < 10; i++)
                len = len << 8 | h[i];
        }
        c->fop = h[0];
        if ((h[0] & 0x0f) <= 0x2)
            c->msg_len += len;
        c->left = len;
        if (len > 0)
            c->in_payload = 1;
        else if (ws_frame_end(c, done) < 0)
            return -1;
    }
    return 0;
}

/* One send() of everything owed; the rest waits for EPOLLOUT. */
static void ws_flush(struct conn *c)
{
    ssize_t w = send(c->fd, g_out + c->out_off, c->owed, MSG_NOSIGNAL);
    uint8_t want;

    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_fail(c, "send", errno);
            return;
        }
        w = 0;
    }
    c->owed -= (size_t)w;
    c->out_off = (c->out_off + (size_t)w) % g_frame_len;
    want = c->owed > 0;
    if (want != c->want_out) {
        c->want_out = want;
        set_events(c, EPOLLIN | (want ? EPOLLOUT : 0));
    }
}

static int ws_handshake_done(struct conn *c)
{
    int status = head_status(c->head);

    if (status != 101) {
        char what[64];
        snprintf(what, sizeof what, "handshake answered with HTTP status %d", status);
        conn_fail(c, what, 0);
        return -1;
    }
    c->state = ST_OPEN;
    conn_established(c);
    c->owed = (size_t)opt.inflight * g_frame_len;
    c->out_off = 0;
    return 0;
}

static void ws_on_readable(struct conn *c)
{
    uint64_t done = 0;

    for (;;) {
        ssize_t r = recv(c->fd, g_rbuf, READ_BUF_SIZE, 0);
        const uint8_t *p = g_rbuf;
        size_t n;

        if (r == 0) {
            conn_fail(c, "connection closed by the server", c->got_bytes ? 0 : ECONNRESET);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            conn_fail(c, "recv", errno);
            return;
        }
        n = (size_t)r;
        c->got_bytes = 1;
        if (c->state == ST_HEAD) {
            int used = head_feed(c, p, n);
            if (used < 0) {
                conn_fail(c, "handshake response head too large", 0);
                return;
            }
            if (used == 0)
                continue;
            if (ws_handshake_done(c) < 0)
                return;
            p += used;
            n -= (size_t)used;
        }
        if (ws_feed(c, p, n, &done) < 0)
            return;
        if (r < READ_BUF_SIZE)
            break;      /* drained; skip the recv() that would say EAGAIN */
    }
    if (c->state != ST_OPEN)
        return;
    if (done > 0) {
        /* A misbehaving server could echo more than was sent; never owe more
         * than the pre-built buffer holds. */
        size_t cap = (size_t)opt.inflight * g_frame_len;
        size_t add = done > (uint64_t)opt.inflight ? cap : (size_t)done * g_frame_len;
        c->owed = c->owed + add > cap ? cap : c->owed + add;
    }
    if (c->owed > 0 && !c->want_out)
        ws_flush(c);
}

/* ---- idle mode ---------------------------------------------------------- */

/* Returns 1 when the body is complete, 0 if more is needed, -1 if malformed. */
static int body_feed(struct conn *c, const unsigned char *p, size_t n)
{
    const unsigned char *end = p + n;

    if (c->chunk_state == 0) {
        size_t take = c->left < n ? (size_t)c->left : n;
        c->left -= take;
        return c->left == 0;
    }
    while (p < end) {
        unsigned char ch = *p;
        switch (c->chunk_state) {
        case CH_SIZE:
        case CH_EXT:
            p++;
            if (ch == '\n') {
                c->chunk_state = c->left ? CH_DATA : CH_TRAILER;
                c->line_len = 0;
            } else if (c->chunk_state == CH_SIZE && ch != '\r') {
                int v = ch >= '0' && ch <= '9' ? ch - '0'
                      : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10 : -1;
                if (v < 0)
                    c->chunk_state = CH_EXT;
                else if (c->left >> 56)
                    return -1;
                else
                    c->left = c->left << 4 | (uint64_t)v;
            }
            break;
        case CH_DATA: {
            size_t avail = (size_t)(end - p);
            size_t take = c->left < avail ? (size_t)c->left : avail;
            p += take;
            c->left -= take;
            if (c->left == 0)
                c->chunk_state = CH_DATA_END;
            break;
        }
        case CH_DATA_END:
            p++;
            if (ch == '\n')
                c->chunk_state = CH_SIZE;
            break;
        case CH_TRAILER:
            p++;
            if (ch == '\n') {
                if (c->line_len == 0)
                    return 1;
                c->line_len = 0;
            } else if (ch != '\r') {
                c->line_len++;
            }
            break;
        }
    }
    return 0;
}

static int idle_head_done(struct conn *c)
{
    int status = head_status(c->head);
    const char *v;

    if (status < 200 || status >= 400) {
        char what[64];
        snprintf(what, sizeof what, "answered with HTTP status %d", status);
        conn_fail(c, what, 0);
        return -1;
    }
    c->left = 0;
    c->chunk_state = 0;
    v = head_value(c->head, "Transfer-Encoding");
    if (v != NULL && value_contains(v, "chunked")) {
        c->chunk_state = CH_SIZE;
    } else if ((v = head_value(c->head, "Content-Length")) != NULL) {
        char *e;
        if (*v < '0' || *v > '9') {
            conn_fail(c, "bad Content-Length", 0);
            return -1;
        }
        c->left = strtoull(v, &e, 10);
    }
    c->state = ST_BODY;
    drop_head(c);
    return 0;
}

static void idle_on_readable(struct conn *c)
{
    for (;;) {
        ssize_t r = recv(c->fd, g_rbuf, READ_BUF_SIZE, 0);
        const unsigned char *p = g_rbuf;
        size_t n;
        int rc;

        if (r == 0) {
            conn_fail(c, "connection closed by the server", c->got_bytes ? 0 : ECONNRESET);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            conn_fail(c, "recv", errno);
            return;
        }
        if (c->state == ST_READY)
            continue;   /* unexpected bytes on a held connection: ignored */
        n = (size_t)r;
        c->got_bytes = 1;
        if (c->state == ST_HEAD) {
            int used = head_feed(c, p, n);
            if (used < 0) {
                conn_fail(c, "response head too large", 0);
                return;
            }
            if (used == 0)
                continue;
            if (idle_head_done(c) < 0)
                return;
            p += used;
            n -= (size_t)used;
        }
        rc = body_feed(c, p, n);
        if (rc < 0) {
            conn_fail(c, "malformed chunked body", 0);
            return;
        }
        if (rc > 0) {
            c->state = ST_READY;
            conn_established(c);
        }
    }
}

/* ---- event loop --------------------------------------------------------- */

static void on_event(struct conn *c, uint32_t events)
{
    switch (c->state) {
    case ST_CONNECTING:
        on_connected(c);
        break;
    case ST_HEAD:
    case ST_BODY:
    case ST_OPEN:
    case ST_READY:
        if (opt.mode == MODE_IDLE) {
            idle_on_readable(c);
            break;
        }
        if ((events & EPOLLOUT) && c->want_out) {
            ws_flush(c);
            if (c->state != ST_OPEN)
                break;
        }
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
            ws_on_readable(c);
        break;
    default:
        break;
    }
}

static int poll_once(int timeout_ms)
{
    static struct epoll_event evs[MAX_EVENTS];
    int i, n = epoll_pwait(g_ep, evs, MAX_EVENTS, timeout_ms, &g_origmask);

    if (n < 0 && errno != EINTR) {
        perror("loadgen: epoll_wait");
        exit(1);
    }
    for (i = 0; i < n; i++)
        on_event(evs[i].data.ptr, evs[i].events);
    return n;
}

/* Connects everything (and, in ws mode, upgrades) until each connection is
 * established or has failed, or until --timeout. */
static void run_setup(void)
{
    int64_t deadline = now_ns() + (int64_t)(opt.timeout * 1e9);
    int i;

    while (g_finished < opt.nconn && !g_stop) {
        int64_t now = now_ns(), wake = deadline;
        if (now >= deadline)
            break;
        pump_connects(now);
        if (g_rcount > 0 && g_conns[g_retry[g_rhead]].retry_at < wake)
            wake = g_conns[g_retry[g_rhead]].retry_at;
        poll_once(ms_until(now, wake, 100));
    }
    g_no_retry = 1;
    for (i = 0; i < opt.nconn; i++) {
        struct conn *c = &g_conns[i];
        if (c->state == ST_NEW) {
            c->state = ST_WAITING;
            g_pending++;
        }
        if (in_setup(c))
            conn_fail(c, g_stop ? "interrupted" : "timed out", 0);
    }
}

static int run_ws(void)
{
    int64_t start, warm_end, end, t0 = 0, t1;
    uint64_t m0 = 0;
    int measuring = 0;
    double secs;

    run_setup();
    if (g_established == 0) {
        fprintf(stderr, "loadgen: no WebSocket connection could be established "
                        "(%d attempted)\n", opt.nconn);
        return 1;
    }
    start = now_ns();
    warm_end = start + (int64_t)(opt.warmup * 1e9);
    end = warm_end + (int64_t)(opt.duration * 1e9);
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= warm_end) {
            measuring = 1;
            m0 = g_messages;
            t0 = now;
        }
        if (now >= end)
            break;
        poll_once(ms_until(now, measuring ? end : warm_end, 10));
    }
    t1 = now_ns();
    secs = (double)(t1 - t0) / 1e9;
    printf("{\"mode\":\"ws\",\"connections\":%d,\"messages\":%" PRIu64
           ",\"seconds\":%.3f,\"msgs_per_sec\":%.1f,\"errors\":%" PRIu64 "}\n",
           g_established, g_messages - m0, secs,
           secs > 0 ? (double)(g_messages - m0) / secs : 0.0, g_errors);
    fflush(stdout);
    return 0;
}

/* Holds the connections until stdin reaches EOF or SIGINT/SIGTERM arrives;
 * the server closing a held connection is only noted. */
static void idle_hold(void)
{
    struct pollfd pf[2] = {{.fd = g_ep, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    char buf[4096];

    while (!g_stop) {
        int r = ppoll(pf, g_watch_stdin ? 2 : 1, NULL, &g_origmask);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            perror("loadgen: ppoll");
            return;
        }
        if (pf[0].revents)
            poll_once(0);
        if (g_watch_stdin && pf[1].revents) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
                return;
        }
    }
}

static int run_idle(void)
{
    int i, ready = 0;

    run_setup();
    for (i = 0; i < opt.nconn; i++)
        ready += g_conns[i].state == ST_READY;
    printf("{\"mode\":\"idle\",\"connections\":%d,\"ready\":%d,\"errors\":%d}\n",
           opt.nconn, ready, opt.nconn - ready);
    fflush(stdout);
    if (!g_stop)
        idle_hold();
    if (g_dropped > 0)
        fprintf(stderr, "loadgen: the server closed %" PRIu64 " held connections\n", g_dropped);
    return 0;
}

/* ---- setup -------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen ws   --port P [--host 127.0.0.1] [--path /ws] [--connections 50]\n"
            "                    [--inflight 16] [--size 64] [--duration 4] [--warmup 1]\n"
            "                    [--timeout 10] [--max-pending 100] [--text]\n"
            "                    [--payload FILE] [--rsv1] [--extensions OFFER]\n"
            "       loadgen idle --port P [--host 127.0.0.1] [--path /] [--connections 10000]\n"
            "                    [--timeout 60] [--max-pending 100]\n");
}

static int parse_num(const char *name, const char *s, double lo, double hi, double *out)
{
    char *e;
    double v;

    errno = 0;
    v = strtod(s, &e);
    if (errno || e == s || *e != '\0' || v < lo || v > hi) {
        fprintf(stderr, "loadgen: bad value for %s: %s\n", name, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv)
{
    int i;
    double v;

    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        exit(0);
    }
    if (strcmp(argv[1], "ws") == 0) {
        opt.mode = MODE_WS;
        opt.path = "/ws";
        opt.nconn = 50;
        opt.timeout = 10;
    } else if (strcmp(argv[1], "idle") == 0) {
        opt.mode = MODE_IDLE;
        opt.path = "/";
        opt.nconn = 10000;
        opt.timeout = 60;
    } else {
        usage(stderr);
        return -1;
    }
    opt.host = "127.0.0.1";
    opt.inflight = 16;
    opt.size = 64;
    opt.duration = 4;
    opt.warmup = 1;
    /* Below Mongoose's listen backlog of 128: more would overflow a slow
     * server's accept queue and stall on SYN retransmits. */
    opt.max_pending = 100;

    for (i = 2; i < argc; i++) {
        const char *name = argv[i], *val;
        const char *eq = strchr(name, '=');
        char key[32];

        if (strncmp(name, "--", 2) != 0) {
            fprintf(stderr, "loadgen: unexpected argument: %s\n", name);
            return -1;
        }
        if (eq != NULL) {
            size_t kl = (size_t)(eq - name);
            if (kl >= sizeof key)
                kl = sizeof key - 1;
            memcpy(key, name, kl);
            key[kl] = '\0';
            name = key;
            val = eq + 1;
        } else if (strcmp(name, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(name, "--text") == 0) {
            opt.text = 1;
            continue;
        } else if (strcmp(name, "--rsv1") == 0) {
            opt.rsv1 = 1;
            continue;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            fprintf(stderr, "loadgen: %s needs a value\n", name);
            return -1;
        }
        if (strcmp(name, "--host") == 0) {
            opt.host = val;
        } else if (strcmp(name, "--payload") == 0) {
            opt.payload = val;
        } else if (strcmp(name, "--extensions") == 0) {
            if (strpbrk(val, "\r\n") != NULL || strlen(val) > 512) {
                fprintf(stderr, "loadgen: --extensions must be one short header value\n");
                return -1;
            }
            opt.extensions = val;
        } else if (strcmp(name, "--path") == 0) {
            if (val[0] != '/' || strpbrk(val, " \r\n") != NULL) {
                fprintf(stderr, "loadgen: --path must start with / and have no spaces\n");
                return -1;
            }
            opt.path = val;
        } else if (strcmp(name, "--port") == 0) {
            if (parse_num(name, val, 1, 65535, &v) < 0)
                return -1;
            opt.port = (int)v;
        } else if (strcmp(name, "--connections") == 0) {
            if (parse_num(name, val, 1, 1000000, &v) < 0)
                return -1;
            opt.nconn = (int)v;
        } else if (strcmp(name, "--inflight") == 0) {
            if (parse_num(name, val, 1, 1000000, &v) < 0)
                return -1;
            opt.inflight = (int)v;
        } else if (strcmp(name, "--size") == 0) {
            if (parse_num(name, val, 0, 64 * 1024 * 1024, &v) < 0)
                return -1;
            opt.size = (long)v;
        } else if (strcmp(name, "--duration") == 0) {
            if (parse_num(name, val, 0.001, 1e6, &v) < 0)
                return -1;
            opt.duration = v;
        } else if (strcmp(name, "--warmup") == 0) {
            if (parse_num(name, val, 0, 1e6, &v) < 0)
                return -1;
            opt.warmup = v;
        } else if (strcmp(name, "--timeout") == 0) {
            if (parse_num(name, val, 0.001, 1e6, &v) < 0)
                return -1;
            opt.timeout = v;
        } else if (strcmp(name, "--max-pending") == 0) {
            if (parse_num(name, val, 1, 1000000, &v) < 0)
                return -1;
            opt.max_pending = (int)v;
        } else {
            fprintf(stderr, "loadgen: unknown option: %s\n", name);
            return -1;
        }
    }
    if (opt.port == 0) {
        fprintf(stderr, "loadgen: --port is required\n");
        return -1;
    }
    return 0;
}

static int resolve(void)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)&opt.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&opt.addr;
    const char *host = strcmp(opt.host, "localhost") == 0 ? "127.0.0.1" : opt.host;

    memset(&opt.addr, 0, sizeof opt.addr);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)opt.port);
        opt.addr_len = sizeof *a4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)opt.port);
        opt.addr_len = sizeof *a6;
        return 0;
    }
    fprintf(stderr, "loadgen: --host must be a numeric IPv4/IPv6 address: %s\n", opt.host);
    return -1;
}

static int raise_nofile(rlim_t need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("loadgen: getrlimit");
        return -1;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, "loadgen: %lu connections need %lu file descriptors, but the hard "
                        "limit is %lu (raise it with ulimit -Hn or prlimit)\n",
                (unsigned long)opt.nconn, (unsigned long)need, (unsigned long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        perror("loadgen: setrlimit(RLIMIT_NOFILE)");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int i, rc;

    if (parse_args(argc, argv) < 0 || resolve() < 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    /* A closed stdin/stdout/stderr would be reused by a socket. */
    for (i = 0; i < 3; i++) {
        if (fcntl(i, F_GETFD) < 0) {
            if (i == 0)
                g_watch_stdin = 0;
            if (open("/dev/null", O_RDWR) != i)
                return 1;
        }
    }
    if (raise_nofile((rlim_t)opt.nconn + 32) < 0)
        return 1;
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    g_conns = calloc((size_t)opt.nconn, sizeof *g_conns);
    g_retry = calloc((size_t)opt.nconn, sizeof *g_retry);
    if (g_ep < 0 || g_conns == NULL || g_retry == NULL) {
        perror("loadgen: setup");
        return 1;
    }
    for (i = 0; i < opt.nconn; i++)
        g_conns[i].fd = -1;

    if (opt.mode == MODE_IDLE) {
        /* Blocked except inside epoll_pwait/ppoll, so a signal can never slip
         * in between checking g_stop and going to sleep. */
        struct sigaction sa;
        sigset_t set;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, &g_origmask);
        g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                         "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", opt.path);
        if (g_request_len >= sizeof g_request) {
            fprintf(stderr, "loadgen: --path is too long\n");
            return 1;
        }
        rc = run_idle();
    } else {
        sigprocmask(SIG_BLOCK, NULL, &g_origmask);
        if (ws_build() < 0)
            return 1;
        rc = run_ws();
    }
    for (i = 0; i < opt.nconn; i++)
        if (g_conns[i].fd >= 0)
            close(g_conns[i].fd);
    return rc;
}
