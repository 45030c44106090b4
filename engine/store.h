/* The store interface: every read and write of workflow state goes through it.
 *
 * One implementation per backend (store_sqlite.c today) fills a struct
 * store_ops; the scheduler and the commands see only these calls. Calls
 * return 0 on success and -1 on failure with *error set to a malloc'd
 * message that the caller frees. */
#ifndef BGWF_STORE_H
#define BGWF_STORE_H

#include <stdint.h>

struct store;

/* Limits and retry rules of a step: tries, backoff, time and memory. */
struct step_policy {
    int retries;                /* extra tries after a failure */
    int64_t backoff_initial_ms; /* wait before the first retry */
    double backoff_factor;      /* each later wait is this much longer */
    int64_t backoff_max_ms;     /* no wait is longer than this */
    int64_t timeout_ms;         /* 0: no limit */
    int64_t max_memory;         /* bytes of address space; 0: no limit */
};

/* One step of a workflow being submitted. deps index into the same array. */
struct submit_step {
    const char *token;
    const char *action;
    const char *context;   /* JSON text */
    int64_t cooldown_ms;
    struct step_policy policy;
    int dep_count;
    int *deps;
};

struct submit_request {
    const char *app;
    const char *scope;     /* NULL: no scope */
    int new_execution;     /* 1: never resume; start a new execution */
    int step_count;
    struct submit_step *steps;
    int dropped_count;     /* declared steps not reachable from the tails; not stored */
    char **dropped;
};

/* The execution and attempt that a submit stored. */
struct submit_outcome {
    int64_t execution_id;
    int64_t attempt_id;
    int resumed;           /* 1: a new attempt of an INCOMPLETE execution */
    int skipped;           /* steps done by an earlier attempt, now SKIPPED */
    char *attempt_status;  /* RUNNING, or FINISHED when every step was skipped */
    int vanished_count;    /* tokens of the previous attempt missing from the DAG */
    char **vanished;
};

/* One step whose status an operator command changed. */
struct step_change {
    char *token;
    char *from;
    char *to;
};

/* The status changes that an operator command made. */
struct change_report {
    int64_t execution_id;
    int64_t attempt_id;
    char *attempt_from;    /* attempt status before and after; NULL if unchanged */
    char *attempt_to;
    char *execution_from;  /* execution status before and after; NULL if unchanged */
    char *execution_to;
    int running_steps;     /* steps still running (shutdown and cancel) */
    int change_count;
    struct step_change *changes;
};

/* One row of bgwf list. */
struct execution_row {
    int64_t id;
    char *app;
    char *scope;
    char *status;
    int attempt_count;
    int64_t latest_attempt_id;
    char *latest_attempt_status;
    int64_t created_at;
    int64_t ended_at;
};

struct execution_filter {
    const char *app;       /* NULL: any */
    const char *status;    /* NULL: any */
    int limit;
};

/* One attempt of an execution, for bgwf show. */
struct attempt_row {
    int64_t id;
    char *status;
    int step_count;
    int64_t created_at;
    int64_t ended_at;
};

/* One row of bgwf executors. */
struct executor_row {
    int64_t id;
    char *host;
    int pid;
    char *apps;
    char *status;
    int64_t started_at;
    int64_t heartbeat_at;
    int64_t stopped_at;
    int running_steps;
};

/* Counts of the steps of one attempt, for bgwf wait. */
struct attempt_progress {
    char *status;
    int total;
    int done;              /* COMPLETED, SKIPPED or MANUALLY_COMPLETED */
    int running;
    int failed;
};

/* A dependency edge between two steps of one attempt, by index into the
 * status report's steps. */
struct step_edge {
    int from;              /* the step waited for */
    int to;                /* the step that waits */
};

/* One stored event (bgwf events) and, for deliveries, what to notify. */
struct event_row {
    int64_t id;
    int64_t at;
    char *type;            /* START, SUCCESS, FAILURE, SHUTDOWN, INTERNAL_ERROR,
                            * STEP_FAILURE, STEP_SUCCESS, DIED_UNCLEAN */
    char *app;
    int64_t execution_id;  /* 0 when none */
    int64_t attempt_id;    /* 0 when none */
    char *step;            /* NULL when the event is not about one step */
    int64_t executor_id;   /* 0 when none */
    char *detail;          /* NULL when none */
};

struct event_filter {
    const char *app;       /* NULL: any */
    int64_t after_id;      /* only events with a larger id */
    int64_t since_ms;      /* only events at or after this time; 0: any */
    int limit;
};

/* A subscription of bgwf notify. */
struct subscription_row {
    int64_t id;
    char *app;
    char *events;          /* comma-separated event types */
    char *command;         /* NULL unless it runs a command */
    char *action;          /* NULL unless it runs an action */
    int64_t created_at;
};

/* An event to deliver to one subscription, claimed by an executor. */
struct delivery {
    int64_t id;
    int try_number;
    struct event_row event;
    char *command;
    char *action;
};

/* A running step whose execution was cancelled. */
struct cancelled_step {
    int64_t step_id;
    int try_number;
};

/* A step that is ready and whose precondition check is due. */
struct due_step {
    int64_t step_id;
    int64_t attempt_id;
    int64_t execution_id;
    int64_t cooldown_ms;
    int64_t timeout_ms;    /* 0: no limit */
    int64_t max_memory;    /* 0: no limit */
    char *token;
    char *action;
    char *app;
    char *scope;           /* NULL: no scope */
};

enum step_update_kind {
    UPDATE_MESSAGE,        /* the status message changed; the step still runs */
    UPDATE_COMPLETED,
    UPDATE_FAILED,
};

/* A named JSON value of an execution, written by one step and read by later
 * ones. */
struct resource {
    char *name;
    char *value;           /* JSON text */
};

/* A change to a claimed step. It applies only while the step is RUNNING
 * with the same executor and try; otherwise the store sets lost = 1. */
struct step_update {
    enum step_update_kind kind;
    int64_t step_id;
    int64_t executor_id;
    int try_number;
    int64_t at_ms;
    const char *message;   /* status message, or NULL to keep the current one */
    const char *error;     /* failure text for UPDATE_FAILED */
    const struct resource *resources; /* UPDATE_COMPLETED: resources the step wrote */
    int resource_count;
    int lost;              /* out */
    int retried;           /* out: the failure left tries, so the step waits again */
};

/* One finished try of a step, for bgwf show --step. */
struct step_try {
    int try_number;
    int64_t executor_id;
    int64_t started_at;
    int64_t ended_at;
    char *status;          /* COMPLETED or FAILED */
    char *error;
};

/* An executor that stopped heartbeating and whose steps were failed. */
struct dead_executor {
    int64_t id;
    char *host;
    int pid;
    int failed_steps;
};

struct status_step {
    int64_t step_id;
    char *token;
    char *action;
    char *status;
    char *message;         /* NULL when unset */
    char *error;           /* NULL unless FAILED */
    int64_t executor_id;   /* 0 when never claimed */
    int try_number;
    int64_t started_at;    /* 0 when never started */
    int64_t ended_at;      /* 0 when not ended */
    int64_t next_check;    /* WAITING: earliest time of its next precondition check */
    int pending;           /* WAITING: dependencies not done yet */
};

struct status_report {
    int64_t execution_id;
    char *app;
    char *scope;
    char *execution_status;
    int64_t attempt_id;
    char *attempt_status;
    int64_t created_at;
    int step_count;
    struct status_step *steps;
};

struct store_ops {
    const char *backend;

    void (*close)(struct store *store);

    /* Groups the calls between them into one write transaction, so that a
     * loop turn's claims cost one commit. batch_end commits (commit = 1) or
     * rolls back; a failed commit rolls back and returns -1. */
    int (*batch_begin)(struct store *store, char **error);
    int (*batch_end)(struct store *store, int commit, char **error);

    /* Stores the whole workflow in one transaction. When the newest
     * execution of (app, scope) is INCOMPLETE (and new_execution is 0) it
     * adds an attempt to it: steps that an earlier attempt finished are
     * SKIPPED, the others WAITING. Otherwise it stores a new execution.
     * Fails, storing nothing, while an attempt of (app, scope) is still
     * running. Free *outcome with store_free_outcome. */
    int (*submit)(struct store *store, const struct submit_request *request,
                  struct submit_outcome *outcome, char **error);

    /* Registers a RUNNING executor and returns its id. apps is for display;
     * heartbeat_timeout_ms is how long others must wait for its heartbeat
     * before they may declare it dead. */
    int (*executor_register)(struct store *store, const char *host, int pid,
                             const char *apps, int64_t now_ms, int64_t heartbeat_timeout_ms,
                             int64_t *executor_id, char **error);

    /* Stamps the executor's heartbeat. *revived is set to 1 when the executor
     * had been declared dead and is RUNNING again from now on. */
    int (*executor_heartbeat)(struct store *store, int64_t executor_id, int64_t now_ms,
                              int *revived, char **error);

    /* Marks the executor STOPPED. */
    int (*executor_stop)(struct store *store, int64_t executor_id, int64_t now_ms,
                         char **error);

    /* Declares dead every RUNNING executor whose heartbeat is older than
     * both this caller's timeout_ms and the executor's own registered
     * timeout, fails its RUNNING steps with a message naming it,
     * and returns them in *dead (*dead_count entries; free with
     * store_free_dead). */
    int (*reap_dead)(struct store *store, int64_t now_ms, int64_t timeout_ms,
                     struct dead_executor **dead, int *dead_count, char **error);

    /* Returns up to limit WAITING steps of app whose dependencies are done,
     * whose attempt is RUNNING and whose next check is at or before now_ms,
     * earliest first. attempt_id 0 means any attempt. Free with
     * store_free_due. */
    int (*find_due)(struct store *store, const char *app, int64_t attempt_id,
                    int64_t now_ms, int limit, struct due_step **steps, int *count,
                    char **error);

    /* Returns the step's context JSON in *json (malloc'd; the caller frees). */
    int (*load_context)(struct store *store, int64_t step_id, char **json, char **error);

    /* Takes the right to check a WAITING step's precondition now: moves its
     * next check from at or before now_ms to next_check_ms in one
     * conditional write. Sets *taken to 0 when another executor took it
     * first, so that checks stay a cooldown apart across executors. */
    int (*lease_check)(struct store *store, int64_t step_id, int64_t now_ms,
                       int64_t next_check_ms, int *taken, char **error);

    /* Claims a WAITING step of a RUNNING attempt for executor_id in one
     * conditional write; with app_limit > 0, only while fewer than
     * app_limit steps of its application run. Sets *try_number to the new
     * try (>= 1), or to 0 when another executor claimed it first, the
     * attempt stopped or the limit was reached. */
    int (*claim)(struct store *store, int64_t step_id, int64_t executor_id, int64_t now_ms,
                 int app_limit, int *try_number, char **error);

    /* Returns the resources of an execution, by name (free with
     * store_free_resources). */
    int (*load_resources)(struct store *store, int64_t execution_id,
                          struct resource **resources, int *count, char **error);

    /* Returns the finished tries of a step, oldest first (free with
     * store_free_tries). */
    int (*step_tries)(struct store *store, int64_t step_id, struct step_try **tries,
                      int *count, char **error);

    /* Applies count updates in one transaction, counting down the
     * dependents of completed steps and moving attempts on: FAIL_PENDING
     * on a failure, FAILED when nothing of it runs any more, FINISHED (and
     * the execution COMPLETE) when every step is done. */
    int (*apply_updates)(struct store *store, struct step_update *updates, int count,
                         char **error);

    /* Sets *status to the attempt's status (malloc'd; the caller frees). */
    int (*attempt_status)(struct store *store, int64_t attempt_id, char **status,
                          char **error);

    /* Sets *has_work to 1 when a step of app is WAITING or RUNNING in a
     * running attempt (restricted to attempt_id unless it is 0). */
    int (*has_work)(struct store *store, const char *app, int64_t attempt_id, int *has_work,
                    char **error);

    /* Fills *report for execution_id, or for the newest execution when it is
     * 0. Free with store_free_status. */
    int (*status)(struct store *store, int64_t execution_id, struct status_report *report,
                  char **error);

    /* Sets *execution_id to the newest execution of app with scope (NULL:
     * without a scope), or fails naming them. */
    int (*find_execution)(struct store *store, const char *app, const char *scope,
                          int64_t *execution_id, char **error);

    /* The operator commands. Each checks that the state allows it, applies
     * all of its changes in one transaction or none, and describes them in
     * *report (free with store_free_changes). */
    int (*revert)(struct store *store, int64_t execution_id, const char *token, int downstream,
                  struct change_report *report, char **error);
    int (*complete)(struct store *store, int64_t execution_id, const char *token,
                    struct change_report *report, char **error);
    int (*shutdown)(struct store *store, int64_t execution_id, struct change_report *report,
                    char **error);
    int (*cancel)(struct store *store, int64_t execution_id, struct change_report *report,
                  char **error);

    /* Returns the running steps of executor_id whose execution was cancelled
     * (free the array with free). */
    int (*cancelled_steps)(struct store *store, int64_t executor_id,
                           struct cancelled_step **steps, int *count, char **error);

    /* Stores an event that the executor noticed itself (INTERNAL_ERROR),
     * with the deliveries to its subscribers. */
    int (*record_event)(struct store *store, const struct event_row *event, char **error);
    /* Returns the newest events that match filter, newest first. */
    int (*list_events)(struct store *store, const struct event_filter *filter,
                       struct event_row **rows, int *count, char **error);

    /* bgwf notify: subscribe app's events (a comma-separated list of types)
     * to a command or an action; list; remove. */
    int (*subscribe)(struct store *store, const char *app, const char *events,
                     const char *command, const char *action, int64_t *id, char **error);
    int (*list_subscriptions)(struct store *store, const char *app,
                              struct subscription_row **rows, int *count, char **error);
    int (*unsubscribe)(struct store *store, const char *app, int64_t id, char **error);

    /* Claims up to limit due deliveries of events of app for executor_id. */
    int (*claim_deliveries)(struct store *store, const char *app, int64_t executor_id,
                            int64_t now_ms, int limit, struct delivery **deliveries,
                            int *count, char **error);
    /* Records how a claimed delivery went: delivered, to be tried again at
     * retry_at_ms (when not 0), or failed for good. */
    int (*finish_delivery)(struct store *store, int64_t delivery_id, int delivered,
                           int64_t retry_at_ms, const char *error_text, char **error);

    /* Listings for the commands. Free the arrays with the matching
     * store_free_* function. */
    int (*list_executions)(struct store *store, const struct execution_filter *filter,
                           struct execution_row **rows, int *count, char **error);
    int (*list_attempts)(struct store *store, int64_t execution_id, struct attempt_row **rows,
                         int *count, char **error);
    int (*list_executors)(struct store *store, struct executor_row **rows, int *count,
                          char **error);
    int (*attempt_progress)(struct store *store, int64_t attempt_id,
                            struct attempt_progress *progress, char **error);
    /* Edges between the steps of report->attempt_id, as indexes into
     * report->steps (free with free). */
    int (*step_edges)(struct store *store, const struct status_report *report,
                      struct step_edge **edges, int *count, char **error);
};

struct store {
    const struct store_ops *ops;
};

/* Opens the store named by location: a postgresql:// or postgres:// URL
 * (libpq's URI syntax) for the PostgreSQL backend, otherwise a path to an
 * SQLite file. Either is created with the current schema when it has none.
 * Returns NULL and sets *error on failure. */
struct store *store_open(const char *location, char **error);

/* Returns 1 when location is a postgresql:// or postgres:// URL. */
int store_is_postgresql(const char *location);

void store_free_due(struct due_step *steps, int count);
void store_free_dead(struct dead_executor *dead, int count);
void store_free_status(struct status_report *report);
void store_free_outcome(struct submit_outcome *outcome);
void store_free_tries(struct step_try *tries, int count);
void store_free_resources(struct resource *resources, int count);
void store_free_event(struct event_row *event);
void store_free_events(struct event_row *rows, int count);
void store_free_subscriptions(struct subscription_row *rows, int count);
void store_free_deliveries(struct delivery *deliveries, int count);
void store_free_changes(struct change_report *report);
void store_free_executions(struct execution_row *rows, int count);
void store_free_attempts(struct attempt_row *rows, int count);
void store_free_executors(struct executor_row *rows, int count);

/* Opens the SQLite backend; used by store_open. */
struct store *store_sqlite_open(const char *path, char **error);

/* Opens the PostgreSQL backend (built only with libpq); used by store_open.
 * Connects to url and creates the schema in a database that has none. */
struct store *store_pg_open(const char *url, char **error);

#endif
