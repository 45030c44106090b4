/* C tests for native actions: registration, the ABI check, actions added
 * for every Lua state, and the order in which action names are resolved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "check.h"
#include "luahost.h"
#include "native.h"

static int added_execute(lua_State *L)
{
    return 0;
}

static int replaced_noop_execute(lua_State *L)
{
    return 0;
}

/* Returns 1 when the execute function of action name in L is fn. */
static int execute_is(lua_State *L, const char *name, lua_CFunction fn)
{
    char *error = NULL;
    int same;

    if (luahost_push_action(L, name, &error) != 0) {
        fprintf(stderr, "luahost_push_action(%s): %s\n", name, error);
        free(error);
        return 0;
    }
    lua_getfield(L, -1, "execute");
    same = lua_tocfunction(L, -1) == fn;
    lua_pop(L, 2);
    return same;
}

static void test_register_checks(void)
{
    lua_State *L = luaL_newstate();
    struct bgwf_action valid = BGWF_ACTION("valid.name", added_execute, NULL);
    struct bgwf_action old_abi = { 1, "old", added_execute, NULL };
    struct bgwf_action no_execute = BGWF_ACTION("empty", NULL, NULL);
    struct bgwf_action bad_name = BGWF_ACTION("../up", added_execute, NULL);

    CHECK("bgwf_register_action valid", bgwf_register_action(L, &valid) == 0);
    CHECK("bgwf_register_action other ABI", bgwf_register_action(L, &old_abi) == -1);
    CHECK("bgwf_register_action no execute", bgwf_register_action(L, &no_execute) == -1);
    CHECK("bgwf_register_action bad name", bgwf_register_action(L, &bad_name) == -1);
    CHECK("bgwf_register_action NULL", bgwf_register_action(L, NULL) == -1);
    CHECK("native_push_action registered", native_push_action(L, "valid.name") == 1);
    lua_pop(L, 1);
    CHECK("native_push_action other ABI", native_push_action(L, "old") == 0);
    CHECK("native_push_action stack", lua_gettop(L) == 0);
    lua_close(L);
}

static void test_add_actions(void)
{
    static const struct bgwf_action invalid[] = {
        BGWF_ACTION("fine", added_execute, NULL),
        { 1, "stale", added_execute, NULL },
    };
    static const struct bgwf_action actions[] = {
        BGWF_ACTION("added", added_execute, NULL),
        BGWF_ACTION("noop", replaced_noop_execute, NULL),
    };
    char *error = NULL;

    CHECK("bgwf_add_actions invalid entry", bgwf_add_actions(invalid, 2) == -1);
    CHECK("bgwf_add_actions NULL array", bgwf_add_actions(NULL, 1) == -1);
    CHECK("bgwf_add_actions", bgwf_add_actions(actions, 2) == 0);

    lua_State *L = luahost_open(".", &error);
    CHECK("luahost_open", L != NULL);
    if (L == NULL) {
        free(error);
        return;
    }
    CHECK("added action in a new state", execute_is(L, "added", added_execute));
    CHECK("added action replaces a built-in", execute_is(L, "noop", replaced_noop_execute));
    CHECK("rejected entry not added", native_push_action(L, "fine") == 0);
    CHECK("built-in exec still there", native_push_action(L, "exec") == 1);
    lua_pop(L, 1);
    lua_close(L);
}

static void test_resolution_order(void)
{
    char folder[] = "/tmp/bgwf-native-XXXXXX";
    char *error = NULL, *path;
    FILE *file;

    CHECK("mkdtemp", mkdtemp(folder) != NULL);
    path = malloc(strlen(folder) + 64);
    sprintf(path, "%s/actions", folder);
    mkdir(path, 0700);
    /* A Lua file named like a built-in is never loaded, and a file that
     * is not a shared object fails the lookup instead of falling back. */
    sprintf(path, "%s/actions/sleep.lua", folder);
    file = fopen(path, "w");
    fputs("error('loaded sleep.lua')\n", file);
    fclose(file);
    sprintf(path, "%s/actions/fake.so", folder);
    file = fopen(path, "w");
    fputs("not an ELF file\n", file);
    fclose(file);
    sprintf(path, "%s/actions/fake.lua", folder);
    file = fopen(path, "w");
    fputs("return { execute = function() end }\n", file);
    fclose(file);

    lua_State *L = luahost_open(folder, &error);
    CHECK("luahost_open", L != NULL);
    if (L != NULL) {
        CHECK("built-in before actions/NAME.lua",
              luahost_check_action(L, "sleep", &error) == 0);
        CHECK("actions/NAME.so before actions/NAME.lua",
              luahost_check_action(L, "fake", &error) == -1);
        CHECK("broken .so message",
              error != NULL && strstr(error, "loading action 'fake' from ") != NULL);
        free(error);
        error = NULL;
        CHECK("no file at all", luahost_check_action(L, "absent", &error) == -1);
        CHECK("missing action message",
              error != NULL && strncmp(error, "action 'absent' not found: no actions/absent.lua",
                                       48) == 0);
        free(error);
        lua_close(L);
    }

    sprintf(path, "rm -rf '%s'", folder);
    if (system(path) != 0)
        fprintf(stderr, "removing %s failed\n", folder);
    free(path);
}

int main(void)
{
    test_register_checks();
    test_add_actions();
    test_resolution_order();
    return check_report("test_native");
}
