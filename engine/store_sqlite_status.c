/* Reading executions, attempts and steps back from SQLite for the commands. */
#include <stdlib.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "strbuf.h"

int sqlite_attempt_status(struct store *base, int64_t attempt_id, char **status, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_ATTEMPT_STATE, error);

    *status = NULL;
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    if (sqlite3_step(statement) != SQLITE_ROW) {
        *error = strbuf_printf("attempt %lld not found in %s", (long long)attempt_id,
                               store->path);
        sqlite3_reset(statement);
        return -1;
    }
    *status = sqlite_column_text_dup(statement, 0);
    sqlite3_reset(statement);
    return 0;
}

static int read_flag(struct sqlite_store *store, enum sql_id id, int *flag, char **error)
{
    sqlite3_stmt *statement = store->statements[id];
    int rc = sqlite3_step(statement);

    *flag = rc == SQLITE_ROW && sqlite3_column_int(statement, 0) != 0;
    sqlite3_reset(statement);
    if (rc != SQLITE_ROW) {
        *error = sqlite_error(store, "reading the store failed");
        return -1;
    }
    return 0;
}

int sqlite_has_work(struct store *base, const char *app, int64_t attempt_id, int *has_work,
                    char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    enum sql_id id = attempt_id ? SQL_HAS_WORK_ATTEMPT : SQL_HAS_WORK_APP;
    sqlite3_stmt *statement = sqlite_statement(store, id, error);

    if (statement == NULL)
        return -1;
    if (attempt_id)
        sqlite3_bind_int64(statement, 1, attempt_id);
    else
        sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    return read_flag(store, id, has_work, error);
}

static int read_steps(struct sqlite_store *store, struct status_report *report, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_STATUS_STEPS, error);
    int capacity = 0, rc;

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, report->attempt_id);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        if (report->step_count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            report->steps = realloc(report->steps, (size_t)capacity * sizeof *report->steps);
        }
        report->steps[report->step_count++] = (struct status_step){
            .token = sqlite_column_text_dup(statement, 0),
            .action = sqlite_column_text_dup(statement, 1),
            .status = sqlite_column_text_dup(statement, 2),
            .message = sqlite_column_text_dup(statement, 3),
            .error = sqlite_column_text_dup(statement, 4),
            .executor_id = sqlite3_column_int64(statement, 5),
            .try_number = sqlite3_column_int(statement, 6),
            .started_at = sqlite3_column_int64(statement, 7),
            .ended_at = sqlite3_column_int64(statement, 8),
            .step_id = sqlite3_column_int64(statement, 9),
            .next_check = sqlite3_column_int64(statement, 10),
            .pending = sqlite3_column_int(statement, 11),
        };
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "reading steps failed");
        return -1;
    }
    return 0;
}

int sqlite_status(struct store *base, int64_t execution_id, struct status_report *report,
                  char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement;
    int rc;

    *report = (struct status_report){ 0 };
    if (execution_id == 0) {
        statement = sqlite_statement(store, SQL_LATEST_EXECUTION, error);
        if (statement == NULL)
            return -1;
        rc = sqlite3_step(statement);
        if (rc == SQLITE_ROW)
            execution_id = sqlite3_column_int64(statement, 0);
        sqlite3_reset(statement);
        if (execution_id == 0) {
            *error = strbuf_printf("no executions in %s yet: submit one with 'bgwf submit NAME'",
                                   store->path);
            return -1;
        }
    }

    statement = sqlite_statement(store, SQL_EXECUTION_INFO, error);
    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, execution_id);
    rc = sqlite3_step(statement);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(statement);
        *error = strbuf_printf("execution %lld not found in %s", (long long)execution_id,
                               store->path);
        return -1;
    }
    report->execution_id = execution_id;
    report->app = sqlite_column_text_dup(statement, 0);
    report->scope = sqlite_column_text_dup(statement, 1);
    report->execution_status = sqlite_column_text_dup(statement, 2);
    report->attempt_id = sqlite3_column_int64(statement, 3);
    report->attempt_status = sqlite_column_text_dup(statement, 4);
    report->created_at = sqlite3_column_int64(statement, 5);
    sqlite3_reset(statement);

    if (read_steps(store, report, error) != 0) {
        store_free_status(report);
        return -1;
    }
    return 0;
}
