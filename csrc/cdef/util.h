/* cdef: Mongoose utilities (mongoose.h: "JSON", "URL", "HTTP" variables and
 * multipart, hashing, base64, "Utilities"). Used by pymongoose/utils.py. */

/* JSON */
static const int MG_JSON_MAX_DEPTH;
int mg_json_get(struct mg_str json, const char *path, int *toklen);
bool mg_json_get_num(struct mg_str json, const char *path, double *v);
bool mg_json_get_bool(struct mg_str json, const char *path, bool *v);

/* URL */
unsigned short mg_url_port(const char *url);
bool mg_url_is_ssl(const char *url);
struct mg_str mg_url_host(const char *url);
struct mg_str mg_url_user(const char *url);
struct mg_str mg_url_pass(const char *url);
const char *mg_url_uri(const char *url);
size_t mg_url_encode(const char *s, size_t n, char *buf, size_t len);

/* multipart/form-data */
struct mg_http_part {
  struct mg_str name;
  struct mg_str filename;
  struct mg_str body;
};
size_t mg_http_next_multipart(struct mg_str, size_t, struct mg_http_part *);

/* Digests, base64, checksums. Mongoose never writes through the data
 * pointers, so Python bytes pass without a copy. */
void mg_sha256(uint8_t dst[32], uint8_t *data, size_t datasz);
void mg_hmac_sha256(uint8_t dst[32], uint8_t *key, size_t keysz, uint8_t *data,
                    size_t datasz);
size_t mg_base64_encode(const unsigned char *p, size_t n, char *buf, size_t);
size_t mg_base64_decode(const char *src, size_t n, char *dst, size_t);
uint32_t mg_crc32(uint32_t crc, const char *buf, size_t len);

/* Time and randomness */
uint64_t mg_millis(void);
/* Wall clock = mg_millis() + this; what TLS checks certificate dates against.
 * pymongoose sets it from the host's clock before each TLS set-up (csrc/tls.c). */
extern uint64_t mg_boot_timestamp_ms;
uint64_t mg_now(void);
bool mg_random(void *buf, size_t len);
char *mg_random_str(char *buf, size_t len);
