/* libFuzzer target: the Mongoose helpers pymongoose.utils and the message
 * views wrap, called with the buffer sizes the Python layer passes, plus our
 * own pymg_match (csrc/util.c). Byte 0 picks the function; the rest is split
 * at the first NUL into two arguments (data and path/pattern/name). Every
 * argument is a private heap copy of exactly its length, so a read past it is
 * caught by ASan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mongoose.h"
#include "util.h"

static char *copy(const uint8_t *p, size_t n, int nul) {
  char *s = (char *) malloc(n + (nul ? 1 : 0) + 1);
  if (s == NULL) abort();
  if (n > 0) memcpy(s, p, n);
  if (nul) s[n] = '\0';
  return s;
}

/* utils._json_path refuses, before calling Mongoose, a path that is not "$"
 * followed by .key and [index] steps, an index being ASCII digits up to INT_MAX:
 * mg_json_get reads any bytes between brackets as digits and overflows an int
 * (undefined behaviour; found by this target, kept out of reach by that check,
 * see tests/test_utils.py::test_json_bad_paths_raise_value_error). So paths are
 * checked the same way here, and looked up step by step as _json_token does:
 * "$" + step inside the previous step's value. Returns the next step's length,
 * 0 at the end, -1 for a path Python refuses. */
static long next_step(const char *p) {
  const char *q = p;
  if (*q == '\0') return 0;
  if (*q == '[') {
    long long v = 0;
    const char *digits = ++q;
    while (*q >= '0' && *q <= '9') {
      v = v * 10 + (*q++ - '0');
      if (v > 2147483647LL) return -1;
    }
    if (q == digits || *q != ']') return -1;
    return (long) (q + 1 - p);
  }
  if (*q != '.') return -1;
  q++;
  while (*q != '\0' && *q != '.' && *q != '[') q++;
  return q - p > 1 ? (long) (q - p) : -1;
}

static void json(const char *a, size_t alen, const char *b) {
  struct mg_str v = mg_str_n(a, alen);
  const char *p;
  char step[256];
  int toklen = 0, ofs;
  long n;
  double d;
  bool flag;
  if (b[0] != '$') return;
  for (p = b + 1; (n = next_step(p)) != 0; p += n) {
    if (n < 0) return;
  }
  if (mg_json_get(v, "$", &toklen) < 0) return;
  for (p = b + 1; (n = next_step(p)) > 0; p += n) {
    if ((size_t) n + 2 > sizeof(step)) return;
    step[0] = '$';
    memcpy(step + 1, p, (size_t) n);
    step[n + 1] = '\0';
    ofs = mg_json_get(v, step, &toklen);
    if (ofs < 0) return;
    if (toklen < 0 || (size_t) ofs + (size_t) toklen > v.len) abort();
    v = mg_str_n(v.buf + ofs, (size_t) toklen);
  }
  (void) mg_json_get_num(v, "$", &d);
  (void) mg_json_get_bool(v, "$", &flag);
}

static void match(const char *a, size_t alen, const char *b, size_t blen) {
  /* utils.match: one capture per wildcard of the pattern. */
  size_t ncaps = 0, i, *caps;
  int found;
  for (i = 0; i < blen; i++) ncaps += b[i] == '?' || b[i] == '*' || b[i] == '#';
  caps = (size_t *) malloc((2 * ncaps + 1) * sizeof(size_t));
  if (caps == NULL) abort();
  found = pymg_match(a, alen, b, blen, caps, ncaps);
  if (found == 1) {
    for (i = 0; i < ncaps; i++) {
      if (caps[2 * i] > alen || caps[2 * i + 1] > alen - caps[2 * i]) abort();
    }
  }
  free(caps);
}

static void url(const char *a) {
  /* utils.url_*: NUL-terminated URLs. */
  struct mg_str s;
  (void) mg_url_port(a);
  (void) mg_url_is_ssl(a);
  s = mg_url_host(a);
  (void) s;
  s = mg_url_user(a);
  s = mg_url_pass(a);
  (void) mg_url_uri(a);
}

static void encodings(const char *a, size_t alen) {
  size_t size = 3 * alen + 4, n;
  char *out = (char *) malloc(size);
  if (out == NULL) abort();
  n = mg_url_encode(a, alen, out, size);
  if (n >= size) abort();
  free(out);
  size = (alen + 2) / 3 * 4 + 1;
  out = (char *) malloc(size);
  if (out == NULL) abort();
  n = mg_base64_encode((const unsigned char *) a, alen, out, size);
  if (n >= size) abort();
  free(out);
  /* utils.base64_decode validates first; the C call must be safe regardless. */
  size = alen / 4 * 3 + 1;
  out = (char *) malloc(size);
  if (out == NULL) abort();
  n = mg_base64_decode(a, alen, out, size);
  if (n >= size && n != 0) abort();
  free(out);
}

static void form(const char *a, size_t alen, const char *b) {
  /* utils.http_var and HttpMessage.query_var: output as large as the input. */
  struct mg_str src = mg_str_n(a, alen);
  char *out = (char *) malloc(alen + 1), small[4];
  struct mg_http_part part;
  size_t ofs = 0;
  int n;
  if (out == NULL) abort();
  n = mg_http_get_var(&src, b, out, alen + 1);
  if (n > (int) alen) abort();
  (void) mg_http_get_var(&src, b, small, sizeof(small));
  free(out);
  (void) mg_http_get_header_var(src, mg_str(b));
  while ((ofs = mg_http_next_multipart(src, ofs, &part)) > 0) {
    if (ofs > alen) abort();
  }
}

static void http_parse(const char *a, size_t alen) {
  struct mg_http_message hm;
  int n = mg_http_parse(a, alen, &hm);
  if (n > 0) {
    if ((size_t) n > alen) abort();
    (void) mg_http_get_header(&hm, "Host");
    (void) mg_http_status(&hm);
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void) argc;
  (void) argv;
  mg_log_set(MG_LL_NONE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *sep;
  size_t alen, blen;
  char *a, *b, *az;
  if (size < 1) return 0;
  sep = (const uint8_t *) memchr(data + 1, 0, size - 1);
  alen = sep != NULL ? (size_t) (sep - (data + 1)) : size - 1;
  blen = sep != NULL ? size - 1 - alen - 1 : 0;
  a = copy(data + 1, alen, 0);
  az = copy(data + 1, alen, 1);
  b = copy(sep != NULL ? sep + 1 : data + size, blen, 1);
  switch (data[0] % 7) {
    case 0: json(a, alen, b); break;
    case 1: match(a, alen, b, blen); break;
    case 2: url(az); break;
    case 3: encodings(a, alen); break;
    case 4: form(a, alen, b); break;
    case 5: http_parse(a, alen); break;
    default: {
      uint8_t digest[32];
      (void) mg_crc32(0, a, alen);
      mg_sha256(digest, (uint8_t *) a, alen);
      mg_hmac_sha256(digest, (uint8_t *) b, blen, (uint8_t *) a, alen);
      pymg_md5(a, alen, digest);
      pymg_sha1(a, alen, digest);
      break;
    }
  }
  free(a);
  free(az);
  free(b);
  return 0;
}
