/* Events, subscriptions and deliveries in SQLite. */
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "store_sqlite.h"
#include "strbuf.h"

/* Queues a delivery of the event just inserted for every subscription of
 * its application that wants its type. */
static int queue_deliveries(struct sqlite_store *store, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_DELIVERIES_QUEUE, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, sqlite3_last_insert_rowid(store->db));
    return sqlite_run(store, SQL_DELIVERIES_QUEUE, error);
}

int sqlite_step_event(struct sqlite_store *store, const char *type, int64_t step_id,
                      int64_t executor_id, const char *detail, int64_t at_ms, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EVENT_FOR_STEP, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, step_id);
    sqlite3_bind_int64(statement, 2, at_ms);
    sqlite3_bind_text(statement, 3, type, -1, SQLITE_STATIC);
    if (executor_id)
        sqlite3_bind_int64(statement, 4, executor_id);
    if (detail)
        sqlite3_bind_text(statement, 5, detail, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_EVENT_FOR_STEP, error) != 0)
        return -1;
    return queue_deliveries(store, error);
}

int sqlite_attempt_event(struct sqlite_store *store, const char *type, int64_t attempt_id,
                         const char *detail, int64_t at_ms, char **error)
{
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EVENT_FOR_ATTEMPT, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, attempt_id);
    sqlite3_bind_int64(statement, 2, at_ms);
    sqlite3_bind_text(statement, 3, type, -1, SQLITE_STATIC);
    if (detail)
        sqlite3_bind_text(statement, 4, detail, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_EVENT_FOR_ATTEMPT, error) != 0)
        return -1;
    return queue_deliveries(store, error);
}

int sqlite_record_event(struct store *base, const struct event_row *event, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement;

    if (sqlite_begin(store, error) != 0)
        return -1;
    statement = sqlite_statement(store, SQL_EVENT_INSERT, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_int64(statement, 1, event->at ? event->at : clock_wall_ms());
    sqlite3_bind_text(statement, 2, event->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(statement, 3, event->app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 4, event->execution_id);
    sqlite3_bind_int64(statement, 5, event->attempt_id);
    if (event->step)
        sqlite3_bind_text(statement, 6, event->step, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 7, event->executor_id);
    if (event->detail)
        sqlite3_bind_text(statement, 8, event->detail, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_EVENT_INSERT, error) != 0)
        goto fail;
    if (sqlite3_changes(store->db) > 0 && queue_deliveries(store, error) != 0)
        goto fail;
    if (sqlite_commit(store, error) != 0)
        goto fail;
    return 0;

fail:
    sqlite_rollback(store);
    return -1;
}

/* Reads the event columns starting at column first into *event. */
static void read_event(sqlite3_stmt *statement, int first, struct event_row *event)
{
    event->id = sqlite3_column_int64(statement, first);
    event->at = sqlite3_column_int64(statement, first + 1);
    event->type = sqlite_column_text_dup(statement, first + 2);
    event->app = sqlite_column_text_dup(statement, first + 3);
    event->execution_id = sqlite3_column_int64(statement, first + 4);
    event->attempt_id = sqlite3_column_int64(statement, first + 5);
    event->step = sqlite_column_text_dup(statement, first + 6);
    event->executor_id = sqlite3_column_int64(statement, first + 7);
    event->detail = sqlite_column_text_dup(statement, first + 8);
}

int sqlite_list_events(struct store *base, const struct event_filter *filter,
                       struct event_row **rows, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_EVENTS_LIST, error);
    int rc;

    *rows = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    if (filter->app)
        sqlite3_bind_text(statement, 1, filter->app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 2, filter->after_id);
    sqlite3_bind_int64(statement, 3, filter->since_ms);
    sqlite3_bind_int(statement, 4, filter->limit > 0 ? filter->limit : -1);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *rows = realloc(*rows, (size_t)(*count + 1) * sizeof **rows);
        read_event(statement, 0, &(*rows)[(*count)++]);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "listing events failed");
        store_free_events(*rows, *count);
        *rows = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_subscribe(struct store *base, const char *app, const char *events,
                     const char *command, const char *action, int64_t *id, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement;
    int64_t app_id = 0;

    if (sqlite_begin(store, error) != 0)
        return -1;
    statement = sqlite_statement(store, SQL_APP_INSERT, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    if (sqlite_run(store, SQL_APP_INSERT, error) != 0)
        goto fail;
    statement = sqlite_statement(store, SQL_APP_ID, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    if (sqlite_query_int64(store, SQL_APP_ID, &app_id, error) != 0)
        goto fail;

    statement = sqlite_statement(store, SQL_SUBSCRIBE, error);
    if (statement == NULL)
        goto fail;
    sqlite3_bind_int64(statement, 1, app_id);
    sqlite3_bind_text(statement, 2, events, -1, SQLITE_STATIC);
    if (command)
        sqlite3_bind_text(statement, 3, command, -1, SQLITE_STATIC);
    if (action)
        sqlite3_bind_text(statement, 4, action, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 5, clock_wall_ms());
    if (sqlite_run(store, SQL_SUBSCRIBE, error) != 0)
        goto fail;
    *id = sqlite3_last_insert_rowid(store->db);
    if (sqlite_commit(store, error) != 0)
        goto fail;
    return 0;

fail:
    sqlite_rollback(store);
    return -1;
}

int sqlite_list_subscriptions(struct store *base, const char *app,
                              struct subscription_row **rows, int *count, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_SUBSCRIPTIONS_LIST, error);
    int rc;

    *rows = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        *rows = realloc(*rows, (size_t)(*count + 1) * sizeof **rows);
        (*rows)[(*count)++] = (struct subscription_row){
            .id = sqlite3_column_int64(statement, 0),
            .app = sqlite_column_text_dup(statement, 1),
            .events = sqlite_column_text_dup(statement, 2),
            .command = sqlite_column_text_dup(statement, 3),
            .action = sqlite_column_text_dup(statement, 4),
            .created_at = sqlite3_column_int64(statement, 5),
        };
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "listing subscriptions failed");
        store_free_subscriptions(*rows, *count);
        *rows = NULL;
        *count = 0;
        return -1;
    }
    return 0;
}

int sqlite_unsubscribe(struct store *base, const char *app, int64_t id, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_UNSUBSCRIBE, error);

    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 2, id);
    if (sqlite_run(store, SQL_UNSUBSCRIBE, error) != 0)
        return -1;
    if (sqlite3_changes(store->db) == 0) {
        *error = strbuf_printf("%s has no subscription %lld: see 'bgwf notify %s --list'", app,
                               (long long)id, app);
        return -1;
    }
    return 0;
}

int sqlite_claim_deliveries(struct store *base, const char *app, int64_t executor_id,
                            int64_t now_ms, int limit, struct delivery **deliveries, int *count,
                            char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_DELIVERIES_DUE, error);
    struct delivery *found = NULL;
    int found_count = 0, rc;

    *deliveries = NULL;
    *count = 0;
    if (statement == NULL)
        return -1;
    sqlite3_bind_text(statement, 1, app, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 2, now_ms);
    sqlite3_bind_int(statement, 3, limit);
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        found = realloc(found, (size_t)(found_count + 1) * sizeof *found);
        struct delivery *delivery = &found[found_count++];
        delivery->id = sqlite3_column_int64(statement, 0);
        delivery->try_number = sqlite3_column_int(statement, 1) + 1;
        read_event(statement, 2, &delivery->event);
        delivery->command = sqlite_column_text_dup(statement, 11);
        delivery->action = sqlite_column_text_dup(statement, 12);
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) {
        *error = sqlite_error(store, "looking for due deliveries failed");
        store_free_deliveries(found, found_count);
        return -1;
    }

    /* Each claim is one conditional write, so one executor delivers it. */
    int failed = 0;
    for (int i = 0; i < found_count; i++) {
        int claimed = 0;
        if (!failed) {
            statement = sqlite_statement(store, SQL_DELIVERY_CLAIM, error);
            failed = statement == NULL;
        }
        if (!failed) {
            sqlite3_bind_int64(statement, 1, found[i].id);
            sqlite3_bind_int64(statement, 2, executor_id);
            failed = sqlite_run(store, SQL_DELIVERY_CLAIM, error) != 0;
            claimed = !failed && sqlite3_changes(store->db) > 0;
        }
        if (!claimed) {
            store_free_event(&found[i].event);
            free(found[i].command);
            free(found[i].action);
            continue;
        }
        *deliveries = realloc(*deliveries, (size_t)(*count + 1) * sizeof **deliveries);
        (*deliveries)[(*count)++] = found[i];
    }
    free(found);
    return failed ? -1 : 0;
}

int sqlite_finish_delivery(struct store *base, int64_t delivery_id, int delivered,
                           int64_t retry_at_ms, const char *error_text, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;
    sqlite3_stmt *statement = sqlite_statement(store, SQL_DELIVERY_FINISH, error);
    const char *status = "FAILED";

    if (delivered)
        status = "DELIVERED";
    else if (retry_at_ms)
        status = "PENDING";

    if (statement == NULL)
        return -1;
    sqlite3_bind_int64(statement, 1, delivery_id);
    sqlite3_bind_text(statement, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(statement, 3, retry_at_ms ? retry_at_ms : clock_wall_ms());
    if (error_text)
        sqlite3_bind_text(statement, 4, error_text, -1, SQLITE_STATIC);
    return sqlite_run(store, SQL_DELIVERY_FINISH, error);
}
