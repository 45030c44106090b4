/* The step object that an action's execute(step, ctx) receives. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "frame.h"
#include "step_object.h"

#define STEP_METATABLE "bgwf.step"

struct step_object {
    int report_fd;
};

static struct step_object *check_step(lua_State *L)
{
    return luaL_checkudata(L, 1, STEP_METATABLE);
}

static void send_frame(lua_State *L, struct step_object *step, enum frame_type type,
                       const char *text, size_t length)
{
    if (frame_write(step->report_fd, type, text, length) != 0)
        luaL_error(L, "sending to the executor failed: %s", strerror(errno));
}

/* step:status(message): sets the status message shown by bgwf status.
 * [-0, +0, e] */
static int step_status(lua_State *L)
{
    struct step_object *step = check_step(L);
    size_t length;
    const char *text;

    luaL_checkany(L, 2);
    text = luaL_tolstring(L, 2, &length);
    send_frame(L, step, FRAME_STATUS, text, length);
    return 0;
}

/* step:log(...): writes its arguments, converted like print does and
 * joined by tabs, as one line of the step's output, in order with what
 * print writes. [-0, +0, e] */
static int step_log(lua_State *L)
{
    int top = lua_gettop(L);
    luaL_Buffer line;

    check_step(L);
    luaL_buffinit(L, &line);
    for (int i = 2; i <= top; i++) {
        if (i > 2)
            luaL_addchar(&line, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&line);
    }
    luaL_addchar(&line, '\n');
    luaL_pushresult(&line);
    size_t length;
    const char *text = lua_tolstring(L, -1, &length);
    if (fwrite(text, 1, length, stdout) != length || fflush(stdout) != 0)
        return luaL_error(L, "writing the step log failed: %s", strerror(errno));
    return 0;
}

/* Returns the resource name that argument arg gives: a string, or a handle
 * from wf:resource (a table with a "$resource" string). [-0, +0, v] */
static const char *check_resource_name(lua_State *L, int arg)
{
    const char *name = NULL;
    size_t length = 0;

    if (lua_type(L, arg) == LUA_TTABLE) {
        lua_getfield(L, arg, "$resource");
        name = lua_tolstring(L, -1, &length);
        lua_pop(L, 1);
    } else if (lua_type(L, arg) == LUA_TSTRING) {
        name = lua_tolstring(L, arg, &length);
    }
    luaL_argexpected(L, name != NULL, arg, "resource name or wf:resource handle");
    luaL_argcheck(L, length > 0 && length <= 256 && strlen(name) == length, arg,
                  "resource names are 1 to 256 bytes without NUL");
    return name;
}

/* Calls bgwf.json's function field with the value at index (and, when not
 * NULL, the path name root that error messages start from) and leaves its
 * two results on the stack. [-0, +2, e] */
static void call_json(lua_State *L, const char *field, int index, const char *root)
{
    index = lua_absindex(L, index);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "bgwf.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, field);
    lua_remove(L, -2);
    lua_pushvalue(L, index);
    if (root)
        lua_pushstring(L, root);
    lua_call(L, root ? 2 : 1, 2);
}

/* step:set(name, value): stores value (any JSON-serializable Lua value) as
 * resource name of the execution once the step completes; a step that
 * fails writes nothing. [-0, +0, e] */
static int step_set(lua_State *L)
{
    struct step_object *step = check_step(L);
    const char *name = check_resource_name(L, 2);
    luaL_Buffer payload;
    size_t length;
    const char *json;

    luaL_checkany(L, 3);
    call_json(L, "encode", 3, "value");
    if (lua_isnil(L, -2))
        return luaL_error(L, "resource '%s' cannot be stored: the value is not JSON-serializable "
                          "%s", name, lua_tostring(L, -1));
    json = lua_tolstring(L, -2, &length);

    luaL_buffinit(L, &payload);
    luaL_addstring(&payload, name);
    luaL_addchar(&payload, '\0');
    luaL_addlstring(&payload, json, length);
    luaL_pushresult(&payload);
    size_t payload_length;
    const char *text = lua_tolstring(L, -1, &payload_length);
    send_frame(L, step, FRAME_RESOURCE, text, payload_length);

    /* Later reads in this step see the new value. */
    lua_getiuservalue(L, 1, 2);
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, name);
    return 0;
}

/* step:get(name): returns the value of resource name. [-0, +1, e] */
static int step_get(lua_State *L)
{
    check_step(L);
    const char *name = check_resource_name(L, 2);

    lua_getiuservalue(L, 1, 2);
    if (lua_getfield(L, -1, name) != LUA_TSTRING) {
        lua_getiuservalue(L, 1, 1);
        lua_getfield(L, -1, "execution");
        return luaL_error(L, "resource '%s' was never written in execution %I; write it with "
                          "step:set in a step that runs before this one", name,
                          (LUAI_UACINT)lua_tointeger(L, -1));
    }
    call_json(L, "decode", -1, NULL);
    if (lua_isnil(L, -2) && !lua_isnil(L, -1))
        return luaL_error(L, "resource '%s' does not hold valid JSON: %s", name,
                          lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

/* step[key]: a method, or a field from the uservalue table. [-0, +1, -] */
static int step_index(lua_State *L)
{
    check_step(L);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    lua_getiuservalue(L, 1, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* Assigning to a step field is a mistake in the action. [-0, +0, e] */
static int step_newindex(lua_State *L)
{
    check_step(L);
    return luaL_error(L, "step fields are read-only (tried to set '%s')",
                      luaL_tolstring(L, 2, NULL));
}

/* tostring(step): "step TOKEN (execution E, attempt A, try T)". [-0, +1, m] */
static int step_tostring(lua_State *L)
{
    check_step(L);
    lua_getiuservalue(L, 1, 1);
    lua_getfield(L, -1, "token");
    lua_getfield(L, -2, "execution");
    lua_getfield(L, -3, "attempt");
    lua_getfield(L, -4, "try");
    lua_pushfstring(L, "step %s (execution %I, attempt %I, try %I)", lua_tostring(L, -4),
                    (LUAI_UACINT)lua_tointeger(L, -3), (LUAI_UACINT)lua_tointeger(L, -2),
                    (LUAI_UACINT)lua_tointeger(L, -1));
    return 1;
}

static const luaL_Reg step_methods[] = {
    { "status", step_status },
    { "log", step_log },
    { "set", step_set },
    { "get", step_get },
    { NULL, NULL },
};

static void push_metatable(lua_State *L)
{
    if (luaL_newmetatable(L, STEP_METATABLE) == 0)
        return;
    luaL_newlib(L, step_methods);
    lua_pushcclosure(L, step_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, step_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, step_tostring);
    lua_setfield(L, -2, "__tostring");
}

void step_object_prepare(lua_State *L)
{
    static const char *const fields[] = {
        "token", "action", "app", "scope", "execution", "attempt", "id", "try",
    };

    push_metatable(L);
    /* Keeping the names referenced keeps them interned. */
    lua_createtable(L, (int)(sizeof fields / sizeof fields[0]), 0);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        lua_pushstring(L, fields[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_pop(L, 1);
}

void step_object_push(lua_State *L, const struct step_info *info, int report_fd)
{
    struct step_object *step = lua_newuserdatauv(L, sizeof *step, 2);

    step->report_fd = report_fd;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, info->token);
    lua_setfield(L, -2, "token");
    lua_pushstring(L, info->action);
    lua_setfield(L, -2, "action");
    lua_pushstring(L, info->app);
    lua_setfield(L, -2, "app");
    if (info->scope) {
        lua_pushstring(L, info->scope);
        lua_setfield(L, -2, "scope");
    }
    lua_pushinteger(L, (lua_Integer)info->execution_id);
    lua_setfield(L, -2, "execution");
    lua_pushinteger(L, (lua_Integer)info->attempt_id);
    lua_setfield(L, -2, "attempt");
    lua_pushinteger(L, (lua_Integer)info->step_id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, info->try_number);
    lua_setfield(L, -2, "try");
    lua_setiuservalue(L, -2, 1);
    lua_createtable(L, 0, info->resource_count);
    for (int i = 0; i < info->resource_count; i++) {
        lua_pushstring(L, info->resources[i].value);
        lua_setfield(L, -2, info->resources[i].name);
    }
    lua_setiuservalue(L, -2, 2);
    push_metatable(L);
    lua_setmetatable(L, -2);
}
