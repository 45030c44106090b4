/* Internals shared by the files of the PostgreSQL store backend. */
#ifndef BGWF_STORE_PG_H
#define BGWF_STORE_PG_H

#include "pq_library.h"

#include "store.h"

/* Every statement the backend runs, prepared once per connection on first
 * use (PQprepare) and run with bound parameters (PQexecPrepared). */
enum pg_sql_id {
    PG_BEGIN,
    PG_COMMIT,
    PG_ROLLBACK,
    PG_SAVEPOINT,
    PG_RELEASE,
    PG_ROLLBACK_SAVEPOINT,
    PG_SERVER_NOW,
    PG_SUBMIT_LOCK,
    PG_APP_INSERT,
    PG_APP_ID,
    PG_LIVE_ATTEMPT,
    PG_EXECUTION_INSERT,
    PG_ATTEMPT_INSERT,
    PG_STEP_INSERT,
    PG_DEPENDENCY_INSERT,
    PG_NEWEST_SIBLING,
    PG_PENDING_DECREMENT,
    PG_EXECUTOR_INSERT,
    PG_EXECUTOR_HEARTBEAT,
    PG_EXECUTOR_REVIVE,
    PG_EXECUTOR_STOP,
    PG_EXECUTORS_STALE,
    PG_EXECUTOR_DECLARE_DEAD,
    PG_EXECUTOR_RUNNING_STEPS,
    PG_FIND_DUE,
    PG_LOAD_CONTEXT,
    PG_CLAIM,
    PG_APP_LOCK,
    PG_CLAIM_LIMITED,
    PG_LOCK_ATTEMPTS,
    PG_STEP_COMPLETE,
    PG_STEP_FAIL,
    PG_STEP_MESSAGE,
    PG_STEP_RETRY,
    PG_TRY_INSERT,
    PG_DEPENDENTS_RELEASE,
    PG_ATTEMPT_DONE_ONE,
    PG_ATTEMPT_FAIL_PENDING,
    PG_ATTEMPT_DEACTIVATE,
    PG_ATTEMPT_STATE,
    PG_ATTEMPT_HAS_RUNNING,
    PG_ATTEMPT_END,
    PG_EXECUTION_COMPLETE,
    PG_HAS_WORK_APP,
    PG_HAS_WORK_ATTEMPT,
    PG_LATEST_EXECUTION,
    PG_EXECUTION_INFO,
    PG_STATUS_STEPS,
    PG_LATEST_EXECUTION_OF,
    PG_LATEST_ATTEMPT_OF,
    PG_RESUME_SKIP,
    PG_RESUME_PENDING,
    PG_RESUME_REMAINING,
    PG_RESUME_VANISHED,
    PG_FIND_EXECUTION,
    PG_EXECUTION_STATE,
    PG_STEP_BY_TOKEN,
    PG_STEP_SET_STATUS,
    PG_DEPENDENT_STEPS,
    PG_STEP_TOKEN_STATUS,
    PG_EXECUTION_SET_STATUS,
    PG_ATTEMPT_SET_STATUS,
    PG_ATTEMPT_RUNNING_COUNT,
    PG_ATTEMPT_CANCEL_RUNNING,
    PG_CANCELLED_STEPS,
    PG_LIST_EXECUTIONS,
    PG_LIST_ATTEMPTS,
    PG_LIST_EXECUTORS,
    PG_ATTEMPT_PROGRESS,
    PG_STEP_EDGES,
    PG_STEP_TRIES,
    PG_RESOURCES_LOAD,
    PG_RESOURCE_WRITE,
    PG_LEASE_CHECK,
    PG_EVENT_FOR_STEP,
    PG_EVENT_FOR_ATTEMPT,
    PG_EVENT_INSERT,
    PG_DELIVERIES_QUEUE,
    PG_EVENTS_LIST,
    PG_SUBSCRIBE,
    PG_SUBSCRIPTIONS_LIST,
    PG_UNSUBSCRIBE,
    PG_DELIVERIES_DUE,
    PG_DELIVERY_CLAIM,
    PG_DELIVERY_FINISH,
    PG_COUNT
};

struct pg_store {
    struct store base;
    PGconn *conn;              /* NULL while disconnected */
    char *url;                 /* the connection URL as given */
    char *display;             /* the URL with any password masked, for messages */
    char prepared[PG_COUNT];   /* 1: prepared on the current connection */
    int depth;                 /* open transaction plus nested savepoints */
    int64_t retry_at_ms;       /* monotonic time before which no reconnect is tried */
    int64_t backoff_ms;        /* wait after the next failed reconnect */
    char *connect_error;       /* why the last connect failed, or NULL */
    int64_t reconnected_at_ms; /* monotonic time of the last reconnect; 0: none */
};

/* Bound parameters of one statement, all sent as text. */
#define PG_MAX_PARAMS 16
struct pg_params {
    int count;
    const char *values[PG_MAX_PARAMS];
    char numbers[PG_MAX_PARAMS][32];
};

void pg_param_int(struct pg_params *params, int64_t value);
void pg_param_double(struct pg_params *params, double value);
/* Adds text, or SQL NULL when text is NULL. The text must outlive the call. */
void pg_param_text(struct pg_params *params, const char *text);
/* Adds int64 ids as a PostgreSQL array literal for "= ANY($n::bigint[])".
 * The text goes into buffer (count * 21 + 3 bytes), which must outlive the
 * call. */
void pg_param_ids(struct pg_params *params, const int64_t *ids, int count, char *buffer);

/* Returns NULL when text is valid UTF-8, else a malloc'd copy in which each
 * invalid byte is U+FFFD (the caller frees it). pg_exec repairs every text
 * parameter this way. */
char *pg_utf8_repaired(const char *text);

/* Runs statement id with params (NULL for none), reconnecting first when the
 * connection was lost. Returns the result, which the caller frees with
 * PQclear, or NULL with *error set to "what: server message (database)". */
PGresult *pg_exec(struct pg_store *store, enum pg_sql_id id, const struct pg_params *params,
                  const char *what, char **error);

/* Runs a statement and drops its result. Sets *changes (when not NULL) to
 * the number of rows it wrote or returned. Returns 0, or -1 with *error set. */
int pg_run(struct pg_store *store, enum pg_sql_id id, const struct pg_params *params,
           int *changes, const char *what, char **error);

/* Runs a statement expected to return at most one row and reads column 0 as
 * an integer (NULL reads as 0). Returns 0, 1 when there was no row, or -1
 * with *error set. */
int pg_query_int64(struct pg_store *store, enum pg_sql_id id, const struct pg_params *params,
                   int64_t *value, const char *what, char **error);

/* Column readers: NULL reads as 0, and as NULL for text (malloc'd copy). */
int64_t pg_column_int64(const PGresult *result, int row, int column);
double pg_column_double(const PGresult *result, int row, int column);
char *pg_column_text_dup(const PGresult *result, int row, int column);

/* BEGIN / COMMIT / ROLLBACK, or a savepoint and its release or rollback
 * when a transaction is already open. Rollback ignores errors. */
int pg_begin(struct pg_store *store, char **error);
int pg_commit(struct pg_store *store, char **error);
void pg_rollback(struct pg_store *store);

/* Sets *now_ms to the database server's clock in ms since the epoch. */
int pg_server_now(struct pg_store *store, int64_t *now_ms, char **error);

/* Ends the attempt when nothing is left for it to do, inside the open
 * transaction (see store.h's apply_updates). */
int pg_settle_attempt(struct pg_store *store, int64_t attempt_id, int64_t now_ms, char **error);

/* Stores an event about a step, or about an attempt, inside the open
 * transaction, with the deliveries its subscriptions need. */
int pg_step_event(struct pg_store *store, const char *type, int64_t step_id,
                  int64_t executor_id, const char *detail, int64_t at_ms, char **error);
int pg_attempt_event(struct pg_store *store, const char *type, int64_t attempt_id,
                     const char *detail, int64_t at_ms, char **error);

/* Applies step updates inside the open transaction (see apply_updates). */
int pg_apply_in_transaction(struct pg_store *store, struct step_update *updates, int count,
                            char **error);

/* Operations, one group per file. */
int pg_record_event(struct store *store, const struct event_row *event, char **error);
int pg_list_events(struct store *store, const struct event_filter *filter,
                   struct event_row **rows, int *count, char **error);
int pg_subscribe(struct store *store, const char *app, const char *events, const char *command,
                 const char *action, int64_t *id, char **error);
int pg_list_subscriptions(struct store *store, const char *app, struct subscription_row **rows,
                          int *count, char **error);
int pg_unsubscribe(struct store *store, const char *app, int64_t id, char **error);
int pg_claim_deliveries(struct store *store, const char *app, int64_t executor_id,
                        int64_t now_ms, int limit, struct delivery **deliveries, int *count,
                        char **error);
int pg_finish_delivery(struct store *store, int64_t delivery_id, int delivered,
                       int64_t retry_at_ms, const char *error_text, char **error);

int pg_submit(struct store *store, const struct submit_request *request,
              struct submit_outcome *outcome, char **error);
int pg_find_execution(struct store *store, const char *app, const char *scope,
                      int64_t *execution_id, char **error);
int pg_revert(struct store *store, int64_t execution_id, const char *token, int downstream,
              struct change_report *report, char **error);
int pg_complete(struct store *store, int64_t execution_id, const char *token,
                struct change_report *report, char **error);
int pg_shutdown(struct store *store, int64_t execution_id, struct change_report *report,
                char **error);
int pg_cancel(struct store *store, int64_t execution_id, struct change_report *report,
              char **error);
int pg_cancelled_steps(struct store *store, int64_t executor_id, struct cancelled_step **steps,
                       int *count, char **error);
int pg_list_executions(struct store *store, const struct execution_filter *filter,
                       struct execution_row **rows, int *count, char **error);
int pg_list_attempts(struct store *store, int64_t execution_id, struct attempt_row **rows,
                     int *count, char **error);
int pg_list_executors(struct store *store, struct executor_row **rows, int *count,
                      char **error);
int pg_attempt_progress(struct store *store, int64_t attempt_id,
                        struct attempt_progress *progress, char **error);
int pg_step_edges(struct store *store, const struct status_report *report,
                  struct step_edge **edges, int *count, char **error);
int pg_executor_register(struct store *store, const char *host, int pid, const char *apps,
                         int64_t now_ms, int64_t heartbeat_timeout_ms, int64_t *executor_id,
                         char **error);
int pg_executor_heartbeat(struct store *store, int64_t executor_id, int64_t now_ms,
                          int *revived, char **error);
int pg_executor_stop(struct store *store, int64_t executor_id, int64_t now_ms, char **error);
int pg_reap_dead(struct store *store, int64_t now_ms, int64_t timeout_ms,
                 struct dead_executor **dead, int *dead_count, char **error);
int pg_find_due(struct store *store, const char *app, int64_t attempt_id, int64_t now_ms,
                int limit, struct due_step **steps, int *count, char **error);
int pg_load_context(struct store *store, int64_t step_id, char **json, char **error);
int pg_lease_check(struct store *store, int64_t step_id, int64_t now_ms, int64_t next_check_ms,
                   int *taken, char **error);
int pg_claim(struct store *store, int64_t step_id, int64_t executor_id, int64_t now_ms,
             int app_limit, int *try_number, char **error);
int pg_load_resources(struct store *store, int64_t execution_id, struct resource **resources,
                      int *count, char **error);
int pg_step_tries(struct store *store, int64_t step_id, struct step_try **tries, int *count,
                  char **error);
int pg_apply_updates(struct store *store, struct step_update *updates, int count, char **error);
int pg_attempt_status(struct store *store, int64_t attempt_id, char **status, char **error);
int pg_has_work(struct store *store, const char *app, int64_t attempt_id, int *has_work,
                char **error);
int pg_status(struct store *store, int64_t execution_id, struct status_report *report,
              char **error);

#endif
