/* pymongoose TLS glue: Mongoose's built-in TLS 1.3 engine (MG_TLS_BUILTIN)
 * set up from C, at the moment Mongoose needs it, instead of from a batched
 * Python event that would arrive too late.
 *
 * A listener keeps one pymg_tls_conf and applies it to every connection it
 * accepts, on that connection's MG_EV_OPEN (before any byte is read). A
 * client keeps its conf until MG_EV_CONNECT and applies it there, before
 * Mongoose starts the handshake. A client or server whose URL asks for TLS
 * (https, wss, ...) and has no conf by then is closed with MG_EV_ERROR, never
 * left to talk in plain text.
 *
 * Read twice, like glue.h: by the C compiler (tls.c, glue.c) and by cffi as a
 * cdef. Plain declarations only. */

/* Copies of the PEM material, owned by whoever holds the pointer. */
struct pymg_tls_conf;

/* A conf holding copies of the given strings (a NULL pointer or a zero
 * length: not given). NULL when out of memory. */
struct pymg_tls_conf *pymg_tls_conf_new(const char *ca, size_t ca_len, const char *cert,
                                        size_t cert_len, const char *key, size_t key_len,
                                        const char *name, size_t name_len,
                                        int skip_verification,
                                        unsigned handshake_timeout_ms);
void pymg_tls_conf_free(struct pymg_tls_conf *conf);

/* What pymg_tls_set did with the conf it was given (it always takes it). */
enum pymg_tls_set_result {
  PYMG_TLS_FAILED = 0,  /* Mongoose refused it: MG_EV_ERROR raised, closing */
  PYMG_TLS_STORED = 1,  /* kept for later: a listener's accepts, a client's connect */
  PYMG_TLS_STARTED = 2, /* applied now: the handshake starts with the next I/O */
  PYMG_TLS_ALREADY = 3  /* the connection already speaks TLS: conf freed, nothing done */
};
int pymg_tls_set(struct mg_connection *c, struct pymg_tls_conf *conf);

/* Drop TLS options from c: a listener's or a not yet connected client's are
 * forgotten (connections that still want TLS then fail with MG_EV_ERROR
 * rather than fall back to plain text); a connection with a TLS session is
 * closed, since its peer's bytes could no longer be read. */
void pymg_tls_free(struct mg_connection *c);

/* A listener that speaks TLS with options given per connection: its handler
 * calls tls_init on each connection it accepts, in MG_EV_ACCEPT (cymongoose's
 * way; one that does not is failed, see pymg_tls_after_handler). Options it
 * held are dropped. */
void pymg_tls_listen_per_connection(struct mg_connection *c);

/* Whether a listener holds TLS options for the connections it accepts. */
int pymg_tls_listener_has_conf(struct mg_connection *c);

/* The DER form (SEQUENCE of two INTEGERs, minimal) of a P-256 ECDSA signature
 * given as r||s (64 bytes); writes at most 72 bytes to out, returns how many.
 * build_ffi.py's MONGOOSE_FIXES makes Mongoose's CertificateVerify use it. */
size_t pymg_tls_der_signature(const uint8_t *sig, uint8_t *out);
