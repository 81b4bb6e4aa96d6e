/* pymongoose C helpers for the utility functions (pymongoose/utils.py): the
 * few that are not one plain Mongoose call.
 *
 * Read twice, like glue.h: by the C compiler (util.c) and by cffi as a cdef.
 * Plain declarations only. */

/* Mongoose's glob match, mg_match(), of s against pattern, with its captures.
 * Returns 1 on a match, 0 on none, -1 when the capture array cannot be
 * allocated. On a match, caps receives the first ncaps captures as
 * (offset into s, length) pairs: 2 * ncaps values. */
int pymg_match(const char *s, size_t s_len, const char *pattern, size_t pattern_len,
               size_t *caps, size_t ncaps);

/* One-shot digests of len bytes at data (Mongoose offers only init/update/
 * final for these two). */
void pymg_md5(const char *data, size_t len, unsigned char digest[16]);
void pymg_sha1(const char *data, size_t len, unsigned char digest[20]);
