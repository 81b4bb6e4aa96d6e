/* pymongoose static-file policy: see static_policy.h.
 *
 * Mongoose resolves a URI to root + decoded path, refuses ".." escapes, and
 * then follows whatever the file system says: a symlink inside the root that
 * points at /etc is served, dotfiles (.git, .env) are served, and with
 * MG_ENABLE_DIRLIST every folder without an index is listed. This file checks
 * the resolved path first (realpath must stay inside the root's realpath),
 * and lists folders through a file-system wrapper that leaves out what the
 * policy refuses. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mongoose.h"
#include "static_policy.h"

/* What the listing wrapper needs while mg_http_serve_dir runs (it lists
 * synchronously, on the polling thread). */
struct listing {
  const char *root_real;
  int allow_hidden;
  const char *dir;
  void (*fn)(const char *, void *);
  void *userdata;
};
static __thread struct listing *s_listing;

static int inside(const char *real, const char *root_real) {
  size_t n = strlen(root_real);
  if (n == 1 && root_real[0] == '/') return 1;
  return strncmp(real, root_real, n) == 0 && (real[n] == '/' || real[n] == '\0');
}

/* 1 when `path` exists and its real path leaves the root (a symlink out). */
static int leads_out(const char *path, const char *root_real) {
  char real[PATH_MAX];
  if (realpath(path, real) == NULL) return 0; /* missing: Mongoose answers 404 */
  return !inside(real, root_real);
}

static void listed_entry(const char *name, void *arg) {
  struct listing *l = (struct listing *) arg;
  char path[PATH_MAX], real[PATH_MAX];
  if (name[0] == '.' && !l->allow_hidden) return;
  if (mg_snprintf(path, sizeof(path), "%s/%s", l->dir, name) >= sizeof(path)) return;
  if (realpath(path, real) == NULL || !inside(real, l->root_real)) return;
  l->fn(name, l->userdata);
}

static void filtered_ls(const char *dir, void (*fn)(const char *, void *), void *userdata) {
  struct listing *l = s_listing;
  if (l == NULL) return;
  l->dir = dir;
  l->fn = fn;
  l->userdata = userdata;
  mg_fs_posix.ls(dir, listed_entry, l);
}

/* Mongoose's POSIX file system with a filtered `ls` (files opened through it
 * outlive the call, so it is static). */
static struct mg_fs s_listing_fs;

/* A segment of the decoded URI path that starts with '.' (not "." or ".."). */
static int has_hidden_segment(const char *p) {
  while (*p != '\0') {
    while (*p == '/') p++;
    if (p[0] == '.' && p[1] != '\0' && p[1] != '/' &&
        !(p[1] == '.' && (p[2] == '\0' || p[2] == '/'))) {
      return 1;
    }
    while (*p != '\0' && *p != '/') p++;
  }
  return 0;
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static const char *const s_index_names[] = {"index.html", "index.shtml", "index.html.gz"};

void pymg_serve_dir_safe(struct mg_connection *c, struct mg_http_message *hm, const char *root,
                         int policy, const char *extra_headers, const char *mime_types,
                         const char *page404) {
  struct mg_http_serve_opts opts;
  struct listing listing;
  char root_real[PATH_MAX], decoded[PATH_MAX], path[PATH_MAX];
  int refuse = 0, n;
  size_t i;
  memset(&opts, 0, sizeof(opts));
  opts.root_dir = root;
  opts.extra_headers = extra_headers != NULL && extra_headers[0] ? extra_headers : NULL;
  opts.mime_types = mime_types != NULL && mime_types[0] ? mime_types : NULL;
  opts.page404 = page404 != NULL && page404[0] ? page404 : NULL;
  n = mg_url_decode(hm->uri.buf, hm->uri.len, decoded, sizeof(decoded), 0);
  if (realpath(root, root_real) == NULL || n < 0 ||
      mg_snprintf(path, sizeof(path), "%s/%s", root, decoded) >= sizeof(path)) {
    mg_http_serve_dir(c, hm, &opts); /* Mongoose refuses these itself */
    return;
  }
  if (!(policy & PYMG_STATIC_ALLOW_HIDDEN) && has_hidden_segment(decoded)) refuse = 1;
  if (!refuse && leads_out(path, root_real)) refuse = 1;
  if (!refuse && is_dir(path) && hm->uri.len > 0 && hm->uri.buf[hm->uri.len - 1] == '/') {
    size_t len = strlen(path);
    int has_index = 0;
    for (i = 0; i < sizeof(s_index_names) / sizeof(s_index_names[0]); i++) {
      struct stat st;
      mg_snprintf(path + len, sizeof(path) - len, "/%s", s_index_names[i]);
      if (stat(path, &st) != 0) continue;
      has_index = 1;
      if (leads_out(path, root_real)) refuse = 1;
      break; /* Mongoose serves the first index it finds */
    }
    path[len] = '\0';
    if (!refuse && !has_index) {
      if (!(policy & PYMG_STATIC_LIST_DIRS)) {
        mg_http_reply(c, 403, "", "Forbidden\n");
        return;
      }
      if (s_listing_fs.ls == NULL) {
        s_listing_fs = mg_fs_posix;
        s_listing_fs.ls = filtered_ls;
      }
      listing.root_real = root_real;
      listing.allow_hidden = (policy & PYMG_STATIC_ALLOW_HIDDEN) != 0;
      s_listing = &listing;
      opts.fs = &s_listing_fs;
      mg_http_serve_dir(c, hm, &opts);
      s_listing = NULL;
      return;
    }
  }
  if (refuse) {
    /* Mongoose's own 404 (page404 when configured): open a path that never exists. */
    mg_http_serve_file(c, hm, "", &opts);
    return;
  }
  mg_http_serve_dir(c, hm, &opts);
}
