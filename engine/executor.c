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
#include "executor_internal.h"
#include "log.h"
#include "luahost.h"
#include "runner.h"
#include "spawner.h"
#include "strbuf.h"

/* How long a child runs before the executor watches its pipes, in ms. */
#define PIPE_WATCH_DELAY_MS 20

/* How often running steps are checked for a cancel request, in ms. */
#define CANCEL_CHECK_MS 250

/* The signal handler's only channel to the loop: it writes the signal
 * number here, and poll() wakes up. */
static int signal_pipe[2] = { -1, -1 };


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

void executor_queue_update(struct executor *executor, enum step_update_kind kind,
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

int executor_write_updates(struct executor *executor, struct step_update **written)
{
    struct step_update *batch;
    char *error = NULL;
    int count = executor->update_count;

    *written = NULL;
    if (count == 0)
        return 0;
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
        return -1;
    }
    *written = batch;
    return count;
}

void executor_forget_updates(struct executor *executor, struct step_update *written, int count)
{
    if (count <= 0)
        return;
    if (executor->store_failing)
        log_info("executor=%lld the store accepts writes again; recorded %d queued updates",
                 (long long)executor->id, count);
    executor->store_failing = 0;
    for (int i = 0; i < count; i++) {
        struct pending_update *pending = &executor->updates[i];
        if (written[i].retried)
            log_info("executor=%lld step=%s step_id=%lld try=%d failed; it will be retried "
                     "after its backoff", (long long)executor->id, pending->token,
                     (long long)written[i].step_id, written[i].try_number);
        if (written[i].lost && written[i].kind != UPDATE_MESSAGE)
            log_warn("executor=%lld step=%s step_id=%lld try=%d lost the step: it was failed "
                     "or claimed again meanwhile, so this result was not recorded",
                     (long long)executor->id, pending->token, (long long)written[i].step_id,
                     written[i].try_number);
        free(pending->message);
        free(pending->error);
        free(pending->token);
        store_free_resources(pending->resources, pending->resource_count);
    }
    /* Updates queued after the write stay for the next one. */
    executor->update_count -= count;
    memmove(executor->updates, executor->updates + count,
            (size_t)executor->update_count * sizeof *executor->updates);
}

/* Writes the queued updates in a transaction of their own. On a store
 * error they stay queued and the next turn tries again. */
static void flush_updates(struct executor *executor)
{
    struct step_update *written;
    int count = executor_write_updates(executor, &written);

    executor_forget_updates(executor, written, count);
    free(written);
}

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

static void queue_message_updates(struct executor *executor)
{
    for (int i = 0; i < executor->config->max_concurrent; i++) {
        struct step_run *run = &executor->runs[i];
        if (run->pid != 0 && run->message_unsaved) {
            executor_queue_update(executor, UPDATE_MESSAGE, run, run->message, NULL);
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
        /* The store's message already names the failed operation. */
        log_error("executor=%lld %s", (long long)executor->id, error);
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
                         "running %s (send it again to kill them)",
                         (long long)executor->id, sigabbrev_np(numbers[i]), executor->running,
                         executor->running == 1 ? "step" : "steps");
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
    if (revived) {
        /* Its steps were failed and may already run elsewhere, so its own
         * children must not go on: a step runs at one place at a time. */
        log_warn("executor=%lld had been declared dead by another executor (its heartbeat was "
                 "late, for example because this process was stopped); killing its %d running "
                 "steps, whose results would not count; it runs again from now",
                 (long long)executor->id, executor->running);
        kill_all(executor, "killed: this step's executor had been declared dead by another "
                           "executor, and the step was failed and may run again elsewhere");
    }
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

/* Waits for a signal, an ended child, or output of a child that has run
 * for PIPE_WATCH_DELAY_MS. The pipes of younger children are left alone:
 * most steps end sooner, and then their exit report is the only wake-up
 * they cost, with the pipes read once at the end. A child that fills a
 * pipe before then waits at most that long. */
static void wait_for_events(struct executor *executor, int timeout_ms)
{
    int slots = executor->config->max_concurrent;
    struct pollfd fds[2 * slots + 3];
    int count = 0;
    int64_t now = clock_mono_ms();

    fds[count++] = (struct pollfd){ .fd = signal_pipe[0], .events = POLLIN };
    if (executor->spawner.exit_fd >= 0)
        fds[count++] = (struct pollfd){ .fd = executor->spawner.exit_fd, .events = POLLIN };
    if (executor->awaiting_count > 0)
        fds[count++] = (struct pollfd){ .fd = executor->spawner.request_fd, .events = POLLIN };
    for (int i = 0; i < slots; i++) {
        const struct step_run *run = &executor->runs[i];
        if (run->pid == 0)
            continue;
        int64_t watch_in = run->started_mono + PIPE_WATCH_DELAY_MS - now;
        if (watch_in > 0) {
            if (watch_in < timeout_ms)
                timeout_ms = (int)watch_in;
            continue;
        }
        if (run->report_fd >= 0)
            fds[count++] = (struct pollfd){ .fd = run->report_fd, .events = POLLIN };
        if (run->output_fd >= 0)
            fds[count++] = (struct pollfd){ .fd = run->output_fd, .events = POLLIN };
    }
    poll(fds, (nfds_t)count, timeout_ms);
    for (int i = 0; i < slots; i++) {
        if (executor->runs[i].pid != 0) {
            runner_read(&executor->runs[i]);
            runner_read_output(&executor->runs[i]);
        }
    }
    executor_handle_exits(executor);
}

static int register_executor(struct executor *executor)
{
    char *error = NULL;

    if (gethostname(executor->host, sizeof executor->host) != 0)
        strcpy(executor->host, "unknown");
    executor->host[sizeof executor->host - 1] = '\0';
    if (executor->store->ops->executor_register(executor->store, executor->host, (int)getpid(),
                                                executor->config->apps_text, clock_wall_ms(),
                                                executor->config->heartbeat_timeout_ms,
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
    executor_ensure_spawner(&executor);
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
        executor_reap_children(&executor);
        queue_message_updates(&executor);
        /* With slots to fill, the claims share one transaction with the
         * queued updates (executor_fill_slots writes both). */
        if (executor.stop_signals == 0 && !attempt_done && !executor.store_failing &&
            executor.running < config->max_concurrent)
            more = executor_fill_slots(&executor);
        else
            flush_updates(&executor);

        if (config->only_attempt && attempt_ended(&executor, &finished))
            attempt_done = 1;
        /* Deliveries start even after the attempt of bgwf run ended, so
         * that its SUCCESS or FAILURE notification goes out before exit. */
        if (executor.stop_signals == 0 && !executor.store_failing)
            executor_start_deliveries(&executor);
        if ((executor.stop_signals > 0 || attempt_done) && executor.running == 0 &&
            (executor.update_count == 0 || executor.stop_signals >= 2))
            break;
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
    free(executor.awaiting);
    free(executor.updates);
    if (executor.killed_steps > 0)
        return 1;
    if (config->only_attempt)
        return finished ? 0 : 1;
    return 0;
}
