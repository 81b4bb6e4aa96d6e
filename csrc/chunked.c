/* The chunked transfer coding of request bodies, RFC 9112 section 7.1. See
 * chunked.h for the grammar. */
#include <stdint.h>
#include <string.h>

#include "chunked.h"

/* RFC 9110 token characters (ALPHA, DIGIT, !#$%&'*+-.^_`|~), one bit each. */
static const uint32_t s_tchar[8] = {0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff,
                                    0, 0, 0, 0};

static int tchar(unsigned char ch) {
  return (int) ((s_tchar[ch >> 5] >> (ch & 31)) & 1U);
}

static int hex(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Where a line that has not ended yet stands: incomplete, or too long. */
static int64_t unfinished(size_t len) {
  return len >= PYMG_CHUNK_LINE_MAX ? -1 : 0;
}

/* The CRLF at buf[at]: the line's length, 0 (more needed) or -1. */
static int64_t line_end(const unsigned char *buf, size_t len, size_t at) {
  if (at >= len) return unfinished(len);
  if (buf[at] != '\r') return -1;
  if (at + 1 >= len) return unfinished(len);
  if (buf[at + 1] != '\n' || at + 2 > PYMG_CHUNK_LINE_MAX) return -1;
  return (int64_t) (at + 2);
}

static size_t skip_bws(const unsigned char *buf, size_t len, size_t at) {
  while (at < len && (buf[at] == ' ' || buf[at] == '\t')) at++;
  return at;
}

/* A token or quoted-string at buf[at]: the offset after it, 0 when it may
 * still complete, (size_t) -1 when malformed. */
static size_t ext_value(const unsigned char *buf, size_t len, size_t at) {
  size_t start = at;
  if (at >= len) return 0;
  if (buf[at] != '"') {
    while (at < len && tchar(buf[at])) at++;
    return at == start ? (size_t) -1 : at == len ? 0 : at;
  }
  for (at++; at < len; at++) {
    unsigned char ch = buf[at];
    if (ch == '"') return at + 1;
    if (ch == '\\') {
      if (++at >= len) return 0;
      ch = buf[at];
      if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) return (size_t) -1;
    } else if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
      return (size_t) -1; /* qdtext: no CTL but HTAB (a bare CR included) */
    }
  }
  return 0;
}

int64_t pymg_chunk_size_line(const unsigned char *buf, size_t len, uint64_t *size) {
  size_t at = 0, digits = 0;
  uint64_t value = 0;
  for (; at < len && hex(buf[at]) >= 0; at++) {
    if (value == 0 && buf[at] == '0') continue; /* leading zeros */
    if (++digits > 15) return -1;                /* 2^60 and over: no body is that big */
    value = value * 16 + (uint64_t) hex(buf[at]);
  }
  if (at == 0) return len == 0 ? 0 : -1;
  *size = value;
  for (;;) {
    size_t ws = skip_bws(buf, len, at), next, name;
    if (ws >= len) return unfinished(len);
    if (buf[ws] != ';') return ws != at ? -1 : line_end(buf, len, at); /* no BWS before CRLF */
    name = at = skip_bws(buf, len, ws + 1);
    while (at < len && tchar(buf[at])) at++;
    if (at >= len) return unfinished(len);
    if (at == name) return -1; /* ";" without a name */
    ws = skip_bws(buf, len, at);
    if (ws >= len) return unfinished(len);
    if (buf[ws] != '=') continue; /* a name alone: BWS must lead to ";" */
    next = ext_value(buf, len, skip_bws(buf, len, ws + 1));
    if (next == (size_t) -1) return -1;
    if (next == 0) return unfinished(len);
    at = next;
  }
}

int64_t pymg_chunk_trailer_line(const unsigned char *buf, size_t len, int *last) {
  size_t at = 0;
  *last = 0;
  if (len >= 1 && buf[0] == '\r') {
    int64_t n = line_end(buf, len, 0);
    if (n > 0) *last = 1;
    return n;
  }
  while (at < len && tchar(buf[at])) at++; /* field-name ":" */
  if (at >= len) return unfinished(len);
  if (at == 0 || buf[at] != ':') return -1;
  for (at++; at < len && buf[at] != '\r'; at++) {
    if (buf[at] != '\t' && (buf[at] < 0x20 || buf[at] == 0x7f)) return -1;
  }
  return line_end(buf, len, at);
}

int64_t pymg_chunked_scan(const unsigned char *buf, size_t len, uint64_t *declared,
                          int *plain) {
  size_t at = 0;
  *declared = 0;
  *plain = 1;
  for (;;) {
    uint64_t size = 0;
    int64_t n = pymg_chunk_size_line(buf + at, len - at, &size);
    if (n <= 0) return n;
    if (memchr(buf + at, ';', (size_t) n) != NULL) *plain = 0;
    *declared += size;
    at += (size_t) n;
    if (size == 0) break;
    if (size > len - at || len - at - size < 2) return 0;
    at += (size_t) size;
    if (buf[at] != '\r' || buf[at + 1] != '\n') return -1;
    at += 2;
  }
  for (;;) {
    int last;
    int64_t n = pymg_chunk_trailer_line(buf + at, len - at, &last);
    if (n <= 0) return n;
    at += (size_t) n;
    if (last) return (int64_t) at;
    *plain = 0;
  }
}

int64_t pymg_chunked_flatten(unsigned char *buf, size_t len) {
  size_t at = 0, out = 0, digits, k;
  uint64_t size = 0, v;
  for (;;) {
    int64_t n = pymg_chunk_size_line(buf + at, len - at, &size);
    if (n <= 0) return -1;
    at += (size_t) n;
    if (size == 0) break;
    if (size > len - at) return -1;
    memmove(buf + out, buf + at, (size_t) size); /* out <= at: moves left */
    out += (size_t) size;
    at += (size_t) size + 2;
  }
  if (out == 0) {
    memset(buf, '0', len - 4);
    memcpy(buf + len - 4, "\r\n\r\n", 4);
    return 0;
  }
  for (digits = 0, v = out; v != 0; v >>= 4) digits++;
  if (len < out + 9 + digits) return -1; /* cannot happen: see chunked.h */
  k = len - out - 9;
  memmove(buf + k + 2, buf, out);
  memset(buf, '0', k);
  for (v = out, at = k; v != 0; v >>= 4) buf[--at] = (unsigned char) "0123456789abcdef"[v & 15];
  memcpy(buf + k, "\r\n", 2);
  memcpy(buf + k + 2 + out, "\r\n0\r\n\r\n", 7);
  return (int64_t) out;
}
