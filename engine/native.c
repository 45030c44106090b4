/* The registry of native (C) actions inside a Lua state, the actions a host
 * program adds for every state, and the built-ins. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "names.h"
#include "native.h"

/* One array handed to bgwf_add_actions. */
struct added_actions {
    const struct bgwf_action *actions;
    int count;
};

static const char registry_key[] = "bgwf.native_actions";

/* The arrays added with bgwf_add_actions, applied to every new Lua state.
 * NOTE: process-wide and unsynchronized, because a host program adds its
 * actions once from main() before bgwf opens any state or forks. */
static struct added_actions *added;
static int added_count;

/* Pushes the registry table of native actions, creating it on first use. */
static void push_registry(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, registry_key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, registry_key);
}

const char *native_check_action(const struct bgwf_action *action)
{
    if (action == NULL)
        return "the action is NULL";
    if (action->abi_version != BGWF_ABI_VERSION)
        return "it was built against another BGWF_ABI_VERSION of bgwf.h";
    if (!names_is_valid(action->name))
        return "its name is not [A-Za-z0-9_] segments joined by '.'";
    if (action->execute == NULL)
        return "its execute function is NULL";
    return NULL;
}

int bgwf_register_action(lua_State *L, const struct bgwf_action *action)
{
    if (native_check_action(action) != NULL)
        return -1;
    push_registry(L);
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, action->execute);
    lua_setfield(L, -2, "execute");
    if (action->precondition) {
        lua_pushcfunction(L, action->precondition);
        lua_setfield(L, -2, "precondition");
    }
    lua_setfield(L, -2, action->name);
    lua_pop(L, 1);
    return 0;
}

int bgwf_add_actions(const struct bgwf_action *actions, int count)
{
    struct added_actions *grown;

    if (count < 0 || (count > 0 && actions == NULL))
        return -1;
    for (int i = 0; i < count; i++)
        if (native_check_action(&actions[i]) != NULL)
            return -1;
    grown = realloc(added, sizeof *added * (size_t)(added_count + 1));
    if (grown == NULL)
        return -1;
    added = grown;
    added[added_count++] = (struct added_actions){ actions, count };
    return 0;
}

int native_push_action(lua_State *L, const char *name)
{
    push_registry(L);
    if (lua_getfield(L, -1, name) == LUA_TTABLE) {
        lua_remove(L, -2);
        return 1;
    }
    lua_pop(L, 2);
    return 0;
}

/* noop(step, ctx): does nothing and succeeds. [-0, +0, -] */
static int noop_execute(lua_State *L)
{
    return 0;
}

/* test_crash(step, ctx): ends the step's process the way ctx.signal names
 * ("SEGV" by a real invalid write, "ABRT" by abort()), to test isolation.
 * [-0, +0, v] */
static int test_crash_execute(lua_State *L)
{
    const char *kind = "SEGV";

    if (lua_type(L, 2) == LUA_TTABLE && lua_getfield(L, 2, "signal") == LUA_TSTRING)
        kind = lua_tostring(L, -1);
    if (strcmp(kind, "ABRT") == 0)
        abort();
    if (strcmp(kind, "SEGV") == 0) {
        volatile int *invalid = NULL;
        *invalid = 1;
    }
    return luaL_error(L, "test_crash: unknown signal '%s' (use SEGV or ABRT)", kind);
}

void native_register_builtins(lua_State *L)
{
    static const struct bgwf_action noop = BGWF_ACTION("noop", noop_execute, NULL);
    static const struct bgwf_action test_crash =
        BGWF_ACTION("test_crash", test_crash_execute, NULL);
    const char *hooks = getenv("BGWF_TEST_HOOKS");

    bgwf_register_action(L, &noop);
    bgwf_register_action(L, &builtin_sleep_action);
    bgwf_register_action(L, &builtin_exec_action);
    bgwf_register_action(L, &builtin_wait_for_file_action);
    if (hooks && strcmp(hooks, "1") == 0)
        bgwf_register_action(L, &test_crash);
    for (int i = 0; i < added_count; i++)
        for (int j = 0; j < added[i].count; j++)
            bgwf_register_action(L, &added[i].actions[j]);
}
