/* libpq, loaded when the first PostgreSQL store opens (see pq_library.h). */
#include <dlfcn.h>
#include <stddef.h>

#include <libpq-fe.h>

#include "pq_library.h"
#include "strbuf.h"

/* The soname of libpq's current ABI, the file Debian's libpq5 installs. */
#define PQ_LIBRARY_SONAME "libpq.so.5"

struct pq_library pq_library;

static int loaded;

int pq_library_load(char **error)
{
    void *handle;

    if (loaded)
        return 0;
    handle = dlopen(PQ_LIBRARY_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        *error = strbuf_printf("loading the PostgreSQL client library failed: %s (install it: "
                               "Debian package libpq5)", dlerror());
        return -1;
    }
#define PQ_LIBRARY_RESOLVE(name)                                                              \
    pq_library.name##_function = (__typeof__(pq_library.name##_function))dlsym(handle, #name);                   \
    if (pq_library.name##_function == NULL) {                                                 \
        *error = strbuf_printf("%s has no function %s: it is older than bgwf needs (libpq "    \
                               "10 or later)", PQ_LIBRARY_SONAME, #name);                     \
        dlclose(handle);                                                                      \
        return -1;                                                                            \
    }
    PQ_LIBRARY_FUNCTIONS(PQ_LIBRARY_RESOLVE)
#undef PQ_LIBRARY_RESOLVE
    loaded = 1;
    return 0;
}
