/* The registry of native (C) actions inside a Lua state, and the built-ins. */
#ifndef BGWF_NATIVE_H
#define BGWF_NATIVE_H

#include <lua.h>

/* Registers the built-in actions (noop, and the test hooks when the
 * environment variable BGWF_TEST_HOOKS is 1). Stack: [-0, +0, m]. */
void native_register_builtins(lua_State *L);

/* Pushes the action table { execute = f, precondition = f|nil } of the
 * native action name and returns 1, or pushes nothing and returns 0 when no
 * native action has that name. Stack: [-0, +(0|1), m]. */
int native_push_action(lua_State *L, const char *name);

#endif
