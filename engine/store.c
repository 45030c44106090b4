/* Choosing a store backend by location, and freeing what stores return. */
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "strbuf.h"

int store_is_postgresql(const char *location)
{
    return strncmp(location, "postgresql://", 13) == 0 || strncmp(location, "postgres://", 11) == 0;
}

struct store *store_open(const char *location, char **error)
{
    if (store_is_postgresql(location)) {
#ifdef BGWF_WITH_POSTGRESQL
        return store_pg_open(location, error);
#else
        *error = strbuf_dup("this bgwf was built without the PostgreSQL backend (libpq was not "
                            "found at build time, or BGWF_WITH_POSTGRESQL was OFF): install "
                            "libpq-dev and rebuild, or use an SQLite file with --db PATH");
        return NULL;
#endif
    }
    const char *scheme_end = strstr(location, "://");
    if (scheme_end != NULL && strchr(location, '/') > scheme_end) {
        *error = strbuf_printf("unsupported database URL '%s': use a postgresql:// URL or the "
                               "path of an SQLite file", location);
        return NULL;
    }
    return store_sqlite_open(location, error);
}

void store_free_due(struct due_step *steps, int count)
{
    for (int i = 0; i < count; i++) {
        free(steps[i].token);
        free(steps[i].action);
        free(steps[i].app);
        free(steps[i].scope);
    }
    free(steps);
}

void store_free_dead(struct dead_executor *dead, int count)
{
    for (int i = 0; i < count; i++)
        free(dead[i].host);
    free(dead);
}

void store_free_status(struct status_report *report)
{
    for (int i = 0; i < report->step_count; i++) {
        struct status_step *step = &report->steps[i];
        free(step->token);
        free(step->action);
        free(step->status);
        free(step->message);
        free(step->error);
    }
    free(report->steps);
    free(report->app);
    free(report->scope);
    free(report->execution_status);
    free(report->attempt_status);
    report->steps = NULL;
    report->step_count = 0;
}

void store_free_outcome(struct submit_outcome *outcome)
{
    for (int i = 0; i < outcome->vanished_count; i++)
        free(outcome->vanished[i]);
    free(outcome->vanished);
    free(outcome->attempt_status);
    *outcome = (struct submit_outcome){ 0 };
}

void store_free_changes(struct change_report *report)
{
    for (int i = 0; i < report->change_count; i++) {
        free(report->changes[i].token);
        free(report->changes[i].from);
        free(report->changes[i].to);
    }
    free(report->changes);
    free(report->attempt_from);
    free(report->attempt_to);
    free(report->execution_from);
    free(report->execution_to);
    *report = (struct change_report){ 0 };
}

void store_free_executions(struct execution_row *rows, int count)
{
    for (int i = 0; i < count; i++) {
        free(rows[i].app);
        free(rows[i].scope);
        free(rows[i].status);
        free(rows[i].latest_attempt_status);
    }
    free(rows);
}

void store_free_attempts(struct attempt_row *rows, int count)
{
    for (int i = 0; i < count; i++)
        free(rows[i].status);
    free(rows);
}

void store_free_executors(struct executor_row *rows, int count)
{
    for (int i = 0; i < count; i++) {
        free(rows[i].host);
        free(rows[i].apps);
        free(rows[i].status);
    }
    free(rows);
}

void store_free_tries(struct step_try *tries, int count)
{
    for (int i = 0; i < count; i++) {
        free(tries[i].status);
        free(tries[i].error);
    }
    free(tries);
}

void store_free_resources(struct resource *resources, int count)
{
    for (int i = 0; i < count; i++) {
        free(resources[i].name);
        free(resources[i].value);
    }
    free(resources);
}

void store_free_event(struct event_row *event)
{
    free(event->type);
    free(event->app);
    free(event->step);
    free(event->detail);
}

void store_free_events(struct event_row *rows, int count)
{
    for (int i = 0; i < count; i++)
        store_free_event(&rows[i]);
    free(rows);
}

void store_free_subscriptions(struct subscription_row *rows, int count)
{
    for (int i = 0; i < count; i++) {
        free(rows[i].app);
        free(rows[i].events);
        free(rows[i].command);
        free(rows[i].action);
    }
    free(rows);
}

void store_free_deliveries(struct delivery *deliveries, int count)
{
    for (int i = 0; i < count; i++) {
        store_free_event(&deliveries[i].event);
        free(deliveries[i].command);
        free(deliveries[i].action);
    }
    free(deliveries);
}
