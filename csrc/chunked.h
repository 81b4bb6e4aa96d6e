/* The chunked transfer coding of a request body (RFC 9112 section 7.1): one
 * grammar for the buffered path (conn_limits.c, ahead of Mongoose's chunk
 * parser) and the streamed one (glue.c, Connection.stream_body).
 *
 *   chunked-body   = *chunk last-chunk trailer-section CRLF
 *   chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 *   chunk-ext-val  = token / quoted-string
 *   trailer-section = *( field-line CRLF )
 *
 * Extensions are checked and ignored; trailer fields are checked and dropped.
 * Lines end in CRLF only, and no line may exceed PYMG_CHUNK_LINE_MAX bytes.
 *
 * Read twice, like glue.h: by the C compiler and by cffi as a cdef. */

#define PYMG_CHUNK_LINE_MAX 4096

/* The chunk-size line at buf. Returns its length (CRLF included) with *size
 * set, 0 when it is not complete yet, -1 when it is malformed. */
int64_t pymg_chunk_size_line(const unsigned char *buf, size_t len, uint64_t *size);

/* One line of the trailer section at buf: a field line, or the empty line
 * that ends the body (*last set to 1). Returns its length, 0 when not complete
 * yet, -1 when malformed. */
int64_t pymg_chunk_trailer_line(const unsigned char *buf, size_t len, int *last);

/* A whole chunked body at buf. Returns its encoded length once complete, 0
 * while more is needed, -1 when malformed. *declared: the sum of the chunk
 * sizes seen so far (the payload once complete); *plain: 1 while it has no
 * extension and no trailer field (what Mongoose's own parser accepts). */
int64_t pymg_chunked_scan(const unsigned char *buf, size_t len, uint64_t *declared,
                          int *plain);

/* Rewrite the complete chunked body buf[0, len) (pymg_chunked_scan returned
 * len) in place, into the plain form of the same length Mongoose's parser
 * takes: one chunk whose size has leading zeros, the last chunk, no
 * extension, no trailer field. Its length always suffices: every chunk costs
 * at least five bytes of framing and the last chunk five more. Returns the
 * payload length, -1 when buf is not such a body. */
int64_t pymg_chunked_flatten(unsigned char *buf, size_t len);
