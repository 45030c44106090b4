/* Listings for the commands in SQLite: executions, attempts, executors,
 * progress counts and the dependency edges of an attempt. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "strbuf.h"

/* Grows *array by one element of size bytes and returns the new element,
 * zeroed. */
static void *append_row(void **array, int *count, size_t size)
{
    char *grown = realloc(*array, (size_t)(*count + 1) * size);
    char *row = grown + (size_t)*count * size;

    memset(row, 0, size);
    *array = grown;
    (*count)++;
    return row;
}

static int finish_rows(struct sqlite_store *store, sqlite3_stmt *statement, int rc,
                       const char *what, char **error)
{
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, what);
        return -1;
    }
    return 0;
}

int sqlite_find_execution(struct store *base, const char *app, const char *scope,
                          int64_t *execution_id, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_FIND_EXECUTION, error);
    int rc;

    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    if (scope)
        sqlite3_bind_text(statement, 2, scope, -1, SQLITE_STATIC);
    rc = sqlite_query_int64(store, SQL_FIND_EXECUTION, execution_id, error);
    if (rc == 1) {
        if (scope)
            *error = strbuf_printf("no execution of %s with scope '%s' in %s", app, scope,
                                   store->path);
        else
            *error = strbuf_printf("no execution of %s without a scope in %s (add --scope S "
                                   "for a scoped one)", app, store->path);
        return -1;
    }
    return rc;
}

int sqlite_list_executions(struct store *base, const struct execution_filter *filter,
                           struct execution_row **rows, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LIST_EXECUTIONS, error);
    int rc;

    *rows = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    if (filter->app)
        sqlite3_bind_text(statement, 1, filter->app, -1, SQLITE_STATIC);
    if (filter->status)
        sqlite3_bind_text(statement, 2, filter->status, -1, SQLITE_STATIC);
    sqlite3_bind_int(statement, 3, filter->limit > 0 ? filter->limit : -1);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        struct execution_row *row = append_row((void **)rows, count, sizeof *row);
        row->id = sqlite3_column_int64(statement, 0);
        row->app = sqlite_column_text_dup(statement, 1);
        row->scope = sqlite_column_text_dup(statement, 2);
        row->status = sqlite_column_text_dup(statement, 3);
        row->created_at = sqlite3_column_int64(statement, 4);
        row->ended_at = sqlite3_column_int64(statement, 5);
        row->attempt_count = sqlite3_column_int(statement, 6);
        row->latest_attempt_id = sqlite3_column_int64(statement, 7);
        row->latest_attempt_status = sqlite_column_text_dup(statement, 8);
    }
    if (finish_rows(store, statement, rc, "listing executions failed", error) != 0) {
        store_free_executions(*rows, *count);
        *rows = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_list_attempts(struct store *base, int64_t execution_id, struct attempt_row **rows,
                         int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LIST_ATTEMPTS, error);
    int rc;

    *rows = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, execution_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        struct attempt_row *row = append_row((void **)rows, count, sizeof *row);
        row->id = sqlite3_column_int64(statement, 0);
        row->status = sqlite_column_text_dup(statement, 1);
        row->step_count = sqlite3_column_int(statement, 2);
        row->created_at = sqlite3_column_int64(statement, 3);
        row->ended_at = sqlite3_column_int64(statement, 4);
    }
    if (finish_rows(store, statement, rc, "listing attempts failed", error) != 0) {
        store_free_attempts(*rows, *count);
        *rows = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_list_executors(struct store *base, struct executor_row **rows, int *count,
                          char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_LIST_EXECUTORS, error);
    int rc;

    *rows = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        struct executor_row *row = append_row((void **)rows, count, sizeof *row);
        row->id = sqlite3_column_int64(statement, 0);
        row->host = sqlite_column_text_dup(statement, 1);
        row->pid = sqlite3_column_int(statement, 2);
        row->apps = sqlite_column_text_dup(statement, 3);
        row->status = sqlite_column_text_dup(statement, 4);
        row->started_at = sqlite3_column_int64(statement, 5);
        row->heartbeat_at = sqlite3_column_int64(statement, 6);
        row->stopped_at = sqlite3_column_int64(statement, 7);
        row->running_steps = sqlite3_column_int(statement, 8);
    }
    if (finish_rows(store, statement, rc, "listing executors failed", error) != 0) {
        store_free_executors(*rows, *count);
        *rows = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_attempt_progress(struct store *base, int64_t attempt_id,
                            struct attempt_progress *progress, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_PROGRESS, error);
    int rc;

    *progress = (struct attempt_progress){ 0 };
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        progress->status = sqlite_column_text_dup(statement, 0);
        progress->total = sqlite3_column_int(statement, 1);
        progress->done = sqlite3_column_int(statement, 2);
        progress->running = sqlite3_column_int(statement, 3);
        progress->failed = sqlite3_column_int(statement, 4);
    }
    sqlite3_reset(statement);
    if (rc == SQLITE_DONE) {
        *error = strbuf_printf("attempt %lld not found in %s", (long long)attempt_id,
                               store->path);
        return -1;
    }
    if (rc != SQLITE_ROW) {
        *error = sqlite_error(store, "reading the attempt's progress failed");
        return -1;
    }
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

int sqlite_step_edges(struct store *base, const struct status_report *report,
                      struct step_edge **edges, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STEP_EDGES, error);
    int rc;

    *edges = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, report->attempt_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        int from = index_of(report, sqlite3_column_int64(statement, 0));
        int to = index_of(report, sqlite3_column_int64(statement, 1));
        if (from < 0 || to < 0)
            continue;
        struct step_edge *edge = append_row((void **)edges, count, sizeof *edge);
        edge->from = from;
        edge->to = to;
    }
    if (finish_rows(store, statement, rc, "reading dependencies failed", error) != 0) {
        free(*edges);
        *edges = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}
