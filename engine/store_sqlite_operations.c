/* The operator commands in SQLite: revert, complete, shutdown and cancel. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "store_sqlite.h"
#include "strbuf.h"

/* The execution's status and its newest attempt. */
struct execution_state {
    char *status;
    int64_t attempt_id;
    char *attempt_status;
};

static void state_free(struct execution_state *state)
{
    free(state->status);
    free(state->attempt_status);
}

static int is_one_of(const char *value, const char *const *options)
{
    for (; *options; options++)
        if (strcmp(value, *options) == 0)
            return 1;
    return 0;
}

static const char *const live_attempt_statuses[] = { "RUNNING", "FAIL_PENDING",
                                                     "SHUTDOWN_PENDING", NULL };
static const char *const done_step_statuses[] = { "COMPLETED", "SKIPPED", "MANUALLY_COMPLETED",
                                                  NULL };

static int read_state(struct sqlite_store *store, int64_t execution_id,
                      struct execution_state *state, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTION_STATE, error);
    int rc;

    *state = (struct execution_state){ 0 };
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, execution_id);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        state->status = sqlite_column_text_dup(statement, 0);
        state->attempt_id = sqlite3_column_int64(statement, 1);
        state->attempt_status = sqlite_column_text_dup(statement, 2);
    }
    sqlite3_reset(statement);
    if (rc == SQLITE_DONE) {
        *error = strbuf_printf("execution %lld not found in %s: see 'bgwf list' for the "
                               "executions", (long long)execution_id, store->path);
        return -1;
    }
    if (rc != SQLITE_ROW) {
        *error = sqlite_error(store, "reading the execution failed");
        return -1;
    }
    return 0;
}

static void add_change(struct change_report *report, const char *token, const char *from,
                       const char *to)
{
    report->changes = realloc(report->changes,
                              (size_t)(report->change_count + 1) * sizeof *report->changes);
    report->changes[report->change_count++] = (struct step_change){
        strbuf_dup(token), strbuf_dup(from), strbuf_dup(to),
    };
}

static int set_step_status(struct sqlite_store *store, int64_t step_id, const char *status,
                           char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_SET_STATUS, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    sqlite3_bind_text(statement, 2, status, -1, SQLITE_STATIC);
    return sqlite_run(store, SQL_STEP_SET_STATUS, error);
}

static int set_execution_status(struct sqlite_store *store, int64_t execution_id,
                                const char *status, int64_t ended_at, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EXECUTION_SET_STATUS, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, execution_id);
    sqlite3_bind_text(statement, 2, status, -1, SQLITE_STATIC);
    if (ended_at)
        sqlite3_bind_int64(statement, 3, ended_at);
    return sqlite_run(store, SQL_EXECUTION_SET_STATUS, error);
}

/* Looks up token in the attempt: sets *step_id and *status (malloc'd). */
static int find_token(struct sqlite_store *store, int64_t execution_id, int64_t attempt_id,
                      const char *token, int64_t *step_id, char **status, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_BY_TOKEN, error);
    int rc;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    sqlite3_bind_text(statement, 2, token, -1, SQLITE_STATIC);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        *step_id = sqlite3_column_int64(statement, 0);
        *status = sqlite_column_text_dup(statement, 1);
    }
    sqlite3_reset(statement);
    if (rc == SQLITE_DONE) {
        *error = strbuf_printf("execution %lld has no step '%s' in attempt %lld: see "
                               "'bgwf show %lld' for its steps", (long long)execution_id, token,
                               (long long)attempt_id, (long long)execution_id);
        return -1;
    }
    if (rc != SQLITE_ROW) {
        *error = sqlite_error(store, "reading the step failed");
        return -1;
    }
    return 0;
}

/* Collects the ids of every step downstream of step_id, in breadth-first
 * order, into *ids. */
static int downstream_of(struct sqlite_store *store, int64_t step_id, int64_t **ids, int *count,
                         char **error)
{
    int head = 0, capacity = 16;

    *ids = malloc((size_t)capacity * sizeof **ids);
    (*ids)[0] = step_id;
    *count = 1;
    while (head < *count) {
        sqlite3_stmt *statement = sqlite_statement(store, SQL_DEPENDENT_STEPS, error);
        int rc;

        if (statement == NULL)
            return -1;
        sqlite3_bind_int64(statement, 1, (*ids)[head++]);
        while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
            int64_t next = sqlite3_column_int64(statement, 0);
            int seen = 0;
            for (int i = 0; i < *count && !seen; i++)
                seen = (*ids)[i] == next;
            if (seen)
                continue;
            if (*count == capacity) {
                capacity *= 2;
                *ids = realloc(*ids, (size_t)capacity * sizeof **ids);
            }
            (*ids)[(*count)++] = next;
        }
        sqlite3_reset(statement);
        if (rc != SQLITE_DONE) {
            *error = sqlite_error(store, "reading dependencies failed");
            return -1;
        }
    }
    return 0;
}

static int revert_in_transaction(struct sqlite_store *store, int64_t execution_id,
                                 const char *token, int downstream,
                                 struct change_report *report, char **error)
{
    struct execution_state state;
    char *status = NULL;
    int64_t step_id, *ids = NULL;
    int count = 0, rc = -1;

    if (read_state(store, execution_id, &state, error) != 0)
        return -1;
    report->attempt_id = state.attempt_id;
    if (strcmp(state.status, "CANCELLED") == 0) {
        *error = strbuf_printf("execution %lld is CANCELLED and will not run again; a new "
                               "submit starts a new execution", (long long)execution_id);
        goto done;
    }
    int64_t newest = 0;
    sqlite3_stmt *sibling = sqlite_statement(store, SQL_NEWEST_SIBLING, error);
    if (sibling == NULL)
        goto done;
    sqlite3_bind_int64(sibling, 1, execution_id);
    if (sqlite_query_int64(store, SQL_NEWEST_SIBLING, &newest, error) < 0)
        goto done;
    if (newest != execution_id) {
        *error = strbuf_printf("execution %lld is not the newest of its application and scope "
                               "(execution %lld is), and only the newest one resumes; revert "
                               "steps of execution %lld instead", (long long)execution_id,
                               (long long)newest, (long long)newest);
        goto done;
    }
    if (is_one_of(state.attempt_status, live_attempt_statuses)) {
        *error = strbuf_printf("attempt %lld of execution %lld is %s; revert only after it "
                               "ended (bgwf shutdown %lld, then bgwf wait %lld)",
                               (long long)state.attempt_id, (long long)execution_id,
                               state.attempt_status, (long long)execution_id,
                               (long long)execution_id);
        goto done;
    }
    if (find_token(store, execution_id, state.attempt_id, token, &step_id, &status, error) != 0)
        goto done;
    if (!is_one_of(status, done_step_statuses)) {
        *error = strbuf_printf("step '%s' is %s; only a COMPLETED, SKIPPED or "
                               "MANUALLY_COMPLETED step can be reverted", token, status);
        goto done;
    }

    if (downstream) {
        if (downstream_of(store, step_id, &ids, &count, error) != 0)
            goto done;
    } else {
        ids = malloc(sizeof *ids);
        ids[0] = step_id;
        count = 1;
    }
    for (int i = 0; i < count; i++) {
        sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_TOKEN_STATUS, error);
        if (statement == NULL)
            goto done;
        sqlite3_bind_int64(statement, 1, ids[i]);
        if (sqlite3_step(statement) != SQLITE_ROW) {
            sqlite3_reset(statement);
            *error = sqlite_error(store, "reading a step failed");
            goto done;
        }
        char *step_token = sqlite_column_text_dup(statement, 0);
        char *step_status = sqlite_column_text_dup(statement, 1);
        sqlite3_reset(statement);
        int changes = is_one_of(step_status, done_step_statuses);
        if (changes)
            add_change(report, step_token, step_status, "REVERTED");
        free(step_token);
        free(step_status);
        if (changes && set_step_status(store, ids[i], "REVERTED", error) != 0)
            goto done;
    }

    if (strcmp(state.status, "COMPLETE") == 0) {
        if (set_execution_status(store, execution_id, "INCOMPLETE", 0, error) != 0)
            goto done;
        report->execution_from = strbuf_dup("COMPLETE");
        report->execution_to = strbuf_dup("INCOMPLETE");
    }
    rc = 0;

done:
    free(ids);
    free(status);
    state_free(&state);
    return rc;
}

static int complete_in_transaction(struct sqlite_store *store, int64_t execution_id,
                                   const char *token, struct change_report *report,
                                   char **error)
{
    static const char *const completable[] = { "WAITING", "FAILED", "REVERTED", NULL };
    struct execution_state state;
    char *status = NULL;
    int64_t step_id;
    int rc = -1;

    if (read_state(store, execution_id, &state, error) != 0)
        return -1;
    report->attempt_id = state.attempt_id;
    if (strcmp(state.status, "INCOMPLETE") != 0) {
        *error = strbuf_printf("execution %lld is %s; only the steps of an INCOMPLETE "
                               "execution can be completed by hand", (long long)execution_id,
                               state.status);
        goto done;
    }
    if (find_token(store, execution_id, state.attempt_id, token, &step_id, &status, error) != 0)
        goto done;
    if (!is_one_of(status, completable)) {
        *error = strbuf_printf("step '%s' is %s; only a WAITING, FAILED or REVERTED step can "
                               "be completed by hand", token, status);
        goto done;
    }
    if (set_step_status(store, step_id, "MANUALLY_COMPLETED", error) != 0)
        goto done;
    add_change(report, token, status, "MANUALLY_COMPLETED");

    /* Its dependents may start now, and the attempt has one step less to do. */
    sqlite3_stmt *statement = sqlite_statement(store, SQL_DEPENDENTS_RELEASE, error);
    if (statement == NULL)
        goto done;
    sqlite3_bind_int64(statement, 1, step_id);
    if (sqlite_run(store, SQL_DEPENDENTS_RELEASE, error) != 0)
        goto done;
    statement = sqlite_statement(store, SQL_ATTEMPT_DONE_ONE, error);
    if (statement == NULL)
        goto done;
    sqlite3_bind_int64(statement, 1, state.attempt_id);
    if (sqlite_run(store, SQL_ATTEMPT_DONE_ONE, error) != 0)
        goto done;
    if (sqlite_settle_attempt(store, state.attempt_id, clock_wall_ms(), error) != 0)
        goto done;
    rc = 0;

done:
    free(status);
    state_free(&state);
    return rc;
}

static int count_running(struct sqlite_store *store, int64_t attempt_id, int *running,
                         char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_RUNNING_COUNT, error);
    int64_t value = 0;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    if (sqlite_query_int64(store, SQL_ATTEMPT_RUNNING_COUNT, &value, error) < 0)
        return -1;
    *running = (int)value;
    return 0;
}

/* Moves a live attempt to pending_status, so that no new step of it starts,
 * and ends it at once when nothing of it runs. */
static int drain_attempt(struct sqlite_store *store, const struct execution_state *state,
                         const char *pending_status, struct change_report *report, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_SET_STATUS, error);
    char *after = NULL;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, state->attempt_id);
    sqlite3_bind_text(statement, 2, pending_status, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_ATTEMPT_SET_STATUS, error) != 0)
        return -1;
    statement = sqlite_statement(store, SQL_ATTEMPT_DEACTIVATE, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, state->attempt_id);
    if (sqlite_run(store, SQL_ATTEMPT_DEACTIVATE, error) != 0)
        return -1;
    if (count_running(store, state->attempt_id, &report->running_steps, error) != 0)
        return -1;
    if (sqlite_settle_attempt(store, state->attempt_id, clock_wall_ms(), error) != 0)
        return -1;
    if (sqlite_attempt_status(&store->base, state->attempt_id, &after, error) != 0)
        return -1;
    report->attempt_from = strbuf_dup(state->attempt_status);
    report->attempt_to = after;
    return 0;
}

static int shutdown_in_transaction(struct sqlite_store *store, int64_t execution_id,
                                   struct change_report *report, char **error)
{
    struct execution_state state;
    int rc = -1;

    if (read_state(store, execution_id, &state, error) != 0)
        return -1;
    report->attempt_id = state.attempt_id;
    if (strcmp(state.attempt_status, "RUNNING") != 0) {
        *error = strbuf_printf("attempt %lld of execution %lld is %s, not RUNNING; there is "
                               "nothing to shut down", (long long)state.attempt_id,
                               (long long)execution_id, state.attempt_status);
        goto done;
    }
    rc = drain_attempt(store, &state, "SHUTDOWN_PENDING", report, error);

done:
    state_free(&state);
    return rc;
}

static int cancel_in_transaction(struct sqlite_store *store, int64_t execution_id,
                                 struct change_report *report, char **error)
{
    struct execution_state state;
    int rc = -1;

    if (read_state(store, execution_id, &state, error) != 0)
        return -1;
    report->attempt_id = state.attempt_id;
    if (strcmp(state.status, "INCOMPLETE") != 0) {
        *error = strbuf_printf("execution %lld is %s; only an INCOMPLETE execution can be "
                               "cancelled", (long long)execution_id, state.status);
        goto done;
    }
    if (set_execution_status(store, execution_id, "CANCELLED", clock_wall_ms(), error) != 0)
        goto done;
    report->execution_from = strbuf_dup("INCOMPLETE");
    report->execution_to = strbuf_dup("CANCELLED");

    if (is_one_of(state.attempt_status, live_attempt_statuses)) {
        sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_CANCEL_RUNNING, error);
        if (statement == NULL)
            goto done;
        sqlite3_bind_int64(statement, 1, state.attempt_id);
        if (sqlite_run(store, SQL_ATTEMPT_CANCEL_RUNNING, error) != 0)
            goto done;
        if (drain_attempt(store, &state, "FAIL_PENDING", report, error) != 0)
            goto done;
    }
    rc = 0;

done:
    state_free(&state);
    return rc;
}

/* Runs one operation in a write transaction, rolling back on failure. */
#define IN_TRANSACTION(store, report, id, error, call)             \
    do {                                                           \
        *(report) = (struct change_report){ .execution_id = (id) };  \
        if (sqlite_begin((store), (error)) != 0)                   \
            return -1;                                             \
        if ((call) != 0 || sqlite_commit((store), (error)) != 0) { \
            sqlite_rollback(store);                                \
            store_free_changes(report);                            \
            return -1;                                             \
        }                                                          \
        return 0;                                                  \
    } while (0)

int sqlite_revert(struct store *base, int64_t execution_id, const char *token, int downstream,
                  struct change_report *report, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   revert_in_transaction(store, execution_id, token, downstream, report, error));
}

int sqlite_complete(struct store *base, int64_t execution_id, const char *token,
                    struct change_report *report, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   complete_in_transaction(store, execution_id, token, report, error));
}

int sqlite_shutdown(struct store *base, int64_t execution_id, struct change_report *report,
                    char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   shutdown_in_transaction(store, execution_id, report, error));
}

int sqlite_cancel(struct store *base, int64_t execution_id, struct change_report *report,
                  char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   cancel_in_transaction(store, execution_id, report, error));
}

int sqlite_cancelled_steps(struct store *base, int64_t executor_id,
                           struct cancelled_step **steps, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_CANCELLED_STEPS, error);
    int rc;

    *steps = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, executor_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *steps = realloc(*steps, (size_t)(*count + 1) * sizeof **steps);
        (*steps)[*count].step_id = sqlite3_column_int64(statement, 0);
        (*steps)[*count].try_number = sqlite3_column_int(statement, 1);
        (*count)++;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for cancelled steps failed");
        free(*steps);
        *steps = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}
