/* The operator commands in PostgreSQL: revert, complete, shutdown and
 * cancel. */
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"

#include "clock.h"
#include "store_pg.h"
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

/* Reads the execution and its newest attempt, locking that attempt. */
static int read_state(struct pg_store *store, int64_t execution_id,
                      struct execution_state *state, char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    *state = (struct execution_state){ 0 };
    pg_param_int(&params, execution_id);
    result = pg_exec(store, PG_EXECUTION_STATE, &params, "reading the execution failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("execution %lld not found in %s: see 'bgwf list' for the "
                               "executions", (long long)execution_id, store->display);
        return -1;
    }
    state->status = pg_column_text_dup(result, 0, 0);
    state->attempt_id = pg_column_int64(result, 0, 1);
    state->attempt_status = pg_column_text_dup(result, 0, 2);
    PQclear(result);
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

static int set_status(struct pg_store *store, enum pg_sql_id id, int64_t row_id,
                      const char *status, char **error)
{
    struct pg_params params = { 0 };

    pg_param_int(&params, row_id);
    pg_param_text(&params, status);
    return pg_run(store, id, &params, NULL, "changing a status failed", error);
}

static int set_execution_status(struct pg_store *store, int64_t execution_id,
                                const char *status, int64_t ended_at, char **error)
{
    struct pg_params params = { 0 };

    pg_param_int(&params, execution_id);
    pg_param_text(&params, status);
    if (ended_at)
        pg_param_int(&params, ended_at);
    else
        pg_param_text(&params, NULL);
    return pg_run(store, PG_EXECUTION_SET_STATUS, &params, NULL,
                  "changing the execution's status failed", error);
}

/* Looks up token in the attempt: sets *step_id and *status (malloc'd). */
static int find_token(struct pg_store *store, int64_t execution_id, int64_t attempt_id,
                      const char *token, int64_t *step_id, char **status, char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    pg_param_int(&params, attempt_id);
    pg_param_text(&params, token);
    result = pg_exec(store, PG_STEP_BY_TOKEN, &params, "reading the step failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("execution %lld has no step '%s' in attempt %lld: see "
                               "'bgwf show %lld' for its steps", (long long)execution_id, token,
                               (long long)attempt_id, (long long)execution_id);
        return -1;
    }
    *step_id = pg_column_int64(result, 0, 0);
    *status = pg_column_text_dup(result, 0, 1);
    PQclear(result);
    return 0;
}

/* Collects the ids of every step downstream of step_id, in breadth-first
 * order, into *ids. */
static int downstream_of(struct pg_store *store, int64_t step_id, int64_t **ids, int *count,
                         char **error)
{
    int head = 0, capacity = 16;

    *ids = malloc((size_t)capacity * sizeof **ids);
    (*ids)[0] = step_id;
    *count = 1;
    while (head < *count) {
        struct pg_params params = { 0 };
        PGresult *result;

        pg_param_int(&params, (*ids)[head++]);
        result = pg_exec(store, PG_DEPENDENT_STEPS, &params, "reading dependencies failed",
                         error);
        if (result == NULL)
            return -1;
        for (int row = 0; row < PQntuples(result); row++) {
            int64_t next = pg_column_int64(result, row, 0);
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
        PQclear(result);
    }
    return 0;
}

/* Reverts the step with this id when it is done, and records the change. */
static int revert_one(struct pg_store *store, int64_t step_id, struct change_report *report,
                      char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    pg_param_int(&params, step_id);
    result = pg_exec(store, PG_STEP_TOKEN_STATUS, &params, "reading a step failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("reading step %lld failed: not found (database %s)",
                               (long long)step_id, store->display);
        return -1;
    }
    char *token = pg_column_text_dup(result, 0, 0);
    char *status = pg_column_text_dup(result, 0, 1);
    PQclear(result);
    int rc = 0;
    if (is_one_of(status, done_step_statuses)) {
        add_change(report, token, status, "REVERTED");
        rc = set_status(store, PG_STEP_SET_STATUS, step_id, "REVERTED", error);
    }
    free(token);
    free(status);
    return rc;
}

static int revert_in_transaction(struct pg_store *store, int64_t execution_id, const char *token,
                                 int downstream, struct change_report *report, char **error)
{
    struct execution_state state;
    char *status = NULL;
    int64_t step_id, newest = 0, *ids = NULL;
    int count = 0, rc = -1;

    if (read_state(store, execution_id, &state, error) != 0)
        return -1;
    report->attempt_id = state.attempt_id;
    if (strcmp(state.status, "CANCELLED") == 0) {
        *error = strbuf_printf("execution %lld is CANCELLED and will not run again; a new "
                               "submit starts a new execution", (long long)execution_id);
        goto done;
    }
    struct pg_params params = { 0 };
    pg_param_int(&params, execution_id);
    if (pg_query_int64(store, PG_NEWEST_SIBLING, &params, &newest,
                       "reading the newest execution failed", error) < 0)
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
    for (int i = 0; i < count; i++)
        if (revert_one(store, ids[i], report, error) != 0)
            goto done;

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

static int complete_in_transaction(struct pg_store *store, int64_t execution_id,
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
    if (set_status(store, PG_STEP_SET_STATUS, step_id, "MANUALLY_COMPLETED", error) != 0)
        goto done;
    add_change(report, token, status, "MANUALLY_COMPLETED");

    /* Its dependents may start now, and the attempt has one step less to do. */
    struct pg_params step = { 0 }, attempt = { 0 };
    pg_param_int(&step, step_id);
    pg_param_int(&attempt, state.attempt_id);
    if (pg_run(store, PG_DEPENDENTS_RELEASE, &step, NULL, "releasing dependent steps failed",
               error) != 0 ||
        pg_run(store, PG_ATTEMPT_DONE_ONE, &attempt, NULL, "counting a finished step failed",
               error) != 0)
        goto done;
    if (pg_settle_attempt(store, state.attempt_id, clock_wall_ms(), error) != 0)
        goto done;
    rc = 0;

done:
    free(status);
    state_free(&state);
    return rc;
}

/* Moves a live attempt to pending_status, so that no new step of it starts,
 * and ends it at once when nothing of it runs. */
static int drain_attempt(struct pg_store *store, const struct execution_state *state,
                         const char *pending_status, struct change_report *report, char **error)
{
    struct pg_params attempt = { 0 };
    int64_t running = 0;
    char *after = NULL;

    pg_param_int(&attempt, state->attempt_id);
    if (set_status(store, PG_ATTEMPT_SET_STATUS, state->attempt_id, pending_status, error) != 0 ||
        pg_run(store, PG_ATTEMPT_DEACTIVATE, &attempt, NULL,
               "stopping the attempt's steps failed", error) != 0 ||
        pg_query_int64(store, PG_ATTEMPT_RUNNING_COUNT, &attempt, &running,
                       "counting running steps failed", error) < 0)
        return -1;
    report->running_steps = (int)running;
    if (pg_settle_attempt(store, state->attempt_id, clock_wall_ms(), error) != 0)
        return -1;
    if (pg_attempt_status(&store->base, state->attempt_id, &after, error) != 0)
        return -1;
    report->attempt_from = strbuf_dup(state->attempt_status);
    report->attempt_to = after;
    return 0;
}

static int shutdown_in_transaction(struct pg_store *store, int64_t execution_id,
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

static int cancel_in_transaction(struct pg_store *store, int64_t execution_id,
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
        struct pg_params attempt = { 0 };
        pg_param_int(&attempt, state.attempt_id);
        if (pg_run(store, PG_ATTEMPT_CANCEL_RUNNING, &attempt, NULL,
                   "requesting the cancel of running steps failed", error) != 0)
            goto done;
        if (drain_attempt(store, &state, "FAIL_PENDING", report, error) != 0)
            goto done;
    }
    rc = 0;

done:
    state_free(&state);
    return rc;
}

/* Runs one operation in a transaction, rolling back on failure. */
#define IN_TRANSACTION(store, report, id, error, call)             \
    do {                                                           \
        *(report) = (struct change_report){ .execution_id = (id) };  \
        if (pg_begin((store), (error)) != 0)                       \
            return -1;                                             \
        if ((call) != 0 || pg_commit((store), (error)) != 0) {     \
            pg_rollback(store);                                    \
            store_free_changes(report);                            \
            return -1;                                             \
        }                                                          \
        return 0;                                                  \
    } while (0)

int pg_revert(struct store *base, int64_t execution_id, const char *token, int downstream,
              struct change_report *report, char **error)
{
    struct pg_store *store = (struct pg_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   revert_in_transaction(store, execution_id, token, downstream, report, error));
}

int pg_complete(struct store *base, int64_t execution_id, const char *token,
                struct change_report *report, char **error)
{
    struct pg_store *store = (struct pg_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   complete_in_transaction(store, execution_id, token, report, error));
}

int pg_shutdown(struct store *base, int64_t execution_id, struct change_report *report,
                char **error)
{
    struct pg_store *store = (struct pg_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   shutdown_in_transaction(store, execution_id, report, error));
}

int pg_cancel(struct store *base, int64_t execution_id, struct change_report *report,
              char **error)
{
    struct pg_store *store = (struct pg_store *)base;

    IN_TRANSACTION(store, report, execution_id, error,
                   cancel_in_transaction(store, execution_id, report, error));
}

int pg_cancelled_steps(struct store *base, int64_t executor_id, struct cancelled_step **steps,
                       int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *steps = NULL;
    *count = 0;
    pg_param_int(&params, executor_id);
    result = pg_exec(store, PG_CANCELLED_STEPS, &params, "looking for cancelled steps failed",
                     error);
    if (result == NULL)
        return -1;
    int rows = PQntuples(result);
    if (rows > 0)
        *steps = calloc((size_t)rows, sizeof **steps);
    for (int row = 0; row < rows; row++) {
        (*steps)[row].step_id = pg_column_int64(result, row, 0);
        (*steps)[row].try_number = (int)pg_column_int64(result, row, 1);
    }
    *count = rows;
    PQclear(result);
    return 0;
}
