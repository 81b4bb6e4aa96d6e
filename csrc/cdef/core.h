/* cdef: Mongoose core (mongoose.h, "Core" and "Strings" sections).
 * Structs are partial ("...;"): cffi takes their real layout from the
 * compiler, so only the fields Python reads are named here. */

struct mg_str {
  char *buf;
  size_t len;
};

struct mg_iobuf {
  unsigned char *buf;
  size_t size;
  size_t len;
  ...;
};

struct mg_mgr { ...; };

struct mg_connection {
  struct mg_mgr *mgr;
  unsigned long id;
  struct mg_iobuf recv;
  struct mg_iobuf send;
  ...;
};

/* Event codes: values come from the compiled library, never from here. */
static const int MG_EV_ERROR;
static const int MG_EV_OPEN;
static const int MG_EV_POLL;
static const int MG_EV_RESOLVE;
static const int MG_EV_CONNECT;
static const int MG_EV_ACCEPT;
static const int MG_EV_TLS_HS;
static const int MG_EV_READ;
static const int MG_EV_WRITE;
static const int MG_EV_CLOSE;
static const int MG_EV_HTTP_HDRS;
static const int MG_EV_HTTP_MSG;
static const int MG_EV_WS_OPEN;
static const int MG_EV_WS_MSG;
static const int MG_EV_WS_CTL;
static const int MG_EV_MQTT_CMD;
static const int MG_EV_MQTT_MSG;
static const int MG_EV_MQTT_OPEN;
static const int MG_EV_SNTP_TIME;
static const int MG_EV_WAKEUP;
static const int MG_EV_MDNS_REQ;
static const int MG_EV_MDNS_RESP;
static const int MG_EV_MODBUS_REQ;
static const int MG_EV_USER;

/* Log levels. */
static const int MG_LL_NONE;
static const int MG_LL_ERROR;
static const int MG_LL_INFO;
static const int MG_LL_DEBUG;
static const int MG_LL_VERBOSE;
extern int mg_log_level;

/* Declared with char * (C takes void *) so Python bytes pass without a copy. */
bool mg_send(struct mg_connection *, const char *, size_t);
