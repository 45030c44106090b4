/* A growable string buffer and printf into fresh strings. */
#ifndef BGWF_STRBUF_H
#define BGWF_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *data;     /* NUL-terminated once anything was appended; else NULL */
    size_t length;
    size_t capacity;
};

#define STRBUF_INIT { NULL, 0, 0 }

/* Appends printf-style text; aborts the process when memory runs out. */
void strbuf_appendf(struct strbuf *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends length bytes of data. */
void strbuf_append(struct strbuf *buffer, const char *data, size_t length);

/* Releases the buffer's memory and empties it. */
void strbuf_free(struct strbuf *buffer);

/* Returns the contents as a malloc'd string the caller frees ("" when empty),
 * and leaves the buffer empty. */
char *strbuf_detach(struct strbuf *buffer);

/* Returns a malloc'd string formatted like printf; the caller frees it. */
char *strbuf_printf(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Returns a malloc'd copy of text, or NULL when text is NULL. */
char *strbuf_dup(const char *text);

#endif
