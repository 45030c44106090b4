/* The spawner: a small process, started fresh with exec, that forks the
 * children of steps for the executor.
 *
 * Fork cost and the copy-on-write faults after it grow with the forking
 * process's memory, and the executor keeps the database cache. So the
 * executor sends each start request to the spawner, which forks from its
 * own small warm Lua state, passes back the child's pid and the read ends
 * of its pipes, reaps the child when it ends and reports its wait status. */
#ifndef BGWF_SPAWNER_H
#define BGWF_SPAWNER_H

#include <sys/types.h>

#include "runner.h"

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

/* Asks the spawner to start run (as runner_spawn would) and fills run->pid,
 * run->report_fd, run->output_fd and run->started_mono. Returns 0, or -1
 * with *error set. */
int spawner_spawn(struct spawner *spawner, struct step_run *run, char **error);

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
