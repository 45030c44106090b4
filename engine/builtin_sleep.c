/* The built-in action sleep: waits ctx.seconds in the step's process. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "native.h"

/* sleep(step, ctx): sleeps ctx.seconds (a number >= 0, fractions allowed).
 * The step process keeps the default action of SIGTERM, so a signal to its
 * process group ends the wait at once. [-0, +0, e] */
static int sleep_execute(lua_State *L)
{
    struct timespec remaining;
    lua_Number seconds;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "seconds") != LUA_TNUMBER)
        return luaL_error(L, "sleep: ctx.seconds must be a number of seconds, not %s",
                          luaL_typename(L, -1));
    seconds = lua_tonumber(L, -1);
    if (!(seconds >= 0) || seconds > 1e9)
        return luaL_error(L, "sleep: ctx.seconds must be between 0 and 1e9, not %f",
                          (double)seconds);

    remaining.tv_sec = (time_t)floor(seconds);
    remaining.tv_nsec = (long)((seconds - floor(seconds)) * 1e9);
    while (nanosleep(&remaining, &remaining) != 0) {
        int saved = errno;
        if (saved != EINTR)
            return luaL_error(L, "sleep: nanosleep failed: %s", strerror(saved));
    }
    return 0;
}

const struct bgwf_action builtin_sleep_action = BGWF_ACTION("sleep", sleep_execute, NULL);
