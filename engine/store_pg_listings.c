/* Reading executions, attempts, executors and steps back from PostgreSQL
 * for the commands. */
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"

#include "store_pg.h"
#include "strbuf.h"

int pg_find_execution(struct store *base, const char *app, const char *scope,
                      int64_t *execution_id, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int rc;

    pg_param_text(&params, app);
    pg_param_text(&params, scope);
    rc = pg_query_int64(store, PG_FIND_EXECUTION, &params, execution_id,
                        "looking for the execution failed", error);
    if (rc == 1) {
        if (scope)
            *error = strbuf_printf("no execution of %s with scope '%s' in %s", app, scope,
                                   store->display);
        else
            *error = strbuf_printf("no execution of %s without a scope in %s (add --scope S "
                                   "for a scoped one)", app, store->display);
        return -1;
    }
    return rc;
}

int pg_list_executions(struct store *base, const struct execution_filter *filter,
                       struct execution_row **rows, int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *rows = NULL;
    *count = 0;
    pg_param_text(&params, filter->app);
    pg_param_text(&params, filter->status);
    if (filter->limit > 0)
        pg_param_int(&params, filter->limit);
    else
        pg_param_text(&params, NULL); /* LIMIT NULL: no limit */
    result = pg_exec(store, PG_LIST_EXECUTIONS, &params, "listing executions failed", error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *rows = calloc((size_t)found, sizeof **rows);
    for (int row = 0; row < found; row++) {
        struct execution_row *item = &(*rows)[row];
        item->id = pg_column_int64(result, row, 0);
        item->app = pg_column_text_dup(result, row, 1);
        item->scope = pg_column_text_dup(result, row, 2);
        item->status = pg_column_text_dup(result, row, 3);
        item->created_at = pg_column_int64(result, row, 4);
        item->ended_at = pg_column_int64(result, row, 5);
        item->attempt_count = (int)pg_column_int64(result, row, 6);
        item->latest_attempt_id = pg_column_int64(result, row, 7);
        item->latest_attempt_status = pg_column_text_dup(result, row, 8);
    }
    *count = found;
    PQclear(result);
    return 0;
}

int pg_list_attempts(struct store *base, int64_t execution_id, struct attempt_row **rows,
                     int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *rows = NULL;
    *count = 0;
    pg_param_int(&params, execution_id);
    result = pg_exec(store, PG_LIST_ATTEMPTS, &params, "listing attempts failed", error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *rows = calloc((size_t)found, sizeof **rows);
    for (int row = 0; row < found; row++) {
        struct attempt_row *item = &(*rows)[row];
        item->id = pg_column_int64(result, row, 0);
        item->status = pg_column_text_dup(result, row, 1);
        item->step_count = (int)pg_column_int64(result, row, 2);
        item->created_at = pg_column_int64(result, row, 3);
        item->ended_at = pg_column_int64(result, row, 4);
    }
    *count = found;
    PQclear(result);
    return 0;
}

int pg_list_executors(struct store *base, struct executor_row **rows, int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    PGresult *result = pg_exec(store, PG_LIST_EXECUTORS, NULL, "listing executors failed", error);

    *rows = NULL;
    *count = 0;
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *rows = calloc((size_t)found, sizeof **rows);
    for (int row = 0; row < found; row++) {
        struct executor_row *item = &(*rows)[row];
        item->id = pg_column_int64(result, row, 0);
        item->host = pg_column_text_dup(result, row, 1);
        item->pid = (int)pg_column_int64(result, row, 2);
        item->apps = pg_column_text_dup(result, row, 3);
        item->status = pg_column_text_dup(result, row, 4);
        item->started_at = pg_column_int64(result, row, 5);
        item->heartbeat_at = pg_column_int64(result, row, 6);
        item->stopped_at = pg_column_int64(result, row, 7);
        item->running_steps = (int)pg_column_int64(result, row, 8);
    }
    *count = found;
    PQclear(result);
    return 0;
}

int pg_attempt_progress(struct store *base, int64_t attempt_id,
                        struct attempt_progress *progress, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *progress = (struct attempt_progress){ 0 };
    pg_param_int(&params, attempt_id);
    result = pg_exec(store, PG_ATTEMPT_PROGRESS, &params,
                     "reading the attempt's progress failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("attempt %lld not found in %s", (long long)attempt_id,
                               store->display);
        return -1;
    }
    progress->status = pg_column_text_dup(result, 0, 0);
    progress->total = (int)pg_column_int64(result, 0, 1);
    progress->done = (int)pg_column_int64(result, 0, 2);
    progress->running = (int)pg_column_int64(result, 0, 3);
    progress->failed = (int)pg_column_int64(result, 0, 4);
    PQclear(result);
    return 0;
}

static int index_of(const struct status_report *report, int64_t step_id)
{
    /* Steps are ordered by id, so a binary search finds the index. */
    int low = 0, high = report->step_count - 1;

    while (low <= high) {
        int middle = (low + high) / 2;
        if (report->steps[middle].step_id == step_id)
            return middle;
        if (report->steps[middle].step_id < step_id)
            low = middle + 1;
        else
            high = middle - 1;
    }
    return -1;
}

int pg_step_edges(struct store *base, const struct status_report *report,
                  struct step_edge **edges, int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *edges = NULL;
    *count = 0;
    pg_param_int(&params, report->attempt_id);
    result = pg_exec(store, PG_STEP_EDGES, &params, "reading dependencies failed", error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *edges = calloc((size_t)found, sizeof **edges);
    for (int row = 0; row < found; row++) {
        int from = index_of(report, pg_column_int64(result, row, 0));
        int to = index_of(report, pg_column_int64(result, row, 1));
        if (from < 0 || to < 0)
            continue;
        (*edges)[*count].from = from;
        (*edges)[*count].to = to;
        (*count)++;
    }
    PQclear(result);
    return 0;
}

int pg_attempt_status(struct store *base, int64_t attempt_id, char **status, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *status = NULL;
    pg_param_int(&params, attempt_id);
    result = pg_exec(store, PG_ATTEMPT_STATE, &params, "reading an attempt failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("attempt %lld not found in %s", (long long)attempt_id,
                               store->display);
        return -1;
    }
    *status = pg_column_text_dup(result, 0, 0);
    PQclear(result);
    return 0;
}

int pg_has_work(struct store *base, const char *app, int64_t attempt_id, int *has_work,
                char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int64_t found = 0;

    *has_work = 0;
    if (attempt_id)
        pg_param_int(&params, attempt_id);
    else
        pg_param_text(&params, app);
    if (pg_query_int64(store, attempt_id ? PG_HAS_WORK_ATTEMPT : PG_HAS_WORK_APP, &params, &found,
                       "checking for work failed", error) < 0)
        return -1;
    *has_work = found != 0;
    return 0;
}

static int read_steps(struct pg_store *store, struct status_report *report, char **error)
{
    struct pg_params params = { 0 };
    PGresult *result;

    pg_param_int(&params, report->attempt_id);
    result = pg_exec(store, PG_STATUS_STEPS, &params, "reading steps failed", error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        report->steps = calloc((size_t)found, sizeof *report->steps);
    for (int row = 0; row < found; row++) {
        report->steps[row] = (struct status_step){
            .token = pg_column_text_dup(result, row, 0),
            .action = pg_column_text_dup(result, row, 1),
            .status = pg_column_text_dup(result, row, 2),
            .message = pg_column_text_dup(result, row, 3),
            .error = pg_column_text_dup(result, row, 4),
            .executor_id = pg_column_int64(result, row, 5),
            .try_number = (int)pg_column_int64(result, row, 6),
            .started_at = pg_column_int64(result, row, 7),
            .ended_at = pg_column_int64(result, row, 8),
            .step_id = pg_column_int64(result, row, 9),
            .next_check = pg_column_int64(result, row, 10),
            .pending = (int)pg_column_int64(result, row, 11),
        };
    }
    report->step_count = found;
    PQclear(result);
    return 0;
}

int pg_status(struct store *base, int64_t execution_id, struct status_report *report,
              char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *report = (struct status_report){ 0 };
    if (execution_id == 0) {
        if (pg_query_int64(store, PG_LATEST_EXECUTION, NULL, &execution_id,
                           "looking for the newest execution failed", error) < 0)
            return -1;
        if (execution_id == 0) {
            *error = strbuf_printf("no executions in %s yet: submit one with 'bgwf submit NAME'",
                                   store->display);
            return -1;
        }
    }

    pg_param_int(&params, execution_id);
    result = pg_exec(store, PG_EXECUTION_INFO, &params, "reading the execution failed", error);
    if (result == NULL)
        return -1;
    if (PQntuples(result) == 0) {
        PQclear(result);
        *error = strbuf_printf("execution %lld not found in %s", (long long)execution_id,
                               store->display);
        return -1;
    }
    report->execution_id = execution_id;
    report->app = pg_column_text_dup(result, 0, 0);
    report->scope = pg_column_text_dup(result, 0, 1);
    report->execution_status = pg_column_text_dup(result, 0, 2);
    report->attempt_id = pg_column_int64(result, 0, 3);
    report->attempt_status = pg_column_text_dup(result, 0, 4);
    report->created_at = pg_column_int64(result, 0, 5);
    PQclear(result);

    if (read_steps(store, report, error) != 0) {
        store_free_status(report);
        return -1;
    }
    return 0;
}
