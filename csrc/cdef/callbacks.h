/* cdef: the one entry point from C into Python (see pymongoose/_dispatch.py).
 * "Python+C" makes it callable from glue.c, a separate compilation unit. */
extern "Python+C" void pymg_on_event(unsigned mgr_slot, unsigned long conn_id, int ev,
                                     void *ev_data);
