/* cdef: Mongoose MQTT (mongoose.h, "MQTT" section). Used by pymongoose/mqtt.py. */

static const int MQTT_CMD_CONNECT;
static const int MQTT_CMD_CONNACK;
static const int MQTT_CMD_PUBLISH;
static const int MQTT_CMD_PUBACK;
static const int MQTT_CMD_PUBREC;
static const int MQTT_CMD_PUBREL;
static const int MQTT_CMD_PUBCOMP;
static const int MQTT_CMD_SUBSCRIBE;
static const int MQTT_CMD_SUBACK;
static const int MQTT_CMD_UNSUBSCRIBE;
static const int MQTT_CMD_UNSUBACK;
static const int MQTT_CMD_PINGREQ;
static const int MQTT_CMD_PINGRESP;
static const int MQTT_CMD_DISCONNECT;
static const int MQTT_CMD_AUTH;

/* MQTT 5 property identifiers. */
static const int MQTT_PROP_PAYLOAD_FORMAT_INDICATOR;
static const int MQTT_PROP_MESSAGE_EXPIRY_INTERVAL;
static const int MQTT_PROP_CONTENT_TYPE;
static const int MQTT_PROP_RESPONSE_TOPIC;
static const int MQTT_PROP_CORRELATION_DATA;
static const int MQTT_PROP_SUBSCRIPTION_IDENTIFIER;
static const int MQTT_PROP_SESSION_EXPIRY_INTERVAL;
static const int MQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER;
static const int MQTT_PROP_SERVER_KEEP_ALIVE;
static const int MQTT_PROP_AUTHENTICATION_METHOD;
static const int MQTT_PROP_AUTHENTICATION_DATA;
static const int MQTT_PROP_REQUEST_PROBLEM_INFORMATION;
static const int MQTT_PROP_WILL_DELAY_INTERVAL;
static const int MQTT_PROP_REQUEST_RESPONSE_INFORMATION;
static const int MQTT_PROP_RESPONSE_INFORMATION;
static const int MQTT_PROP_SERVER_REFERENCE;
static const int MQTT_PROP_REASON_STRING;
static const int MQTT_PROP_RECEIVE_MAXIMUM;
static const int MQTT_PROP_TOPIC_ALIAS_MAXIMUM;
static const int MQTT_PROP_TOPIC_ALIAS;
static const int MQTT_PROP_MAXIMUM_QOS;
static const int MQTT_PROP_RETAIN_AVAILABLE;
static const int MQTT_PROP_USER_PROPERTY;
static const int MQTT_PROP_MAXIMUM_PACKET_SIZE;
static const int MQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE;
static const int MQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE;
static const int MQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE;

static const int MQTT_PROP_TYPE_BYTE;
static const int MQTT_PROP_TYPE_STRING;
static const int MQTT_PROP_TYPE_STRING_PAIR;
static const int MQTT_PROP_TYPE_BINARY_DATA;
static const int MQTT_PROP_TYPE_VARIABLE_INT;
static const int MQTT_PROP_TYPE_INT;
static const int MQTT_PROP_TYPE_SHORT;

struct mg_mqtt_prop {
  uint8_t id;
  uint32_t iv;
  struct mg_str key;
  struct mg_str val;
  ...;
};

struct mg_mqtt_opts {
  struct mg_str user;
  struct mg_str pass;
  struct mg_str client_id;
  struct mg_str topic;
  struct mg_str message;
  uint8_t qos;
  uint8_t version;
  uint16_t keepalive;
  uint16_t retransmit_id;
  bool retain;
  bool clean;
  struct mg_mqtt_prop *props;
  size_t num_props;
  struct mg_mqtt_prop *will_props;
  size_t num_will_props;
  ...;
};

struct mg_mqtt_message {
  struct mg_str topic;
  struct mg_str data;
  struct mg_str dgram;
  uint16_t id;
  uint8_t cmd;
  uint8_t qos;
  uint8_t ack;
  size_t props_start;
  size_t props_size;
  ...;
};

uint16_t mg_mqtt_pub(struct mg_connection *c, const struct mg_mqtt_opts *opts);
void mg_mqtt_sub(struct mg_connection *, const struct mg_mqtt_opts *opts);
void mg_mqtt_unsub(struct mg_connection *c, const struct mg_mqtt_opts *opts);
void mg_mqtt_send_header(struct mg_connection *, uint8_t cmd, uint8_t flags, uint32_t len);
void mg_mqtt_ping(struct mg_connection *);
void mg_mqtt_pong(struct mg_connection *);
/* Mongoose reads opts even on MQTT 3.1.1 paths: never pass NULL. */
void mg_mqtt_disconnect(struct mg_connection *, const struct mg_mqtt_opts *);
size_t mg_mqtt_next_prop(struct mg_mqtt_message *, struct mg_mqtt_prop *, size_t ofs);
