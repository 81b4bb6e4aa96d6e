/* C only, not a cdef: what protocol modules (mqtt.c) borrow from glue.c so that
 * their connections are routed to Python like every other. */
mg_event_handler_t pymg_route_handler(void);
void *pymg_route_alloc(uint64_t interest);
