/* Which platform-specific paths this build compiled in (see pymg_compat.h).
 *
 * Read twice, like glue.h: by the C compiler (portable.c) and by cffi as a cdef.
 * Plain declarations only. */

enum {
  PYMG_FEATURE_EPOLL = 1,        /* Mongoose waits with epoll (else poll()) */
  PYMG_FEATURE_MALLOC_TRIM = 2,  /* freed buffers are handed back with malloc_trim */
  PYMG_FEATURE_MSG_NOSIGNAL = 4, /* the wakeup send() uses MSG_NOSIGNAL */
  PYMG_FEATURE_FORCED_PORTABLE = 8 /* built with PYMONGOOSE_PORTABLE=1 */
};

/* The PYMG_FEATURE_* bits of this build. */
int pymg_build_features(void);
