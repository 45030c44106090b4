/* Checking names that become paths, and finding their files on the search path. */
#ifndef BGWF_NAMES_H
#define BGWF_NAMES_H

/* Returns 1 when name is one or more [A-Za-z0-9_] segments joined by '.',
 * and 0 otherwise (empty, "..", "/", a leading or trailing '.', ...). */
int names_is_valid(const char *name);

/* Returns 1 when token is a valid step token: [A-Za-z0-9_]+, and 0 otherwise. */
int names_is_valid_token(const char *token);

/* Finds folder/NAME.ext on search_path, a ':'-separated list of folders, where
 * each '.' of name becomes a '/'. On success returns 0 and sets *path to a
 * malloc'd string the caller frees. Returns -1 when name is invalid or no
 * file exists, and sets *error to a malloc'd message naming the folders
 * searched; the caller frees it. kind ("workflow", "action") starts the
 * message. */
int names_find_file(const char *search_path, const char *folder, const char *kind,
                    const char *name, const char *ext, char **path, char **error);

/* Returns a malloc'd "invalid KIND name '...': ..." message for name. */
char *names_invalid_message(const char *kind, const char *name);

#endif
