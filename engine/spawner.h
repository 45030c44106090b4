/* The spawner: a small process, started fresh with exec, that forks the
 * children of steps for the executor.
 *
 * Fork cost and the copy-on-write faults after it grow with the forking
 * process's memory, and the executor keeps the database cache. So the
 * executor sends each loop turn's start requests to the spawner together.
 * The spawner forks from its own small warm Lua state and passes back each
 * child's pid and the read ends of its pipes. It reaps the children when
 * they end and reports their wait status. */
#ifndef BGWF_SPAWNER_H
#define BGWF_SPAWNER_H

#include <sys/types.h>

#include "runner.h"

/* The maximum number of runs in one reply of the spawner. */
#define SPAWNER_REPLY_MAX 64

struct spawner {
    pid_t pid;
    int request_fd;        /* executor end of the request socket */
    int exit_fd;           /* read end of the spawner's exit reports */
};

/* One child that ended, as the spawner reports it. */
struct spawner_exit {
    pid_t pid;
    int wait_status;
};

/* Records which program to run as the spawner, from the process's argv[0]
 * (resolved through PATH when it has no '/'). */
void spawner_set_program(const char *argv0);

/* Starts the spawner by running this program again as "bgwf __spawner",
 * with search_path for actions. Returns 0, or -1 with *error set. */
int spawner_start(struct spawner *spawner, const char *search_path, char **error);

/* Sends the spawner one request to start runs[0] to runs[count - 1], each
 * as runner_spawn would, without waiting for its reply. Returns 0, or -1
 * with *error set. */
int spawner_send(struct spawner *spawner, struct step_run **runs, int count, char **error);

/* Reads one reply of the spawner, when one is waiting, for the oldest
 * requested runs: runs[0] to runs[count - 1] are those without a reply yet,
 * in request order. Each run that started gets its pid, report_fd,
 * output_fd and started_mono, and errors[i] NULL; for the others errors[i]
 * is the malloc'd reason. Returns the number of runs the reply covers (at most
 * SPAWNER_REPLY_MAX), 0 when no reply is waiting, -1 when the spawner is gone,
 * or -2 when its reply names more runs than were requested. The spawner
 * replies to a request before it reports the exit of any child it
 * started, so replies are read before exits. */
int spawner_read_reply(struct spawner *spawner, struct step_run **runs, int count, char **errors);

/* Reads the exit reports that are waiting, at most max of them, into exits.
 * Returns their count, 0 when none is waiting, or -1 when the spawner is
 * gone. */
int spawner_read_exits(struct spawner *spawner, struct spawner_exit *exits, int max);

/* Stops the spawner and waits for it. */
void spawner_stop(struct spawner *spawner);

/* The spawner process: "bgwf __spawner REQUEST_FD EXIT_FD SEARCH_PATH".
 * Returns its exit status. */
int spawner_main(int argc, char **argv);

#endif
