/* The bgwf Lua module: require "bgwf" from lua5.4 to submit workflows and
 * read their status through the same library as the bgwf command. */
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "luahost.h"
#include "store.h"

/* bgwf.submit{ db = PATH, path = DIRS, app = NAME, scope = S, context = JSON }
 * -> execution_id, attempt_id; or nil, message. [-1, +2, m] */
static int module_submit(lua_State *L)
{
    struct submit_request request;
    const char *db, *search_path, *app, *scope, *context;
    char *error = NULL;
    int64_t execution_id = 0, attempt_id = 0;
    lua_State *host = NULL;
    struct store *store = NULL;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "db");
    lua_getfield(L, 1, "path");
    lua_getfield(L, 1, "app");
    lua_getfield(L, 1, "scope");
    lua_getfield(L, 1, "context");
    db = luaL_optstring(L, 2, "bgwf.db");
    search_path = luaL_optstring(L, 3, ".");
    app = luaL_checkstring(L, 4);
    scope = luaL_optstring(L, 5, NULL);
    context = luaL_optstring(L, 6, NULL);

    host = luahost_open(search_path, &error);
    if (host == NULL)
        goto done;
    if (luahost_build(host, app, scope, context, &request, &error) == 0 &&
        (store = store_open(db, &error)) != NULL)
        store->ops->submit(store, &request, &execution_id, &attempt_id, &error);
    luahost_free_request(&request);

done:
    if (store)
        store->ops->close(store);
    if (host)
        lua_close(host);
    lua_settop(L, 0);
    if (error) {
        lua_pushnil(L);
        lua_pushstring(L, error);
        free(error);
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)execution_id);
    lua_pushinteger(L, (lua_Integer)attempt_id);
    return 2;
}

static const luaL_Reg module_functions[] = {
    { "submit", module_submit },
    { NULL, NULL },
};

/* Opens the module. [-0, +1, m] */
int luaopen_bgwf(lua_State *L)
{
    luaL_newlib(L, module_functions);
    lua_pushstring(L, BGWF_VERSION);
    lua_setfield(L, -2, "version");
    return 1;
}
