/* Loading a native action from a shared object, actions/NAME.so. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "bgwf.h"
#include "native.h"
#include "strbuf.h"

/* Returns the malloc'd entry point symbol of action name: BGWF_OPEN_PREFIX
 * followed by name with each '.' replaced by '_'. */
static char *entry_symbol(const char *name)
{
    char *symbol = strbuf_printf("%s%s", BGWF_OPEN_PREFIX, name);

    for (char *p = symbol + strlen(BGWF_OPEN_PREFIX); *p; p++)
        if (*p == '.')
            *p = '_';
    return symbol;
}

int native_load_module(lua_State *L, const char *name, const char *path, char **error)
{
    char *symbol = entry_symbol(name);
    void *handle = NULL;
    bgwf_open_function open_action;
    const struct bgwf_action *action;
    const char *problem;
    int rc = -1;

    /* RTLD_NOW reports an unresolved symbol here rather than as a crash in
     * the step; RTLD_LOCAL keeps one action's symbols from another's. */
    handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        *error = strbuf_printf("loading action '%s' from %s failed: %s", name, path, dlerror());
        goto done;
    }
    *(void **)&open_action = dlsym(handle, symbol);
    if (open_action == NULL) {
        *error = strbuf_printf("action '%s' (%s) does not export %s: define "
                               "'const struct bgwf_action *%s(void)' as bgwf.h describes",
                               name, path, symbol, symbol);
        goto done;
    }
    action = open_action();
    if (action == NULL) {
        *error = strbuf_printf("action '%s' (%s): %s returned NULL", name, path, symbol);
        goto done;
    }
    /* abi_version is the first member in every version of the struct, so it
     * can be read before anything else is trusted. */
    if (action->abi_version != BGWF_ABI_VERSION) {
        *error = strbuf_printf("action '%s' (%s) was built against bgwf ABI version %d, but "
                               "this bgwf has ABI version %d: rebuild it with this bgwf's bgwf.h",
                               name, path, action->abi_version, BGWF_ABI_VERSION);
        goto done;
    }
    if (action->name == NULL || strcmp(action->name, name) != 0) {
        *error = strbuf_printf("action '%s' (%s) declares the name '%s': %s must return an "
                               "action named '%s'", name, path,
                               action->name ? action->name : "(null)", symbol, name);
        goto done;
    }
    problem = native_check_action(action);
    if (problem != NULL) {
        *error = strbuf_printf("action '%s' (%s) is invalid: %s", name, path, problem);
        goto done;
    }
    bgwf_register_action(L, action);
    rc = 0;

done:
    /* On success the object stays loaded: the registered functions live in it. */
    if (rc != 0 && handle != NULL)
        dlclose(handle);
    free(symbol);
    return rc;
}
