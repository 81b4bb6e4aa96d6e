/* pymongoose build report: which platform-specific paths are compiled in. See portable.h. */
#include "mongoose.h"
#include "pymg_compat.h"
#include "portable.h"

int pymg_build_features(void) {
  int features = 0;
#if MG_ENABLE_EPOLL
  features |= PYMG_FEATURE_EPOLL;
#endif
#if PYMG_HAVE_MALLOC_TRIM
  features |= PYMG_FEATURE_MALLOC_TRIM;
#endif
#if PYMG_HAVE_MSG_NOSIGNAL
  features |= PYMG_FEATURE_MSG_NOSIGNAL;
#endif
#if defined(PYMG_FORCE_PORTABLE)
  features |= PYMG_FEATURE_FORCED_PORTABLE;
#endif
  return features;
}
