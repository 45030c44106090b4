/* The Lua state of a bgwf process: the embedded bgwf modules, the search
 * path, and loading actions and workflows by name. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "clock.h"
#include "embedded.h"
#include "frame.h"
#include "json_decode.h"
#include "luahost.h"
#include "names.h"
#include "native.h"
#include "strbuf.h"

static const char search_path_key[] = "bgwf.search_path";
static const char action_cache_key[] = "bgwf.action_cache";
static const char json_key[] = "bgwf.json";
static const char builder_key[] = "bgwf.builder";

/* Deadline of the workflow build in progress, on the monotonic clock; read
 * by the count hook. A process builds one workflow at a time. */
static int64_t build_deadline;
static int64_t build_timeout_ms;

static const char build_timeout_key[] = "bgwf.build_timeout_ms";

#define DEFAULT_BUILD_TIMEOUT_MS 60000

static void build_deadline_hook(lua_State *L, lua_Debug *info)
{
    if (clock_mono_ms() > build_deadline) {
        lua_pushfstring(L, "building the workflow took longer than its limit of %d s "
                        "(--build-timeout)", (int)(build_timeout_ms / 1000));
        lua_error(L);
    }
}

/* With luahost_time_builds_by_alarm: the state whose build SIGALRM stops,
 * and the SIGALRM action to restore after the build. */
static int builds_by_alarm;
static lua_State *volatile alarm_state;
static struct sigaction saved_alarm_action;

void luahost_time_builds_by_alarm(void)
{
    builds_by_alarm = 1;
}

/* Sets the deadline hook, so that the build stops at its next instruction;
 * the standalone lua interpreter stops a script on Ctrl-C the same way. */
static void on_build_alarm(int number)
{
    (void)number;
    if (alarm_state != NULL)
        lua_sethook(alarm_state, build_deadline_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                    1);
}

void luahost_set_build_timeout(lua_State *L, int64_t timeout_ms)
{
    lua_pushinteger(L, (lua_Integer)timeout_ms);
    lua_setfield(L, LUA_REGISTRYINDEX, build_timeout_key);
}

/* Limits the Lua code run from now on to the build timeout. */
static void start_build_clock(lua_State *L)
{
    int64_t timeout_ms = DEFAULT_BUILD_TIMEOUT_MS;

    if (lua_getfield(L, LUA_REGISTRYINDEX, build_timeout_key) == LUA_TNUMBER)
        timeout_ms = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    build_timeout_ms = timeout_ms;
    build_deadline = clock_mono_ms() + timeout_ms;
    if (!builds_by_alarm) {
        /* Lua checks a count hook before every instruction, so it slows a
         * large build by about a seventh (an estimate from one 10,000-step
         * build). The alarm costs nothing until it fires. */
        lua_sethook(L, build_deadline_hook, LUA_MASKCOUNT, 10000);
        return;
    }
    struct sigaction action;
    struct itimerval timer = { { 0, 0 }, { (time_t)(timeout_ms / 1000),
                                           (suseconds_t)(timeout_ms % 1000) * 1000 } };
    memset(&action, 0, sizeof action);
    action.sa_handler = on_build_alarm;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    alarm_state = L;
    sigaction(SIGALRM, &action, &saved_alarm_action);
    setitimer(ITIMER_REAL, &timer, NULL);
}

/* Ends what start_build_clock started. */
static void stop_build_clock(lua_State *L)
{
    if (alarm_state != NULL) {
        struct itimerval off = { { 0, 0 }, { 0, 0 } };
        setitimer(ITIMER_REAL, &off, NULL);
        sigaction(SIGALRM, &saved_alarm_action, NULL);
        alarm_state = NULL;
    }
    lua_sethook(L, NULL, 0, 0);
}

static char *pop_error(lua_State *L)
{
    const char *message = lua_tostring(L, -1);
    char *copy = strbuf_dup(message ? message : "(error object is not a string)");

    lua_pop(L, 1);
    return copy;
}

/* Message handler for lua_pcall: appends a traceback. [-1, +1, m] */
static int traceback_handler(lua_State *L)
{
    const char *message = lua_tostring(L, 1);

    /* A table raised as an error shows as JSON when it has no __tostring,
     * not as an address. */
    if (message == NULL && lua_type(L, 1) == LUA_TTABLE &&
        luaL_getmetafield(L, 1, "__tostring") == LUA_TNIL &&
        lua_getfield(L, LUA_REGISTRYINDEX, json_key) == LUA_TTABLE &&
        lua_getfield(L, -1, "encode") == LUA_TFUNCTION) {
        lua_pushvalue(L, 1);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_isstring(L, -1))
            message = lua_pushfstring(L, "error object %s", lua_tostring(L, -1));
    }
    if (message == NULL)
        message = luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, message, 1);
    return 1;
}

/* package.preload loader for an embedded module; upvalue 1 is its index in
 * bgwf_embedded_modules. [-0, +1, e] */
static int load_embedded(lua_State *L)
{
    const struct embedded_module *module =
        &bgwf_embedded_modules[lua_tointeger(L, lua_upvalueindex(1))];
    char *chunk_name = strbuf_printf("@[bgwf]/%s.lua", module->name);
    int rc = luaL_loadbuffer(L, module->source, module->length, chunk_name);

    free(chunk_name);
    if (rc != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, module->name);
    lua_call(L, 1, 1);
    return 1;
}

void luahost_preload_modules(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (int i = 0; bgwf_embedded_modules[i].name; i++) {
        if (lua_getfield(L, -1, bgwf_embedded_modules[i].name) == LUA_TNIL) {
            lua_pushinteger(L, i);
            lua_pushcclosure(L, load_embedded, 1);
            lua_setfield(L, -3, bgwf_embedded_modules[i].name);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Requires module and keeps it in the registry under key. [-0, +0, e] */
static int require_into_registry(lua_State *L)
{
    const char *module = lua_tostring(L, 1);
    const char *key = lua_tostring(L, 2);

    lua_getglobal(L, "require");
    lua_pushstring(L, module);
    lua_call(L, 1, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
    return 0;
}

static int preload_module(lua_State *L, const char *module, const char *key, char **error)
{
    lua_pushcfunction(L, require_into_registry);
    lua_pushstring(L, module);
    lua_pushstring(L, key);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("loading the Lua module %s failed: %s", module, message);
        free(message);
        return -1;
    }
    return 0;
}

lua_State *luahost_open(const char *search_path, char **error)
{
    lua_State *L = luaL_newstate();

    if (L == NULL) {
        *error = strbuf_printf("creating a Lua state failed: %s", strerror(ENOMEM));
        return NULL;
    }
    luaL_openlibs(L);
    luahost_preload_modules(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_bgwf);
    lua_setfield(L, -2, "bgwf");
    lua_pop(L, 1);
    lua_pushstring(L, search_path);
    lua_setfield(L, LUA_REGISTRYINDEX, search_path_key);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, action_cache_key);
    native_register_builtins(L);
    if (preload_module(L, "bgwf.json", json_key, error) != 0 ||
        preload_module(L, "bgwf.builder", builder_key, error) != 0) {
        lua_close(L);
        return NULL;
    }
    return L;
}

static const char *search_path(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, search_path_key);
    const char *path = lua_tostring(L, -1);
    lua_pop(L, 1);
    return path ? path : ".";
}

/* Checks the table that an action file returned, at the top of the stack. */
static int check_action_table(lua_State *L, const char *name, const char *path, char **error)
{
    if (!lua_istable(L, -1)) {
        *error = strbuf_printf("action '%s' (%s) must return a table with an execute function, "
                               "not a %s", name, path, luaL_typename(L, -1));
        return -1;
    }
    if (lua_getfield(L, -1, "execute") != LUA_TFUNCTION) {
        *error = strbuf_printf("action '%s' (%s) has no execute function: return "
                               "{ execute = function(step, ctx) ... end }", name, path);
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    int kind = lua_getfield(L, -1, "precondition");
    lua_pop(L, 1);
    if (kind != LUA_TNIL && kind != LUA_TFUNCTION) {
        *error = strbuf_printf("action '%s' (%s): precondition must be a function, not a %s",
                               name, path, lua_typename(L, kind));
        return -1;
    }
    return 0;
}

/* Registers the native action of actions/NAME.so when that file is on the
 * search path. Returns 1 when it was loaded, 0 when there is no such file,
 * and -1 with *error set when loading it failed. [-0, +0, m] */
static int load_shared_object(lua_State *L, const char *name, char **error)
{
    char *path = NULL, *missing = NULL;
    int rc;

    if (names_find_file(search_path(L), "actions", "action", name, ".so", &path, &missing) != 0) {
        free(missing);
        return 0;
    }
    rc = native_load_module(L, name, path, error) == 0 ? 1 : -1;
    free(path);
    return rc;
}

int luahost_push_action(lua_State *L, const char *name, char **error)
{
    char *path = NULL;

    lua_getfield(L, LUA_REGISTRYINDEX, action_cache_key);
    if (lua_getfield(L, -1, name) == LUA_TTABLE) {
        lua_remove(L, -2);
        return 0;
    }
    lua_pop(L, 1);

    if (native_push_action(L, name)) {
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        lua_remove(L, -2);
        return 0;
    }
    switch (load_shared_object(L, name, error)) {
    case 1:
        native_push_action(L, name);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
        lua_remove(L, -2);
        return 0;
    case -1:
        goto fail;
    }
    if (names_find_file(search_path(L), "actions", "action", name, ".lua", &path, error) != 0)
        goto fail;
    lua_pushcfunction(L, traceback_handler);
    if (luaL_loadfile(L, path) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("loading action '%s' failed: %s", name, message);
        free(message);
        lua_pop(L, 1);
        goto fail;
    }
    if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("loading action '%s' failed: %s", name, message);
        free(message);
        lua_pop(L, 1);
        goto fail;
    }
    lua_remove(L, -2);
    if (check_action_table(L, name, path, error) != 0) {
        lua_pop(L, 1);
        goto fail;
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    lua_remove(L, -2);
    free(path);
    return 0;

fail:
    lua_pop(L, 1);
    free(path);
    return -1;
}

int luahost_check_action(lua_State *L, const char *name, char **error)
{
    char *path = NULL;

    if (!names_is_valid(name)) {
        *error = names_invalid_message("action", name);
        return -1;
    }
    if (native_push_action(L, name)) {
        lua_pop(L, 1);
        return 0;
    }
    switch (load_shared_object(L, name, error)) {
    case 1:
        return 0;
    case -1:
        return -1;
    }
    if (names_find_file(search_path(L), "actions", "action", name, ".lua", &path, error) != 0)
        return -1;
    if (luaL_loadfile(L, path) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("action '%s' does not compile: %s", name, message);
        free(message);
        free(path);
        return -1;
    }
    lua_pop(L, 1);
    free(path);
    return 0;
}

/* Decodes JSON text with bgwf.json.decode and pushes the value.
 * [-0, +1, m]; returns -1 (pushing nothing) with *error set on invalid JSON. */
static int push_decoded(lua_State *L, const char *json, char **error)
{
    lua_getfield(L, LUA_REGISTRYINDEX, json_key);
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushstring(L, json);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
        *error = pop_error(L);
        return -1;
    }
    if (lua_isnil(L, -2) && !lua_isnil(L, -1)) {
        *error = strbuf_dup(lua_tostring(L, -1));
        lua_pop(L, 2);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

/* Decodes a step's stored context, which bgwf.json.encode wrote, with the
 * C decoder; on text it rejects, dkjson decides and gives the message.
 * [-0, +1, m]; returns -1 (pushing nothing) with *error set. */
static int push_context(lua_State *L, const char *json, char **error)
{
    char *ignored = NULL;

    if (json_decode_push(L, json, strlen(json), &ignored) == 0)
        return 0;
    free(ignored);
    return push_decoded(L, json, error);
}

static int64_t field_integer(lua_State *L, int index, const char *key)
{
    lua_getfield(L, index, key);
    int64_t value = (int64_t)lua_tointeger(L, -1);
    lua_pop(L, 1);
    return value;
}

/* Reads the policy table of the step table at the top of the stack. */
static void read_policy(lua_State *L, struct step_policy *policy)
{
    lua_getfield(L, -1, "policy");
    policy->retries = (int)field_integer(L, -1, "retries");
    policy->backoff_initial_ms = field_integer(L, -1, "backoff_initial_ms");
    lua_getfield(L, -1, "backoff_factor");
    policy->backoff_factor = lua_tonumber(L, -1);
    lua_pop(L, 1);
    policy->backoff_max_ms = field_integer(L, -1, "backoff_max_ms");
    policy->timeout_ms = field_integer(L, -1, "timeout_ms");
    policy->max_memory = field_integer(L, -1, "max_memory");
    lua_pop(L, 1);
}

static char *field_string(lua_State *L, int index, const char *key)
{
    lua_getfield(L, index, key);
    char *value = strbuf_dup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return value;
}

void luahost_read_steps(lua_State *L, struct submit_request *request)
{
    int count = (int)luaL_len(L, -1);

    request->steps = calloc((size_t)count + 1, sizeof *request->steps);
    request->step_count = count;
    for (int i = 0; i < count; i++) {
        struct submit_step *step = &request->steps[i];
        lua_geti(L, -1, i + 1);
        step->token = field_string(L, -1, "token");
        step->action = field_string(L, -1, "action");
        step->context = field_string(L, -1, "context");
        lua_getfield(L, -1, "cooldown_ms");
        step->cooldown_ms = (int64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        read_policy(L, &step->policy);
        lua_getfield(L, -1, "deps");
        step->dep_count = (int)luaL_len(L, -1);
        step->deps = calloc((size_t)step->dep_count + 1, sizeof *step->deps);
        for (int d = 0; d < step->dep_count; d++) {
            lua_geti(L, -1, d + 1);
            step->deps[d] = (int)lua_tointeger(L, -1) - 1;
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
}

int luahost_check_steps(lua_State *L, const struct submit_request *request, char **error)
{
    for (int i = 0; i < request->step_count; i++) {
        const char *action = request->steps[i].action;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = strcmp(request->steps[j].action, action) == 0;
        if (seen)
            continue;
        char *message = NULL;
        if (luahost_check_action(L, action, &message) != 0) {
            *error = strbuf_printf("step '%s': %s", request->steps[i].token, message);
            free(message);
            return -1;
        }
    }
    return 0;
}

int luahost_build(lua_State *L, const char *app, const char *scope, const char *context_json,
                  struct submit_request *request, char **error)
{
    int top = lua_gettop(L);
    char *path = NULL;
    int rc = -1;

    *request = (struct submit_request){ .app = app, .scope = scope };
    if (names_find_file(search_path(L), "workflows", "workflow", app, ".lua", &path, error) != 0)
        return -1;

    lua_getfield(L, LUA_REGISTRYINDEX, builder_key);
    lua_getfield(L, -1, "build");
    lua_pushstring(L, app);
    if (scope)
        lua_pushstring(L, scope);
    else
        lua_pushnil(L);

    if (luaL_loadfile(L, path) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("workflow '%s' does not compile: %s", app, message);
        free(message);
        goto done;
    }
    start_build_clock(L);
    if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("workflow '%s' failed to load: %s", app, message);
        free(message);
        goto done;
    }
    if (!lua_isfunction(L, -1)) {
        *error = strbuf_printf("workflow '%s' (%s) must return a function(wf, ctx) that declares "
                               "its steps, not a %s", app, path, luaL_typename(L, -1));
        goto done;
    }

    if (context_json == NULL) {
        lua_newtable(L);
    } else {
        char *message = NULL;
        if (push_decoded(L, context_json, &message) != 0) {
            *error = strbuf_printf("invalid --context JSON: %s", message);
            free(message);
            goto done;
        }
    }

    if (lua_pcall(L, 4, 2, 0) != LUA_OK) {
        char *message = pop_error(L);
        *error = strbuf_printf("workflow '%s': %s", app, message);
        free(message);
        goto done;
    }
    if (lua_istable(L, -1)) {
        int count = (int)luaL_len(L, -1);
        request->dropped = calloc((size_t)count + 1, sizeof *request->dropped);
        for (int i = 0; i < count; i++) {
            lua_geti(L, -1, i + 1);
            request->dropped[request->dropped_count++] = strbuf_dup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    luahost_read_steps(L, request);
    rc = luahost_check_steps(L, request, error);

done:
    stop_build_clock(L);
    lua_settop(L, top);
    free(path);
    return rc;
}

void luahost_free_request(struct submit_request *request)
{
    for (int i = 0; i < request->step_count; i++) {
        struct submit_step *step = &request->steps[i];
        free((char *)step->token);
        free((char *)step->action);
        free((char *)step->context);
        free(step->deps);
    }
    free(request->steps);
    request->steps = NULL;
    request->step_count = 0;
    for (int i = 0; i < request->dropped_count; i++)
        free(request->dropped[i]);
    free(request->dropped);
    request->dropped = NULL;
    request->dropped_count = 0;
}

int luahost_has_precondition(lua_State *L, const char *name, char **error)
{
    int kind;

    if (luahost_push_action(L, name, error) != 0)
        return -1;
    kind = lua_getfield(L, -1, "precondition");
    lua_pop(L, 2);
    return kind != LUA_TNIL;
}

void luahost_prepare_forking(lua_State *L)
{
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, LUAHOST_CHILD_PROCESS_KEY);
    step_object_prepare(L);
}

/* Marks L as a child's state, unless luahost_prepare_forking did. */
static void mark_child(lua_State *L)
{
    int marked = lua_getfield(L, LUA_REGISTRYINDEX, LUAHOST_CHILD_PROCESS_KEY) != LUA_TNIL;

    lua_pop(L, 1);
    if (!marked) {
        lua_pushboolean(L, 1);
        lua_setfield(L, LUA_REGISTRYINDEX, LUAHOST_CHILD_PROCESS_KEY);
    }
}

int luahost_check(lua_State *L, const char *action, const char *context_json, int report_fd)
{
    char *error = NULL;
    int sent;

    mark_child(L);
    lua_pushcfunction(L, traceback_handler);
    if (luahost_push_action(L, action, &error) != 0)
        goto failed;
    lua_getfield(L, -1, "precondition");
    lua_remove(L, -2);
    if (push_context(L, context_json, &error) != 0) {
        char *message = strbuf_printf("the stored context is not valid JSON: %s", error);
        free(error);
        error = message;
        goto failed;
    }
    if (lua_pcall(L, 1, 1, -3) != LUA_OK) {
        char *message = pop_error(L);
        error = strbuf_printf("precondition raised an error: %s", message);
        free(message);
        goto failed;
    }
    if (lua_toboolean(L, -1))
        return frame_write(report_fd, FRAME_READY, "", 0);
    return frame_write(report_fd, FRAME_NOT_READY, "", 0);

failed:
    sent = frame_write(report_fd, FRAME_FAILURE, error, strlen(error));
    free(error);
    return sent;
}

int luahost_execute(lua_State *L, const struct step_info *info, const char *context_json,
                    int report_fd)
{
    char *error = NULL;
    int sent;

    mark_child(L);
    lua_pushcfunction(L, traceback_handler);
    if (luahost_push_action(L, info->action, &error) != 0)
        goto failed;
    lua_getfield(L, -1, "execute");
    lua_remove(L, -2);
    step_object_push(L, info, report_fd);
    if (push_context(L, context_json, &error) != 0) {
        char *message = strbuf_printf("the stored context is not valid JSON: %s", error);
        free(error);
        error = message;
        goto failed;
    }
    if (lua_pcall(L, 2, 0, -4) != LUA_OK) {
        error = pop_error(L);
        goto failed;
    }
    return frame_write(report_fd, FRAME_SUCCESS, "", 0);

failed:
    sent = frame_write(report_fd, FRAME_FAILURE, error, strlen(error));
    free(error);
    return sent;
}
