/* pymongoose C helper for outside event loops (asyncio). See aio.h. */
#include "mongoose.h"
#include "glue.h"
#include "aio.h"

int pymg_prepare_wait(struct pymg_manager *m) {
  struct mg_connection *c;
  int soon = 0;
  for (c = pymg_manager_mgr(m)->conns; c != NULL; c = c->next) {
    if (c->is_closing || (c->is_draining && c->send.len == 0) || c->rtls.len > 0 ||
        mg_tls_pending(c) > 0) {
      soon = 1;
      continue;
    }
#if MG_ENABLE_EPOLL
    /* The same condition as Mongoose's can_write(); sockets not created yet
     * (still resolving) are skipped. */
    if (!c->is_resolving && (c->is_connecting || (c->send.len > 0 && !c->is_tls_hs))) {
      MG_EPOLL_MOD(c, 1);
    }
#endif
  }
  return soon;
}
