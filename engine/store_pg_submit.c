/* Storing a submitted workflow in one PostgreSQL transaction. */
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"

#include "clock.h"
#include "store_pg.h"
#include "strbuf.h"

/* Sets *app_id to the id of app, adding the application when it is new. */
static int application_id(struct pg_store *store, const char *app, int64_t *app_id,
                          char **error)
{
    struct pg_params params = { 0 };

    pg_param_text(&params, app);
    if (pg_run(store, PG_APP_INSERT, &params, NULL, "storing the application failed",
               error) != 0)
        return -1;
    int rc = pg_query_int64(store, PG_APP_ID, &params, app_id,
                            "reading the application id failed", error);
    if (rc == 1)
        *error = strbuf_printf("reading the application id of %s failed (database %s)", app,
                               store->display);
    return rc == 0 ? 0 : -1;
}

/* Fails with a message naming the live attempt when (app, scope) has one. */
static int check_no_live_attempt(struct pg_store *store, const struct submit_request *request,
                                 int64_t app_id, const char *scope_key, char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    pg_param_int(&params, app_id);
    pg_param_text(&params, scope_key);
    result = pg_exec(store, PG_LIVE_ATTEMPT, &params, "looking for a running attempt failed",
                     error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) > 0) {
        char *scope_text = request->scope ? strbuf_printf(" scope '%s'", request->scope)
                                          : strbuf_dup(" without a scope");
        *error = strbuf_printf("%s%s already has attempt %lld of execution %lld in status %s; "
                               "wait for it to end, stop it (bgwf shutdown or cancel), or "
                               "use another --scope",
                               request->app, scope_text, (long long)pg_column_int64(result, 0, 0),
                               (long long)pg_column_int64(result, 0, 1), PQgetvalue(result, 0, 2));
        free(scope_text);
        PQclear(result);
        return -1;
    }
    PQclear(result);
    return 0;
}

static int insert_steps(struct pg_store *store, const struct submit_request *request,
                        int64_t app_id, int64_t attempt_id, int64_t *step_ids, char **error)
{
    for (int i = 0; i < request->step_count; i++) {
        const struct submit_step *step = &request->steps[i];
        struct pg_params params = { 0 };

        pg_param_int(&params, attempt_id);
        pg_param_int(&params, app_id);
        pg_param_text(&params, step->token);
        pg_param_text(&params, step->action);
        pg_param_int(&params, step->dep_count);
        pg_param_int(&params, step->cooldown_ms);
        pg_param_text(&params, step->context);
        pg_param_int(&params, step->policy.retries);
        pg_param_int(&params, step->policy.backoff_initial_ms);
        pg_param_double(&params, step->policy.backoff_factor > 0 ? step->policy.backoff_factor
                                                                 : 1.0);
        pg_param_int(&params, step->policy.backoff_max_ms);
        pg_param_int(&params, step->policy.timeout_ms);
        pg_param_int(&params, step->policy.max_memory);
        if (pg_query_int64(store, PG_STEP_INSERT, &params, &step_ids[i], "storing a step failed",
                           error) != 0)
            return -1;
    }

    for (int i = 0; i < request->step_count; i++) {
        const struct submit_step *step = &request->steps[i];
        for (int d = 0; d < step->dep_count; d++) {
            int dep = step->deps[d];
            struct pg_params params = { 0 };
            int changes = 0;

            if (dep < 0 || dep >= request->step_count || dep == i) {
                *error = strbuf_printf("step '%s' has an invalid dependency index %d",
                                       step->token, dep);
                return -1;
            }
            pg_param_int(&params, step_ids[dep]);
            pg_param_int(&params, step_ids[i]);
            if (pg_run(store, PG_DEPENDENCY_INSERT, &params, &changes,
                       "storing a dependency failed", error) != 0)
                return -1;
            /* A dependency listed twice counts once. */
            if (changes == 0) {
                struct pg_params decrement = { 0 };
                pg_param_int(&decrement, step_ids[i]);
                if (pg_run(store, PG_PENDING_DECREMENT, &decrement, NULL,
                           "counting dependencies failed", error) != 0)
                    return -1;
            }
        }
    }
    return 0;
}

/* Finds the newest execution of (app, scope) that a submit should resume:
 * sets *execution_id and *previous_attempt, or leaves them 0. */
static int find_resumable(struct pg_store *store, int64_t app_id, const char *scope,
                          int64_t *execution_id, int64_t *previous_attempt, char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    *execution_id = 0;
    *previous_attempt = 0;
    pg_param_int(&params, app_id);
    pg_param_text(&params, scope);
    result = pg_exec(store, PG_LATEST_EXECUTION_OF, &params,
                     "looking for the previous execution failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) > 0 && strcmp(PQgetvalue(result, 0, 1), "INCOMPLETE") == 0)
        *execution_id = pg_column_int64(result, 0, 0);
    PQclear(result);
    if (*execution_id == 0)
        return 0;

    struct pg_params attempt = { 0 };
    pg_param_int(&attempt, *execution_id);
    return pg_query_int64(store, PG_LATEST_ATTEMPT_OF, &attempt, previous_attempt,
                          "looking for the previous attempt failed", error) < 0 ? -1 : 0;
}

/* Marks the steps that previous_attempt finished as SKIPPED in the new
 * attempt, recounts readiness without them, and lists the tokens that the
 * new DAG no longer has. */
static int carry_over(struct pg_store *store, int64_t attempt_id, int64_t previous_attempt,
                      struct submit_outcome *outcome, char **error)
{
    struct pg_params both = { 0 }, one = { 0 };
    int64_t remaining = 0;
    PGresult *result;

    pg_param_int(&both, attempt_id);
    pg_param_int(&both, previous_attempt);
    pg_param_int(&one, attempt_id);
    if (pg_run(store, PG_RESUME_SKIP, &both, &outcome->skipped, "skipping finished steps failed",
               error) != 0 ||
        pg_run(store, PG_RESUME_PENDING, &one, NULL, "recounting dependencies failed",
               error) != 0 ||
        pg_query_int64(store, PG_RESUME_REMAINING, &one, &remaining,
                       "recounting the attempt's steps failed", error) != 0)
        return -1;

    result = pg_exec(store, PG_RESUME_VANISHED, &both,
                     "comparing with the previous attempt failed", error);
    if (result == NULL)
        return -1;
    int rows = PQntuples(result);
    if (rows > 0)
        outcome->vanished = calloc((size_t)rows, sizeof(char *));
    for (int row = 0; row < rows; row++)
        outcome->vanished[outcome->vanished_count++] = pg_column_text_dup(result, row, 0);
    PQclear(result);
    if (remaining == 0)
        return pg_settle_attempt(store, attempt_id, clock_wall_ms(), error);
    return 0;
}

int pg_submit(struct store *base, const struct submit_request *request,
              struct submit_outcome *outcome, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    const char *scope_key = request->scope ? request->scope : "";
    int64_t now = clock_wall_ms();
    int64_t app_id, previous_attempt = 0;
    int64_t *step_ids = calloc((size_t)request->step_count + 1, sizeof *step_ids);

    *outcome = (struct submit_outcome){ 0 };
    if (pg_begin(store, error) != 0)
        goto fail;
    struct pg_params lock = { 0 };
    pg_param_text(&lock, request->app);
    pg_param_text(&lock, scope_key);
    if (pg_run(store, PG_SUBMIT_LOCK, &lock, NULL, "waiting for other submits failed",
               error) != 0)
        goto fail;
    if (application_id(store, request->app, &app_id, error) != 0)
        goto fail;
    if (check_no_live_attempt(store, request, app_id, scope_key, error) != 0)
        goto fail;
    if (!request->new_execution &&
        find_resumable(store, app_id, request->scope, &outcome->execution_id, &previous_attempt,
                       error) != 0)
        goto fail;

    if (outcome->execution_id == 0) {
        struct pg_params params = { 0 };
        pg_param_int(&params, app_id);
        pg_param_text(&params, request->scope);
        pg_param_int(&params, now);
        if (pg_query_int64(store, PG_EXECUTION_INSERT, &params, &outcome->execution_id,
                           "storing the execution failed", error) != 0)
            goto fail;
    }

    struct pg_params attempt = { 0 };
    pg_param_int(&attempt, outcome->execution_id);
    pg_param_int(&attempt, app_id);
    pg_param_text(&attempt, scope_key);
    pg_param_int(&attempt, request->step_count);
    pg_param_int(&attempt, now);
    if (pg_query_int64(store, PG_ATTEMPT_INSERT, &attempt, &outcome->attempt_id,
                       "storing the attempt failed", error) != 0) {
        /* The unique index on live attempts rejects a concurrent submit of
         * the same (app, scope) that got in first. */
        if (strstr(*error, "attempts_one_live") != NULL) {
            free(*error);
            *error = strbuf_printf("%s already has a running attempt (submitted at the same "
                                   "time); wait for it to end, stop it (bgwf shutdown or "
                                   "cancel), or use another --scope", request->app);
        }
        goto fail;
    }

    if (insert_steps(store, request, app_id, outcome->attempt_id, step_ids, error) != 0)
        goto fail;
    if (pg_attempt_event(store, "START", outcome->attempt_id,
                         previous_attempt ? "resumed" : NULL, now, error) != 0)
        goto fail;
    if (previous_attempt) {
        outcome->resumed = 1;
        if (carry_over(store, outcome->attempt_id, previous_attempt, outcome, error) != 0)
            goto fail;
    }
    if (pg_attempt_status(base, outcome->attempt_id, &outcome->attempt_status, error) != 0)
        goto fail;
    if (pg_commit(store, error) != 0)
        goto fail;
    free(step_ids);
    return 0;

fail:
    pg_rollback(store);
    store_free_outcome(outcome);
    free(step_ids);
    return -1;
}
