/* The executor's notification deliveries: subscribed commands and actions
 * run for stored events, each in a child like a step. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "executor_internal.h"
#include "json_text.h"
#include "log.h"
#include "strbuf.h"

/* Returns the event as the JSON object that notifications receive. */
static char *event_json(const struct event_row *event)
{
    struct strbuf out = STRBUF_INIT;

    strbuf_appendf(&out, "{\"id\":%lld,\"type\":", (long long)event->id);
    json_append_string(&out, event->type);
    strbuf_appendf(&out, ",\"at\":%lld,\"app\":", (long long)event->at);
    json_append_string(&out, event->app);
    if (event->execution_id)
        strbuf_appendf(&out, ",\"execution\":%lld", (long long)event->execution_id);
    if (event->attempt_id)
        strbuf_appendf(&out, ",\"attempt\":%lld", (long long)event->attempt_id);
    if (event->step) {
        strbuf_appendf(&out, ",\"step\":");
        json_append_string(&out, event->step);
    }
    if (event->executor_id)
        strbuf_appendf(&out, ",\"executor\":%lld", (long long)event->executor_id);
    if (event->detail) {
        strbuf_appendf(&out, ",\"detail\":");
        json_append_string(&out, event->detail);
    }
    strbuf_append(&out, "}", 1);
    return strbuf_detach(&out);
}

/* Starts notification deliveries that are due, in free slots. Each runs in
 * a child like a step: a command under /bin/sh, or an action's execute with
 * the event as its context. */
void executor_start_deliveries(struct executor *executor)
{
    const struct executor_config *config = executor->config;

    for (int a = 0; a < config->app_count; a++) {
        int limit = config->max_concurrent - executor->running;
        struct delivery *deliveries = NULL;
        int count = 0;
        char *error = NULL;

        if (limit <= 0)
            return;
        if (executor->store->ops->claim_deliveries(executor->store, config->apps[a],
                                                   executor->id, clock_wall_ms(), limit,
                                                   &deliveries, &count, &error) != 0) {
            log_error("executor=%lld app=%s looking for notifications to deliver failed: %s",
                      (long long)executor->id, config->apps[a], error);
            free(error);
            continue;
        }
        for (int i = 0; i < count; i++) {
            struct delivery *delivery = &deliveries[i];
            struct step_run *run = executor_free_slot(executor);

            memset(run, 0, sizeof *run);
            run->report_fd = -1;
            run->output_fd = -1;
            run->log.fd = -1;
            run->kind = RUN_NOTIFY;
            run->delivery_id = delivery->id;
            run->delivery_try = delivery->try_number;
            run->context = event_json(&delivery->event);
            run->command = delivery->command;
            run->event_type = delivery->event.type;
            run->event_step = delivery->event.step;
            run->step.app = delivery->event.app;
            run->step.execution_id = delivery->event.execution_id;
            run->step.attempt_id = delivery->event.attempt_id;
            run->step.token = strbuf_printf("notify_%lld", (long long)delivery->id);
            run->step.action = delivery->action ? delivery->action : strbuf_dup("command");
            run->try_number = delivery->try_number;
            delivery->command = NULL;
            delivery->action = NULL;
            delivery->event.type = NULL;
            delivery->event.step = NULL;
            delivery->event.app = NULL;
            run->event_id = delivery->event.id;
            executor_spawn(executor, &run, 1);
        }
        store_free_deliveries(deliveries, count);
    }
}

/* Records how a delivery went; a failed one is tried again later, up to
 * DELIVERY_TRIES times, and never fails the workflow. */
void executor_finish_delivery(struct executor *executor, struct step_run *run, const char *failure)
{
    int64_t retry_at = 0;
    char *error = NULL;

    if (failure == NULL) {
        log_info("executor=%lld app=%s delivered %s notification %lld",
                 (long long)executor->id, run->step.app, run->event_type,
                 (long long)run->delivery_id);
    } else if (run->delivery_try < DELIVERY_TRIES) {
        retry_at = clock_wall_ms() + DELIVERY_BACKOFF_MS * (1LL << (run->delivery_try - 1));
        log_warn("executor=%lld app=%s notification %lld (%s) failed on try %d, will retry: %s",
                 (long long)executor->id, run->step.app, (long long)run->delivery_id,
                 run->event_type, run->delivery_try, failure);
    } else {
        log_error("executor=%lld app=%s notification %lld (%s) failed %d times, giving up: %s",
                  (long long)executor->id, run->step.app, (long long)run->delivery_id,
                  run->event_type, run->delivery_try, failure);
    }
    if (executor->store->ops->finish_delivery(executor->store, run->delivery_id, failure == NULL,
                                              retry_at, failure, &error) != 0) {
        log_error("executor=%lld recording notification %lld failed: %s",
                  (long long)executor->id, (long long)run->delivery_id, error);
        free(error);
    }
}
