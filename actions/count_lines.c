/* An example native action, count_lines: counts the lines of the file at
 * ctx.path and shows the count as the step's status message.
 *
 * Build it as a shared object named after the action (CMake builds
 * build/actions/count_lines.so), put it under actions/ on the search path,
 * and name the action in a workflow as usual:
 *
 *   wf:step("count", "count_lines", { path = "/etc/services" })
 *
 * The step waits (precondition) until the file exists, and fails with a
 * message when it cannot be read. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"

/* Returns ctx.path, raising when it is missing. [-0, +1, e] */
static const char *context_path(lua_State *L, int ctx)
{
    luaL_checktype(L, ctx, LUA_TTABLE);
    if (lua_getfield(L, ctx, "path") != LUA_TSTRING)
        luaL_error(L, "count_lines: ctx.path must be a file path");
    return lua_tostring(L, -1);
}

/* precondition(ctx): true once ctx.path exists. [-1, +1, e] */
static int count_lines_precondition(lua_State *L)
{
    struct stat info;

    lua_pushboolean(L, stat(context_path(L, 1), &info) == 0);
    return 1;
}

/* execute(step, ctx): counts the newlines of ctx.path, then calls
 * step:status("N lines in PATH") and step:log with the same text.
 * [-2, +0, e] */
static int count_lines_execute(lua_State *L)
{
    const char *path = context_path(L, 2);
    char buffer[65536];
    long long lines = 0;
    size_t count;
    FILE *file = fopen(path, "rb");

    if (file == NULL) {
        int saved = errno;
        return luaL_error(L, "count_lines: cannot open '%s': %s", path, strerror(saved));
    }
    while ((count = fread(buffer, 1, sizeof buffer, file)) > 0)
        for (size_t i = 0; i < count; i++)
            lines += buffer[i] == '\n';
    if (ferror(file)) {
        int saved = errno;
        fclose(file);
        return luaL_error(L, "count_lines: reading '%s' failed: %s", path, strerror(saved));
    }
    fclose(file);

    lua_pushfstring(L, "%I lines in %s", (LUAI_UACINT)lines, path);
    for (int i = 0; i < 2; i++) {
        lua_getfield(L, 1, i == 0 ? "status" : "log");
        lua_pushvalue(L, 1);
        lua_pushvalue(L, -3);
        lua_call(L, 2, 0);
    }
    return 0;
}

/* The entry point bgwf looks up in actions/count_lines.so. */
BGWF_EXPORT const struct bgwf_action *bgwf_open_count_lines(void)
{
    static const struct bgwf_action action =
        BGWF_ACTION("count_lines", count_lines_execute, count_lines_precondition);

    return &action;
}
