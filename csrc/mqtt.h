/* pymongoose MQTT glue: Mongoose's MQTT framing with our own protocol handler in
 * front of it (csrc/mqtt.c). Like glue.h, read both by the C compiler and by
 * cffi as a cdef: plain declarations only.
 *
 * Every MQTT connection, client or broker side, is framed by pymg_mqtt's
 * handler instead of Mongoose's: a packet whose remaining length exceeds the
 * connection's `max_packet` closes it (MG_EV_ERROR says why) instead of
 * growing the receive buffer; MQTT 5 PUBLISH properties are parsed whatever
 * the payload's size. Broker-side connections are also checked before any
 * event reaches Python (CONNECT first and once, known packet types and
 * flags, PUBLISH topics non-empty valid UTF-8 without wildcards, QoS < 3),
 * learn their MQTT version from CONNECT, and are closed when a CONNECT or a
 * started packet does not arrive within `timeout_ms` or the client is silent
 * for 1.5 times its keepalive. Clients send PINGREQ when they wrote nothing
 * for `keepalive` seconds. */

/* Default largest packet (remaining length) accepted, in bytes. */
enum { PYMG_MQTT_MAX_PACKET = 16777216 };

struct mg_connection *pymg_mqtt_connect(struct pymg_manager *m, const char *url,
                                        const struct mg_mqtt_opts *opts, uint64_t interest,
                                        uint32_t max_packet);
struct mg_connection *pymg_mqtt_listen(struct pymg_manager *m, const char *url,
                                       uint64_t interest, uint32_t max_packet,
                                       uint32_t timeout_ms, int *err);
/* 4 or 5 for an MQTT connection (a broker-side one says 4 until its CONNECT), 0 otherwise. */
int pymg_mqtt_version(struct mg_connection *c);
/* A broker-side connection whose handler resolves MQTT 5 topic aliases: a PUBLISH with
 * an empty topic passes to it. keepalive_s >= 0 replaces the client's keepalive (Server
 * Keep Alive). Does nothing to other connections. PUBACK/PUBREC stay queued by C before
 * the handler runs; the poll writes them after it returns. */
void pymg_mqtt_broker_mode(struct mg_connection *c, int keepalive_s);
/* The same bytes queued on n connections (a broker's fan-out); a connection whose
 * buffer cannot grow gets MG_EV_ERROR and closes. Returns how many failed. */
size_t pymg_send_many(struct mg_connection **cs, size_t n, const void *buf, size_t len);
/* Text for a CONNACK return code (MQTT 3.1.1) or reason code (MQTT 5). */
const char *pymg_mqtt_connack_reason(int code, int version);
