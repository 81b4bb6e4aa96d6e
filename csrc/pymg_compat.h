/* What our C uses beyond POSIX, each behind a feature test (never a cdef).
 *
 * Every PYMG_HAVE_* is 1 only where the system offers the feature and the
 * build does not define PYMG_FORCE_PORTABLE (PYMONGOOSE_PORTABLE=1 at build
 * time, which also turns Mongoose's epoll off: it then uses poll()). The
 * portable path is what macOS and the BSDs compile; the forced build runs it
 * on Linux so that CI exercises it.
 *
 * Named with a prefix: csrc/ is on the include path, and a plain name such as
 * compat.h or features.h could shadow a system header. */
#ifndef PYMG_COMPAT_H
#define PYMG_COMPAT_H

#include <stdlib.h> /* defines __GLIBC__ where glibc is the C library */
#include <sys/socket.h>

/* Handing freed heap memory back to the system: glibc keeps it otherwise
 * (other allocators, as on macOS and the BSDs, return large blocks themselves). */
#if defined(__GLIBC__) && !defined(PYMG_FORCE_PORTABLE)
#define PYMG_HAVE_MALLOC_TRIM 1
#include <malloc.h>
#else
#define PYMG_HAVE_MALLOC_TRIM 0
#endif

/* A send() that cannot raise SIGPIPE. Without the flag (macOS) nothing is lost:
 * SIGPIPE is ignored in every process that runs us (Python ignores it at start-up
 * and mg_mgr_init does too). */
#if defined(MSG_NOSIGNAL) && !defined(PYMG_FORCE_PORTABLE)
#define PYMG_HAVE_MSG_NOSIGNAL 1
#define PYMG_MSG_NOSIGNAL MSG_NOSIGNAL
#else
#define PYMG_HAVE_MSG_NOSIGNAL 0
#define PYMG_MSG_NOSIGNAL 0
#endif

/* Mongoose's own choice (mongoose.h): epoll on Linux unless MG_ENABLE_EPOLL is
 * set to 0, poll() everywhere else. Our epoll code follows it, and
 * PYMG_FORCE_PORTABLE builds set MG_ENABLE_EPOLL=0 (build_ffi.py). */
#if defined(PYMG_FORCE_PORTABLE) && defined(MG_ENABLE_EPOLL) && MG_ENABLE_EPOLL
#error "PYMG_FORCE_PORTABLE needs MG_ENABLE_EPOLL=0 (build_ffi.py sets both)"
#endif

#endif
