/* The registry of native (C) actions inside a Lua state, the actions a host
 * program adds for every state, and the built-ins. */
#ifndef BGWF_NATIVE_H
#define BGWF_NATIVE_H

#include <lua.h>

#include "bgwf.h"

/* The built-in actions, each defined in its builtin_*.c file. */
extern const struct bgwf_action builtin_exec_action;
extern const struct bgwf_action builtin_sleep_action;
extern const struct bgwf_action builtin_wait_for_file_action;

/* Registers the built-in actions (noop, sleep, exec, wait_for_file, and the
 * test hooks when the environment variable BGWF_TEST_HOOKS is 1), then the
 * actions added with bgwf_add_actions. Stack: [-0, +0, m]. */
void native_register_builtins(lua_State *L);

/* Pushes the action table { execute = f, precondition = f|nil } of the
 * native action name and returns 1, or pushes nothing and returns 0 when no
 * native action has that name. Stack: [-0, +(0|1), m]. */
int native_push_action(lua_State *L, const char *name);

/* Returns NULL when action can be registered, else a static text saying
 * what is wrong with it. */
const char *native_check_action(const struct bgwf_action *action);

/* Opens the shared object at path (found for action name), checks its entry
 * point and ABI version, and registers its action in L as a native action.
 * The object stays loaded for the life of the process. Returns 0, or -1
 * with *error set to a malloc'd message the caller frees.
 * Stack: [-0, +0, m]. */
int native_load_module(lua_State *L, const char *name, const char *path, char **error);

#endif
