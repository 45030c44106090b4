/* fork_baseline: the cost floor of running steps as processes. Forks
 * COUNT children that call _exit(0) at once, keeping IN_FLIGHT of them
 * alive at a time and reaping each with waitpid(), from a parent that first
 * allocates and touches HEAP_KB kilobytes (0: a small parent).
 *
 * Usage: fork_baseline COUNT IN_FLIGHT HEAP_KB
 * Prints one line: wall_s, children_per_s, and the parent's and children's
 * CPU seconds from getrusage(). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void reap_one(void)
{
    int status;

    if (waitpid(-1, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork_baseline: a child failed or waitpid failed\n");
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fork_baseline COUNT IN_FLIGHT HEAP_KB\n");
        return 2;
    }
    long count = atol(argv[1]), in_flight = atol(argv[2]), heap_kb = atol(argv[3]);
    if (count < 1 || in_flight < 1 || heap_kb < 0) {
        fprintf(stderr, "fork_baseline: COUNT and IN_FLIGHT must be >= 1, HEAP_KB >= 0\n");
        return 2;
    }

    /* Touching every page makes it resident, so fork() copies its page
     * table entries as it would for a parent of that size. */
    char *heap = NULL;
    if (heap_kb > 0) {
        heap = malloc((size_t)heap_kb * 1024);
        if (heap == NULL) {
            fprintf(stderr, "fork_baseline: allocating %ld kB failed\n", heap_kb);
            return 1;
        }
        memset(heap, 1, (size_t)heap_kb * 1024);
    }

    double start = now_seconds();
    long started = 0, running = 0;
    while (started < count) {
        if (running == in_flight) {
            reap_one();
            running--;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork_baseline: fork failed");
            return 1;
        }
        if (pid == 0)
            _exit(0);
        started++;
        running++;
    }
    while (running > 0) {
        reap_one();
        running--;
    }
    double wall = now_seconds() - start;

    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    printf("wall_s=%.4f children_per_s=%.1f self_cpu_s=%.3f children_cpu_s=%.3f heap_kb=%ld "
           "checksum=%d\n",
           wall, (double)count / wall, seconds(self.ru_utime) + seconds(self.ru_stime),
           seconds(children.ru_utime) + seconds(children.ru_stime), heap_kb,
           heap ? heap[heap_kb * 512] : 0);
    free(heap);
    return 0;
}
