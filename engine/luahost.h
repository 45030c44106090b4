/* The Lua state of a bgwf process: the embedded bgwf modules, the search
 * path, and loading actions and workflows by name. */
#ifndef BGWF_LUAHOST_H
#define BGWF_LUAHOST_H

#include <stdint.h>

#include <lua.h>

#include "step_object.h"
#include "store.h"

/* Registry key set to true in a process forked to run execute or a
 * precondition, where the store must not be opened. */
#define LUAHOST_CHILD_PROCESS_KEY "bgwf.child_process"

/* Creates a Lua state with the standard libraries, the embedded bgwf
 * modules and the C module "bgwf" in package.preload, the native actions
 * (built-in and added) and search_path (':'-separated folders) for actions
 * and workflows. Returns NULL with *error set (malloc'd) on failure. Close
 * it with lua_close. */
lua_State *luahost_open(const char *search_path, char **error);

/* Makes workflow builds in this process stop at their time limit by
 * SIGALRM instead of a count hook. Only a program that owns SIGALRM and
 * its interval timer calls this (bgwf does; the Lua module does not). */
void luahost_time_builds_by_alarm(void);

/* Readies L, the state of the process that forks the children of steps,
 * once: marks it as a child's state (bgwf.is_forked() is true there and
 * bgwf.open raises), and creates what every step object shares. Each
 * child then writes less inherited memory, and each page it writes is a
 * page the kernel copies. */
void luahost_prepare_forking(lua_State *L);

/* Adds the embedded Lua modules (bgwf.builder, bgwf.json,
 * bgwf.preconditions, ...) to package.preload of L, keeping any entry that
 * is already there. Stack: [-0, +0, m]. */
void luahost_preload_modules(lua_State *L);

/* Pushes the action table { execute, precondition } of name, looked up in
 * this order: a native action registered in the state (built-in or added
 * by the host program), else actions/NAME.so from the search path, else
 * actions/NAME.lua from the search path. The table is loaded once and
 * cached. Returns 0 with the table pushed, or -1 with nothing pushed and
 * *error set. Stack: [-0, +(1|0), m]. */
int luahost_push_action(lua_State *L, const char *name, char **error);

/* Checks that action name exists and, for a Lua file, that it compiles,
 * without running it. Returns 0, or -1 with *error set. */
int luahost_check_action(lua_State *L, const char *name, char **error);

/* Builds workflow app from workflows/APP.lua with the submit context
 * context_json (NULL: an empty table) and fills *request with its steps.
 * Every action the steps name is checked. Returns 0, or -1 with *error
 * set; free the request with luahost_free_request either way. */
int luahost_build(lua_State *L, const char *app, const char *scope, const char *context_json,
                  struct submit_request *request, char **error);

/* Copies the list of steps that bgwf.builder's build returned, at the top
 * of L's stack, into request, whose steps the caller frees with
 * luahost_free_request. Stack: [-0, +0, m]. */
void luahost_read_steps(lua_State *L, struct submit_request *request);

/* Checks with luahost_check_action that every action request names exists
 * on L's search path. Returns 0, or -1 with *error naming the first step
 * whose action is missing or broken. */
int luahost_check_steps(lua_State *L, const struct submit_request *request, char **error);

void luahost_free_request(struct submit_request *request);

/* Sets how long luahost_build may run the workflow file's code (default
 * 60 s); past it, the build fails with a message naming --build-timeout. */
void luahost_set_build_timeout(lua_State *L, int64_t timeout_ms);

/* Returns 1 when action name has a precondition, 0 when it has none, and -1
 * with *error set when the action cannot be loaded. */
int luahost_has_precondition(lua_State *L, const char *name, char **error);

/* Runs the precondition of action with the decoded context in this
 * process, which must be a step's child, and reports FRAME_READY,
 * FRAME_NOT_READY or FRAME_FAILURE to report_fd. Returns 0 when the
 * outcome was sent, -1 when the pipe failed. */
int luahost_check(lua_State *L, const char *action, const char *context_json, int report_fd);

/* Runs execute(step, ctx) of info->action in this process, which must be a
 * step's child, and reports the outcome to report_fd as a FRAME_SUCCESS or
 * FRAME_FAILURE frame. Returns 0 when the outcome was sent, -1 when the
 * pipe failed. */
int luahost_execute(lua_State *L, const struct step_info *info, const char *context_json,
                    int report_fd);

/* Opens the bgwf Lua module (engine/lua_module.c). Stack: [-0, +1, m]. */
int luaopen_bgwf(lua_State *L);

#endif
