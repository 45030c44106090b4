/* The bgwf Lua module: require "bgwf" from lua5.4 to open a store, submit
 * workflows and read their status through the same library as the bgwf
 * command.
 *
 *   local bgwf = require("bgwf")
 *   local store <close> = bgwf.open("bgwf.db", { path = "/srv/flows" })
 *   local execution, attempt = store:submit("simple", { context = { message = "hi" } })
 *   local report = store:status(execution)
 *
 * Misuse (wrong argument types, a closed handle) raises. A workflow that
 * does not build and a store that fails return nil and a message. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "luahost.h"
#include "names.h"
#include "store.h"
#include "strbuf.h"

#define STORE_METATABLE "bgwf.store"

/* The userdata behind a store handle. */
struct store_handle {
    struct store *store;   /* NULL once closed */
    lua_State *host;       /* state that builds workflows by name; NULL until needed */
    char *db;              /* malloc'd database location */
    char *search_path;     /* malloc'd ':'-separated folders */
};

/* Returns the open handle at index 1, raising on a closed one. */
static struct store_handle *check_open(lua_State *L)
{
    struct store_handle *handle = luaL_checkudata(L, 1, STORE_METATABLE);

    if (handle->store == NULL)
        luaL_error(L, "the bgwf store handle is closed (open another with bgwf.open)");
    return handle;
}

/* Closes the store and the host state; safe to call more than once. */
static void close_handle(struct store_handle *handle)
{
    if (handle->store)
        handle->store->ops->close(handle->store);
    if (handle->host)
        lua_close(handle->host);
    free(handle->db);
    free(handle->search_path);
    *handle = (struct store_handle){ 0 };
}

/* Pushes nil and message, frees message and returns 2. [-0, +2, m] */
static int push_failure(lua_State *L, char *message)
{
    lua_pushnil(L);
    lua_pushstring(L, message);
    free(message);
    return 2;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *value = getenv(name);

    return value && *value ? value : fallback;
}

/* bgwf.open([db [, options]]) -> store | nil, message. db is the SQLite file
 * (default $BGWF_DB, else ./bgwf.db), created when missing; options.path is
 * the ':'-separated search path for workflows and actions (default
 * $BGWF_PATH, else "."). Raises in a process forked for a step or a
 * precondition, which must never use the store. [-(0|1|2), +(1|2), m] */
static int module_open(lua_State *L)
{
    const char *db = luaL_optstring(L, 1, env_or("BGWF_DB", "bgwf.db"));
    const char *search_path = env_or("BGWF_PATH", ".");
    struct store_handle *handle;
    char *error = NULL;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "path");
        search_path = luaL_optstring(L, -1, search_path);
        luaL_argcheck(L, *search_path != '\0', 2, "options.path must name one or more folders");
    }
    luaL_argcheck(L, *db != '\0', 1, "the database path must not be empty");
    lua_getfield(L, LUA_REGISTRYINDEX, LUAHOST_CHILD_PROCESS_KEY);
    if (lua_toboolean(L, -1))
        return luaL_error(L, "bgwf.open cannot be used in a process forked for a step or a "
                          "precondition: only the executor uses the store (report with "
                          "step:status and step:log instead)");

    handle = lua_newuserdatauv(L, sizeof *handle, 0);
    *handle = (struct store_handle){ 0 };
    luaL_setmetatable(L, STORE_METATABLE);
    handle->store = store_open(db, &error);
    if (handle->store == NULL)
        return push_failure(L, error);
    handle->db = strbuf_dup(db);
    handle->search_path = strbuf_dup(search_path);
    return 1;
}

/* Returns the handle's host state, opening it on first use; NULL with
 * *error set when that failed. */
static lua_State *host_state(struct store_handle *handle, char **error)
{
    if (handle->host == NULL)
        handle->host = luahost_open(handle->search_path, error);
    return handle->host;
}

/* Calls require(module)[function] with the value at index argument, in
 * protected mode. Returns LUA_OK with nresults pushed, or an error status
 * with the message pushed. [-0, +(nresults|1), m] */
static int call_module_function(lua_State *L, const char *module, const char *function,
                                int argument, int nresults)
{
    argument = lua_absindex(L, argument);
    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, function);
    lua_remove(L, -2);
    lua_pushvalue(L, argument);
    return lua_pcall(L, 1, nresults, 0);
}

/* Pushes the submit context from options.context as JSON text, nil when
 * absent. Returns 0, or -1 with *error set when a table does not encode.
 * [-0, +1, m] */
static int push_context_json(lua_State *L, int options, char **error)
{
    int kind = options ? lua_getfield(L, options, "context") : (lua_pushnil(L), LUA_TNIL);

    if (kind == LUA_TNIL || kind == LUA_TSTRING)
        return 0;
    if (kind != LUA_TTABLE)
        luaL_error(L, "options.context must be a table or JSON text, not %s",
                   lua_typename(L, kind));
    if (call_module_function(L, "bgwf.json", "encode", -1, 1) != LUA_OK) {
        *error = strbuf_printf("invalid context: %s", lua_tostring(L, -1));
        lua_pop(L, 2);
        lua_pushnil(L);
        return -1;
    }
    lua_remove(L, -2);
    return 0;
}

/* Builds a workflow from the function at index fn in L itself, with the
 * context pushed from options, and checks its actions in host. Returns 0,
 * or -1 with *error set. [-0, +0, m] */
static int build_from_function(lua_State *L, lua_State *host, int fn, int options,
                               const char *app, const char *scope,
                               struct submit_request *request, char **error)
{
    int top = lua_gettop(L);
    int rc = -1;

    lua_getglobal(L, "require");
    lua_pushliteral(L, "bgwf.builder");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "build");
    lua_pushstring(L, app);
    if (scope)
        lua_pushstring(L, scope);
    else
        lua_pushnil(L);
    lua_pushvalue(L, fn);
    int kind = options ? lua_getfield(L, options, "context") : (lua_pushnil(L), LUA_TNIL);
    if (kind == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
    } else if (kind == LUA_TSTRING) {
        if (call_module_function(L, "bgwf.json", "decode", -1, 2) != LUA_OK ||
            (lua_isnil(L, -2) && !lua_isnil(L, -1))) {
            *error = strbuf_printf("invalid options.context JSON: %s", lua_tostring(L, -1));
            goto done;
        }
        lua_pop(L, 1);
        lua_remove(L, -2);
    } else if (kind != LUA_TTABLE) {
        luaL_error(L, "options.context must be a table or JSON text, not %s",
                   lua_typename(L, kind));
    }
    if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
        *error = strbuf_printf("workflow '%s': %s", app, lua_tostring(L, -1));
        goto done;
    }
    luahost_read_steps(L, request);
    rc = luahost_check_steps(host, request, error);

done:
    lua_settop(L, top);
    return rc;
}

/* Returns the string field key of the options table at index 3, or
 * fallback when it is nil; raises when it has another type. The string
 * stays on the stack. [-0, +1, e] */
static const char *option_string(lua_State *L, const char *key, const char *fallback)
{
    int kind = lua_getfield(L, 3, key);

    if (kind == LUA_TNIL)
        return fallback;
    if (kind != LUA_TSTRING)
        luaL_argerror(L, 3, lua_pushfstring(L, "options.%s must be a string, not %s", key,
                                            lua_typename(L, kind)));
    return lua_tostring(L, -1);
}

/* store:submit(workflow [, options]) -> execution_id, attempt_id, details
 * | nil, message. workflow is a workflow name (workflows/NAME.lua on the
 * search path) or a function(wf, ctx) like the one such a file returns.
 * options: scope (string), context (table or JSON text), app (the
 * application name executors run it under; required with a function,
 * default the workflow name), new_execution (true: never resume an
 * INCOMPLETE execution). details is { resumed = boolean, skipped = number
 * of steps done by an earlier attempt, attempt_status = "RUNNING" or
 * "FINISHED" }. The whole workflow is stored in one transaction, as by
 * `bgwf submit`. [-(1|2|3), +(2|3), m] */
static int store_submit(lua_State *L)
{
    struct store_handle *handle = check_open(L);
    struct submit_request request = { 0 };
    int by_name = lua_type(L, 2) == LUA_TSTRING;
    int options = lua_isnoneornil(L, 3) ? 0 : 3;
    const char *app, *scope = NULL;
    struct submit_outcome outcome = { 0 };
    int new_execution = 0;
    char *error = NULL;
    lua_State *host;

    luaL_argexpected(L, by_name || lua_type(L, 2) == LUA_TFUNCTION, 2, "workflow name or function");
    app = by_name ? lua_tostring(L, 2) : NULL;
    if (options) {
        luaL_checktype(L, 3, LUA_TTABLE);
        scope = option_string(L, "scope", NULL);
        app = option_string(L, "app", app);
        lua_getfield(L, 3, "new_execution");
        new_execution = lua_toboolean(L, -1);
    }
    luaL_argcheck(L, app != NULL, 3, "options.app must name the application of a workflow "
                  "given as a function");
    if (!names_is_valid(app))
        return push_failure(L, names_invalid_message(by_name ? "workflow" : "application", app));
    if ((host = host_state(handle, &error)) == NULL)
        return push_failure(L, error);

    if (by_name) {
        if (push_context_json(L, options, &error) != 0)
            return push_failure(L, error);
        /* NOTE: the workflow file is read as `app`, so options.app cannot
         * rename a workflow submitted by name. */
        luaL_argcheck(L, strcmp(app, lua_tostring(L, 2)) == 0, 3,
                      "options.app must equal the workflow name when submitting by name");
        luahost_build(host, app, scope, lua_tostring(L, -1), &request, &error);
        lua_pop(L, 1);
    } else {
        build_from_function(L, host, 2, options, app, scope, &request, &error);
        request.app = app;
        request.scope = scope;
    }
    request.new_execution = new_execution;
    if (error == NULL)
        handle->store->ops->submit(handle->store, &request, &outcome, &error);
    luahost_free_request(&request);
    if (error) {
        store_free_outcome(&outcome);
        return push_failure(L, error);
    }
    lua_pushinteger(L, (lua_Integer)outcome.execution_id);
    lua_pushinteger(L, (lua_Integer)outcome.attempt_id);
    lua_createtable(L, 0, 3);
    lua_pushboolean(L, outcome.resumed);
    lua_setfield(L, -2, "resumed");
    lua_pushinteger(L, outcome.skipped);
    lua_setfield(L, -2, "skipped");
    lua_pushstring(L, outcome.attempt_status);
    lua_setfield(L, -2, "attempt_status");
    store_free_outcome(&outcome);
    return 3;
}

static void set_string(lua_State *L, const char *key, const char *value)
{
    if (value == NULL)
        return;
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
}

static void set_integer(lua_State *L, const char *key, int64_t value)
{
    lua_pushinteger(L, (lua_Integer)value);
    lua_setfield(L, -2, key);
}

/* Pushes the steps of report as a list of tables. [-0, +1, m] */
static void push_steps(lua_State *L, const struct status_report *report)
{
    lua_createtable(L, report->step_count, 0);
    for (int i = 0; i < report->step_count; i++) {
        const struct status_step *step = &report->steps[i];
        lua_createtable(L, 0, 9);
        set_string(L, "token", step->token);
        set_string(L, "action", step->action);
        set_string(L, "status", step->status);
        set_string(L, "message", step->message);
        set_string(L, "error", step->error);
        if (step->executor_id)
            set_integer(L, "executor", step->executor_id);
        set_integer(L, "try", step->try_number);
        if (step->started_at)
            set_integer(L, "started_at", step->started_at);
        if (step->ended_at)
            set_integer(L, "ended_at", step->ended_at);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Reads the status report of the execution at index 2 (default: the newest)
 * into *report. Returns 0, or pushes nil and a message and returns 2. */
static int read_report(lua_State *L, struct store_handle *handle,
                       struct status_report *report)
{
    lua_Integer execution_id = luaL_optinteger(L, 2, 0);
    char *error = NULL;

    luaL_argcheck(L, execution_id >= 0, 2, "execution id must be positive");
    if (handle->store->ops->status(handle->store, (int64_t)execution_id, report, &error) != 0)
        return push_failure(L, error);
    return 0;
}

/* store:status([execution_id]) -> report | nil, message. The report has
 * the fields of `bgwf status --json`: execution {id, app, scope, status,
 * created_at}, attempt {id, status} and steps, a list of {token, action,
 * status, message, error, executor, try, started_at, ended_at} with times
 * in ms since the epoch; fields never set are nil. [-(1|2), +(1|2), m] */
static int store_status(lua_State *L)
{
    struct store_handle *handle = check_open(L);
    struct status_report report;
    int failed = read_report(L, handle, &report);

    if (failed)
        return failed;
    lua_createtable(L, 0, 3);
    lua_createtable(L, 0, 5);
    set_integer(L, "id", report.execution_id);
    set_string(L, "app", report.app);
    set_string(L, "scope", report.scope);
    set_string(L, "status", report.execution_status);
    set_integer(L, "created_at", report.created_at);
    lua_setfield(L, -2, "execution");
    lua_createtable(L, 0, 2);
    set_integer(L, "id", report.attempt_id);
    set_string(L, "status", report.attempt_status);
    lua_setfield(L, -2, "attempt");
    push_steps(L, &report);
    lua_setfield(L, -2, "steps");
    store_free_status(&report);
    return 1;
}

/* store:steps([execution_id]) -> list | nil, message: the steps part of
 * store:status. [-(1|2), +(1|2), m] */
static int store_steps(lua_State *L)
{
    struct store_handle *handle = check_open(L);
    struct status_report report;
    int failed = read_report(L, handle, &report);

    if (failed)
        return failed;
    push_steps(L, &report);
    store_free_status(&report);
    return 1;
}

/* store:close(), also __gc and __close: closes the store; later calls do
 * nothing. [-(1|2), +0, -] */
static int store_close(lua_State *L)
{
    close_handle(luaL_checkudata(L, 1, STORE_METATABLE));
    return 0;
}

/* tostring(store): "bgwf.store (DB)" or "bgwf.store (closed)". [-0, +1, m] */
static int store_tostring(lua_State *L)
{
    struct store_handle *handle = luaL_checkudata(L, 1, STORE_METATABLE);

    if (handle->store == NULL)
        lua_pushliteral(L, "bgwf.store (closed)");
    else
        lua_pushfstring(L, "bgwf.store (%s)", handle->db);
    return 1;
}

/* Pushes what an operator command changed as a table: { execution,
 * attempt, steps = { { token, from, to } }, attempt_from, attempt_to,
 * execution_from, execution_to, running_steps }. [-0, +1, m] */
static void push_changes(lua_State *L, const struct change_report *report)
{
    lua_createtable(L, 0, 8);
    set_integer(L, "execution", report->execution_id);
    set_integer(L, "attempt", report->attempt_id);
    set_string(L, "attempt_from", report->attempt_from);
    set_string(L, "attempt_to", report->attempt_to);
    set_string(L, "execution_from", report->execution_from);
    set_string(L, "execution_to", report->execution_to);
    set_integer(L, "running_steps", report->running_steps);
    lua_createtable(L, report->change_count, 0);
    for (int i = 0; i < report->change_count; i++) {
        lua_createtable(L, 0, 3);
        set_string(L, "token", report->changes[i].token);
        set_string(L, "from", report->changes[i].from);
        set_string(L, "to", report->changes[i].to);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "steps");
}

enum operation { OPERATION_REVERT, OPERATION_COMPLETE, OPERATION_SHUTDOWN, OPERATION_CANCEL };

/* Runs an operator command on the execution at index 2, with the step
 * token at index 3 for revert and complete. Returns the change table, or
 * nil and a message when the state does not allow it. */
static int run_operation(lua_State *L, enum operation operation)
{
    struct store_handle *handle = check_open(L);
    lua_Integer execution_id = luaL_checkinteger(L, 2);
    const char *token = NULL;
    int downstream = 0;
    struct change_report report;
    char *error = NULL;
    int failed;

    luaL_argcheck(L, execution_id > 0, 2, "execution id must be positive");
    if (operation == OPERATION_REVERT || operation == OPERATION_COMPLETE)
        token = luaL_checkstring(L, 3);
    if (operation == OPERATION_REVERT && lua_istable(L, 4)) {
        lua_getfield(L, 4, "downstream");
        downstream = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    struct store *store = handle->store;
    switch (operation) {
    case OPERATION_REVERT:
        failed = store->ops->revert(store, execution_id, token, downstream, &report, &error);
        break;
    case OPERATION_COMPLETE:
        failed = store->ops->complete(store, execution_id, token, &report, &error);
        break;
    case OPERATION_SHUTDOWN:
        failed = store->ops->shutdown(store, execution_id, &report, &error);
        break;
    default:
        failed = store->ops->cancel(store, execution_id, &report, &error);
        break;
    }
    if (failed)
        return push_failure(L, error);
    push_changes(L, &report);
    store_free_changes(&report);
    return 1;
}

/* store:revert(execution, token [, { downstream = true }]) -> changes |
 * nil, message. [-(2|3|4), +(1|2), e] */
static int store_revert(lua_State *L)
{
    return run_operation(L, OPERATION_REVERT);
}

/* store:complete(execution, token) -> changes | nil, message. [-3, +(1|2), e] */
static int store_complete(lua_State *L)
{
    return run_operation(L, OPERATION_COMPLETE);
}

/* store:shutdown(execution) -> changes | nil, message. [-2, +(1|2), e] */
static int store_shutdown(lua_State *L)
{
    return run_operation(L, OPERATION_SHUTDOWN);
}

/* store:cancel(execution) -> changes | nil, message. [-2, +(1|2), e] */
static int store_cancel(lua_State *L)
{
    return run_operation(L, OPERATION_CANCEL);
}

static const luaL_Reg store_methods[] = {
    { "submit", store_submit },
    { "status", store_status },
    { "steps", store_steps },
    { "revert", store_revert },
    { "complete", store_complete },
    { "shutdown", store_shutdown },
    { "cancel", store_cancel },
    { "close", store_close },
    { NULL, NULL },
};

static const luaL_Reg store_metamethods[] = {
    { "__gc", store_close },
    { "__close", store_close },
    { "__tostring", store_tostring },
    { "__index", NULL },
    { NULL, NULL },
};

/* bgwf.is_forked() -> boolean: true in a process that an executor forked
 * to run a step or a precondition, where bgwf.open raises. [-0, +1, -] */
static int module_is_forked(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, LUAHOST_CHILD_PROCESS_KEY);
    lua_pushboolean(L, lua_toboolean(L, -1));
    return 1;
}

static const luaL_Reg module_functions[] = {
    { "open", module_open },
    { "is_forked", module_is_forked },
    { NULL, NULL },
};

/* Requires the embedded module name through package.preload. [-0, +1, e] */
static int open_embedded(lua_State *L, const char *name)
{
    luahost_preload_modules(L);
    lua_getglobal(L, "require");
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    return 1;
}

/* Entry points for the embedded Lua modules, so that lua5.4 finds them in
 * bgwf.so (the all-in-one C loader) even before require "bgwf".
 * [-0, +1, e] */
int luaopen_bgwf_preconditions(lua_State *L)
{
    return open_embedded(L, "bgwf.preconditions");
}

int luaopen_bgwf_builder(lua_State *L)
{
    return open_embedded(L, "bgwf.builder");
}

int luaopen_bgwf_json(lua_State *L)
{
    return open_embedded(L, "bgwf.json");
}

/* Opens the module, and adds the embedded Lua modules (bgwf.builder,
 * bgwf.json, bgwf.preconditions) to package.preload. [-0, +1, m] */
int luaopen_bgwf(lua_State *L)
{
    if (luaL_newmetatable(L, STORE_METATABLE)) {
        luaL_setfuncs(L, store_metamethods, 0);
        luaL_newlib(L, store_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    luahost_preload_modules(L);

    luaL_newlib(L, module_functions);
    lua_pushstring(L, BGWF_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushinteger(L, BGWF_ABI_VERSION);
    lua_setfield(L, -2, "abi_version");
    return 1;
}
