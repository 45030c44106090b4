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
 * object (token, action, app, scope, execution, attempt, id, try, status(),
 * log()) and the same decoded context that a Lua action receives. Each
 * runs in a process that the executor forks for it: execute for the run of
 * a step, precondition for one check, under the executor's precondition
 * time limit.
 *
 * There are three ways to provide native actions:
 *
 * 1. Compiled into a program that links libbgwfcore.a: call
 *    bgwf_add_actions() before any Lua state is opened, or hand the actions
 *    to bgwf_main(), which runs the bgwf command line with them.
 * 2. Registered into one Lua state with bgwf_register_action().
 * 3. A shared object actions/NAME.so on the search path that exports
 *    BGWF_OPEN_PREFIX NAME (each '.' of NAME written as '_'), for example
 *
 *        static int execute(lua_State *L) { ... }
 *        BGWF_EXPORT const struct bgwf_action *bgwf_open_reports_daily(void)
 *        {
 *            static const struct bgwf_action action =
 *                BGWF_ACTION("reports.daily", execute, NULL);
 *            return &action;
 *        }
 *
 *    The object is built without linking liblua: it uses the Lua API of the
 *    bgwf process that opens it. */
#ifndef BGWF_H
#define BGWF_H

#include <lua.h>

/* Bumped whenever struct bgwf_action or the calling convention changes.
 * An action built against another version is rejected when it is
 * registered or loaded. Version 2 added abi_version to struct bgwf_action. */
#define BGWF_ABI_VERSION 2

/* The exported entry point of actions/NAME.so is this prefix followed by
 * NAME with each '.' replaced by '_'. Its type is bgwf_open_function. */
#define BGWF_OPEN_PREFIX "bgwf_open_"

#define BGWF_EXPORT __attribute__((visibility("default")))

struct bgwf_action {
    int abi_version;             /* BGWF_ABI_VERSION; stays the first member in every version */
    const char *name;            /* action name used in workflow files */
    lua_CFunction execute;       /* required */
    lua_CFunction precondition;  /* NULL: the step may always start */
};

/* Initializer for struct bgwf_action that fills in the ABI version. */
#define BGWF_ACTION(name, execute, precondition) \
    { BGWF_ABI_VERSION, (name), (execute), (precondition) }

/* The entry point of an action shared object. Returns the action, which
 * must stay valid for the life of the process (a static object), or NULL
 * to reject loading. */
typedef const struct bgwf_action *(*bgwf_open_function)(void);

/* Registers action in the Lua state L under action->name, replacing any
 * native action of that name. Names follow the action name rules
 * ([A-Za-z0-9_] segments joined by '.'). Returns 0, or -1 when the name is
 * invalid, execute is NULL or action->abi_version is not BGWF_ABI_VERSION.
 * Stack: [-0, +0, m]. */
int bgwf_register_action(lua_State *L, const struct bgwf_action *action);

/* Adds count actions to the process-wide list that every Lua state bgwf
 * opens from then on registers, after the built-in actions (so an added
 * action may replace a built-in of the same name). The array is not
 * copied: it must stay valid for the life of the process. Call it from
 * one thread, before any state is opened. Returns 0, or -1 when an action
 * is invalid (as for bgwf_register_action), in which case nothing is added. */
int bgwf_add_actions(const struct bgwf_action *actions, int count);

/* Runs the bgwf command line (argv[0] is the program name, argv[1] the
 * command, as in `bgwf executor --apps x`) with the count actions added
 * first as by bgwf_add_actions. Returns the exit status of the command;
 * 2 when an action is invalid. Meant to be the whole main() of a program
 * that bundles its own actions. */
int bgwf_main(int argc, char **argv, const struct bgwf_action *actions, int count);

#endif
