/* cdef: Mongoose HTTP (mongoose.h, "HTTP" section). */

static const int MG_MAX_HTTP_HEADERS;

struct mg_http_header {
  struct mg_str name;
  struct mg_str value;
};

struct mg_http_message {
  struct mg_str method, uri, query, proto;
  struct mg_http_header headers[...];
  struct mg_str body;
  struct mg_str head;
  struct mg_str message;
};

struct mg_str *mg_http_get_header(struct mg_http_message *, const char *name);
int mg_http_get_var(const struct mg_str *, const char *name, char *, size_t);
struct mg_str mg_http_get_header_var(struct mg_str s, struct mg_str v);
/* Declared with char * (C takes char * too): Python bytes pass without a copy. */
void mg_http_write_chunk(struct mg_connection *c, const char *buf, size_t len);
void mg_http_bauth(struct mg_connection *, const char *user, const char *pass);
