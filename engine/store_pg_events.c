/* Events, subscriptions and deliveries in PostgreSQL. */
#include <stdlib.h>
#include <string.h>

#include "pq_library.h"

#include "clock.h"
#include "store_pg.h"
#include "strbuf.h"

/* Runs an event INSERT ... RETURNING id and queues a delivery of the new
 * event for every subscription of its application that wants its type. */
static int insert_event(struct pg_store *store, enum pg_sql_id id,
                        const struct pg_params *params, char **error)
{
    struct pg_params queue = { 0 };
    int64_t event_id = 0;
    int rc = pg_query_int64(store, id, params, &event_id, "storing an event failed", error);

    if (rc != 0)
        return rc < 0 ? -1 : 0;
    pg_param_int(&queue, event_id);
    return pg_run(store, PG_DELIVERIES_QUEUE, &queue, NULL, "queueing deliveries failed", error);
}

int pg_step_event(struct pg_store *store, const char *type, int64_t step_id,
                  int64_t executor_id, const char *detail, int64_t at_ms, char **error)
{
    struct pg_params params = { 0 };
    char *executor = NULL;

    pg_param_int(&params, step_id);
    pg_param_int(&params, at_ms);
    pg_param_text(&params, type);
    if (executor_id) {
        executor = strbuf_printf("%lld", (long long)executor_id);
        pg_param_text(&params, executor);
    } else {
        pg_param_text(&params, NULL);
    }
    pg_param_text(&params, detail);
    int rc = insert_event(store, PG_EVENT_FOR_STEP, &params, error);
    free(executor);
    return rc;
}

int pg_attempt_event(struct pg_store *store, const char *type, int64_t attempt_id,
                     const char *detail, int64_t at_ms, char **error)
{
    struct pg_params params = { 0 };

    pg_param_int(&params, attempt_id);
    pg_param_int(&params, at_ms);
    pg_param_text(&params, type);
    pg_param_text(&params, detail);
    return insert_event(store, PG_EVENT_FOR_ATTEMPT, &params, error);
}

int pg_record_event(struct store *base, const struct event_row *event, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };

    pg_param_int(&params, event->at ? event->at : clock_wall_ms());
    pg_param_text(&params, event->type);
    pg_param_text(&params, event->app);
    pg_param_int(&params, event->execution_id);
    pg_param_int(&params, event->attempt_id);
    pg_param_text(&params, event->step);
    pg_param_int(&params, event->executor_id);
    pg_param_text(&params, event->detail);
    if (pg_begin(store, error) != 0)
        return -1;
    if (insert_event(store, PG_EVENT_INSERT, &params, error) != 0 ||
        pg_commit(store, error) != 0) {
        pg_rollback(store);
        return -1;
    }
    return 0;
}

/* Reads the event columns starting at column first of row into *event. */
static void read_event(const PGresult *result, int row, int first, struct event_row *event)
{
    event->id = pg_column_int64(result, row, first);
    event->at = pg_column_int64(result, row, first + 1);
    event->type = pg_column_text_dup(result, row, first + 2);
    event->app = pg_column_text_dup(result, row, first + 3);
    event->execution_id = pg_column_int64(result, row, first + 4);
    event->attempt_id = pg_column_int64(result, row, first + 5);
    event->step = pg_column_text_dup(result, row, first + 6);
    event->executor_id = pg_column_int64(result, row, first + 7);
    event->detail = pg_column_text_dup(result, row, first + 8);
}

int pg_list_events(struct store *base, const struct event_filter *filter,
                   struct event_row **rows, int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *rows = NULL;
    *count = 0;
    pg_param_text(&params, filter->app);
    pg_param_int(&params, filter->after_id);
    pg_param_int(&params, filter->since_ms);
    if (filter->limit > 0)
        pg_param_int(&params, filter->limit);
    else
        pg_param_text(&params, NULL); /* LIMIT NULL: no limit */
    result = pg_exec(store, PG_EVENTS_LIST, &params, "listing events failed", error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *rows = calloc((size_t)found, sizeof **rows);
    for (int row = 0; row < found; row++)
        read_event(result, row, 0, &(*rows)[row]);
    *count = found;
    PQclear(result);
    return 0;
}

int pg_subscribe(struct store *base, const char *app, const char *events, const char *command,
                 const char *action, int64_t *id, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params name = { 0 }, params = { 0 };
    int64_t app_id = 0;

    pg_param_text(&name, app);
    if (pg_begin(store, error) != 0)
        return -1;
    if (pg_run(store, PG_APP_INSERT, &name, NULL, "storing the application failed", error) != 0 ||
        pg_query_int64(store, PG_APP_ID, &name, &app_id, "reading the application id failed",
                       error) != 0)
        goto fail;
    pg_param_int(&params, app_id);
    pg_param_text(&params, events);
    pg_param_text(&params, command);
    pg_param_text(&params, action);
    pg_param_int(&params, clock_wall_ms());
    if (pg_query_int64(store, PG_SUBSCRIBE, &params, id, "storing the subscription failed",
                       error) != 0)
        goto fail;
    if (pg_commit(store, error) != 0)
        goto fail;
    return 0;

fail:
    pg_rollback(store);
    return -1;
}

int pg_list_subscriptions(struct store *base, const char *app, struct subscription_row **rows,
                          int *count, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;

    *rows = NULL;
    *count = 0;
    pg_param_text(&params, app);
    result = pg_exec(store, PG_SUBSCRIPTIONS_LIST, &params, "listing subscriptions failed",
                     error);
    if (result == NULL)
        return -1;
    int found = PQntuples(result);
    if (found > 0)
        *rows = calloc((size_t)found, sizeof **rows);
    for (int row = 0; row < found; row++) {
        (*rows)[row] = (struct subscription_row){
            .id = pg_column_int64(result, row, 0),
            .app = pg_column_text_dup(result, row, 1),
            .events = pg_column_text_dup(result, row, 2),
            .command = pg_column_text_dup(result, row, 3),
            .action = pg_column_text_dup(result, row, 4),
            .created_at = pg_column_int64(result, row, 5),
        };
    }
    *count = found;
    PQclear(result);
    return 0;
}

int pg_unsubscribe(struct store *base, const char *app, int64_t id, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    int changes = 0;

    pg_param_text(&params, app);
    pg_param_int(&params, id);
    if (pg_run(store, PG_UNSUBSCRIBE, &params, &changes, "removing the subscription failed",
               error) != 0)
        return -1;
    if (changes == 0) {
        *error = strbuf_printf("%s has no subscription %lld: see 'bgwf notify %s --list'", app,
                               (long long)id, app);
        return -1;
    }
    return 0;
}

int pg_claim_deliveries(struct store *base, const char *app, int64_t executor_id,
                        int64_t now_ms, int limit, struct delivery **deliveries, int *count,
                        char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    PGresult *result;
    int failed = 0;

    *deliveries = NULL;
    *count = 0;
    pg_param_text(&params, app);
    pg_param_int(&params, now_ms);
    pg_param_int(&params, limit);
    result = pg_exec(store, PG_DELIVERIES_DUE, &params, "looking for due deliveries failed",
                     error);
    if (result == NULL)
        return -1;

    /* Each claim is one conditional write, so one executor delivers it. */
    int found = PQntuples(result);
    for (int row = 0; row < found && !failed; row++) {
        struct pg_params claim = { 0 };
        int changes = 0;

        pg_param_int(&claim, pg_column_int64(result, row, 0));
        pg_param_int(&claim, executor_id);
        failed = pg_run(store, PG_DELIVERY_CLAIM, &claim, &changes,
                        "claiming a delivery failed", error) != 0;
        if (failed || changes == 0)
            continue;
        *deliveries = realloc(*deliveries, (size_t)(*count + 1) * sizeof **deliveries);
        struct delivery *delivery = &(*deliveries)[(*count)++];
        delivery->id = pg_column_int64(result, row, 0);
        delivery->try_number = (int)pg_column_int64(result, row, 1) + 1;
        read_event(result, row, 2, &delivery->event);
        delivery->command = pg_column_text_dup(result, row, 11);
        delivery->action = pg_column_text_dup(result, row, 12);
    }
    PQclear(result);
    return failed ? -1 : 0;
}

int pg_finish_delivery(struct store *base, int64_t delivery_id, int delivered,
                       int64_t retry_at_ms, const char *error_text, char **error)
{
    struct pg_store *store = (struct pg_store *)base;
    struct pg_params params = { 0 };
    const char *status = "FAILED";

    if (delivered)
        status = "DELIVERED";
    else if (retry_at_ms)
        status = "PENDING";

    pg_param_int(&params, delivery_id);
    pg_param_text(&params, status);
    pg_param_int(&params, retry_at_ms ? retry_at_ms : clock_wall_ms());
    pg_param_text(&params, error_text);
    return pg_run(store, PG_DELIVERY_FINISH, &params, NULL, "recording a delivery failed", error);
}
