/* Copying an SQLite store into an empty PostgreSQL one (bgwf migrate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"
#include <sqlite3.h>

#include "store_pg.h"
#include "store_pg_migrate.h"
#include "store_sqlite.h"
#include "strbuf.h"

/* The tables in copy order, with the columns both schemas share. The
 * column lists are constants, so the statements built from them carry no
 * values; every value is bound. */
static const struct table_copy {
    const char *name;
    const char *columns;
    int column_count;
    int has_identity;      /* 1: the id column's sequence moves past the copied ids */
} tables[] = {
    { "applications", "id, name", 2, 1 },
    { "executions", "id, app_id, scope, status, created_at, ended_at", 6, 1 },
    { "attempts",
      "id, execution_id, app_id, scope_key, status, step_count, remaining, created_at, ended_at",
      9, 1 },
    { "steps",
      "id, attempt_id, app_id, token, action, status, pending, active, cooldown_ms, next_check,"
      " executor_id, try, started_at, ended_at, status_message, error, cancel_requested,"
      " retries, backoff_initial_ms, backoff_factor, backoff_max_ms, timeout_ms, max_memory,"
      " context",
      24, 1 },
    { "dependencies", "depends_on, step_id", 2, 0 },
    { "step_tries", "step_id, try, executor_id, started_at, ended_at, status, error", 7, 0 },
    { "resources", "execution_id, name, value, step_id, written_at", 5, 0 },
    { "executors", "id, host, pid, apps, status, started_at, heartbeat_at, stopped_at", 8, 1 },
    { "events",
      "id, at, type, app_id, execution_id, attempt_id, step_token, executor_id, detail", 9, 1 },
    { "subscriptions", "id, app_id, events, command, action, created_at", 6, 1 },
    { "deliveries",
      "id, event_id, subscription_id, app_id, status, tries, next_at, executor_id, error", 9,
      1 },
};

#define TABLE_COUNT ((int)(sizeof tables / sizeof tables[0]))
#define MAX_COLUMNS 24

static int pg_command(PGconn *conn, const char *sql, int count, const char *const *values,
                      const char *what, char **error)
{
    PGresult *result = PQexecParams(conn, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(result);
    int rc = 0;

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        *error = strbuf_printf("%s: %s", what, PQresultErrorMessage(result));
        size_t length = strlen(*error);
        while (length > 0 && ((*error)[length - 1] == '\n'))
            (*error)[--length] = '\0';
        rc = -1;
    }
    PQclear(result);
    return rc;
}

/* Fails unless the target has no applications, executions or executors. */
static int check_empty(PGconn *conn, const char *display, char **error)
{
    PGresult *result = PQexec(conn, "SELECT (SELECT count(*) FROM applications)"
                                     " + (SELECT count(*) FROM executions)"
                                     " + (SELECT count(*) FROM executors)");
    int rc = 0;

    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        *error = strbuf_printf("reading %s failed: %s", display, PQresultErrorMessage(result));
        rc = -1;
    } else if (atoll(PQgetvalue(result, 0, 0)) != 0) {
        *error = strbuf_printf("the target database %s already holds workflows: migrate only "
                               "into a new, empty database", display);
        rc = -1;
    }
    PQclear(result);
    return rc;
}

static int copy_table(sqlite3 *source, PGconn *conn, const struct table_copy *table,
                      int64_t *copied, char **error)
{
    char *select = strbuf_printf("SELECT %s FROM %s", table->columns, table->name);
    struct strbuf insert = STRBUF_INIT;
    sqlite3_stmt *statement = NULL;
    char statement_name[64];
    PGresult *prepared;
    int rc = -1, step;

    *copied = 0;
    strbuf_appendf(&insert, "INSERT INTO %s(%s) VALUES (", table->name, table->columns);
    for (int i = 1; i <= table->column_count; i++)
        strbuf_appendf(&insert, "%s$%d", i > 1 ? ", " : "", i);
    strbuf_append(&insert, ")", 1);
    snprintf(statement_name, sizeof statement_name, "bgwf_migrate_%s", table->name);

    if (sqlite3_prepare_v2(source, select, -1, &statement, NULL) != SQLITE_OK) {
        *error = strbuf_printf("reading table %s of the SQLite store failed: %s", table->name,
                               sqlite3_errmsg(source));
        goto done;
    }
    prepared = PQprepare(conn, statement_name, insert.data, table->column_count, NULL);
    if (PQresultStatus(prepared) != PGRES_COMMAND_OK) {
        *error = strbuf_printf("preparing the copy of table %s failed: %s", table->name,
                               PQresultErrorMessage(prepared));
        PQclear(prepared);
        goto done;
    }
    PQclear(prepared);

    while ((step = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *values[MAX_COLUMNS];
        char *repaired[MAX_COLUMNS] = { 0 };
        for (int i = 0; i < table->column_count; i++) {
            values[i] = (const char *)sqlite3_column_text(statement, i);
            if (values[i] != NULL && (repaired[i] = pg_utf8_repaired(values[i])) != NULL)
                values[i] = repaired[i];
        }
        PGresult *result = PQexecPrepared(conn, statement_name, table->column_count, values,
                                          NULL, NULL, 0);
        for (int i = 0; i < table->column_count; i++)
            free(repaired[i]);
        if (PQresultStatus(result) != PGRES_COMMAND_OK) {
            *error = strbuf_printf("copying a row of table %s failed: %s", table->name,
                                   PQresultErrorMessage(result));
            PQclear(result);
            goto done;
        }
        PQclear(result);
        (*copied)++;
    }
    if (step != SQLITE_DONE) {
        *error = strbuf_printf("reading table %s of the SQLite store failed: %s", table->name,
                               sqlite3_errmsg(source));
        goto done;
    }
    if (table->has_identity) {
        /* The next id that PostgreSQL hands out follows the copied ones. */
        char *sql = strbuf_printf("SELECT setval(pg_get_serial_sequence('%s', 'id'),"
                                  " coalesce(max(id), 0) + 1, false) FROM %s",
                                  table->name, table->name);
        rc = pg_command(conn, sql, 0, NULL, "moving an id sequence failed", error);
        free(sql);
        if (rc != 0)
            goto done;
    }
    rc = 0;

done:
    sqlite3_finalize(statement);
    strbuf_free(&insert);
    free(select);
    return rc;
}

int store_pg_migrate_from_sqlite(const char *sqlite_path, const char *url,
                                 struct migrate_report *report, char **error)
{
    struct store *source_store = NULL, *target_store = NULL;
    sqlite3 *source;
    PGconn *conn;
    int rc = -1;

    memset(report, 0, sizeof *report);
    source_store = store_sqlite_open(sqlite_path, error);
    if (source_store == NULL)
        return -1;
    target_store = store_pg_open(url, error);
    if (target_store == NULL)
        goto done;
    source = ((struct sqlite_store *)source_store)->db;
    conn = ((struct pg_store *)target_store)->conn;

    /* One read transaction gives a consistent snapshot of the source; one
     * write transaction stores all or nothing. */
    if (sqlite3_exec(source, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        *error = strbuf_printf("reading %s failed: %s", sqlite_path, sqlite3_errmsg(source));
        goto done;
    }
    if (pg_command(conn, "BEGIN", 0, NULL, "starting the copy failed", error) != 0)
        goto rollback;
    if (check_empty(conn, ((struct pg_store *)target_store)->display, error) != 0)
        goto rollback;
    for (int i = 0; i < TABLE_COUNT; i++) {
        int64_t copied = 0;
        if (copy_table(source, conn, &tables[i], &copied, error) != 0)
            goto rollback;
        if (report->table_count < MIGRATE_MAX_TABLES) {
            report->tables[report->table_count].name = tables[i].name;
            report->tables[report->table_count].rows = copied;
            report->table_count++;
        }
    }
    if (pg_command(conn, "COMMIT", 0, NULL, "committing the copy failed", error) != 0)
        goto rollback;
    rc = 0;
    goto read_done;

rollback:
    {
        char *ignored = NULL;
        pg_command(conn, "ROLLBACK", 0, NULL, "", &ignored);
        free(ignored);
    }
read_done:
    sqlite3_exec(source, "ROLLBACK", NULL, NULL, NULL);
done:
    if (target_store)
        target_store->ops->close(target_store);
    source_store->ops->close(source_store);
    return rc;
}
