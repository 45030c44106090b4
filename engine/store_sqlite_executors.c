/* Executor registration, heartbeats and dead-executor detection in SQLite. */
#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "strbuf.h"

int sqlite_executor_register(struct store *base, const char *host, int pid, const char *apps,
                             int64_t now_ms, int64_t heartbeat_timeout_ms, int64_t *executor_id,
                             char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTOR_INSERT, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, host, -1, SQLITE_STATIC);
    sqlite3_bind_int(statement, 2, pid);
    sqlite3_bind_text(statement, 3, apps, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 4, now_ms);
    sqlite3_bind_int64(statement, 5, heartbeat_timeout_ms);
    if (sqlite_run(store, SQL_EXECUTOR_INSERT, error) != 0)
        return -1;
    *executor_id = sqlite3_last_insert_rowid(store->db);
    return 0;
}

int sqlite_executor_heartbeat(struct store *base, int64_t executor_id, int64_t now_ms,
                              int *revived, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTOR_HEARTBEAT, error);

    *revived = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, executor_id);
    sqlite3_bind_int64(statement, 2, now_ms);
    if (sqlite_run(store, SQL_EXECUTOR_HEARTBEAT, error) != 0)
        return -1;
    if (sqlite3_changes(store->db) > 0)
        return 0;

    /* Another executor declared this one dead while it was frozen; its
     * steps were failed then, and it starts afresh from here. */
    statement = sqlite_statement(store, SQL_EXECUTOR_REVIVE, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, executor_id);
    sqlite3_bind_int64(statement, 2, now_ms);
    if (sqlite_run(store, SQL_EXECUTOR_REVIVE, error) != 0)
        return -1;
    *revived = 1;
    return 0;
}

int sqlite_executor_stop(struct store *base, int64_t executor_id, int64_t now_ms, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTOR_STOP, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, executor_id);
    sqlite3_bind_int64(statement, 2, now_ms);
    return sqlite_run(store, SQL_EXECUTOR_STOP, error);
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
static int fail_steps_of(struct sqlite_store *store, struct dead_executor *dead,
                         int64_t heartbeat_at, int64_t now_ms, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTOR_RUNNING_STEPS, error);
    struct step_update *updates = NULL;
    int count = 0, capacity = 0, rc;
    char *last_seen = format_utc(heartbeat_at);
    char *reason = strbuf_printf("executor %lld (pid %d) on host %s stopped heartbeating at %s",
                                 (long long)dead->id, dead->pid, dead->host, last_seen);

    free(last_seen);
    if (statement == NULL) {
        free(reason);
        return -1;
    }
    sqlite3_bind_int64(statement, 1, dead->id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 8;
            updates = realloc(updates, (size_t)capacity * sizeof *updates);
        }
        if (sqlite_step_event(store, "DIED_UNCLEAN", sqlite3_column_int64(statement, 0), dead->id,
                              reason, now_ms, error) != 0) {
            sqlite3_reset(statement);
            free(updates);
            free(reason);
            return -1;
        }
        updates[count] = (struct step_update){
            .kind = UPDATE_FAILED,
            .step_id = sqlite3_column_int64(statement, 0),
            .executor_id = dead->id,
            .try_number = sqlite3_column_int(statement, 1),
            .at_ms = now_ms,
            .error = reason,
        };
        count++;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "reading the steps of a dead executor failed");
        rc = -1;
    } else {
        rc = sqlite_apply_in_transaction(store, updates, count, error);
        dead->failed_steps = count;
    }
    free(updates);
    free(reason);
    return rc;
}

int sqlite_reap_dead(struct store *base, int64_t now_ms, int64_t timeout_ms,
                     struct dead_executor **dead, int *dead_count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    struct dead_executor *found = NULL;
    int64_t *heartbeats = NULL;
    int count = 0, capacity = 0, rc;
    sqlite3_stmt *statement;

    *dead = NULL;
    *dead_count = 0;
    if (sqlite_begin(store, error) != 0)
        return -1;

    statement = sqlite_statement(store, SQL_EXECUTORS_STALE, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_int64(statement, 1, now_ms);
    sqlite3_bind_int64(statement, 2, timeout_ms);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 4;
            found = realloc(found, (size_t)capacity * sizeof *found);
            heartbeats = realloc(heartbeats, (size_t)capacity * sizeof *heartbeats);
        }
        found[count] = (struct dead_executor){
            .id = sqlite3_column_int64(statement, 0),
            .host = sqlite_column_text_dup(statement, 1),
            .pid = sqlite3_column_int(statement, 2),
        };
        heartbeats[count] = sqlite3_column_int64(statement, 3);
        count++;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for dead executors failed");
        goto fail;
    }

    for (int i = 0; i < count; i++) {
        statement = sqlite_statement(store, SQL_EXECUTOR_DECLARE_DEAD, error);
        if (statement == NULL)
            goto fail;
        sqlite3_bind_int64(statement, 1, found[i].id);
        sqlite3_bind_int64(statement, 2, now_ms);
        sqlite3_bind_int64(statement, 3, timeout_ms);
        if (sqlite_run(store, SQL_EXECUTOR_DECLARE_DEAD, error) != 0)
            goto fail;
        if (fail_steps_of(store, &found[i], heartbeats[i], now_ms, error) != 0)
            goto fail;
    }
    if (sqlite_commit(store, error) != 0)
        goto fail;
    free(heartbeats);
    *dead = found;
    *dead_count = count;
    return 0;

fail:
    sqlite_rollback(store);
    store_free_dead(found, count);
    free(heartbeats);
    return -1;
}
