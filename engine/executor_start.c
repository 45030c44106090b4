/* Starting and finishing steps in the executor: claims in batches,
 * precondition checks, the spawner that forks the children, and what is
 * recorded when a child ends. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "executor_internal.h"
#include "log.h"
#include "luahost.h"
#include "strbuf.h"

struct step_run *executor_free_slot(struct executor *executor)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if (executor->runs[i].pid == 0 && !executor->runs[i].launch_pending &&
            !executor->runs[i].spawn_pending)
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
    executor_queue_update(executor, UPDATE_FAILED, run, NULL, error);
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

void executor_release_slot(struct step_run *run)
{
    runner_release(run);
    memset(run, 0, sizeof *run);
}

/* Records that run's child did not start: queues a failure for an
 * execute, and releases the slot. */
static void spawn_failed(struct executor *executor, struct step_run *run, const char *cause)
{
    char *reason = strbuf_printf("starting the step process failed: %s", cause);

    record_internal_error(executor, run, reason);
    if (run->kind == RUN_EXECUTE)
        fail_without_running(executor, run, reason);
    else
        log_error("executor=%lld step=%s checking its precondition failed: %s",
                  (long long)executor->id, run->step.token, reason);
    free(reason);
    executor_release_slot(run);
}

static void spawned(struct executor *executor, struct step_run *run)
{
    if (run->kind == RUN_EXECUTE) {
        log_info("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d started "
                 "pid=%d", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (int)run->pid);
        if (run->step.timeout_ms > 0)
            run->timeout_mono = run->started_mono + run->step.timeout_ms;
    } else if (run->kind == RUN_NOTIFY) {
        log_info("executor=%lld app=%s delivering event %lld (%s) try=%d pid=%d",
                 (long long)executor->id, run->step.app, (long long)run->event_id,
                 run->event_type, run->delivery_try, (int)run->pid);
        run->timeout_mono = run->started_mono + DELIVERY_TIMEOUT_MS;
    } else {
        run->timeout_mono = run->started_mono + executor->config->precondition_timeout_ms;
    }
}

void executor_spawn(struct executor *executor, struct step_run **runs, int count)
{
    const struct executor_config *config = executor->config;
    char *error = NULL;
    int pid = (int)getpid();

    for (int i = 0; i < count; i++) {
        struct step_run *run = runs[i];
        const char *what = run->kind == RUN_EXECUTE ? "try" : run->kind == RUN_CHECK
                               ? "precondition check of try" : "delivery try";
        char *header = strbuf_printf("== %s %d on executor %lld (pid %d, host %s) ==", what,
                                     run->kind == RUN_CHECK ? run->try_number + 1
                                                            : run->try_number,
                                     (long long)executor->id, pid, executor->host);
        step_log_init(&run->log, config->log_dir, run->step.app, run->step.execution_id,
                      run->step.attempt_id, run->step.token, header, config->log_max_bytes);
        free(header);
    }
    if (executor_ensure_spawner(executor) != 0) {
        error = strbuf_dup("no spawner process is running");
    } else if (spawner_send(&executor->spawner, runs, count, &error) == 0) {
        if (executor->awaiting == NULL)
            executor->awaiting = calloc((size_t)config->max_concurrent,
                                        sizeof *executor->awaiting);
        for (int i = 0; i < count; i++) {
            runs[i]->spawn_pending = 1;
            executor->awaiting[executor->awaiting_count++] = runs[i];
        }
        executor->running += count;
        return;
    }
    for (int i = 0; i < count; i++)
        spawn_failed(executor, runs[i], error);
    free(error);
}

void executor_read_spawn_replies(struct executor *executor)
{
    char *errors[SPAWNER_REPLY_MAX];
    int replied = 0;

    while (executor->awaiting_count > 0 &&
           (replied = spawner_read_reply(&executor->spawner, executor->awaiting,
                                          executor->awaiting_count, errors)) > 0) {
        for (int i = 0; i < replied; i++) {
            struct step_run *run = executor->awaiting[i];
            run->spawn_pending = 0;
            if (errors[i] != NULL) {
                executor->running--;
                spawn_failed(executor, run, errors[i]);
                free(errors[i]);
            } else {
                spawned(executor, run);
            }
        }
        executor->awaiting_count -= replied;
        memmove(executor->awaiting, executor->awaiting + replied,
                (size_t)executor->awaiting_count * sizeof *executor->awaiting);
    }
    /* A spawner that replies with garbage cannot be trusted with the
     * children it has: killing it fails them (see spawner_lost) and the
     * next turn starts a new one. */
    if (replied == -2 && executor->spawner.pid > 0) {
        log_error("executor=%lld the spawner process (pid %d) sent an unreadable reply; "
                  "restarting it", (long long)executor->id, (int)executor->spawner.pid);
        kill(executor->spawner.pid, SIGKILL);
    }
}

/* Claims the step in run and starts its execute child, or with deferred
 * marks it to start once the caller's batch commits. */
static void claim_and_execute(struct executor *executor, struct step_run *run, int deferred)
{
    if (!claim(executor, run)) {
        executor_release_slot(run);
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
        executor_release_slot(run);
        return;
    }
    if (deferred)
        run->launch_pending = 1;
    else
        executor_spawn(executor, &run, 1);
}

/* Prepares a due step inside the caller's batch: claims it, or takes its
 * precondition check when the action has one, and marks the slot to start
 * once the batch commits. Takes ownership of the strings in due. */
static void prepare_step(struct executor *executor, struct due_step *due)
{
    struct store *store = executor->store;
    struct step_run *run = executor_free_slot(executor);
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
        executor_release_slot(run);
        return;
    }
    has_precondition = luahost_has_precondition(executor->L, run->step.action, &error);
    if (has_precondition < 0) {
        if (claim(executor, run))
            fail_without_running(executor, run, error);
        free(error);
        executor_release_slot(run);
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
        executor_release_slot(run);
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
        executor_release_slot(run);
        return;
    }
    if (run->outcome == OUTCOME_READY) {
        runner_reset(run, RUN_EXECUTE);
        claim_and_execute(executor, run, 0);
        return;
    }
    log_debug("executor=%lld step=%s precondition not met; next check in %lld ms",
              (long long)executor->id, run->step.token, (long long)run->step.cooldown_ms);
    executor_release_slot(run);
}

static struct step_run *find_run(struct executor *executor, pid_t pid)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if (executor->runs[i].pid == pid)
            return &executor->runs[i];
    return NULL;
}

void executor_finish_run(struct executor *executor, struct step_run *run)
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
        executor_finish_delivery(executor, run, failure);
        free(failure);
        executor_release_slot(run);
        return;
    }
    if (failure == NULL) {
        log_info("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d COMPLETED in "
                 "%lld ms", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (long long)elapsed);
        executor_queue_update(executor, UPDATE_COMPLETED, run, run->message, NULL);
    } else {
        log_warn("executor=%lld app=%s execution=%lld attempt=%lld step=%s try=%d FAILED in "
                 "%lld ms: %s", (long long)executor->id, run->step.app,
                 (long long)run->step.execution_id, (long long)run->step.attempt_id,
                 run->step.token, run->try_number, (long long)elapsed, failure);
        executor_queue_update(executor, UPDATE_FAILED, run, run->message, failure);
    }
    free(failure);
    executor_release_slot(run);
}

/* Finishes the runs whose children the spawner reported as ended. */
void executor_handle_exits(struct executor *executor)
{
    struct spawner_exit exits[64];
    int count;

    executor_read_spawn_replies(executor);
    while ((count = spawner_read_exits(&executor->spawner, exits, 64)) > 0) {
        for (int i = 0; i < count; i++) {
            struct step_run *run = find_run(executor, exits[i].pid);
            if (run == NULL) {
                /* The spawner replied before this child ended, so the
                 * reply that names it is waiting now. */
                executor_read_spawn_replies(executor);
                run = find_run(executor, exits[i].pid);
            }
            if (run == NULL)
                continue;
            run->exited = 1;
            run->wait_status = exits[i].wait_status;
            executor_finish_run(executor, run);
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
        executor_finish_run(executor, run);
    }
    /* Runs the spawner never replied to: whether or not they started, their
     * children died with it. */
    for (int i = 0; i < executor->awaiting_count; i++) {
        struct step_run *run = executor->awaiting[i];
        run->spawn_pending = 0;
        if (run->kill_reason == NULL)
            run->kill_reason = strbuf_dup(reason);
        run->exited = 1;
        run->wait_status = SIGKILL;
        executor_finish_run(executor, run);
    }
    executor->awaiting_count = 0;
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
void executor_reap_children(struct executor *executor)
{
    int status;
    pid_t pid;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid != executor->spawner.pid)
            continue;
        executor_handle_exits(executor);
        char *why = WIFSIGNALED(status)
                        ? strbuf_printf("was killed by signal SIG%s", sigabbrev_np(WTERMSIG(status)))
                        : strbuf_printf("exited with status %d", WEXITSTATUS(status));
        spawner_lost(executor, why);
        free(why);
    }
}

/* Starts the spawner when there is none. Returns 0 when one runs. */
int executor_ensure_spawner(struct executor *executor)
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

/* Starts the children of the slots prepare_step marked, in one request to
 * the spawner, or releases them when their batch did not commit. */
static void launch_prepared(struct executor *executor, int committed)
{
    int slots = executor->config->max_concurrent;
    struct step_run **runs = malloc((size_t)slots * sizeof *runs);
    int count = 0;

    for (int i = 0; i < slots; i++) {
        struct step_run *run = &executor->runs[i];
        if (!run->launch_pending)
            continue;
        run->launch_pending = 0;
        if (committed)
            runs[count++] = run;
        else
            executor_release_slot(run);
    }
    if (count > 0)
        executor_spawn(executor, runs, count);
    free(runs);
}

/* Returns the number of slots prepare_step marked to start. */
static int pending_launches(const struct executor *executor)
{
    int count = 0;

    for (int i = 0; i < executor->config->max_concurrent; i++)
        count += executor->runs[i].launch_pending;
    return count;
}

/* Returns 1 when a slot already runs a check or execute of the step. */
static int in_flight(const struct executor *executor, int64_t step_id)
{
    for (int i = 0; i < executor->config->max_concurrent; i++)
        if ((executor->runs[i].pid != 0 || executor->runs[i].launch_pending ||
             executor->runs[i].spawn_pending) &&
            executor->runs[i].step.step_id == step_id)
            return 1;
    return 0;
}

/* Writes the queued updates and claims due steps while slots are free, in
 * one transaction, so a turn's results and claims cost one commit. The
 * children start and the updates leave the queue only after the commit.
 * Returns 1 when more steps may be due now (a query filled its limit). */
int executor_fill_slots(struct executor *executor)
{
    struct store *store = executor->store;
    const struct executor_config *config = executor->config;
    struct step_update *written = NULL;
    char *error = NULL;
    int more = 0;

    if (store->ops->batch_begin(store, &error) != 0) {
        log_error("executor=%lld starting a claim batch failed: %s", (long long)executor->id,
                  error);
        free(error);
        return 0;
    }
    int written_count = executor_write_updates(executor, &written);
    /* Updates that failed to write keep their slots' dependents waiting
     * too: nothing is claimed until they are in. */
    for (int a = 0; a < config->app_count && written_count >= 0; a++) {
        int limit = config->max_concurrent - executor->running - pending_launches(executor);
        struct due_step *due = NULL;
        int count = 0;

        if (limit <= 0)
            break;
        if (store->ops->find_due(store, config->apps[a], config->only_attempt, clock_wall_ms(),
                                 limit, &due, &count, &error) != 0) {
            log_error("executor=%lld app=%s looking for due steps failed: %s",
                      (long long)executor->id, config->apps[a], error);
            free(error);
            error = NULL;
            continue;
        }
        for (int i = 0; i < count; i++)
            if (!in_flight(executor, due[i].step_id))
                prepare_step(executor, &due[i]);
        /* A full page of due steps that did not fill the slots (their
         * preconditions returned false, or others claimed them) may hide more. */
        if (count == limit && executor->running + pending_launches(executor) <
                                  config->max_concurrent)
            more = 1;
        store_free_due(due, count);
    }
    int committed = store->ops->batch_end(store, 1, &error) == 0;
    if (!committed) {
        log_error("executor=%lld committing the claims and %d step updates failed; the steps "
                  "stay WAITING and the updates queued: %s", (long long)executor->id,
                  written_count > 0 ? written_count : 0, error);
        free(error);
        if (written_count > 0)
            executor->store_failing = 1;
    } else {
        executor_forget_updates(executor, written, written_count);
    }
    free(written);
    launch_prepared(executor, committed);
    return more;
}
