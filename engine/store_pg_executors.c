/* Executor registration, heartbeats and dead-executor detection in
 * PostgreSQL.
 *
 * Every heartbeat and the cutoff that declares an executor dead come from
 * the database server's clock; the now_ms that the executor passes is
 * ignored here. A host whose clock is off therefore neither looks dead to
 * the others nor keeps a dead executor alive. */
#include <stdlib.h>
#include <time.h>

#include "pq_library.h"

#include "clock.h"
#include "store_pg.h"
#include "strbuf.h"

int pg_executor_register(struct store *base, const char *host, int pid, const char *apps,
                         int64_t now_ms, int64_t heartbeat_timeout_ms, int64_t *executor_id,
                         char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };

    pg_param_text(&params, host);
    pg_param_int(&params, pid);
    pg_param_text(&params, apps);
    pg_param_int(&params, heartbeat_timeout_ms);
    return pg_query_int64(store, PG_EXECUTOR_INSERT, &params, executor_id,
                          "registering the executor failed", error) == 0 ? 0 : -1;
}

int pg_executor_heartbeat(struct store *base, int64_t executor_id, int64_t now_ms,
                          int *revived, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int changes = 0;

    *revived = 0;
    pg_param_int(&params, executor_id);
    if (pg_run(store, PG_EXECUTOR_HEARTBEAT, &params, &changes, "storing a heartbeat failed",
               error) != 0)
        return -1;
    if (changes > 0)
        return 0;

    /* Another executor declared this one dead while it was frozen; its
     * steps were failed then, and it starts afresh from here. */
    if (pg_run(store, PG_EXECUTOR_REVIVE, &params, NULL, "storing a heartbeat failed",
               error) != 0)
        return -1;
    *revived = 1;
    return 0;
}

int pg_executor_stop(struct store *base, int64_t executor_id, int64_t now_ms, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };

    pg_param_int(&params, executor_id);
    return pg_run(store, PG_EXECUTOR_STOP, &params, NULL, "stopping the executor failed", error);
}

static char *format_utc(int64_t ms)
{
    char text[32];
    time_t seconds = (time_t)(ms / 1000);
    struct tm parts;

    gmtime_r(&seconds, &parts);
    strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &parts);
    return strbuf_printf("%s UTC", text);
}

/* Fails every step that the dead executor was running, inside the open
 * transaction. */
static int fail_steps_of(struct pg_store *store, struct dead_executor *dead,
                         int64_t heartbeat_at, int64_t now_ms, char **error)
{
    struct pg_params params = { 0 };
    struct step_update *updates = NULL;
    char *last_seen = format_utc(heartbeat_at);
    char *reason = strbuf_printf("executor %lld (pid %d) on host %s stopped heartbeating at %s",
                                 (long long)dead->id, dead->pid, dead->host, last_seen);
    PGresult *result;
    int count, rc = 0;

    free(last_seen);
    pg_param_int(&params, dead->id);
    result = pg_exec(store, PG_EXECUTOR_RUNNING_STEPS, &params,
                     "reading the steps of a dead executor failed", error);
    if (result == NULL) {
        free(reason);
        return -1;
    }
    count = PQntuples(result);
    if (count > 0)
        updates = calloc((size_t)count, sizeof *updates);
    for (int row = 0; row < count && rc == 0; row++) {
        updates[row] = (struct step_update){
            .kind = UPDATE_FAILED,
            .step_id = pg_column_int64(result, row, 0),
            .executor_id = dead->id,
            .try_number = (int)pg_column_int64(result, row, 1),
            .at_ms = now_ms,
            .error = reason,
        };
        rc = pg_step_event(store, "DIED_UNCLEAN", updates[row].step_id, dead->id, reason, now_ms,
                           error);
    }
    PQclear(result);
    if (rc == 0) {
        rc = pg_apply_in_transaction(store, updates, count, error);
        dead->failed_steps = count;
    }
    free(updates);
    free(reason);
    return rc;
}

int pg_reap_dead(struct store *base, int64_t now_ms, int64_t timeout_ms,
                 struct dead_executor **dead, int *dead_count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct dead_executor *found = NULL;
    int64_t *heartbeats = NULL;
    int64_t server_now;
    int count = 0, declared = 0;
    struct pg_params params = { 0 };
    PGresult *result;

    *dead = NULL;
    *dead_count = 0;
    /* After an outage no executor could heartbeat, so each gets a full
     * timeout after this one's reconnect before it counts as dead. */
    if (store->reconnected_at_ms != 0 && clock_mono_ms() - store->reconnected_at_ms < timeout_ms)
        return 0;
    if (pg_begin(store, error) != 0)
        return -1;
    if (pg_server_now(store, &server_now, error) != 0)
        goto fail;

    pg_param_int(&params, server_now);
    pg_param_int(&params, timeout_ms);
    result = pg_exec(store, PG_EXECUTORS_STALE, &params, "looking for dead executors failed",
                     error);
    if (result == NULL)
        goto fail;
    count = PQntuples(result);
    if (count > 0) {
        found = calloc((size_t)count, sizeof *found);
        heartbeats = calloc((size_t)count, sizeof *heartbeats);
    }
    for (int row = 0; row < count; row++) {
        found[row] = (struct dead_executor){
            .id = pg_column_int64(result, row, 0),
            .host = pg_column_text_dup(result, row, 1),
            .pid = (int)pg_column_int64(result, row, 2),
        };
        heartbeats[row] = pg_column_int64(result, row, 3);
    }
    PQclear(result);

    for (int i = 0; i < count; i++) {
        struct pg_params declare = { 0 };
        int changes = 0;

        pg_param_int(&declare, found[i].id);
        pg_param_int(&declare, server_now);
        pg_param_int(&declare, timeout_ms);
        if (pg_run(store, PG_EXECUTOR_DECLARE_DEAD, &declare, &changes,
                   "declaring an executor dead failed", error) != 0)
            goto fail;
        /* Another executor declared it dead first, or it heartbeated since
         * the list was read. */
        if (changes == 0)
            continue;
        if (fail_steps_of(store, &found[i], heartbeats[i], server_now, error) != 0)
            goto fail;
        if (declared != i) {
            free(found[declared].host);
            found[declared] = found[i];
            found[i].host = NULL;
        }
        declared++;
    }
    if (pg_commit(store, error) != 0)
        goto fail;
    for (int i = declared; i < count; i++)
        free(found[i].host);
    free(heartbeats);
    *dead = found;
    *dead_count = declared;
    return 0;

fail:
    pg_rollback(store);
    store_free_dead(found, count);
    free(heartbeats);
    return -1;
}
