/* Running one claimed step in a forked child and collecting its outcome. */
#ifndef BGWF_RUNNER_H
#define BGWF_RUNNER_H

#include <stdint.h>
#include <sys/types.h>

#include <lua.h>

#include "frame.h"
#include "step_log.h"
#include "store.h"

enum run_outcome {
    OUTCOME_NONE,          /* no result frame yet */
    OUTCOME_SUCCESS,       /* execute returned */
    OUTCOME_FAILURE,       /* execute or the precondition raised; failure contains the message */
    OUTCOME_READY,         /* the precondition returned true */
    OUTCOME_NOT_READY,     /* the precondition returned false */
};

enum run_kind {
    RUN_CHECK,             /* the child runs the action's precondition */
    RUN_EXECUTE,           /* the child runs execute(step, ctx) */
    RUN_NOTIFY,            /* the child delivers an event: a command, or an action's
                            * execute with the event as its context */
};

/* One step running in a child process, owned by the executor. */
struct step_run {
    struct due_step step;  /* owned; freed by runner_release */
    enum run_kind kind;
    char *context;         /* the step's context JSON; owned */
    int64_t executor_id;
    int try_number;
    pid_t pid;             /* also the child's process group id */
    int report_fd;         /* read end of the child's report pipe; -1 when closed */
    int report_corrupt;    /* the child wrote something that is not a frame */
    int output_fd;         /* read end of the child's stdout and stderr; -1 when closed */
    struct step_log log;   /* where the child's output and log lines go */
    struct frame_reader reader;
    char *message;         /* latest status message; NULL before the first */
    int message_unsaved;   /* 1 while message is newer than the store's copy */
    enum run_outcome outcome;
    char *failure;
    int exited;            /* 1 once waitpid reported the child */
    int wait_status;
    char *kill_reason;     /* set when the executor stopped the child on purpose */
    int64_t kill_deadline_mono; /* after runner_terminate: when SIGKILL follows; 0: none */
    int64_t timeout_mono;  /* when the child's time is up; 0: no limit */
    struct resource *snapshot;  /* the execution's resources, given to the child */
    int snapshot_count;
    struct resource *written;   /* resources the child set, newest value per name */
    int written_count;
    int launch_pending;    /* claimed or leased in a batch not yet committed */
    int spawn_pending;     /* requested from the spawner, no reply yet */
    int64_t delivery_id;   /* RUN_NOTIFY: the delivery being made */
    int64_t event_id;      /* RUN_NOTIFY: the event it delivers */
    int delivery_try;
    char *command;         /* RUN_NOTIFY: shell command to run, or NULL for an action */
    char *event_type;      /* RUN_NOTIFY: the event's type */
    char *event_step;      /* RUN_NOTIFY: the token of the step it is about, or NULL */
    int64_t started_mono;
};

/* Forks a child that runs the precondition or execute (run->kind) of the
 * step's action with run->context and reports over a pipe (for RUN_NOTIFY
 * with run->command, it runs the command under /bin/sh with run->context on
 * its stdin instead); its stdout and
 * stderr go over a second pipe into run->log, which the caller prepared
 * with step_log_init. Its stdin is /dev/null. In the child,
 * every descriptor above 2 except the pipe is closed, so it never uses the
 * executor's store connection, and with run->step.max_memory its address
 * space is limited. Returns 0 with run->pid and run->report_fd set, or -1
 * with *error set. */
int runner_spawn(lua_State *L, struct step_run *run, char **error);

/* Reads and handles the frames the child has sent, up to 256 KiB. Returns 1
 * when the pipe reached end of file or failed (the descriptor is then
 * closed), 2 when more may be waiting, else 0. */
int runner_read(struct step_run *run);

/* Copies whatever the child wrote to stdout or stderr into its step log. */
void runner_read_output(struct step_run *run);

/* Called once the child was reaped: drains the pipe, and returns the
 * malloc'd failure text, or NULL when the step completed (RUN_EXECUTE) or
 * the precondition returned (RUN_CHECK, and run->outcome has its result). */
char *runner_finish(struct step_run *run);

/* Empties run for its next child (after a check, the execute): keeps the
 * step, context and try, and closes what the last child left. */
void runner_reset(struct step_run *run, enum run_kind kind);

/* Kills the child's whole process group with SIGKILL and records why. */
void runner_kill(struct step_run *run, const char *reason);

/* Sends SIGTERM to the child's process group, records why, and sets the
 * time after which runner_enforce_deadline sends SIGKILL. */
void runner_terminate(struct step_run *run, const char *reason, int grace_ms);

/* Sends SIGKILL when a runner_terminate grace period is over. */
void runner_enforce_deadline(struct step_run *run, int64_t now_mono);

/* Frees what run owns and closes its pipe. */
void runner_release(struct step_run *run);

#endif
