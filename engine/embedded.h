/* The Lua sources of the bgwf module, compiled into the library. */
#ifndef BGWF_EMBEDDED_H
#define BGWF_EMBEDDED_H

#include <stddef.h>

struct embedded_module {
    const char *name;   /* module name for require, e.g. "bgwf.builder" */
    const char *source; /* Lua source text, NUL-terminated */
    size_t length;      /* length of source without the NUL */
};

/* Terminated by an entry whose name is NULL. */
extern const struct embedded_module bgwf_embedded_modules[];

#endif
