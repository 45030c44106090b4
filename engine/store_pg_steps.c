/* Finding due steps, claiming them and recording their results in
 * PostgreSQL. */
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"

#include "store_pg.h"
#include "strbuf.h"

int pg_find_due(struct store *base, const char *app, int64_t attempt_id, int64_t now_ms,
                int limit, struct due_step **steps, int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    struct due_step *found;
    PGresult *result;

    *steps = NULL;
    *count = 0;
    pg_param_text(&params, app);
    pg_param_int(&params, now_ms);
    pg_param_int(&params, limit);
    pg_param_int(&params, attempt_id);
    result = pg_exec(store, PG_FIND_DUE, &params, "looking for due steps failed", error);
    if (result == NULL)
        return -1;
    found = calloc((size_t)limit + 1, sizeof *found);
    for (int row = 0; row < PQntuples(result) && *count < limit; row++) {
        struct due_step *step = &found[(*count)++];
        step->step_id = pg_column_int64(result, row, 0);
        step->attempt_id = pg_column_int64(result, row, 1);
        step->execution_id = pg_column_int64(result, row, 2);
        step->cooldown_ms = pg_column_int64(result, row, 3);
        step->token = pg_column_text_dup(result, row, 4);
        step->action = pg_column_text_dup(result, row, 5);
        step->scope = pg_column_text_dup(result, row, 6);
        step->timeout_ms = pg_column_int64(result, row, 7);
        step->max_memory = pg_column_int64(result, row, 8);
        step->app = strbuf_dup(app);
    }
    PQclear(result);
    *steps = found;
    return 0;
}

int pg_load_context(struct store *base, int64_t step_id, char **json, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *json = NULL;
    pg_param_int(&params, step_id);
    result = pg_exec(store, PG_LOAD_CONTEXT, &params, "loading a step context failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) != 1) {
        *error = strbuf_printf("loading a step context failed: step %lld not found (database "
                               "%s)", (long long)step_id, store->display);
        PQclear(result);
        return -1;
    }
    *json = pg_column_text_dup(result, 0, 0);
    PQclear(result);
    return 0;
}

int pg_lease_check(struct store *base, int64_t step_id, int64_t now_ms, int64_t next_check_ms,
                   int *taken, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int changes = 0;

    *taken = 0;
    pg_param_int(&params, step_id);
    pg_param_int(&params, now_ms);
    pg_param_int(&params, next_check_ms);
    if (pg_run(store, PG_LEASE_CHECK, &params, &changes, "scheduling a precondition check failed",
               error) != 0)
        return -1;
    *taken = changes > 0;
    return 0;
}

int pg_claim(struct store *base, int64_t step_id, int64_t executor_id, int64_t now_ms,
             int app_limit, int *try_number, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int64_t value = 0;
    int rc;

    *try_number = 0;
    pg_param_int(&params, step_id);
    if (app_limit > 0 &&
        pg_run(store, PG_APP_LOCK, &params, NULL, "locking the application failed", error) != 0)
        return -1;
    pg_param_int(&params, executor_id);
    pg_param_int(&params, now_ms);
    if (app_limit > 0)
        pg_param_int(&params, app_limit);
    rc = pg_query_int64(store, app_limit > 0 ? PG_CLAIM_LIMITED : PG_CLAIM, &params, &value,
                        "claiming a step failed", error);
    if (rc < 0)
        return -1;
    if (rc == 0)
        *try_number = (int)value;
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

static int run_with_id(struct pg_store *store, enum pg_sql_id id, int64_t row_id,
                       int *changes, const char *what, char **error)
{
    struct pg_params params = { 0 };

    pg_param_int(&params, row_id);
    return pg_run(store, id, &params, changes, what, error);
}

/* Copies the step's just-ended try into step_tries with its outcome. */
static int record_try(struct pg_store *store, int64_t step_id, const char *status, char **error)
{
    struct pg_params params = { 0 };

    pg_param_int(&params, step_id);
    pg_param_text(&params, status);
    return pg_run(store, PG_TRY_INSERT, &params, NULL, "recording a try failed", error);
}

static void bind_stamp(struct pg_params *params, const struct step_update *update)
{
    pg_param_int(params, update->step_id);
    pg_param_int(params, update->executor_id);
    pg_param_int(params, update->try_number);
}

static int record_completed(struct pg_store *store, struct step_update *update,
                            struct attempt_set *touched, char **error)
{
    struct pg_params params = { 0 };
    int64_t attempt_id = 0;
    int rc;

    bind_stamp(&params, update);
    pg_param_int(&params, update->at_ms);
    pg_param_text(&params, update->message);
    rc = pg_query_int64(store, PG_STEP_COMPLETE, &params, &attempt_id,
                        "recording a step result failed", error);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        update->lost = 1;
        return 0;
    }
    if (record_try(store, update->step_id, "COMPLETED", error) != 0 ||
        pg_step_event(store, "STEP_SUCCESS", update->step_id, update->executor_id, NULL,
                      update->at_ms, error) != 0)
        return -1;
    for (int i = 0; i < update->resource_count; i++) {
        struct pg_params resource = { 0 };
        pg_param_int(&resource, update->step_id);
        pg_param_text(&resource, update->resources[i].name);
        pg_param_text(&resource, update->resources[i].value);
        pg_param_int(&resource, update->at_ms);
        if (pg_run(store, PG_RESOURCE_WRITE, &resource, NULL, "writing a resource failed",
                   error) != 0)
            return -1;
    }
    if (run_with_id(store, PG_DEPENDENTS_RELEASE, update->step_id, NULL,
                    "releasing dependent steps failed", error) != 0 ||
        run_with_id(store, PG_ATTEMPT_DONE_ONE, attempt_id, NULL,
                    "counting a finished step failed", error) != 0)
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

static int record_failed(struct pg_store *store, struct step_update *update,
                         struct attempt_set *touched, char **error)
{
    struct pg_params params = { 0 };
    int64_t attempt_id, initial_ms, max_ms;
    int retries, changes = 0, rc;
    double factor;
    PGresult *result;

    bind_stamp(&params, update);
    pg_param_int(&params, update->at_ms);
    pg_param_text(&params, update->message);
    pg_param_text(&params, update->error ? update->error : "failed");
    result = pg_exec(store, PG_STEP_FAIL, &params, "recording a step failure failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        update->lost = 1;
        return 0;
    }
    attempt_id = pg_column_int64(result, 0, 0);
    retries = (int)pg_column_int64(result, 0, 1);
    initial_ms = pg_column_int64(result, 0, 2);
    factor = pg_column_double(result, 0, 3);
    max_ms = pg_column_int64(result, 0, 4);
    PQclear(result);

    if (record_try(store, update->step_id, "FAILED", error) != 0)
        return -1;
    int will_retry = update->try_number <= retries;
    char *detail = strbuf_printf("%s%s", will_retry ? "will be retried: " : "",
                                 update->error ? update->error : "failed");
    rc = pg_step_event(store, "STEP_FAILURE", update->step_id, update->executor_id, detail,
                       update->at_ms, error);
    free(detail);
    if (rc != 0)
        return -1;

    /* A try left: the step waits for its backoff and runs again in this
     * attempt; its last error stays visible meanwhile. */
    if (will_retry) {
        struct pg_params retry = { 0 };
        pg_param_int(&retry, update->step_id);
        pg_param_int(&retry, update->at_ms + backoff_ms(update->try_number, initial_ms, factor,
                                                        max_ms));
        if (pg_run(store, PG_STEP_RETRY, &retry, &changes, "scheduling a retry failed",
                   error) != 0)
            return -1;
        /* In an attempt that no longer starts steps (a failure, shutdown or
         * cancel), the retry would never run: the step stays FAILED and the
         * attempt may end now. */
        update->retried = changes > 0;
        if (!update->retried)
            attempt_set_add(touched, attempt_id);
        return 0;
    }

    /* The attempt stops starting steps: running ones finish, then it fails. */
    if (run_with_id(store, PG_ATTEMPT_FAIL_PENDING, attempt_id, &changes,
                    "failing the attempt failed", error) != 0)
        return -1;
    if (changes > 0 && run_with_id(store, PG_ATTEMPT_DEACTIVATE, attempt_id, NULL,
                                   "stopping the attempt's steps failed", error) != 0)
        return -1;
    attempt_set_add(touched, attempt_id);
    return 0;
}

static int record_message(struct pg_store *store, struct step_update *update, char **error)
{
    struct pg_params params = { 0 };
    int changes = 0;

    bind_stamp(&params, update);
    pg_param_text(&params, update->message);
    if (pg_run(store, PG_STEP_MESSAGE, &params, &changes, "recording a status message failed",
               error) != 0)
        return -1;
    update->lost = changes == 0;
    return 0;
}

/* Ends an attempt that has nothing left to do: FINISHED when every step is
 * done, FAILED (after a failure or a cancel) or SHUTDOWN (after a shutdown
 * request) when no step of it still runs. */
int pg_settle_attempt(struct pg_store *store, int64_t attempt_id, int64_t now_ms, char **error)
{
    struct pg_params params = { 0 };
    const char *ending = NULL;
    PGresult *result;

    pg_param_int(&params, attempt_id);
    result = pg_exec(store, PG_ATTEMPT_STATE, &params, "reading an attempt failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) != 1) {
        *error = strbuf_printf("attempt %lld not found in %s", (long long)attempt_id,
                               store->display);
        PQclear(result);
        return -1;
    }
    char *status = pg_column_text_dup(result, 0, 0);
    int64_t remaining = pg_column_int64(result, 0, 1);
    int64_t execution_id = pg_column_int64(result, 0, 2);
    PQclear(result);

    int pending_fail = strcmp(status, "FAIL_PENDING") == 0;
    int pending_shutdown = strcmp(status, "SHUTDOWN_PENDING") == 0;
    if ((strcmp(status, "RUNNING") == 0 || pending_shutdown) && remaining == 0) {
        ending = "FINISHED";
    } else if (pending_fail || pending_shutdown) {
        int64_t running = 1;
        if (pg_query_int64(store, PG_ATTEMPT_HAS_RUNNING, &params, &running,
                           "reading an attempt failed", error) < 0) {
            free(status);
            return -1;
        }
        if (running == 0)
            ending = pending_fail ? "FAILED" : "SHUTDOWN";
    }
    free(status);
    if (ending == NULL)
        return 0;

    struct pg_params end = { 0 };
    pg_param_int(&end, attempt_id);
    pg_param_text(&end, ending);
    pg_param_int(&end, now_ms);
    if (pg_run(store, PG_ATTEMPT_END, &end, NULL, "ending an attempt failed", error) != 0)
        return -1;
    const char *event = strcmp(ending, "FINISHED") == 0 ? "SUCCESS"
                        : strcmp(ending, "FAILED") == 0 ? "FAILURE" : "SHUTDOWN";
    if (pg_attempt_event(store, event, attempt_id, NULL, now_ms, error) != 0)
        return -1;
    if (strcmp(ending, "FINISHED") == 0) {
        struct pg_params complete = { 0 };
        pg_param_int(&complete, execution_id);
        pg_param_int(&complete, now_ms);
        if (pg_run(store, PG_EXECUTION_COMPLETE, &complete, NULL,
                   "completing the execution failed", error) != 0)
            return -1;
    }
    return 0;
}

/* Locks the attempts of the updated steps, in id order. */
static int lock_attempts(struct pg_store *store, const struct step_update *updates, int count,
                         char **error)
{
    int64_t *ids = malloc((size_t)count * sizeof *ids);
    char *buffer = malloc((size_t)count * 21 + 3);
    struct pg_params params = { 0 };
    int rc;

    for (int i = 0; i < count; i++)
        ids[i] = updates[i].step_id;
    pg_param_ids(&params, ids, count, buffer);
    rc = pg_run(store, PG_LOCK_ATTEMPTS, &params, NULL, "locking attempts failed", error);
    free(ids);
    free(buffer);
    return rc;
}

int pg_apply_in_transaction(struct pg_store *store, struct step_update *updates, int count,
                            char **error)
{
    struct attempt_set touched = { NULL, 0, 0 };
    int64_t latest = 0;
    int rc;

    if (count == 0)
        return 0;
    rc = lock_attempts(store, updates, count, error);
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
        rc = pg_settle_attempt(store, touched.ids[i], latest, error);
    free(touched.ids);
    return rc;
}

int pg_apply_updates(struct store *base, struct step_update *updates, int count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;

    if (count == 0)
        return 0;
    if (pg_begin(store, error) != 0)
        return -1;
    if (pg_apply_in_transaction(store, updates, count, error) != 0 ||
        pg_commit(store, error) != 0) {
        pg_rollback(store);
        return -1;
    }
    return 0;
}

int pg_step_tries(struct store *base, int64_t step_id, struct step_try **tries, int *count,
                  char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *tries = NULL;
    *count = 0;
    pg_param_int(&params, step_id);
    result = pg_exec(store, PG_STEP_TRIES, &params, "reading the tries of a step failed", error);
    if (result == NULL)
        return -1;
    int rows = PQntuples(result);
    if (rows > 0)
        *tries = calloc((size_t)rows, sizeof **tries);
    for (int row = 0; row < rows; row++) {
        (*tries)[row] = (struct step_try){
            .try_number = (int)pg_column_int64(result, row, 0),
            .executor_id = pg_column_int64(result, row, 1),
            .started_at = pg_column_int64(result, row, 2),
            .ended_at = pg_column_int64(result, row, 3),
            .status = pg_column_text_dup(result, row, 4),
            .error = pg_column_text_dup(result, row, 5),
        };
    }
    *count = rows;
    PQclear(result);
    return 0;
}

int pg_load_resources(struct store *base, int64_t execution_id, struct resource **resources,
                      int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *resources = NULL;
    *count = 0;
    pg_param_int(&params, execution_id);
    result = pg_exec(store, PG_RESOURCES_LOAD, &params,
                     "loading the execution's resources failed", error);
    if (result == NULL)
        return -1;
    int rows = PQntuples(result);
    if (rows > 0)
        *resources = calloc((size_t)rows, sizeof **resources);
    for (int row = 0; row < rows; row++) {
        (*resources)[row].name = pg_column_text_dup(result, row, 0);
        (*resources)[row].value = pg_column_text_dup(result, row, 1);
    }
    *count = rows;
    PQclear(result);
    return 0;
}
