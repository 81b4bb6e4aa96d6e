/* pymongoose C helpers for the ASGI server. See asgi.h. */
#include <string.h>

#include "mongoose.h"
#include "glue.h"
#include "asgi.h"

int pymg_asgi_send(struct mg_connection *c, const char *data, size_t len, int end) {
  if (len > 0 && !mg_send(c, data, len)) return 0;
  if (end) c->is_resp = 0;
  /* Write at once instead of at the next poll: the response leaves now, and the
   * poll that would only have flushed it is saved. Plain TCP only (TLS records
   * are made in the poll); an error is left for the poll to find. */
  if (c->send.len > 0 && !c->is_tls && !c->is_closing && !c->is_resolving &&
      !c->is_connecting && !c->is_listening && !c->is_udp) {
    long n = mg_io_send(c, c->send.buf, c->send.len);
    if (n > 0) mg_iobuf_del(&c->send, 0, (size_t) n);
  }
  return c->send.len == 0 && c->recv.len == 0 ? 2 : 1;
}

void pymg_asgi_ws_accept(struct mg_connection *c, const char *key, size_t key_len,
                         const char *extra_headers) {
  /* mg_ws_upgrade reads only Sec-WebSocket-Key and Sec-WebSocket-Protocol
   * from the request. The latter is left out on purpose: Mongoose would echo
   * every protocol the client offered, while ASGI lets the application pick
   * one (it arrives in extra_headers). */
  struct mg_http_message hm;
  memset(&hm, 0, sizeof(hm));
  hm.headers[0].name = mg_str("Sec-WebSocket-Key");
  hm.headers[0].value = mg_str_n(key, key_len);
  if (extra_headers != NULL && extra_headers[0] != '\0') {
    mg_ws_upgrade(c, &hm, "%s", extra_headers);
  } else {
    mg_ws_upgrade(c, &hm, NULL);
  }
}
