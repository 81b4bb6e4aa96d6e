/* pymongoose static-file policy on top of mg_http_serve_dir: symlinks that
 * lead out of the root are refused, hidden entries (a path segment starting
 * with '.') are refused unless allowed, and a folder without an index file is
 * listed only when asked. See static_policy.c.
 *
 * Read twice, like glue.h: by the C compiler and by cffi as a cdef. Plain
 * declarations only. */

enum pymg_static_policy {
  PYMG_STATIC_ALLOW_HIDDEN = 1, /* serve and list dotfiles and dot-folders */
  PYMG_STATIC_LIST_DIRS = 2     /* list a folder that has no index file */
};

/* mg_http_serve_dir for `root` (a plain folder) under `policy` (bits above).
 * Refused paths get Mongoose's 404 (page404 when given); an unlisted folder
 * gets 403. */
void pymg_serve_dir_safe(struct mg_connection *c, struct mg_http_message *hm, const char *root,
                         int policy, const char *extra_headers, const char *mime_types,
                         const char *page404);
