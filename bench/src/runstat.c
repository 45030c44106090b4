/* runstat: runs a command and prints, on one line of key=value pairs, its
 * wall time, its own CPU time, the CPU time of the children it reaped, and
 * its peak resident set size.
 *
 * The split between the command's own CPU time and its children's is read
 * from /proc/PID/stat while the command is a zombie (waitid with WNOWAIT),
 * so it covers the whole run. VmHWM is sampled from /proc/PID/status every
 * interval, because a zombie no longer has a memory map.
 *
 * Usage: runstat [-t TIMEOUT_S] [-i INTERVAL_MS] [-p PIDFILE] [-o OUTPUT] -- COMMAND...
 * The line goes to OUTPUT (default standard output); PIDFILE receives the
 * command's process id as soon as it starts.
 * Exit status: the command's, 124 when it timed out, 125 on a usage error. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
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

/* Reads a "Name:   N kB" line of /proc/PID/status. Returns -1 when the line is absent. */
static long read_status_kb(pid_t pid, const char *name)
{
    char path[64], line[256];
    size_t length = strlen(name);
    long value = -1;
    FILE *file;

    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    file = fopen(path, "r");
    if (file == NULL)
        return -1;
    while (fgets(line, sizeof line, file))
        if (strncmp(line, name, length) == 0 && line[length] == ':') {
            value = strtol(line + length + 1, NULL, 10);
            break;
        }
    fclose(file);
    return value;
}

/* Reads utime, stime, cutime and cstime (fields 14 to 17, in clock ticks)
 * from /proc/PID/stat. */
static int read_times(pid_t pid, unsigned long long ticks[4])
{
    char path[64], buffer[4096];
    FILE *file;
    size_t count;
    char *cursor;

    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    file = fopen(path, "r");
    if (file == NULL)
        return -1;
    count = fread(buffer, 1, sizeof buffer - 1, file);
    fclose(file);
    buffer[count] = '\0';
    /* The command name (field 2) may contain spaces, so the fields after it
     * are counted from the last ')'. */
    cursor = strrchr(buffer, ')');
    if (cursor == NULL)
        return -1;
    cursor += 2;
    for (int field = 3; field < 14; field++) {
        cursor = strchr(cursor, ' ');
        if (cursor == NULL)
            return -1;
        cursor++;
    }
    return sscanf(cursor, "%llu %llu %llu %llu", &ticks[0], &ticks[1], &ticks[2],
                  &ticks[3]) == 4 ? 0 : -1;
}

int main(int argc, char **argv)
{
    double timeout_s = 0, interval_ms = 50;
    const char *pidfile = NULL, *output_path = NULL;
    int option;

    while ((option = getopt(argc, argv, "+t:i:p:o:")) != -1) {
        switch (option) {
        case 't':
            timeout_s = atof(optarg);
            break;
        case 'i':
            interval_ms = atof(optarg);
            break;
        case 'p':
            pidfile = optarg;
            break;
        case 'o':
            output_path = optarg;
            break;
        default:
            fprintf(stderr, "usage: runstat [-t TIMEOUT_S] [-i INTERVAL_MS] [-p PIDFILE] "
                            "[-o OUTPUT] -- COMMAND...\n");
            return 125;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "runstat: missing the command to run\n");
        return 125;
    }

    /* SIGCHLD stays blocked so that sigtimedwait() below returns as soon as
     * the command ends, not at the end of a sampling interval. */
    sigset_t child_signal, previous_mask;
    sigemptyset(&child_signal);
    sigaddset(&child_signal, SIGCHLD);
    sigprocmask(SIG_BLOCK, &child_signal, &previous_mask);

    double start = now_seconds();
    pid_t pid = fork();
    if (pid < 0) {
        perror("runstat: fork failed");
        return 125;
    }
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &previous_mask, NULL);
        execvp(argv[optind], argv + optind);
        fprintf(stderr, "runstat: cannot run %s: %s\n", argv[optind], strerror(errno));
        _exit(127);
    }
    if (pidfile) {
        FILE *file = fopen(pidfile, "w");
        if (file) {
            fprintf(file, "%d\n", (int)pid);
            fclose(file);
        }
    }

    long hwm_kb = 0;
    int timed_out = 0;
    struct timespec pause = { 0, (long)(interval_ms * 1e6) };
    for (;;) {
        siginfo_t info;

        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == pid)
            break;
        long sample = read_status_kb(pid, "VmHWM");
        if (sample > hwm_kb)
            hwm_kb = sample;
        if (timeout_s > 0 && now_seconds() - start > timeout_s && !timed_out) {
            fprintf(stderr, "runstat: %s timed out after %.0f s; killing it\n", argv[optind],
                    timeout_s);
            kill(pid, SIGTERM);
            sleep(1);
            kill(pid, SIGKILL);
            timed_out = 1;
        }
        sigtimedwait(&child_signal, NULL, &pause);
    }
    double wall = now_seconds() - start;

    unsigned long long ticks[4] = { 0, 0, 0, 0 };
    double hz = (double)sysconf(_SC_CLK_TCK);
    int have_times = read_times(pid, ticks) == 0;
    struct rusage usage;
    int status = 0;
    wait4(pid, &status, 0, &usage);

    FILE *output = output_path ? fopen(output_path, "w") : stdout;
    if (output == NULL) {
        fprintf(stderr, "runstat: cannot write %s: %s\n", output_path, strerror(errno));
        output = stdout;
    }
    fprintf(output, "wall_s=%.4f self_user_s=%.2f self_sys_s=%.2f children_user_s=%.2f "
            "children_sys_s=%.2f hwm_kb=%ld maxrss_kb=%ld times_ok=%d\n",
            wall, ticks[0] / hz, ticks[1] / hz, ticks[2] / hz, ticks[3] / hz, hwm_kb,
            usage.ru_maxrss, have_times);
    fflush(output);
    if (output != stdout)
        fclose(output);
    if (timed_out)
        return 124;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}
