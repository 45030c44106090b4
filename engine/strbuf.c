/* A growable string buffer and printf into fresh strings. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void reserve(struct strbuf *buffer, size_t extra)
{
    size_t needed = buffer->length + extra + 1;

    if (needed <= buffer->capacity)
        return;
    size_t capacity = buffer->capacity ? buffer->capacity : 64;
    while (capacity < needed)
        capacity *= 2;
    char *data = realloc(buffer->data, capacity);
    if (data == NULL) {
        fputs("bgwf: out of memory\n", stderr);
        abort();
    }
    buffer->data = data;
    buffer->capacity = capacity;
}

void strbuf_append(struct strbuf *buffer, const char *data, size_t length)
{
    reserve(buffer, length);
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length += length;
    buffer->data[buffer->length] = '\0';
}

static void append_va(struct strbuf *buffer, const char *format, va_list args)
{
    va_list copy;

    va_copy(copy, args);
    int needed = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    if (needed < 0)
        return;
    reserve(buffer, (size_t)needed);
    vsnprintf(buffer->data + buffer->length, (size_t)needed + 1, format, args);
    buffer->length += (size_t)needed;
}

void strbuf_appendf(struct strbuf *buffer, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    append_va(buffer, format, args);
    va_end(args);
}

void strbuf_free(struct strbuf *buffer)
{
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = 0;
    buffer->capacity = 0;
}

char *strbuf_detach(struct strbuf *buffer)
{
    char *data = buffer->data;

    if (data == NULL)
        data = strbuf_dup("");
    buffer->data = NULL;
    buffer->length = 0;
    buffer->capacity = 0;
    return data;
}

char *strbuf_printf(const char *format, ...)
{
    struct strbuf buffer = STRBUF_INIT;
    va_list args;

    va_start(args, format);
    append_va(&buffer, format, args);
    va_end(args);
    return strbuf_detach(&buffer);
}

char *strbuf_dup(const char *text)
{
    if (text == NULL)
        return NULL;
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy == NULL) {
        fputs("bgwf: out of memory\n", stderr);
        abort();
    }
    memcpy(copy, text, length + 1);
    return copy;
}
