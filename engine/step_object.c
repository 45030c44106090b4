/* The step object that an action's execute(step, ctx) receives. */
#include <errno.h>
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
 * joined by tabs, as one log line of the step. [-0, +0, e] */
static int step_log(lua_State *L)
{
    struct step_object *step = check_step(L);
    int top = lua_gettop(L);
    luaL_Buffer line;

    luaL_buffinit(L, &line);
    for (int i = 2; i <= top; i++) {
        if (i > 2)
            luaL_addchar(&line, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&line);
    }
    luaL_pushresult(&line);
    size_t length;
    const char *text = lua_tolstring(L, -1, &length);
    send_frame(L, step, FRAME_LOG, text, length);
    return 0;
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

void step_object_push(lua_State *L, const struct step_info *info, int report_fd)
{
    struct step_object *step = lua_newuserdatauv(L, sizeof *step, 1);

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
    push_metatable(L);
    lua_setmetatable(L, -2);
}
