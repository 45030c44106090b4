/* An example host program: the bgwf command line with one more native
 * action, greet, compiled in through bgwf_main().
 *
 *   bgwf_host_example executor --apps greetings
 *
 * runs workflows whose steps name "greet" like any other action. */
#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"

/* greet(step, ctx): sets the status message "hello, ctx.name"; fails when
 * ctx.name is missing. [-2, +0, e] */
static int greet_execute(lua_State *L)
{
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "name") != LUA_TSTRING)
        return luaL_error(L, "greet: ctx.name must be a string");
    lua_getfield(L, 1, "status");
    lua_pushvalue(L, 1);
    lua_pushfstring(L, "hello, %s", lua_tostring(L, -3));
    lua_call(L, 2, 0);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct bgwf_action actions[] = {
        BGWF_ACTION("greet", greet_execute, NULL),
    };

    return bgwf_main(argc, argv, actions, 1);
}
