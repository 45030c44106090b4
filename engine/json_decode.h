/* Reading JSON text into Lua values from C.
 *
 * Each step's child decodes its stored context before execute runs. The
 * Lua decoder (dkjson) scans with string patterns and allocates as it
 * goes, and the kernel copies every page a forked child writes. This one
 * reads the text once and allocates only the values.
 * It gives what bgwf.json.decode gives: integers stay integers, other
 * numbers are floats, JSON null is nil (so a null array element leaves a
 * hole), and objects and arrays carry the same metatables as dkjson's,
 * {__jsontype = "object"} and {__jsontype = "array"}. */
#ifndef BGWF_JSON_DECODE_H
#define BGWF_JSON_DECODE_H

#include <stddef.h>

#include <lua.h>

/* The deepest nesting of arrays and objects it reads. */
#define JSON_DECODE_MAX_DEPTH 1000

/* Decodes text (length bytes) and pushes the value, or nil for JSON null.
 * Returns 0, or -1 with nothing pushed and *error set (malloc'd) to what is
 * wrong and at which byte offset. Stack: [-0, +1, m] on success. */
int json_decode_push(lua_State *L, const char *text, size_t length, char **error);

#endif
