/* libFuzzer target: Mongoose's MQTT packet parser, mg_mqtt_parse, for MQTT
 * 3.1.1 and 5, and its property iterator, on whatever a broker could send.
 * Byte 0 picks the protocol version; the rest is the packet stream, parsed
 * packet after packet as Mongoose's MQTT handler does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mongoose.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void) argc;
  (void) argv;
  mg_log_set(MG_LL_NONE);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t version;
  size_t ofs = 1;
  if (size < 1) return 0;
  version = (data[0] & 1) ? 5 : 4;
  while (ofs < size) {
    struct mg_mqtt_message mm;
    struct mg_mqtt_prop prop;
    size_t pofs = 0;
    /* A private copy, exactly as long as what remains: reads past it are caught. */
    size_t left = size - ofs;
    uint8_t *buf = (uint8_t *) malloc(left);
    int rc;
    if (buf == NULL) abort();
    memcpy(buf, data + ofs, left);
    rc = mg_mqtt_parse(buf, left, version, &mm);
    if (rc != MQTT_OK) {
      free(buf);
      break;
    }
    if (mm.dgram.len == 0 || mm.dgram.len > left) abort();
    if (mm.topic.len > 0 && (mm.topic.buf < (char *) buf ||
                             mm.topic.buf + mm.topic.len > (char *) buf + left)) {
      abort();
    }
    if (mm.data.len > 0 && (mm.data.buf < (char *) buf ||
                            mm.data.buf + mm.data.len > (char *) buf + left)) {
      abort();
    }
    if (version == 5 && mm.props_size > 0) {
      while ((pofs = mg_mqtt_next_prop(&mm, &prop, pofs)) > 0) {
      }
    }
    ofs += mm.dgram.len;
    free(buf);
  }
  return 0;
}
