/* Internals shared by the files of the SQLite store backend. */
#ifndef BGWF_STORE_SQLITE_H
#define BGWF_STORE_SQLITE_H

#include <sqlite3.h>

#include "store.h"

/* Every statement the backend runs, prepared once on first use. */
enum sql_id {
    SQL_BEGIN,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_SAVEPOINT,
    SQL_RELEASE,
    SQL_ROLLBACK_SAVEPOINT,
    SQL_APP_INSERT,
    SQL_APP_ID,
    SQL_LIVE_ATTEMPT,
    SQL_EXECUTION_INSERT,
    SQL_ATTEMPT_INSERT,
    SQL_STEP_INSERT,
    SQL_DEPENDENCY_INSERT,
    SQL_EXECUTOR_INSERT,
    SQL_EXECUTOR_HEARTBEAT,
    SQL_EXECUTOR_REVIVE,
    SQL_EXECUTOR_STOP,
    SQL_EXECUTORS_STALE,
    SQL_EXECUTOR_DECLARE_DEAD,
    SQL_EXECUTOR_RUNNING_STEPS,
    SQL_FIND_DUE,
    SQL_LOAD_CONTEXT,
    SQL_CLAIM,
    SQL_STEP_COMPLETE,
    SQL_STEP_FAIL,
    SQL_STEP_MESSAGE,
    SQL_DEPENDENTS_RELEASE,
    SQL_ATTEMPT_DONE_ONE,
    SQL_ATTEMPT_FAIL_PENDING,
    SQL_ATTEMPT_DEACTIVATE,
    SQL_ATTEMPT_STATE,
    SQL_ATTEMPT_HAS_RUNNING,
    SQL_ATTEMPT_END,
    SQL_EXECUTION_COMPLETE,
    SQL_HAS_WORK_APP,
    SQL_HAS_WORK_ATTEMPT,
    SQL_LATEST_EXECUTION,
    SQL_EXECUTION_INFO,
    SQL_STATUS_STEPS,
    SQL_LATEST_EXECUTION_OF,
    SQL_LATEST_ATTEMPT_OF,
    SQL_RESUME_SKIP,
    SQL_RESUME_PENDING,
    SQL_RESUME_REMAINING,
    SQL_RESUME_VANISHED,
    SQL_FIND_EXECUTION,
    SQL_EXECUTION_STATE,
    SQL_STEP_BY_TOKEN,
    SQL_STEP_SET_STATUS,
    SQL_DEPENDENT_STEPS,
    SQL_STEP_TOKEN_STATUS,
    SQL_EXECUTION_SET_STATUS,
    SQL_ATTEMPT_SET_STATUS,
    SQL_ATTEMPT_RUNNING_COUNT,
    SQL_ATTEMPT_CANCEL_RUNNING,
    SQL_CANCELLED_STEPS,
    SQL_LIST_EXECUTIONS,
    SQL_LIST_ATTEMPTS,
    SQL_LIST_EXECUTORS,
    SQL_ATTEMPT_PROGRESS,
    SQL_STEP_EDGES,
    SQL_STEP_RETRY,
    SQL_TRY_INSERT,
    SQL_CLAIM_LIMITED,
    SQL_STEP_TRIES,
    SQL_RESOURCES_LOAD,
    SQL_RESOURCE_WRITE,
    SQL_LEASE_CHECK,
    SQL_PENDING_DECREMENT,
    SQL_NEWEST_SIBLING,
    SQL_EVENT_FOR_STEP,
    SQL_EVENT_FOR_ATTEMPT,
    SQL_EVENT_INSERT,
    SQL_DELIVERIES_QUEUE,
    SQL_EVENTS_LIST,
    SQL_SUBSCRIBE,
    SQL_SUBSCRIPTIONS_LIST,
    SQL_UNSUBSCRIBE,
    SQL_DELIVERIES_DUE,
    SQL_DELIVERY_CLAIM,
    SQL_DELIVERY_FINISH,
    SQL_COUNT
};

struct sqlite_store {
    struct store base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *statements[SQL_COUNT];
    int depth;             /* open transaction plus nested savepoints */
};

/* Returns the prepared statement for id, reset and with no bindings, or NULL
 * with *error set. The statement stays owned by the store. */
sqlite3_stmt *sqlite_statement(struct sqlite_store *store, enum sql_id id, char **error);

/* Returns a malloc'd "what: sqlite message (path)" error text. */
char *sqlite_error(struct sqlite_store *store, const char *what);

/* Runs a statement that returns no rows. Returns 0, or -1 with *error set. */
int sqlite_run(struct sqlite_store *store, enum sql_id id, char **error);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK, or a savepoint and its release or
 * rollback when a transaction is already open. Rollback ignores errors. */
int sqlite_begin(struct sqlite_store *store, char **error);
int sqlite_commit(struct sqlite_store *store, char **error);
void sqlite_rollback(struct sqlite_store *store);

/* Returns a malloc'd copy of a text column, or NULL when it is NULL. */
char *sqlite_column_text_dup(sqlite3_stmt *statement, int column);

/* Operations, one group per file. */
/* Ends the attempt when nothing is left for it to do (see store.h's
 * apply_updates), inside the open transaction. */
int sqlite_settle_attempt(struct sqlite_store *store, int64_t attempt_id, int64_t now_ms,
                          char **error);

/* Steps a statement expected to return one row and reads column 0 as an
 * integer. Returns 0, 1 when there was no row, or -1 with *error set. */
int sqlite_query_int64(struct sqlite_store *store, enum sql_id id, int64_t *value, char **error);

/* Stores an event about a step, or about an attempt, inside the open
 * transaction, with the deliveries its subscriptions need. */
int sqlite_step_event(struct sqlite_store *store, const char *type, int64_t step_id,
                      int64_t executor_id, const char *detail, int64_t at_ms, char **error);
int sqlite_attempt_event(struct sqlite_store *store, const char *type, int64_t attempt_id,
                         const char *detail, int64_t at_ms, char **error);

int sqlite_record_event(struct store *store, const struct event_row *event, char **error);
int sqlite_list_events(struct store *store, const struct event_filter *filter,
                       struct event_row **rows, int *count, char **error);
int sqlite_subscribe(struct store *store, const char *app, const char *events,
                     const char *command, const char *action, int64_t *id, char **error);
int sqlite_list_subscriptions(struct store *store, const char *app,
                              struct subscription_row **rows, int *count, char **error);
int sqlite_unsubscribe(struct store *store, const char *app, int64_t id, char **error);
int sqlite_claim_deliveries(struct store *store, const char *app, int64_t executor_id,
                            int64_t now_ms, int limit, struct delivery **deliveries, int *count,
                            char **error);
int sqlite_finish_delivery(struct store *store, int64_t delivery_id, int delivered,
                           int64_t retry_at_ms, const char *error_text, char **error);

int sqlite_submit(struct store *store, const struct submit_request *request,
                  struct submit_outcome *outcome, char **error);
int sqlite_find_execution(struct store *store, const char *app, const char *scope,
                          int64_t *execution_id, char **error);
int sqlite_revert(struct store *store, int64_t execution_id, const char *token, int downstream,
                  struct change_report *report, char **error);
int sqlite_complete(struct store *store, int64_t execution_id, const char *token,
                    struct change_report *report, char **error);
int sqlite_shutdown(struct store *store, int64_t execution_id, struct change_report *report,
                    char **error);
int sqlite_cancel(struct store *store, int64_t execution_id, struct change_report *report,
                  char **error);
int sqlite_cancelled_steps(struct store *store, int64_t executor_id,
                           struct cancelled_step **steps, int *count, char **error);
int sqlite_list_executions(struct store *store, const struct execution_filter *filter,
                           struct execution_row **rows, int *count, char **error);
int sqlite_list_attempts(struct store *store, int64_t execution_id, struct attempt_row **rows,
                         int *count, char **error);
int sqlite_list_executors(struct store *store, struct executor_row **rows, int *count,
                          char **error);
int sqlite_attempt_progress(struct store *store, int64_t attempt_id,
                            struct attempt_progress *progress, char **error);
int sqlite_step_edges(struct store *store, const struct status_report *report,
                      struct step_edge **edges, int *count, char **error);
int sqlite_executor_register(struct store *store, const char *host, int pid, const char *apps,
                             int64_t now_ms, int64_t heartbeat_timeout_ms, int64_t *executor_id,
                             char **error);
int sqlite_executor_heartbeat(struct store *store, int64_t executor_id, int64_t now_ms,
                              int *revived, char **error);
int sqlite_executor_stop(struct store *store, int64_t executor_id, int64_t now_ms, char **error);
int sqlite_reap_dead(struct store *store, int64_t now_ms, int64_t timeout_ms,
                     struct dead_executor **dead, int *dead_count, char **error);
int sqlite_find_due(struct store *store, const char *app, int64_t attempt_id, int64_t now_ms,
                    int limit, struct due_step **steps, int *count, char **error);
int sqlite_load_context(struct store *store, int64_t step_id, char **json, char **error);
int sqlite_lease_check(struct store *store, int64_t step_id, int64_t now_ms, int64_t next_check_ms,
                       int *taken, char **error);
int sqlite_claim(struct store *store, int64_t step_id, int64_t executor_id, int64_t now_ms,
                 int app_limit, int *try_number, char **error);
int sqlite_load_resources(struct store *store, int64_t execution_id,
                          struct resource **resources, int *count, char **error);
int sqlite_step_tries(struct store *store, int64_t step_id, struct step_try **tries, int *count,
                      char **error);
int sqlite_apply_updates(struct store *store, struct step_update *updates, int count,
                         char **error);
int sqlite_apply_in_transaction(struct sqlite_store *store, struct step_update *updates,
                                int count, char **error);
int sqlite_attempt_status(struct store *store, int64_t attempt_id, char **status, char **error);
int sqlite_has_work(struct store *store, const char *app, int64_t attempt_id, int *has_work,
                    char **error);
int sqlite_status(struct store *store, int64_t execution_id, struct status_report *report,
                  char **error);

#endif
