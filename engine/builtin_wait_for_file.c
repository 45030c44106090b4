/* The built-in action wait_for_file: keeps a step waiting until a path exists. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "native.h"

/* Pushes ctx.path after checking it. [-0, +1, e] */
static const char *check_path(lua_State *L, int ctx)
{
    luaL_checktype(L, ctx, LUA_TTABLE);
    if (lua_getfield(L, ctx, "path") != LUA_TSTRING || lua_rawlen(L, -1) == 0)
        luaL_error(L, "wait_for_file: ctx.path must be a non-empty string");
    return lua_tostring(L, -1);
}

/* precondition(ctx): true once ctx.path exists and, when ctx.non_empty is
 * true, is not an empty file. A missing path (ENOENT, ENOTDIR) means "not
 * yet"; any other stat failure raises. [-1, +1, e] */
static int wait_for_file_precondition(lua_State *L)
{
    const char *path = check_path(L, 1);
    int non_empty;
    struct stat info;

    lua_getfield(L, 1, "non_empty");
    non_empty = lua_toboolean(L, -1);
    if (stat(path, &info) != 0) {
        int saved = errno;
        if (saved == ENOENT || saved == ENOTDIR) {
            lua_pushboolean(L, 0);
            return 1;
        }
        return luaL_error(L, "wait_for_file: stat '%s' failed: %s", path, strerror(saved));
    }
    lua_pushboolean(L, !non_empty || !S_ISREG(info.st_mode) || info.st_size > 0);
    return 1;
}

/* execute(step, ctx): sets the status message "found PATH". [-0, +0, e] */
static int wait_for_file_execute(lua_State *L)
{
    const char *path = check_path(L, 2);

    lua_getfield(L, 1, "status");
    lua_pushvalue(L, 1);
    lua_pushfstring(L, "found %s", path);
    lua_call(L, 2, 0);
    return 0;
}

const struct bgwf_action builtin_wait_for_file_action =
    BGWF_ACTION("wait_for_file", wait_for_file_execute, wait_for_file_precondition);
