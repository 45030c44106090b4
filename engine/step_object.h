/* The step object that an action's execute(step, ctx) receives. */
#ifndef BGWF_STEP_OBJECT_H
#define BGWF_STEP_OBJECT_H

#include <stdint.h>

#include <lua.h>

#include "store.h"

struct step_info {
    const char *token;
    const char *action;
    const char *app;
    const char *scope;       /* NULL: no scope */
    int64_t execution_id;
    int64_t attempt_id;
    int64_t step_id;
    int try_number;
    const struct resource *resources; /* the execution's resources when the step started */
    int resource_count;
};

/* Pushes a step object: read-only fields token, action, app, scope,
 * execution, attempt, id, try, and methods that send frames to report_fd:
 * status(msg), log(...), set(name, value), and get(name), which reads the
 * execution's resources as they were when the step started plus this
 * step's own writes. Stack: [-0, +1, m]. */
void step_object_push(lua_State *L, const struct step_info *info, int report_fd);

/* Creates, in a state that forks children, what every step object shares:
 * its metatable and the names of its fields, so that each child finds
 * them instead of allocating them. Stack: [-0, +0, m]. */
void step_object_prepare(lua_State *L);

#endif
