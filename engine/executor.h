/* The executor loop: heartbeat, reap, record, find due steps, check
 * preconditions, claim and fork. */
#ifndef BGWF_EXECUTOR_H
#define BGWF_EXECUTOR_H

#include <stdint.h>

#include <lua.h>

#include "store.h"

/* At most limit steps of app run at once, across all executors. */
struct app_limit {
    const char *app;
    int limit;
};

struct executor_config {
    const char *const *apps;       /* applications this executor runs */
    int app_count;
    const char *apps_text;         /* the same list as given, for display */
    int max_concurrent;            /* steps running at once */
    int poll_ms;                   /* wait between polls when nothing is due */
    int heartbeat_ms;
    int heartbeat_timeout_ms;      /* after this, a silent executor is dead */
    int64_t precondition_timeout_ms;
    int kill_grace_ms;             /* SIGTERM to SIGKILL delay for cancelled or timed-out steps */
    const struct app_limit *app_limits;
    int app_limit_count;
    const char *search_path;       /* where the spawner loads actions from */
    const char *log_dir;           /* step logs go under LOG_DIR/APP/EXECUTION/ATTEMPT/ */
    int64_t log_max_bytes;         /* per try of a step; 0: no cap */
    int exit_when_idle;            /* exit once no step of the apps can run */
    int64_t only_attempt;          /* run only this attempt and exit when it ends; 0: any */
};

/* Runs the executor until it is stopped by a signal, or is idle with
 * exit_when_idle, or only_attempt ended. L is a state from luahost_open;
 * store stays owned by the caller. Returns the process exit status: 0 after
 * a clean stop (or, with only_attempt, when the attempt FINISHED), 1 when
 * the attempt did not finish or running steps had to be killed. */
int executor_run(struct store *store, lua_State *L, const struct executor_config *config);

#endif
