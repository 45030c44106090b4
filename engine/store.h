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

/* One step of a workflow being submitted. deps index into the same array. */
struct submit_step {
    const char *token;
    const char *action;
    const char *context;   /* JSON text */
    int64_t cooldown_ms;
    int dep_count;
    int *deps;
};

struct submit_request {
    const char *app;
    const char *scope;     /* NULL: no scope */
    int step_count;
    struct submit_step *steps;
};

/* A step that is ready and whose precondition check is due. */
struct due_step {
    int64_t step_id;
    int64_t attempt_id;
    int64_t execution_id;
    int64_t cooldown_ms;
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
    int lost;              /* out */
};

/* An executor that stopped heartbeating and whose steps were failed. */
struct dead_executor {
    int64_t id;
    char *host;
    int pid;
    int failed_steps;
};

struct status_step {
    char *token;
    char *action;
    char *status;
    char *message;         /* NULL when unset */
    char *error;           /* NULL unless FAILED */
    int64_t executor_id;   /* 0 when never claimed */
    int try_number;
    int64_t started_at;    /* 0 when never started */
    int64_t ended_at;      /* 0 when not ended */
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

    /* Stores the whole workflow in one transaction: a new execution, its
     * first attempt RUNNING, every step WAITING. Fails, storing nothing,
     * when an attempt of (app, scope) is still running. */
    int (*submit)(struct store *store, const struct submit_request *request,
                  int64_t *execution_id, int64_t *attempt_id, char **error);

    /* Registers a RUNNING executor and returns its id. apps is for display. */
    int (*executor_register)(struct store *store, const char *host, int pid,
                             const char *apps, int64_t now_ms, int64_t *executor_id,
                             char **error);

    /* Stamps the executor's heartbeat. *revived is set to 1 when the executor
     * had been declared dead and is RUNNING again from now on. */
    int (*executor_heartbeat)(struct store *store, int64_t executor_id, int64_t now_ms,
                              int *revived, char **error);

    /* Marks the executor STOPPED. */
    int (*executor_stop)(struct store *store, int64_t executor_id, int64_t now_ms,
                         char **error);

    /* Declares dead every RUNNING executor whose heartbeat is older than
     * now_ms - timeout_ms, fails its RUNNING steps with a message naming it,
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

    /* Moves the step's next precondition check to next_check_ms. */
    int (*defer)(struct store *store, int64_t step_id, int64_t next_check_ms, char **error);

    /* Claims a WAITING step of a RUNNING attempt for executor_id in one
     * conditional write. Sets *try_number to the new try (>= 1), or to 0
     * when another executor claimed it first or the attempt stopped. */
    int (*claim)(struct store *store, int64_t step_id, int64_t executor_id, int64_t now_ms,
                 int *try_number, char **error);

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
};

struct store {
    const struct store_ops *ops;
};

/* Opens the store named by location: a path to an SQLite file (created with
 * the current schema when missing). Returns NULL and sets *error on failure. */
struct store *store_open(const char *location, char **error);

void store_free_due(struct due_step *steps, int count);
void store_free_dead(struct dead_executor *dead, int count);
void store_free_status(struct status_report *report);

/* Opens the SQLite backend; used by store_open. */
struct store *store_sqlite_open(const char *path, char **error);

#endif
