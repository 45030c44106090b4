/* C tests for the SQLite store: atomic submission, one claim per step,
 * stamp-conditioned results, readiness counting and dead executors. */
#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "clock.h"
#include "store.h"

static char db_path[64];

static struct store *open_fresh(void)
{
    char *error = NULL;
    struct store *store;

    snprintf(db_path, sizeof db_path, "/tmp/bgwf-store-test-%d.db", (int)getpid());
    unlink(db_path);
    store = store_open(db_path, &error);
    if (store == NULL)
        fprintf(stderr, "store_open: %s\n", error);
    return store;
}

static int count_rows(const char *table)
{
    sqlite3 *db;
    sqlite3_stmt *statement;
    char sql[128];
    int count = -1;

    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    sqlite3_open(db_path, &db);
    if (sqlite3_prepare_v2(db, sql, -1, &statement, NULL) == SQLITE_OK &&
        sqlite3_step(statement) == SQLITE_ROW)
        count = sqlite3_column_int(statement, 0);
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return count;
}

/* a -> b, and c alone. */
static int submit_three(struct store *store, int64_t *execution_id, int64_t *attempt_id)
{
    static int b_deps[] = { 0 };
    struct submit_step steps[] = {
        { .token = "a", .action = "noop", .context = "{}", .dep_count = 0, .deps = NULL },
        { .token = "b", .action = "noop", .context = "{}", .dep_count = 1, .deps = b_deps },
        { .token = "c", .action = "noop", .context = "{}", .dep_count = 0, .deps = NULL },
    };
    struct submit_request request = { .app = "three", .step_count = 3, .steps = steps };
    char *error = NULL;
    struct submit_outcome outcome;
    int rc = store->ops->submit(store, &request, &outcome, &error);

    if (rc == 0) {
        *execution_id = outcome.execution_id;
        *attempt_id = outcome.attempt_id;
        store_free_outcome(&outcome);
    }

    if (rc != 0)
        fprintf(stderr, "submit: %s\n", error);
    free(error);
    return rc;
}

static int64_t find_step(struct store *store, const char *token)
{
    struct due_step *due = NULL;
    int count = 0;
    char *error = NULL;
    int64_t id = 0;

    store->ops->find_due(store, "three", 0, clock_wall_ms(), 10, &due, &count, &error);
    for (int i = 0; i < count; i++)
        if (strcmp(due[i].token, token) == 0)
            id = due[i].step_id;
    store_free_due(due, count);
    return id;
}

static void test_submit_is_atomic(void)
{
    struct store *store = open_fresh();
    static int bad_deps[] = { 7 };
    struct submit_step steps[] = {
        { .token = "a", .action = "noop", .context = "{}", .dep_count = 0, .deps = NULL },
        { .token = "b", .action = "noop", .context = "{}", .dep_count = 1, .deps = bad_deps },
    };
    struct submit_request request = { .app = "broken", .step_count = 2, .steps = steps };
    int64_t execution_id, attempt_id;
    struct submit_outcome outcome;
    char *error = NULL;

    CHECK("submit with a bad dependency fails",
          store->ops->submit(store, &request, &outcome, &error) == -1);
    CHECK("submit error set", error != NULL);
    CHECK("submit error names the step", error != NULL && strstr(error, "step 'b'") != NULL);
    free(error);
    CHECK("no execution stored", count_rows("executions") == 0);
    CHECK("no step stored", count_rows("steps") == 0);

    CHECK("good submit", submit_three(store, &execution_id, &attempt_id) == 0);
    CHECK("second submit of a running app fails", submit_three(store, &execution_id,
                                                               &attempt_id) == -1);
    CHECK("only one attempt stored", count_rows("attempts") == 1);
    store->ops->close(store);
}

static void test_claim_and_results(void)
{
    struct store *store = open_fresh();
    int64_t execution_id, attempt_id, first, second;
    char *error = NULL, *status = NULL;
    int try_number;

    submit_three(store, &execution_id, &attempt_id);
    store->ops->executor_register(store, "host", 1, "three", clock_wall_ms(), 30000, &first,
                                  &error);
    store->ops->executor_register(store, "host", 2, "three", clock_wall_ms(), 30000, &second,
                                  &error);

    int64_t a = find_step(store, "a");
    CHECK("a is due", a != 0);
    CHECK("b is not due before a completes", find_step(store, "b") == 0);

    store->ops->claim(store, a, first, clock_wall_ms(), 0, &try_number, &error);
    CHECK("first claim wins with try 1", try_number == 1);
    store->ops->claim(store, a, second, clock_wall_ms(), 0, &try_number, &error);
    CHECK("second claim loses", try_number == 0);

    struct step_update late = {
        .kind = UPDATE_COMPLETED,
        .step_id = a,
        .executor_id = second,
        .try_number = 1,
        .at_ms = clock_wall_ms(),
        .message = NULL,
        .error = NULL,
    };
    store->ops->apply_updates(store, &late, 1, &error);
    CHECK("update from a non-claimant is lost", late.lost == 1);
    struct step_update stale = {
        .kind = UPDATE_COMPLETED,
        .step_id = a,
        .executor_id = first,
        .try_number = 2,
        .at_ms = clock_wall_ms(),
        .message = NULL,
        .error = NULL,
    };
    store->ops->apply_updates(store, &stale, 1, &error);
    CHECK("update with another try is lost", stale.lost == 1);
    struct step_update done = {
        .kind = UPDATE_COMPLETED,
        .step_id = a,
        .executor_id = first,
        .try_number = 1,
        .at_ms = clock_wall_ms(),
        .message = "ok",
        .error = NULL,
    };
    store->ops->apply_updates(store, &done, 1, &error);
    CHECK("update from the claimant applies", done.lost == 0);
    CHECK("b is due once a completed", find_step(store, "b") != 0);

    int64_t c = find_step(store, "c");
    store->ops->claim(store, c, first, clock_wall_ms(), 0, &try_number, &error);
    struct step_update failed = {
        .kind = UPDATE_FAILED,
        .step_id = c,
        .executor_id = first,
        .try_number = 1,
        .at_ms = clock_wall_ms(),
        .message = NULL,
        .error = "boom",
    };
    store->ops->apply_updates(store, &failed, 1, &error);
    CHECK("b is not due after a failure", find_step(store, "b") == 0);
    store->ops->attempt_status(store, attempt_id, &status, &error);
    CHECK_STR("attempt fails when nothing runs", "FAILED", status);
    free(status);
    store->ops->close(store);
}

static void test_attempt_finishes(void)
{
    struct store *store = open_fresh();
    int64_t execution_id, attempt_id, executor;
    char *error = NULL, *status = NULL;
    int try_number;
    struct status_report report;

    submit_three(store, &execution_id, &attempt_id);
    store->ops->executor_register(store, "host", 1, "three", clock_wall_ms(), 30000, &executor,
                                  &error);
    for (int round = 0; round < 3; round++) {
        const char *tokens[] = { "a", "c", "b" };
        int64_t id = find_step(store, tokens[round]);
        store->ops->claim(store, id, executor, clock_wall_ms(), 0, &try_number, &error);
        struct step_update done = {
            .kind = UPDATE_COMPLETED,
            .step_id = id,
            .executor_id = executor,
            .try_number = try_number,
            .at_ms = clock_wall_ms(),
            .message = NULL,
            .error = NULL,
        };
        store->ops->apply_updates(store, &done, 1, &error);
    }
    store->ops->attempt_status(store, attempt_id, &status, &error);
    CHECK_STR("attempt finishes when every step completed", "FINISHED", status);
    free(status);
    CHECK("status reads back", store->ops->status(store, 0, &report, &error) == 0);
    CHECK_STR("execution complete", "COMPLETE", report.execution_status);
    CHECK("three steps reported", report.step_count == 3);
    store_free_status(&report);
    store->ops->close(store);
}

static void test_dead_executor(void)
{
    struct store *store = open_fresh();
    int64_t execution_id, attempt_id, dead_id, live_id;
    char *error = NULL;
    int try_number, dead_count = 0, revived = 0;
    struct dead_executor *dead = NULL;
    struct status_report report;
    int64_t now = clock_wall_ms();

    submit_three(store, &execution_id, &attempt_id);
    store->ops->executor_register(store, "lost-host", 41, "three", now - 60000, 30000, &dead_id,
                                  &error);
    store->ops->executor_register(store, "live-host", 42, "three", now, 30000, &live_id, &error);
    /* Silent for 5 s, but it registered a 60 s timeout: not dead yet. */
    int64_t patient_id;
    store->ops->executor_register(store, "patient-host", 43, "three", now - 5000, 60000,
                                  &patient_id, &error);
    int64_t a = find_step(store, "a");
    store->ops->claim(store, a, dead_id, now, 0, &try_number, &error);

    store->ops->reap_dead(store, now, 1000, &dead, &dead_count, &error);
    CHECK("one executor declared dead", dead_count == 1);
    CHECK("the silent one is dead", dead_count == 1 && dead[0].id == dead_id);
    CHECK("its running step failed", dead_count == 1 && dead[0].failed_steps == 1);
    store_free_dead(dead, dead_count);

    store->ops->status(store, execution_id, &report, &error);
    CHECK_STR("its step failed", "FAILED", report.steps[0].status);
    CHECK("the failure names executor and host",
          report.steps[0].error && strstr(report.steps[0].error, "lost-host") &&
              strstr(report.steps[0].error, "stopped heartbeating"));
    store_free_status(&report);

    store->ops->executor_heartbeat(store, dead_id, now, &revived, &error);
    CHECK("a late heartbeat revives the executor", revived == 1);
    struct step_update late = {
        .kind = UPDATE_COMPLETED,
        .step_id = a,
        .executor_id = dead_id,
        .try_number = 1,
        .at_ms = now,
        .message = NULL,
        .error = NULL,
    };
    store->ops->apply_updates(store, &late, 1, &error);
    CHECK("the dead executor's late result is lost", late.lost == 1);
    store->ops->close(store);
    unlink(db_path);
}

int main(void)
{
    test_submit_is_atomic();
    test_claim_and_results();
    test_attempt_finishes();
    test_dead_executor();
    return check_report("test_store");
}
