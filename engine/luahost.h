/* The Lua state of a bgwf process: the embedded bgwf modules, the search
 * path, and loading actions and workflows by name. */
#ifndef BGWF_LUAHOST_H
#define BGWF_LUAHOST_H

#include <stdint.h>

#include <lua.h>

#include "step_object.h"
#include "store.h"

/* Creates a Lua state with the standard libraries, the embedded bgwf
 * modules, the built-in native actions and search_path (':'-separated
 * folders) for actions and workflows. Returns NULL with *error set (malloc'd)
 * on failure. Close it with lua_close. */
lua_State *luahost_open(const char *search_path, char **error);

/* Pushes the action table { execute, precondition } of name: a native action
 * of that name, else actions/NAME.lua from the search path, loaded once and
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

void luahost_free_request(struct submit_request *request);

/* Runs the precondition of action with the decoded context, for at most
 * timeout_ms. Sets *ready to 1 when it returned a true value or the action
 * has none. Returns 0, or -1 with *error set when it raised, timed out or
 * the context could not be decoded. */
int luahost_precondition(lua_State *L, const char *action, const char *context_json,
                         int64_t timeout_ms, int *ready, char **error);

/* Runs execute(step, ctx) of info->action in this process, which must be a
 * step's child, and reports the outcome to report_fd as a FRAME_SUCCESS or
 * FRAME_FAILURE frame. Returns 0 when the outcome was sent, -1 when the
 * pipe failed. */
int luahost_execute(lua_State *L, const struct step_info *info, const char *context_json,
                    int report_fd);

#endif
