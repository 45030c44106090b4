/* bgwf's public C interface: native actions written against the Lua C API.
 *
 * A native action is the same pair of functions as a Lua action file:
 *
 *   execute(step, ctx)       [-2, +0, e]  runs the step; raise an error
 *                                          (lua_error, luaL_error) to fail it
 *   precondition(ctx)        [-1, +1, e]  returns a boolean; false means
 *                                          "check again after the cooldown"
 *
 * Both run with their arguments on the stack as listed, with the same step
 * object (token, app, scope, execution, attempt, try, status(), log()) and
 * the same decoded context that a Lua action receives. */
#ifndef BGWF_H
#define BGWF_H

#include <lua.h>

/* Bumped whenever struct bgwf_action or the calling convention changes. */
#define BGWF_ABI_VERSION 1

struct bgwf_action {
    const char *name;            /* action name used in workflow files */
    lua_CFunction execute;       /* required */
    lua_CFunction precondition;  /* NULL: the step may always start */
};

/* Registers action in the Lua state L under action->name, replacing any
 * native action of that name. Names follow the action name rules
 * ([A-Za-z0-9_] segments joined by '.'). Returns 0, or -1 when the name is
 * invalid or execute is NULL. Stack: [-0, +0, m]. */
int bgwf_register_action(lua_State *L, const struct bgwf_action *action);

#endif
