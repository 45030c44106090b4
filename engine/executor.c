/* The executor loop: heartbeat, reap, record, find due steps, check
 * preconditions, claim and fork. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "executor.h"
#include "json_text.h"
#include "log.h"
#include "luahost.h"
#include "runner.h"
#include "spawner.h"
#include "strbuf.h"

/* How long a notification may run, how often it is tried, and the wait
 * before the second try (doubling after). */
#define DELIVERY_TIMEOUT_MS 60000
#define DELIVERY_TRIES 3
#define DELIVERY_BACKOFF_MS 5000

/* How often running steps are checked for a cancel request, in ms. */
#define CANCEL_CHECK_MS 250

/* The signal handler's only channel to the loop: it writes the signal
 * number here, and poll() wakes up. */
static int signal_pipe[2] = { -1, -1 };

struct pending_update {
    struct step_update update;
    char *message;
    char *error;
    char *token;
    struct resource *resources;
    int resource_count;
};

struct executor {
    struct store *store;
    lua_State *L;
    const struct executor_config *config;
    int64_t id;
    char host[256];
    struct step_run *runs;         /* max_concurrent slots; pid 0 means free */
    int running;
    struct pending_update *updates;
    int update_count;
    int update_capacity;
    int stop_signals;
    int killed_steps;
    int store_failing;             /* 1 while queued updates cannot be written */
    struct spawner spawner;
};

static void on_signal(int number)
{
    int saved = errno;
    unsigned char byte = (unsigned char)number;
    ssize_t ignored = write(signal_pipe[1], &byte, 1);

    (void)ignored;
    errno = saved;
}

static int install_signals(char **error)
{
    struct sigaction action;

    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        int saved = errno;
        *error = strbuf_printf("pipe2 failed: %s", strerror(saved));
        return -1;
    }
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGCHLD, &action, NULL);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static void queue_update(struct executor *executor, enum step_update_kind kind,
                         struct step_run *run, const char *message, const char *error)
{
    if (executor->update_count == executor->update_capacity) {
        executor->update_capacity = executor->update_capacity ? executor->update_capacity * 2 : 32;
        executor->updates = realloc(executor->updates,
                                    (size_t)executor->update_capacity * sizeof *executor->updates);
    }
    struct pending_update *pending = &executor->updates[executor->update_count++];
    pending->resources = NULL;
    pending->resource_count = 0;
    if (kind == UPDATE_COMPLETED) {
        /* The resources go with the completion and are written only with it. */
        pending->resources = run->written;
        pending->resource_count = run->written_count;
        run->written = NULL;
        run->written_count = 0;
    }
    pending->message = strbuf_dup(message);
    pending->error = strbuf_dup(error);
    pending->token = strbuf_dup(run->step.token);
    pending->update = (struct step_update){
        .kind = kind,
        .step_id = run->step.step_id,
        .executor_id = executor->id,
        .try_number = run->try_number,
        .at_ms = clock_wall_ms(),
        .message = pending->message,
        .error = pending->error,
        .resources = pending->resources,
        .resource_count = pending->resource_count,
    };
}

/* Writes the queued updates in one transaction. On a store error they stay
 * queued and the next turn tries again. */
static void flush_updates(struct executor *executor)
{
    struct step_update *batch;
    char *error = NULL;
    int count = executor->update_count;

    if (count == 0)
        return;
    batch = malloc((size_t)count * sizeof *batch);
    for (int i = 0; i < count; i++)
        batch[i] = executor->updates[i].update;
    if (executor->store->ops->apply_updates(executor->store, batch, count, &error) != 0) {
        if (!executor->store_failing)
            log_error("executor=%lld recording %d step updates failed; no new step starts "
                      "until they are written, retrying: %s", (long long)executor->id, count,
                      error);
        executor->store_failing = 1;
        free(error);
        free(batch);
        return;
    }
    if (executor->store_failing)
        log_info("executor=%lld the store accepts writes again; recorded %d queued updates",
                 (long long)executor->id, count);
    executor->store_failing = 0;
    for (int i = 0; i < count; i++) {
        struct pending_update *pending = &executor->updates[i];
        if (batch[i].retried)
            log_info("executor=%lld step=%s step_id=%lld try=%d failed; it will be retried "
                     "after its backoff", (long long)executor->id, pending->token,
                     (long long)batch[i].step_id, batch[i].try_number);
        if (batch[i].lost && batch[i].kind != UPDATE_MESSAGE)
            log_warn("executor=%lld step=%s step_id=%lld try=%d lost the step: it was failed "
                     "or claimed again meanwhile, so this result was not recorded",
                     (long long)executor->id, pending->token, (long long)batch[i].step_id,
                     batch[i].try_number);
        free(pending->message);
        free(pending->error);
        free(pending->token);
        store_free_resources(pending->resources, pending->resource_count);
    }
    executor->update_count = 0;
    free(batch);
}

/* Names every result the executor could not write before it had to exit. */
static void report_unrecorded(struct executor *executor)
{
    for (int i = 0; i < executor->update_count; i++) {
        const struct step_update *update = &executor->updates[i].update;
        if (update->kind == UPDATE_MESSAGE)
            continue;
        log_error("executor=%lld exiting without recording a result: step=%s step_id=%lld "
                  "try=%d %s%s%s", (long long)executor->id, executor->updates[i].token,
                  (long long)update->step_id, update->try_number,
                  update->kind == UPDATE_COMPLETED ? "COMPLETED" : "FAILED",
                  update->error ? ": " : "", update->error ? update->error : "");
    }
}

static struct step_run *free_slot(struct executor *executor)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if (executor->runs[i].pid == 0 && !executor->runs[i].launch_pending)
            return &executor->runs[i];
    return NULL;
}

/* Stores an INTERNAL_ERROR event about run's step, for subscribers. */
static void record_internal_error(struct executor *executor, const struct step_run *run,
                                  const char *text)
{
    struct event_row event = {
        .type = "INTERNAL_ERROR",
        .app = run->step.app,
        .execution_id = run->step.execution_id,
        .attempt_id = run->step.attempt_id,
        .step = run->step.token,
        .executor_id = executor->id,
        .detail = (char *)text,
    };
    char *error = NULL;

    if (executor->store->ops->record_event(executor->store, &event, &error) != 0) {
        log_error("executor=%lld recording an INTERNAL_ERROR event failed: %s",
                  (long long)executor->id, error);
        free(error);
    }
}

static void fail_without_running(struct executor *executor, struct step_run *run,
                                 const char *error)
{
    log_warn("executor=%lld app=%s execution=%lld step=%s failed before it started: %s",
             (long long)executor->id, run->step.app, (long long)run->step.execution_id,
             run->step.token, error);
    queue_update(executor, UPDATE_FAILED, run, NULL, error);
}

static int app_limit(const struct executor *executor, const char *app)
{
    const struct executor_config *config = executor->config;

    for (int i = 0; i < config->app_limit_count; i++)
        if (strcmp(config->app_limits[i].app, app) == 0)
            return config->app_limits[i].limit;
    return 0;
}

static int claim(struct executor *executor, struct step_run *run)
{
    char *error = NULL;

    if (executor->store->ops->claim(executor->store, run->step.step_id, executor->id,
                                    clock_wall_ms(), app_limit(executor, run->step.app),
                                    &run->try_number, &error) != 0) {
        log_error("executor=%lld step=%s claim failed: %s", (long long)executor->id,
                  run->step.token, error);
        free(error);
        return 0;
    }
    if (run->try_number == 0)
        log_debug("executor=%lld step=%s not claimed: another executor was first, the attempt "
                  "stopped, or the application limit was reached",
                  (long long)executor->id, run->step.token);
    return run->try_number > 0;
}

static int ensure_spawner(struct executor *executor);

static void release_slot(struct step_run *run)
{
    runner_release(run);
    memset(run, 0, sizeof *run);
}

/* Forks the child for run->kind in run's slot. Returns 0, or -1 after
 * queueing a failure (for an execute) and releasing the slot. */
static int spawn(struct executor *executor, struct step_run *run)
{
    const struct executor_config *config = executor->config;
    char *error = NULL;
    const char *what = run->kind == RUN_EXECUTE ? "try" : run->kind == RUN_CHECK
                           ? "precondition check of try" : "delivery try";
    char *header = strbuf_printf("== %s %d on executor %lld (pid %d, host %s) ==", what,
                                 run->kind == RUN_CHECK ? run->try_number + 1 : run->try_number,
                                 (long long)executor->id, (int)getpid(), executor->host);

    step_log_init(&run->log, config->log_dir, run->step.app, run->step.execution_id,
                  run->step.attempt_id, run->step.token, header, config->log_max_bytes);
    free(header);

    if (ensure_spawner(executor) != 0 ||
        spawner_spawn(&executor->spawner, run, &error) != 0) {
        if (error == NULL)
            error = strbuf_dup("no spawner process is running");
        char *reason = strbuf_printf("starting the step process failed: %s", error);
        record_internal_error(executor, run, reason);
        if (run->kind == RUN_EXECUTE)
            fail_without_running(executor, run, reason);
        else
            log_error("executor=%lld step=%s checking its precondition failed: %s",
                      (long long)executor->id, run->step.token, reason);
        free(reason);
        free(error);
        release_slot(run);
        return -1;
    }
    executor->running++;
    if (run->kind == RUN_EXECUTE) {
        log_info("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d started "
                 "pid=%d", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (int)run->pid);
        if (run->step.timeout_ms > 0)
            run->timeout_mono = run->started_mono + run->step.timeout_ms;
    } else {
        run->timeout_mono = run->started_mono + executor->config->precondition_timeout_ms;
    }
    return 0;
}

/* Claims the step in run and starts its execute child, or with deferred
 * marks it to start once the caller's batch commits. */
static void claim_and_execute(struct executor *executor, struct step_run *run, int deferred)
{
    if (!claim(executor, run)) {
        release_slot(run);
        return;
    }
    run->executor_id = executor->id;
    run->kind = RUN_EXECUTE;
    char *error = NULL;
    if (executor->store->ops->load_resources(executor->store, run->step.execution_id,
                                             &run->snapshot, &run->snapshot_count,
                                             &error) != 0) {
        char *reason = strbuf_printf("loading the execution's resources failed: %s", error);
        record_internal_error(executor, run, reason);
        fail_without_running(executor, run, reason);
        free(reason);
        free(error);
        release_slot(run);
        return;
    }
    if (deferred)
        run->launch_pending = 1;
    else
        spawn(executor, run);
}

/* Prepares a due step inside the caller's batch: claims it, or takes its
 * precondition check when the action has one, and marks the slot to start
 * once the batch commits. Takes ownership of the strings in due. */
static void prepare_step(struct executor *executor, struct due_step *due)
{
    struct store *store = executor->store;
    struct step_run *run = free_slot(executor);
    char *error = NULL;
    int has_precondition;

    memset(run, 0, sizeof *run);
    run->step = *due;
    memset(due, 0, sizeof *due);
    run->report_fd = -1;
    run->output_fd = -1;
    run->log.fd = -1;

    if (store->ops->load_context(store, run->step.step_id, &run->context, &error) != 0) {
        log_error("executor=%lld step=%s loading its context failed: %s",
                  (long long)executor->id, run->step.token, error);
        record_internal_error(executor, run, error);
        free(error);
        release_slot(run);
        return;
    }
    has_precondition = luahost_has_precondition(executor->L, run->step.action, &error);
    if (has_precondition < 0) {
        if (claim(executor, run))
            fail_without_running(executor, run, error);
        free(error);
        release_slot(run);
        return;
    }
    if (!has_precondition) {
        claim_and_execute(executor, run, 1);
        return;
    }

    /* The next check is moved a cooldown ahead before this one starts, so
     * neither this executor nor another checks the step again meanwhile. */
    int64_t now = clock_wall_ms();
    int taken = 0;
    if (store->ops->lease_check(store, run->step.step_id, now, now + run->step.cooldown_ms,
                                &taken, &error) != 0) {
        log_error("executor=%lld step=%s scheduling its precondition check failed: %s",
                  (long long)executor->id, run->step.token, error);
        free(error);
    }
    if (!taken) {
        release_slot(run);
        return;
    }
    run->kind = RUN_CHECK;
    run->launch_pending = 1;
}

/* Acts on a finished precondition check: start the step, leave it for its
 * next check (already a cooldown ahead), or fail it when the check itself
 * failed. */
static void finish_check(struct executor *executor, struct step_run *run, char *failure)
{
    if (failure != NULL) {
        char *reason = strncmp(failure, "precondition", 12) == 0
                           ? strbuf_dup(failure)
                           : strbuf_printf("precondition failed: %s", failure);
        if (claim(executor, run))
            fail_without_running(executor, run, reason);
        free(reason);
        release_slot(run);
        return;
    }
    if (run->outcome == OUTCOME_READY) {
        runner_reset(run, RUN_EXECUTE);
        claim_and_execute(executor, run, 0);
        return;
    }
    log_debug("executor=%lld step=%s precondition not met; next check in %lld ms",
              (long long)executor->id, run->step.token, (long long)run->step.cooldown_ms);
    release_slot(run);
}

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
static void start_deliveries(struct executor *executor)
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
            struct step_run *run = free_slot(executor);

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
            if (spawn(executor, run) == 0) {
                run->timeout_mono = run->started_mono + DELIVERY_TIMEOUT_MS;
                log_info("executor=%lld app=%s delivering event %lld (%s) try=%d pid=%d",
                         (long long)executor->id, run->step.app, (long long)delivery->event.id,
                         run->event_type, run->delivery_try, (int)run->pid);
            }
        }
        store_free_deliveries(deliveries, count);
    }
}

/* Records how a delivery went; a failed one is tried again later, up to
 * DELIVERY_TRIES times, and never fails the workflow. */
static void finish_delivery(struct executor *executor, struct step_run *run, const char *failure)
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

static struct step_run *find_run(struct executor *executor, pid_t pid)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if (executor->runs[i].pid == pid)
            return &executor->runs[i];
    return NULL;
}

static void finish_run(struct executor *executor, struct step_run *run)
{
    char *failure = runner_finish(run);
    int64_t elapsed = clock_mono_ms() - run->started_mono;

    executor->running--;
    if (run->kind == RUN_CHECK) {
        finish_check(executor, run, failure);
        free(failure);
        return;
    }
    if (run->kind == RUN_NOTIFY) {
        finish_delivery(executor, run, failure);
        free(failure);
        release_slot(run);
        return;
    }
    if (failure == NULL) {
        log_info("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d COMPLETED in "
                 "%lld ms", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (long long)elapsed);
        queue_update(executor, UPDATE_COMPLETED, run, run->message, NULL);
    } else {
        log_warn("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d FAILED in "
                 "%lld ms: %s", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (long long)elapsed, failure);
        queue_update(executor, UPDATE_FAILED, run, run->message, failure);
    }
    free(failure);
    release_slot(run);
}

/* Finishes the runs whose children the spawner reported as ended. */
static void handle_exits(struct executor *executor)
{
    struct spawner_exit exits[64];
    int count;

    while ((count = spawner_read_exits(&executor->spawner, exits, 64)) > 0) {
        for (int i = 0; i < count; i++) {
            struct step_run *run = find_run(executor, exits[i].pid);
            if (run == NULL)
                continue;
            run->exited = 1;
            run->wait_status = exits[i].wait_status;
            finish_run(executor, run);
        }
    }
}

/* Fails every running step when the spawner is gone: its children died with
 * it. A new spawner starts on the next loop turn. */
static void spawner_lost(struct executor *executor, const char *why)
{
    char *reason = strbuf_printf("the step's process was lost: bgwf's spawner process (pid %d) "
                                 "%s", (int)executor->spawner.pid, why);

    log_error("executor=%lld %s; failing %d running steps", (long long)executor->id, reason,
              executor->running);
    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (run->pid == 0)
            continue;
        kill(-run->pid, SIGKILL);
        if (run->kill_reason == NULL)
            run->kill_reason = strbuf_dup(reason);
        run->exited = 1;
        run->wait_status = SIGKILL;
        finish_run(executor, run);
    }
    free(reason);
    if (executor->spawner.request_fd >= 0)
        close(executor->spawner.request_fd);
    if (executor->spawner.exit_fd >= 0)
        close(executor->spawner.exit_fd);
    executor->spawner.pid = 0;
    executor->spawner.request_fd = executor->spawner.exit_fd = -1;
}

/* Reaps the executor's own children: only the spawner, which ends only
 * when something killed it. */
static void reap_children(struct executor *executor)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != executor->spawner.pid)
            continue;
        handle_exits(executor);
        char *why = WIFSIGNALED(status)
                        ? strbuf_printf("was killed by signal SIG%s", sigabbrev_np(WTERMSIG(status)))
                        : strbuf_printf("exited with status %d", WEXITSTATUS(status));
        spawner_lost(executor, why);
        free(why);
    }
}

/* Starts the spawner when there is none. Returns 0 when one runs. */
static int ensure_spawner(struct executor *executor)
{
    char *error = NULL;

    if (executor->spawner.pid > 0)
        return 0;
    if (spawner_start(&executor->spawner, executor->config->search_path, &error) != 0) {
        log_error("executor=%lld starting the spawner process failed: %s",
                  (long long)executor->id, error);
        free(error);
        return -1;
    }
    log_debug("executor=%lld spawner started pid=%d", (long long)executor->id,
              (int)executor->spawner.pid);
    return 0;
}

static void queue_message_updates(struct executor *executor)
{
    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (run->pid != 0 && run->message_unsaved) {
            queue_update(executor, UPDATE_MESSAGE, run, run->message, NULL);
            run->message_unsaved = 0;
        }
    }
}

static void kill_all(struct executor *executor, const char *reason)
{
    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (run->pid != 0) {
            runner_kill(run, reason);
            executor->killed_steps++;
        }
    }
}

/* Stops the running steps whose execution an operator cancelled: SIGTERM
 * now, SIGKILL after the grace period. */
static void check_cancellations(struct executor *executor)
{
    struct cancelled_step *cancelled = NULL;
    int count = 0;
    char *error = NULL;

    if (executor->running == 0)
        return;
    if (executor->store->ops->cancelled_steps(executor->store, executor->id, &cancelled, &count,
                                              &error) != 0) {
        log_error("executor=%lld looking for cancelled steps failed: %s",
                  (long long)executor->id, error);
        free(error);
        return;
    }
    for (int c = 0; c < count; c++) {
        for (int i = 0; i < executor->config->max_concurrent; i++) {
            struct step_run *run = &executor->runs[i];
            if (run->pid == 0 || run->step.step_id != cancelled[c].step_id ||
                run->try_number != cancelled[c].try_number || run->kill_reason != NULL)
                continue;
            log_info("executor=%lld app=%s execution=%lld step=%s cancelled by operator: "
                     "sending SIGTERM, SIGKILL in %d ms", (long long)executor->id,
                     run->step.app, (long long)run->step.execution_id, run->step.token,
                     executor->config->kill_grace_ms);
            runner_terminate(run, "cancelled by operator", executor->config->kill_grace_ms);
        }
    }
    free(cancelled);
}

/* Stops children that ran past their time limit, and sends SIGKILL to
 * those that outlived their grace period after SIGTERM. */
static void enforce_deadlines(struct executor *executor)
{
    int64_t now = clock_mono_ms();

    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (run->pid == 0)
            continue;
        if (run->timeout_mono != 0 && now >= run->timeout_mono && run->kill_reason == NULL) {
            int64_t limit = run->kind == RUN_CHECK ? executor->config->precondition_timeout_ms
                            : run->kind == RUN_NOTIFY ? DELIVERY_TIMEOUT_MS
                                                      : run->step.timeout_ms;
            const char *what = run->kind == RUN_CHECK ? "precondition"
                               : run->kind == RUN_NOTIFY ? "notification" : "step";
            char *reason = strbuf_printf("%s timed out after %.3g s", what,
                                         (double)limit / 1000.0);
            log_warn("executor=%lld app=%s execution=%lld step=%s %s: sending SIGTERM, SIGKILL "
                     "in %d ms", (long long)executor->id, run->step.app,
                     (long long)run->step.execution_id, run->step.token, reason,
                     executor->config->kill_grace_ms);
            runner_terminate(run, reason, executor->config->kill_grace_ms);
            free(reason);
        }
        runner_enforce_deadline(run, now);
    }
}

static void handle_signals(struct executor *executor)
{
    unsigned char numbers[64];
    ssize_t count;

    while ((count = read(signal_pipe[0], numbers, sizeof numbers)) > 0) {
        for (ssize_t i = 0; i < count; i++) {
            if (numbers[i] != SIGTERM && numbers[i] != SIGINT)
                continue;
            executor->stop_signals++;
            if (executor->stop_signals == 1) {
                log_info("executor=%lld received SIG%s: no new steps start; waiting for %d "
                         "running steps (send it again to kill them)",
                         (long long)executor->id, sigabbrev_np(numbers[i]), executor->running);
            } else if (executor->stop_signals == 2) {
                char *reason = strbuf_printf(
                    "killed: executor %lld on host %s received a second stop signal during "
                    "shutdown", (long long)executor->id, executor->host);
                log_warn("executor=%lld received a second stop signal: killing %d running steps",
                         (long long)executor->id, executor->running);
                kill_all(executor, reason);
                free(reason);
            }
        }
    }
}

static void heartbeat(struct executor *executor)
{
    struct store *store = executor->store;
    const struct executor_config *config = executor->config;
    struct dead_executor *dead = NULL;
    int dead_count = 0, revived = 0;
    char *error = NULL;
    int64_t now = clock_wall_ms();

    if (store->ops->executor_heartbeat(store, executor->id, now, &revived, &error) != 0) {
        log_error("executor=%lld heartbeat failed: %s", (long long)executor->id, error);
        free(error);
        return;
    }
    if (revived)
        log_warn("executor=%lld had been declared dead by another executor (heartbeat older "
                 "than %d ms); its running steps were failed; it runs again from now",
                 (long long)executor->id, config->heartbeat_timeout_ms);
    if (store->ops->reap_dead(store, now, config->heartbeat_timeout_ms, &dead, &dead_count,
                              &error) != 0) {
        log_error("executor=%lld looking for dead executors failed: %s",
                  (long long)executor->id, error);
        free(error);
        return;
    }
    for (int i = 0; i < dead_count; i++)
        log_warn("executor=%lld declared executor %lld (pid %d on host %s) dead: no heartbeat "
                 "for %d ms; failed its %d running steps", (long long)executor->id,
                 (long long)dead[i].id, dead[i].pid, dead[i].host, config->heartbeat_timeout_ms,
                 dead[i].failed_steps);
    store_free_dead(dead, dead_count);
}

/* Starts the children of the slots prepare_step marked, or releases them
 * when their batch did not commit. */
static void launch_prepared(struct executor *executor, int committed)
{
    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (!run->launch_pending)
            continue;
        run->launch_pending = 0;
        if (committed)
            spawn(executor, run);
        else
            release_slot(run);
    }
}

/* Returns 1 when a slot already runs a check or execute of the step. */
static int in_flight(const struct executor *executor, int64_t step_id)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if ((executor->runs[i].pid != 0 || executor->runs[i].launch_pending) &&
            executor->runs[i].step.step_id == step_id)
            return 1;
    return 0;
}

/* Starts due steps while slots are free. Returns 1 when more steps may be
 * due right now (a query filled its limit). */
static int fill_slots(struct executor *executor)
{
    struct store *store = executor->store;
    const struct executor_config *config = executor->config;
    int more = 0;

    for (int a = 0; a < config->app_count; a++) {
        int limit = config->max_concurrent - executor->running;
        struct due_step *due = NULL;
        int count = 0;
        char *error = NULL;

        if (limit <= 0)
            return 0;
        if (store->ops->find_due(store, config->apps[a], config->only_attempt, clock_wall_ms(),
                                 limit, &due, &count, &error) != 0) {
            log_error("executor=%lld app=%s looking for due steps failed: %s",
                      (long long)executor->id, config->apps[a], error);
            free(error);
            continue;
        }
        /* One transaction holds the page's claims and check leases; the
         * children start only after it committed, so none runs unclaimed. */
        if (store->ops->batch_begin(store, &error) != 0) {
            log_error("executor=%lld app=%s starting a claim batch failed: %s",
                      (long long)executor->id, config->apps[a], error);
            free(error);
            store_free_due(due, count);
            continue;
        }
        for (int i = 0; i < count; i++)
            if (!in_flight(executor, due[i].step_id))
                prepare_step(executor, &due[i]);
        int committed = store->ops->batch_end(store, 1, &error) == 0;
        if (!committed) {
            log_error("executor=%lld app=%s committing the claims failed; the steps stay "
                      "WAITING: %s", (long long)executor->id, config->apps[a], error);
            free(error);
        }
        launch_prepared(executor, committed);
        /* A full page of due steps that did not fill the slots (their
         * preconditions said no, or others claimed them) may hide more. */
        if (count == limit && executor->running < config->max_concurrent)
            more = 1;
        store_free_due(due, count);
    }
    return more;
}

static int has_work(struct executor *executor)
{
    const struct executor_config *config = executor->config;
    struct store *store = executor->store;

    for (int a = 0; a < config->app_count; a++) {
        int found = 0;
        char *error = NULL;
        if (store->ops->has_work(store, config->apps[a], config->only_attempt, &found,
                                 &error) != 0) {
            log_error("executor=%lld app=%s checking for work failed: %s",
                      (long long)executor->id, config->apps[a], error);
            free(error);
            return 1;
        }
        if (found)
            return 1;
    }
    return 0;
}

/* With only_attempt: returns 1 when that attempt has ended, and sets
 * *finished when it ended FINISHED. */
static int attempt_ended(struct executor *executor, int *finished)
{
    char *status = NULL, *error = NULL;
    int ended;

    if (executor->store->ops->attempt_status(executor->store, executor->config->only_attempt,
                                             &status, &error) != 0) {
        log_error("executor=%lld reading attempt %lld failed: %s", (long long)executor->id,
                  (long long)executor->config->only_attempt, error);
        free(error);
        return 0;
    }
    ended = strcmp(status, "FINISHED") == 0 || strcmp(status, "FAILED") == 0 ||
            strcmp(status, "SHUTDOWN") == 0;
    *finished = strcmp(status, "FINISHED") == 0;
    free(status);
    return ended;
}

static void wait_for_events(struct executor *executor, int timeout_ms)
{
    int slots = executor->config->max_concurrent;
    struct pollfd fds[2 * slots + 2];
    int count = 0;

    fds[count++] = (struct pollfd){ .fd = signal_pipe[0], .events = POLLIN };
    if (executor->spawner.exit_fd >= 0)
        fds[count++] = (struct pollfd){ .fd = executor->spawner.exit_fd, .events = POLLIN };
    for (int i = 0; i < slots; i++) {
        const struct step_run *run = &executor->runs[i];
        if (run->pid != 0 && run->report_fd >= 0)
            fds[count++] = (struct pollfd){ .fd = run->report_fd, .events = POLLIN };
        if (run->pid != 0 && run->output_fd >= 0)
            fds[count++] = (struct pollfd){ .fd = run->output_fd, .events = POLLIN };
    }
    poll(fds, (nfds_t)count, timeout_ms);
    for (int i = 0; i < slots; i++) {
        if (executor->runs[i].pid != 0) {
            runner_read(&executor->runs[i]);
            runner_read_output(&executor->runs[i]);
        }
    }
    handle_exits(executor);
}

static int register_executor(struct executor *executor)
{
    char *error = NULL;

    if (gethostname(executor->host, sizeof executor->host) != 0)
        strcpy(executor->host, "unknown");
    executor->host[sizeof executor->host - 1] = '\0';
    if (executor->store->ops->executor_register(executor->store, executor->host, (int)getpid(),
                                                executor->config->apps_text, clock_wall_ms(),
                                                &executor->id, &error) != 0) {
        log_error("registering the executor failed: %s", error);
        free(error);
        return -1;
    }
    log_info("executor=%lld started on host %s pid %d for apps %s (max %d concurrent steps)",
             (long long)executor->id, executor->host, (int)getpid(),
             executor->config->apps_text, executor->config->max_concurrent);
    return 0;
}

int executor_run(struct store *store, lua_State *L, const struct executor_config *config)
{
    struct executor executor = { .store = store, .L = L, .config = config };
    int64_t next_heartbeat = 0, next_cancel_check = 0;
    int finished = 0, attempt_done = 0;
    char *error = NULL;

    if (install_signals(&error) != 0) {
        log_error("starting the executor failed: %s", error);
        free(error);
        return 1;
    }
    if (register_executor(&executor) != 0)
        return 1;
    executor.spawner.pid = 0;
    executor.spawner.request_fd = executor.spawner.exit_fd = -1;
    ensure_spawner(&executor);
    executor.runs = calloc((size_t)config->max_concurrent, sizeof *executor.runs);

    for (;;) {
        int more = 0;

        handle_signals(&executor);
        if (clock_mono_ms() >= next_heartbeat) {
            heartbeat(&executor);
            next_heartbeat = clock_mono_ms() + config->heartbeat_ms;
        }
        if (clock_mono_ms() >= next_cancel_check) {
            check_cancellations(&executor);
            next_cancel_check = clock_mono_ms() + CANCEL_CHECK_MS;
        }
        enforce_deadlines(&executor);
        reap_children(&executor);
        queue_message_updates(&executor);
        flush_updates(&executor);

        if (config->only_attempt && attempt_ended(&executor, &finished))
            attempt_done = 1;
        /* Deliveries start even after the attempt of bgwf run ended, so
         * that its SUCCESS or FAILURE notification goes out before exit. */
        if (executor.stop_signals == 0 && !executor.store_failing)
            start_deliveries(&executor);
        if ((executor.stop_signals > 0 || attempt_done) && executor.running == 0 &&
            (executor.update_count == 0 || executor.stop_signals >= 2))
            break;
        if (executor.stop_signals == 0 && !attempt_done && !executor.store_failing)
            more = fill_slots(&executor);
        if (config->exit_when_idle && executor.stop_signals == 0 && executor.running == 0 &&
            executor.update_count == 0 && !more && !has_work(&executor)) {
            log_info("executor=%lld is idle: no step of %s is waiting or running",
                     (long long)executor.id, config->apps_text);
            break;
        }

        int64_t until_heartbeat = next_heartbeat - clock_mono_ms();
        int timeout = more ? 0 : config->poll_ms;
        if (executor.running > 0 && timeout > CANCEL_CHECK_MS)
            timeout = CANCEL_CHECK_MS;
        if (until_heartbeat < timeout)
            timeout = until_heartbeat > 0 ? (int)until_heartbeat : 0;
        wait_for_events(&executor, timeout);
    }

    report_unrecorded(&executor);
    if (store->ops->executor_stop(store, executor.id, clock_wall_ms(), &error) != 0) {
        log_error("executor=%lld marking itself STOPPED failed: %s", (long long)executor.id,
                  error);
        free(error);
    }
    log_info("executor=%lld stopped", (long long)executor.id);
    spawner_stop(&executor.spawner);
    free(executor.runs);
    free(executor.updates);
    if (executor.killed_steps > 0)
        return 1;
    if (config->only_attempt)
        return finished ? 0 : 1;
    return 0;
}
