/* Finding due steps, claiming them and recording their results in SQLite. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "strbuf.h"

int sqlite_find_due(struct store *base, const char *app, int64_t attempt_id, int64_t now_ms,
                    int limit, struct due_step **steps, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_FIND_DUE, error);
    struct due_step *found;
    int rc;

    *steps = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    found = calloc((size_t)limit + 1, sizeof *found);
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 2, now_ms);
    sqlite3_bind_int(statement, 3, limit);
    sqlite3_bind_int64(statement, 4, attempt_id);

    while ((rc = sqlite3_step(statement)) == SQLITE_ROW && *count < limit) {
        struct due_step *step = &found[(*count)++];
        step->step_id = sqlite3_column_int64(statement, 0);
        step->attempt_id = sqlite3_column_int64(statement, 1);
        step->execution_id = sqlite3_column_int64(statement, 2);
        step->cooldown_ms = sqlite3_column_int64(statement, 3);
        step->token = sqlite_column_text_dup(statement, 4);
        step->action = sqlite_column_text_dup(statement, 5);
        step->scope = sqlite_column_text_dup(statement, 6);
        step->timeout_ms = sqlite3_column_int64(statement, 7);
        step->max_memory = sqlite3_column_int64(statement, 8);
        step->app = strbuf_dup(app);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for due steps failed");
        store_free_due(found, *count);
        *count = 0;
        return -1;
    }
    *steps = found;
    return 0;
}

int sqlite_load_context(struct store *base, int64_t step_id, char **json, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LOAD_CONTEXT, error);

    *json = NULL;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    if (sqlite3_step(statement) != SQLITE_ROW) {
        *error = sqlite_error(store, "loading a step context failed");
        sqlite3_reset(statement);
        return -1;
    }
    *json = sqlite_column_text_dup(statement, 0);
    sqlite3_reset(statement);
    return 0;
}

int sqlite_lease_check(struct store *base, int64_t step_id, int64_t now_ms, int64_t next_check_ms,
                       int *taken, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LEASE_CHECK, error);

    *taken = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    sqlite3_bind_int64(statement, 2, now_ms);
    sqlite3_bind_int64(statement, 3, next_check_ms);
    if (sqlite_run(store, SQL_LEASE_CHECK, error) != 0)
        return -1;
    *taken = sqlite3_changes(store->db) > 0;
    return 0;
}

int sqlite_claim(struct store *base, int64_t step_id, int64_t executor_id, int64_t now_ms,
                 int app_limit, int *try_number, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement =
        sqlite_statement(store, app_limit > 0 ? SQL_CLAIM_LIMITED : SQL_CLAIM, error);
    int rc;

    *try_number = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    sqlite3_bind_int64(statement, 2, executor_id);
    sqlite3_bind_int64(statement, 3, now_ms);
    if (app_limit > 0)
        sqlite3_bind_int(statement, 4, app_limit);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        *try_number = sqlite3_column_int(statement, 0);
        rc = sqlite3_step(statement);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "claiming a step failed");
        return -1;
    }
    return 0;
}

/* A small set of attempt ids touched by one batch of updates. */
struct attempt_set {
    int64_t *ids;
    int count;
    int capacity;
};

static void attempt_set_add(struct attempt_set *set, int64_t id)
{
    for (int i = 0; i < set->count; i++)
        if (set->ids[i] == id)
            return;
    if (set->count == set->capacity) {
        set->capacity = set->capacity ? set->capacity * 2 : 8;
        set->ids = realloc(set->ids, (size_t)set->capacity * sizeof *set->ids);
    }
    set->ids[set->count++] = id;
}

/* Runs a step UPDATE ... RETURNING attempt_id; *attempt_id is 0 when the
 * stamp did not match. */
static int run_returning_attempt(struct sqlite_store *store, enum sql_id id, int64_t *attempt_id,
                                 char **error)
{
    sqlite3_stmt *statement = store->statements[id];
    int rc = sqlite3_step(statement);

    *attempt_id = 0;
    if (rc == SQLITE_ROW) {
        *attempt_id = sqlite3_column_int64(statement, 0);
        rc = sqlite3_step(statement);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "recording a step result failed");
        return -1;
    }
    return 0;
}

static int bind_attempt_and_run(struct sqlite_store *store, enum sql_id id, int64_t attempt_id,
                                char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, id, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    return sqlite_run(store, id, error);
}

/* Copies the step's just-ended try into step_tries with its outcome. */
static int record_try(struct sqlite_store *store, int64_t step_id, const char *status,
                      char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_TRY_INSERT, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    sqlite3_bind_text(statement, 2, status, -1, SQLITE_STATIC);
    return sqlite_run(store, SQL_TRY_INSERT, error);
}

static int record_completed(struct sqlite_store *store, struct step_update *update,
                            struct attempt_set *touched, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_COMPLETE, error);
    int64_t attempt_id;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, update->step_id);
    sqlite3_bind_int64(statement, 2, update->executor_id);
    sqlite3_bind_int(statement, 3, update->try_number);
    sqlite3_bind_int64(statement, 4, update->at_ms);
    if (update->message)
        sqlite3_bind_text(statement, 5, update->message, -1, SQLITE_STATIC);
    if (run_returning_attempt(store, SQL_STEP_COMPLETE, &attempt_id, error) != 0)
        return -1;
    if (attempt_id == 0) {
        update->lost = 1;
        return 0;
    }
    if (record_try(store, update->step_id, "COMPLETED", error) != 0 ||
        sqlite_step_event(store, "STEP_SUCCESS", update->step_id, update->executor_id, NULL,
                          update->at_ms, error) != 0)
        return -1;
    for (int i = 0; i < update->resource_count; i++) {
        statement = sqlite_statement(store, SQL_RESOURCE_WRITE, error);
        if (statement == NULL)
            return -1;
        sqlite3_bind_int64(statement, 1, update->step_id);
        sqlite3_bind_text(statement, 2, update->resources[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(statement, 3, update->resources[i].value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(statement, 4, update->at_ms);
        if (sqlite_run(store, SQL_RESOURCE_WRITE, error) != 0)
            return -1;
    }

    statement = sqlite_statement(store, SQL_DEPENDENTS_RELEASE, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, update->step_id);
    if (sqlite_run(store, SQL_DEPENDENTS_RELEASE, error) != 0)
        return -1;
    if (bind_attempt_and_run(store, SQL_ATTEMPT_DONE_ONE, attempt_id, error) != 0)
        return -1;
    attempt_set_add(touched, attempt_id);
    return 0;
}

/* Returns the wait before the retry that follows try try_number:
 * initial * factor^(try - 1), at most max. */
static int64_t backoff_ms(int try_number, int64_t initial_ms, double factor, int64_t max_ms)
{
    double wait = (double)initial_ms;

    for (int i = 1; i < try_number && wait < (double)max_ms; i++)
        wait *= factor;
    if (wait > (double)max_ms)
        wait = (double)max_ms;
    return (int64_t)wait;
}

static int record_failed(struct sqlite_store *store, struct step_update *update,
                         struct attempt_set *touched, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_FAIL, error);
    int64_t attempt_id = 0, initial_ms = 0, max_ms = 0;
    int retries = 0, rc;
    double factor = 1;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, update->step_id);
    sqlite3_bind_int64(statement, 2, update->executor_id);
    sqlite3_bind_int(statement, 3, update->try_number);
    sqlite3_bind_int64(statement, 4, update->at_ms);
    if (update->message)
        sqlite3_bind_text(statement, 5, update->message, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 6, update->error ? update->error : "failed", -1, SQLITE_STATIC);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        attempt_id = sqlite3_column_int64(statement, 0);
        retries = sqlite3_column_int(statement, 1);
        initial_ms = sqlite3_column_int64(statement, 2);
        factor = sqlite3_column_double(statement, 3);
        max_ms = sqlite3_column_int64(statement, 4);
        rc = sqlite3_step(statement);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "recording a step failure failed");
        return -1;
    }
    if (attempt_id == 0) {
        update->lost = 1;
        return 0;
    }
    if (record_try(store, update->step_id, "FAILED", error) != 0)
        return -1;
    int will_retry = update->try_number <= retries;
    char *detail = strbuf_printf("%s%s", will_retry ? "will be retried: " : "",
                                 update->error ? update->error : "failed");
    rc = sqlite_step_event(store, "STEP_FAILURE", update->step_id, update->executor_id, detail,
                           update->at_ms, error);
    free(detail);
    if (rc != 0)
        return -1;

    /* A try left: the step waits for its backoff and runs again in this
     * attempt; its last error stays visible meanwhile. */
    if (will_retry) {
        statement = sqlite_statement(store, SQL_STEP_RETRY, error);
        if (statement == NULL)
            return -1;
        sqlite3_bind_int64(statement, 1, update->step_id);
        sqlite3_bind_int64(statement, 2, update->at_ms + backoff_ms(update->try_number,
                                                                    initial_ms, factor, max_ms));
        if (sqlite_run(store, SQL_STEP_RETRY, error) != 0)
            return -1;
        /* In an attempt that no longer starts steps (a failure, shutdown or
         * cancel), the retry would never run: the step stays FAILED and the
         * attempt may end now. */
        update->retried = sqlite3_changes(store->db) > 0;
        if (update->retried)
            return 0;
        attempt_set_add(touched, attempt_id);
        return 0;
    }

    /* The attempt stops starting steps: running ones finish, then it fails. */
    if (bind_attempt_and_run(store, SQL_ATTEMPT_FAIL_PENDING, attempt_id, error) != 0)
        return -1;
    if (sqlite3_changes(store->db) > 0 &&
        bind_attempt_and_run(store, SQL_ATTEMPT_DEACTIVATE, attempt_id, error) != 0)
        return -1;
    attempt_set_add(touched, attempt_id);
    return 0;
}

static int record_message(struct sqlite_store *store, struct step_update *update, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_MESSAGE, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, update->step_id);
    sqlite3_bind_int64(statement, 2, update->executor_id);
    sqlite3_bind_int(statement, 3, update->try_number);
    sqlite3_bind_text(statement, 4, update->message, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_STEP_MESSAGE, error) != 0)
        return -1;
    update->lost = sqlite3_changes(store->db) == 0;
    return 0;
}

/* Ends an attempt that has nothing left to do: FINISHED when every step is
 * done, FAILED (after a failure or a cancel) or SHUTDOWN (after a shutdown
 * request) when no step of it still runs. */
int sqlite_settle_attempt(struct sqlite_store *store, int64_t attempt_id, int64_t now_ms,
                          char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_STATE, error);
    char *status;
    int64_t remaining, execution_id;
    const char *ending = NULL;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    if (sqlite3_step(statement) != SQLITE_ROW) {
        *error = sqlite_error(store, "reading an attempt failed");
        sqlite3_reset(statement);
        return -1;
    }
    status = sqlite_column_text_dup(statement, 0);
    remaining = sqlite3_column_int64(statement, 1);
    execution_id = sqlite3_column_int64(statement, 2);
    sqlite3_reset(statement);

    int pending_fail = strcmp(status, "FAIL_PENDING") == 0;
    int pending_shutdown = strcmp(status, "SHUTDOWN_PENDING") == 0;
    if ((strcmp(status, "RUNNING") == 0 || pending_shutdown) && remaining == 0) {
        ending = "FINISHED";
    } else if (pending_fail || pending_shutdown) {
        statement = sqlite_statement(store, SQL_ATTEMPT_HAS_RUNNING, error);
        if (statement == NULL) {
            free(status);
            return -1;
        }
        sqlite3_bind_int64(statement, 1, attempt_id);
        if (sqlite3_step(statement) == SQLITE_ROW && sqlite3_column_int(statement, 0) == 0)
            ending = pending_fail ? "FAILED" : "SHUTDOWN";
        sqlite3_reset(statement);
    }
    free(status);
    if (ending == NULL)
        return 0;

    statement = sqlite_statement(store, SQL_ATTEMPT_END, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    sqlite3_bind_text(statement, 2, ending, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 3, now_ms);
    if (sqlite_run(store, SQL_ATTEMPT_END, error) != 0)
        return -1;
    const char *event = strcmp(ending, "FINISHED") == 0 ? "SUCCESS"
                        : strcmp(ending, "FAILED") == 0 ? "FAILURE" : "SHUTDOWN";
    if (sqlite_attempt_event(store, event, attempt_id, NULL, now_ms, error) != 0)
        return -1;
    if (strcmp(ending, "FINISHED") == 0) {
        statement = sqlite_statement(store, SQL_EXECUTION_COMPLETE, error);
        if (statement == NULL)
            return -1;
        sqlite3_bind_int64(statement, 1, execution_id);
        sqlite3_bind_int64(statement, 2, now_ms);
        if (sqlite_run(store, SQL_EXECUTION_COMPLETE, error) != 0)
            return -1;
    }
    return 0;
}

int sqlite_apply_in_transaction(struct sqlite_store *store, struct step_update *updates,
                                int count, char **error)
{
    struct attempt_set touched = { NULL, 0, 0 };
    int64_t latest = 0;
    int rc = 0;

    for (int i = 0; i < count && rc == 0; i++) {
        struct step_update *update = &updates[i];
        update->lost = 0;
        update->retried = 0;
        if (update->at_ms > latest)
            latest = update->at_ms;
        if (update->kind == UPDATE_COMPLETED)
            rc = record_completed(store, update, &touched, error);
        else if (update->kind == UPDATE_FAILED)
            rc = record_failed(store, update, &touched, error);
        else
            rc = record_message(store, update, error);
    }
    for (int i = 0; i < touched.count && rc == 0; i++)
        rc = sqlite_settle_attempt(store, touched.ids[i], latest, error);
    free(touched.ids);
    return rc;
}

int sqlite_apply_updates(struct store *base, struct step_update *updates, int count,
                         char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    if (count == 0)
        return 0;
    if (sqlite_begin(store, error) != 0)
        return -1;
    if (sqlite_apply_in_transaction(store, updates, count, error) != 0 ||
        sqlite_commit(store, error) != 0) {
        sqlite_rollback(store);
        return -1;
    }
    return 0;
}

int sqlite_step_tries(struct store *base, int64_t step_id, struct step_try **tries, int *count,
                      char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_TRIES, error);
    int rc;

    *tries = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *tries = realloc(*tries, (size_t)(*count + 1) * sizeof **tries);
        (*tries)[*count] = (struct step_try){
            .try_number = sqlite3_column_int(statement, 0),
            .executor_id = sqlite3_column_int64(statement, 1),
            .started_at = sqlite3_column_int64(statement, 2),
            .ended_at = sqlite3_column_int64(statement, 3),
            .status = sqlite_column_text_dup(statement, 4),
            .error = sqlite_column_text_dup(statement, 5),
        };
        (*count)++;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "reading the tries of a step failed");
        store_free_tries(*tries, *count);
        *tries = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_load_resources(struct store *base, int64_t execution_id,
                          struct resource **resources, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_RESOURCES_LOAD, error);
    int rc;

    *resources = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, execution_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *resources = realloc(*resources, (size_t)(*count + 1) * sizeof **resources);
        (*resources)[*count].name = sqlite_column_text_dup(statement, 0);
        (*resources)[*count].value = sqlite_column_text_dup(statement, 1);
        (*count)++;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "loading the execution's resources failed");
        store_free_resources(*resources, *count);
        *resources = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}
