/* Storing a submitted workflow in one SQLite transaction. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "store_sqlite.h"
#include "strbuf.h"

static int application_id(struct sqlite_store *store, const char *app, int64_t *app_id,
                          char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_APP_INSERT, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_APP_INSERT, error) != 0)
        return -1;

    statement = sqlite_statement(store, SQL_APP_ID, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    if (sqlite3_step(statement) != SQLITE_ROW) {
        *error = sqlite_error(store, "reading the application id failed");
        sqlite3_reset(statement);
        return -1;
    }
    *app_id = sqlite3_column_int64(statement, 0);
    sqlite3_reset(statement);
    return 0;
}

/* Fails with a message naming the live attempt when (app, scope) has one. */
static int check_no_live_attempt(struct sqlite_store *store, const struct submit_request *request,
                                 int64_t app_id, const char *scope_key, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LIVE_ATTEMPT, error);
    int rc;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, app_id);
    sqlite3_bind_text(statement, 2, scope_key, -1, SQLITE_STATIC);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        char *scope_text = request->scope ? strbuf_printf(" scope '%s'", request->scope)
                                          : strbuf_dup(" without a scope");
        *error = strbuf_printf("%s%s already has attempt %lld of execution %lld in status %s; "
                               "wait for it to end, stop it (bgwf shutdown or cancel), or use another --scope",
                               request->app, scope_text,
                               (long long)sqlite3_column_int64(statement, 0),
                               (long long)sqlite3_column_int64(statement, 1),
                               (const char *)sqlite3_column_text(statement, 2));
        free(scope_text);
        sqlite3_reset(statement);
        return -1;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for a running attempt failed");
        return -1;
    }
    return 0;
}

static int insert_returning_id(struct sqlite_store *store, enum sql_id id, int64_t *row_id,
                               char **error)
{
    if (sqlite_run(store, id, error) != 0)
        return -1;
    *row_id = sqlite3_last_insert_rowid(store->db);
    return 0;
}

static int release_duplicate(struct sqlite_store *store, int64_t step_id, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_PENDING_DECREMENT, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    return sqlite_run(store, SQL_PENDING_DECREMENT, error);
}

static int insert_steps(struct sqlite_store *store, const struct submit_request *request,
                        int64_t app_id, int64_t attempt_id, int64_t *step_ids, char **error)
{
    for (int i = 0; i < request->step_count; i++) {
        const struct submit_step *step = &request->steps[i];
        sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_INSERT, error);

        if (statement == NULL)
            return -1;
        sqlite3_bind_int64(statement, 1, attempt_id);
        sqlite3_bind_int64(statement, 2, app_id);
        sqlite3_bind_text(statement, 3, step->token, -1, SQLITE_STATIC);
        sqlite3_bind_text(statement, 4, step->action, -1, SQLITE_STATIC);
        sqlite3_bind_int(statement, 5, step->dep_count);
        sqlite3_bind_int64(statement, 6, step->cooldown_ms);
        sqlite3_bind_text(statement, 7, step->context, -1, SQLITE_STATIC);
        sqlite3_bind_int(statement, 8, step->policy.retries);
        sqlite3_bind_int64(statement, 9, step->policy.backoff_initial_ms);
        sqlite3_bind_double(statement, 10, step->policy.backoff_factor > 0
                                               ? step->policy.backoff_factor : 1.0);
        sqlite3_bind_int64(statement, 11, step->policy.backoff_max_ms);
        sqlite3_bind_int64(statement, 12, step->policy.timeout_ms);
        sqlite3_bind_int64(statement, 13, step->policy.max_memory);
        if (insert_returning_id(store, SQL_STEP_INSERT, &step_ids[i], error) != 0)
            return -1;
    }

    for (int i = 0; i < request->step_count; i++) {
        const struct submit_step *step = &request->steps[i];
        for (int d = 0; d < step->dep_count; d++) {
            int dep = step->deps[d];
            if (dep < 0 || dep >= request->step_count || dep == i) {
                *error = strbuf_printf("step '%s' has an invalid dependency index %d",
                                       step->token, dep);
                return -1;
            }
            sqlite3_stmt *statement = sqlite_statement(store, SQL_DEPENDENCY_INSERT, error);
            if (statement == NULL)
                return -1;
            sqlite3_bind_int64(statement, 1, step_ids[dep]);
            sqlite3_bind_int64(statement, 2, step_ids[i]);
            if (sqlite_run(store, SQL_DEPENDENCY_INSERT, error) != 0)
                return -1;
            /* A dependency listed twice counts once. */
            if (sqlite3_changes(store->db) == 0 &&
                release_duplicate(store, step_ids[i], error) != 0)
                return -1;
        }
    }
    return 0;
}

/* Finds the newest execution of (app, scope) that a submit should resume:
 * sets *execution_id and *previous_attempt, or leaves them 0. */
static int find_resumable(struct sqlite_store *store, int64_t app_id, const char *scope,
                          int64_t *execution_id, int64_t *previous_attempt, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LATEST_EXECUTION_OF, error);
    int rc;

    *execution_id = 0;
    *previous_attempt = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, app_id);
    if (scope)
        sqlite3_bind_text(statement, 2, scope, -1, SQLITE_STATIC);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(statement, 1),
                                   "INCOMPLETE") == 0)
        *execution_id = sqlite3_column_int64(statement, 0);
    sqlite3_reset(statement);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for the previous execution failed");
        return -1;
    }
    if (*execution_id == 0)
        return 0;

    statement = sqlite_statement(store, SQL_LATEST_ATTEMPT_OF, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, *execution_id);
    return sqlite_query_int64(store, SQL_LATEST_ATTEMPT_OF, previous_attempt, error) < 0 ? -1 : 0;
}

static int bind_two_attempts(struct sqlite_store *store, enum sql_id id, int64_t attempt_id,
                             int64_t previous_attempt, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, id, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    sqlite3_bind_int64(statement, 2, previous_attempt);
    return 0;
}

/* Marks the steps that previous_attempt finished as SKIPPED in the new
 * attempt, recounts readiness without them, and lists the tokens that the
 * new DAG no longer has. */
static int carry_over(struct sqlite_store *store, int64_t attempt_id, int64_t previous_attempt,
                      struct submit_outcome *outcome, char **error)
{
    int64_t remaining = 0;
    int rc;

    if (bind_two_attempts(store, SQL_RESUME_SKIP, attempt_id, previous_attempt, error) != 0 ||
        sqlite_run(store, SQL_RESUME_SKIP, error) != 0)
        return -1;
    outcome->skipped = sqlite3_changes(store->db);

    if (bind_two_attempts(store, SQL_RESUME_PENDING, attempt_id, previous_attempt, error) != 0 ||
        sqlite_run(store, SQL_RESUME_PENDING, error) != 0)
        return -1;
    if (bind_two_attempts(store, SQL_RESUME_REMAINING, attempt_id, previous_attempt, error) != 0 ||
        sqlite_query_int64(store, SQL_RESUME_REMAINING, &remaining, error) != 0)
        return -1;

    if (bind_two_attempts(store, SQL_RESUME_VANISHED, attempt_id, previous_attempt, error) != 0)
        return -1;
    sqlite3_stmt *statement = store->statements[SQL_RESUME_VANISHED];
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        outcome->vanished = realloc(outcome->vanished,
                                    (size_t)(outcome->vanished_count + 1) * sizeof(char *));
        outcome->vanished[outcome->vanished_count++] = sqlite_column_text_dup(statement, 0);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "comparing with the previous attempt failed");
        return -1;
    }
    if (remaining == 0)
        return sqlite_settle_attempt(store, attempt_id, clock_wall_ms(), error);
    return 0;
}

int sqlite_submit(struct store *base, const struct submit_request *request,
                  struct submit_outcome *outcome, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    const char *scope_key = request->scope ? request->scope : "";
    int64_t now = clock_wall_ms();
    int64_t app_id, previous_attempt = 0;
    int64_t *step_ids = calloc((size_t)request->step_count + 1, sizeof *step_ids);
    sqlite3_stmt *statement;

    *outcome = (struct submit_outcome){ 0 };
    if (sqlite_begin(store, error) != 0)
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
        statement = sqlite_statement(store, SQL_EXECUTION_INSERT, error);
        if (statement == NULL)
            goto fail;
        sqlite3_bind_int64(statement, 1, app_id);
        if (request->scope)
            sqlite3_bind_text(statement, 2, request->scope, -1, SQLITE_STATIC);
        sqlite3_bind_int64(statement, 3, now);
        if (insert_returning_id(store, SQL_EXECUTION_INSERT, &outcome->execution_id, error) != 0)
            goto fail;
    }

    statement = sqlite_statement(store, SQL_ATTEMPT_INSERT, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_int64(statement, 1, outcome->execution_id);
    sqlite3_bind_int64(statement, 2, app_id);
    sqlite3_bind_text(statement, 3, scope_key, -1, SQLITE_STATIC);
    sqlite3_bind_int(statement, 4, request->step_count);
    sqlite3_bind_int64(statement, 5, now);
    if (insert_returning_id(store, SQL_ATTEMPT_INSERT, &outcome->attempt_id, error) != 0)
        goto fail;

    if (insert_steps(store, request, app_id, outcome->attempt_id, step_ids, error) != 0)
        goto fail;
    if (sqlite_attempt_event(store, "START", outcome->attempt_id,
                             previous_attempt ? "resumed" : NULL, now, error) != 0)
        goto fail;
    if (previous_attempt) {
        outcome->resumed = 1;
        if (carry_over(store, outcome->attempt_id, previous_attempt, outcome, error) != 0)
            goto fail;
    }
    if (sqlite_attempt_status(base, outcome->attempt_id, &outcome->attempt_status, error) != 0)
        goto fail;
    if (sqlite_commit(store, error) != 0)
        goto fail;
    free(step_ids);
    return 0;

fail:
    sqlite_rollback(store);
    store_free_outcome(outcome);
    free(step_ids);
    return -1;
}
