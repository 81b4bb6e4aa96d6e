/* cdef: the one entry point from C into Python (see pymongoose/_dispatch.py).
 * "Python+C" makes it callable from glue.c, a separate compilation unit.
 * `pending` is the number of queued data-less events Python must deliver
 * before this one (see struct pymg_event_queue in glue.h). */
extern "Python+C" void pymg_on_event(unsigned mgr_slot, unsigned long conn_id, int ev,
                                     void *ev_data, size_t pending);
