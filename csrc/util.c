/* pymongoose C helpers for the utility functions. See util.h. */
#include <stdlib.h>

#include "mongoose.h"
#include "util.h"

static int is_wildcard(char c) {
  return c == '?' || c == '*' || c == '#';
}

/* How many capture slots mg_match() may write for this pattern and a string
 * of s_len bytes, or 0 when that does not fit in memory.
 *
 * mg_match() documents "wildcards + 1", and that holds while every '?' comes
 * before the first '*' or '#'. A '?' after one also advances the capture
 * slot, and each backtrack into the '*' or '#' takes back only one step, so
 * every retry can move the slot further: past the documented size (measured:
 * "*??z" against "abcdez" writes a fifth slot). Retries are bounded by the
 * string's length (each one resumes one byte further on), and each advances
 * the slot by at most one per '?', hence the bound below. */
static size_t capture_slots(size_t s_len, const char *pattern, size_t pattern_len) {
  size_t i, wildcards = 0, late_marks = 0, max = ((size_t) -1) / sizeof(struct mg_str);
  int seen_star = 0;
  for (i = 0; i < pattern_len; i++) {
    if (is_wildcard(pattern[i])) wildcards++;
    if (pattern[i] == '*' || pattern[i] == '#') seen_star = 1;
    if (pattern[i] == '?' && seen_star) late_marks++;
  }
  if (late_marks == 0) return wildcards + 2;
  if (s_len >= max || late_marks > (max - wildcards - 2) / (s_len + 1)) return 0;
  return late_marks * (s_len + 1) + wildcards + 2;
}

int pymg_match(const char *s, size_t s_len, const char *pattern, size_t pattern_len,
               size_t *caps, size_t ncaps) {
  struct mg_str str = mg_str_n(s, s_len), pat = mg_str_n(pattern, pattern_len);
  struct mg_str *slots;
  size_t i, nslots;
  /* Captures do not steer the match: find out cheaply whether there is one. */
  if (!mg_match(str, pat, NULL)) return 0;
  if (ncaps == 0) return 1;
  nslots = capture_slots(s_len, pattern, pattern_len);
  if (nslots == 0) return -1;
  /* Large worst cases cost only address space: mg_match() writes the slots
   * in order and rarely many, and calloc leaves untouched pages unbacked.
   * Zeroed, a slot mg_match() never reached reads as an empty capture. */
  slots = (struct mg_str *) calloc(nslots, sizeof(*slots));
  if (slots == NULL) return -1;
  mg_match(str, pat, slots);
  for (i = 0; i < ncaps; i++) {
    int found = i < nslots && slots[i].buf != NULL;
    size_t at = found ? (size_t) (slots[i].buf - s) : 0, len = found ? slots[i].len : 0;
    /* Backtracking can leave a slot ending before it starts (its length then
     * wraps to nearly SIZE_MAX; found by fuzz/fuzz_utils with "##" and a later
     * '?'): such a capture is reported empty, so every one lies inside s. */
    if (at > s_len) at = s_len;
    if (len > s_len - at) len = 0;
    caps[2 * i] = at;
    caps[2 * i + 1] = len;
  }
  free(slots);
  return 1;
}

void pymg_md5(const char *data, size_t len, unsigned char digest[16]) {
  mg_md5_ctx ctx;
  mg_md5_init(&ctx);
  mg_md5_update(&ctx, (const unsigned char *) data, len);
  mg_md5_final(&ctx, digest);
}

void pymg_sha1(const char *data, size_t len, unsigned char digest[20]) {
  mg_sha1_ctx ctx;
  mg_sha1_init(&ctx);
  mg_sha1_update(&ctx, (const unsigned char *) data, len);
  mg_sha1_final(digest, &ctx);
}
