/* The state and functions that the files of the executor share: its state, and the functions that
 * start and finish steps and deliver notifications. Only executor*.c
 * include this. */
#ifndef BGWF_EXECUTOR_INTERNAL_H
#define BGWF_EXECUTOR_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include <lua.h>

#include "executor.h"
#include "runner.h"
#include "spawner.h"
#include "store.h"

/* How long a notification may run, how often it is tried, and the wait
 * before the second try (doubling after). */
#define DELIVERY_TIMEOUT_MS 60000
#define DELIVERY_TRIES 3
#define DELIVERY_BACKOFF_MS 5000

struct pending_update {
    struct step_update update;
    char *message;
    char *error;
    char *token;
    struct resource *resources;
    int resource_count;
};

struct executor {
    struct store *store;
    lua_State *L;
    const struct executor_config *config;
    int64_t id;
    char host[256];
    struct step_run *runs;         /* max_concurrent slots; pid 0 means free */
    int running;
    struct pending_update *updates;
    int update_count;
    int update_capacity;
    int stop_signals;
    int killed_steps;
    int store_failing;             /* 1 while queued updates cannot be written */
    struct spawner spawner;
    struct step_run **awaiting;    /* runs without a spawner reply yet, oldest first */
    int awaiting_count;
};

/* In executor.c: writes the queued updates, as a savepoint inside an open
 * batch. Returns their count and sets *written to the copies the store
 * marked (retried, lost), or returns -1 when the write failed. The updates
 * stay queued either way. */
int executor_write_updates(struct executor *executor, struct step_update **written);

/* In executor.c: drops the first count queued updates, which a commit
 * made durable, and logs the ones the store marked in written. */
void executor_forget_updates(struct executor *executor, struct step_update *written, int count);

/* In executor.c: queues a change to run's step for the next batch write. */
void executor_queue_update(struct executor *executor, enum step_update_kind kind,
                           struct step_run *run, const char *message, const char *error);

/* In executor_start.c: slots, the spawner, claims and finished children. */
struct step_run *executor_free_slot(struct executor *executor);
void executor_release_slot(struct step_run *run);
/* Asks the spawner to start the children of runs[0] to runs[count - 1]
 * (each for its run->kind) in one request, without waiting: each run
 * counts as running from now, and gets its pid when the reply is read.
 * A run whose child does not start is released, after a failure is
 * queued for an execute. */
void executor_spawn(struct executor *executor, struct step_run **runs, int count);
/* Reads the spawner's replies that are waiting. */
void executor_read_spawn_replies(struct executor *executor);
int executor_ensure_spawner(struct executor *executor);
void executor_finish_run(struct executor *executor, struct step_run *run);
void executor_handle_exits(struct executor *executor);
void executor_reap_children(struct executor *executor);
int executor_fill_slots(struct executor *executor);

/* In executor_notify.c: deliveries of events to subscribers. */
void executor_start_deliveries(struct executor *executor);
void executor_finish_delivery(struct executor *executor, struct step_run *run,
                              const char *failure);

#endif
