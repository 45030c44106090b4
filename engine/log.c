/* One leveled logger for the executor, its children and the commands. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

enum log_level log_threshold = LOG_INFO;

static const char *current_role = "bgwf";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

int log_parse_level(const char *name, enum log_level *level)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_role(const char *role)
{
    current_role = role;
}

void log_write(enum log_level level, const char *format, ...)
{
    char line[4096];
    struct timeval now;
    struct tm parts;
    size_t used;
    va_list args;

    gettimeofday(&now, NULL);
    localtime_r(&now.tv_sec, &parts);
    used = strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &parts);
    used += (size_t)snprintf(line + used, sizeof line - used, ".%03ld %-5s %d %s: ",
                             (long)(now.tv_usec / 1000), level_names[level],
                             (int)getpid(), current_role);

    va_start(args, format);
    int written = vsnprintf(line + used, sizeof line - used, format, args);
    va_end(args);
    if (written < 0)
        written = 0;
    used += (size_t)written;
    if (used > sizeof line - 2)
        used = sizeof line - 2;
    line[used++] = '\n';

    /* One write per line keeps lines whole when several processes share stderr. */
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
}
