/* Per-step log files: everything a step's process writes, one timestamped
 * line at a time, capped in size, under LOG_DIR/APP/EXECUTION/ATTEMPT/. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "step_log.h"
#include "strbuf.h"

char *step_log_folder(const char *log_dir, const char *app, int64_t execution_id,
                      int64_t attempt_id)
{
    return strbuf_printf("%s/%s/%lld/%lld", log_dir, app, (long long)execution_id,
                         (long long)attempt_id);
}

char *step_log_default_dir(const char *db_path)
{
    const char *slash = strrchr(db_path, '/');
    char cwd[4096];

    /* A database URL has no folder: the logs go under the current one. */
    if (strstr(db_path, "://") != NULL)
        slash = NULL;
    else if (db_path[0] == '/')
        return strbuf_printf("%.*s/bgwf-logs", (int)(slash - db_path), db_path);
    /* An absolute folder, so that executors and bgwf logs started from
     * other folders agree. */
    if (getcwd(cwd, sizeof cwd) == NULL)
        strcpy(cwd, ".");
    if (slash == NULL)
        return strbuf_printf("%s/bgwf-logs", cwd);
    return strbuf_printf("%s/%.*s/bgwf-logs", cwd, (int)(slash - db_path), db_path);
}

/* Creates every missing folder of path, readable by the owner only. */
static int make_folders(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

void step_log_init(struct step_log *log, const char *log_dir, const char *app,
                   int64_t execution_id, int64_t attempt_id, const char *token,
                   const char *header, int64_t max_bytes)
{
    char *folder = step_log_folder(log_dir, app, execution_id, attempt_id);

    memset(log, 0, sizeof *log);
    log->path = strbuf_printf("%s/%s.log", folder, token);
    log->header = strbuf_dup(header);
    log->fd = -1;
    log->max_bytes = max_bytes;
    free(folder);
}

static int open_log(struct step_log *log, char **error)
{
    char *folder = strbuf_dup(log->path);

    *strrchr(folder, '/') = '\0';
    if (make_folders(folder) != 0) {
        int saved = errno;
        *error = strbuf_printf("creating the log folder %s failed: %s", folder, strerror(saved));
        free(folder);
        return -1;
    }
    free(folder);
    log->fd = open(log->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (log->fd < 0) {
        int saved = errno;
        *error = strbuf_printf("opening the step log %s failed: %s", log->path, strerror(saved));
        return -1;
    }
    return 0;
}

/* Writes "TIMESTAMP text\n", or the cap marker once the cap is reached. */
static int write_line(struct step_log *log, const char *text, size_t length, char **error)
{
    char stamp[40];
    struct timeval now;
    struct tm parts;
    struct strbuf line = STRBUF_INIT;

    if (log->capped)
        return 0;
    if (log->fd < 0) {
        if (open_log(log, error) != 0)
            return -1;
        if (log->header)
            write_line(log, log->header, strlen(log->header), error);
    }
    gettimeofday(&now, NULL);
    localtime_r(&now.tv_sec, &parts);
    size_t used = strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &parts);
    snprintf(stamp + used, sizeof stamp - used, ".%03ld ", (long)(now.tv_usec / 1000));

    if (log->max_bytes > 0 && log->written + (int64_t)length > log->max_bytes) {
        strbuf_appendf(&line, "%s[bgwf: log capped at %lld bytes for this try; the rest of "
                       "its output was dropped]\n", stamp, (long long)log->max_bytes);
        log->capped = 1;
    } else {
        strbuf_append(&line, stamp, strlen(stamp));
        strbuf_append(&line, text, length);
        strbuf_append(&line, "\n", 1);
    }
    ssize_t written = write(log->fd, line.data, line.length);
    int saved = errno;
    log->written += (int64_t)line.length;
    strbuf_free(&line);
    if (written < 0) {
        *error = strbuf_printf("writing the step log %s failed: %s", log->path, strerror(saved));
        return -1;
    }
    return 0;
}

int step_log_line(struct step_log *log, const char *data, size_t length, char **error)
{
    return write_line(log, data, length, error);
}

int step_log_write(struct step_log *log, const char *data, size_t length, char **error)
{
    if (log->partial == NULL && (log->partial = malloc(STEP_LOG_LINE_MAX)) == NULL) {
        *error = strbuf_printf("logging step output failed: %s", strerror(ENOMEM));
        return -1;
    }
    while (length > 0) {
        const char *newline = memchr(data, '\n', length);
        size_t piece = newline ? (size_t)(newline - data) : length;
        size_t room = STEP_LOG_LINE_MAX - log->partial_length;

        if (piece >= room) {
            /* A line longer than the buffer is written in pieces. */
            memcpy(log->partial + log->partial_length, data, room);
            if (write_line(log, log->partial, STEP_LOG_LINE_MAX, error) != 0)
                return -1;
            log->partial_length = 0;
            data += room;
            length -= room;
            continue;
        }
        memcpy(log->partial + log->partial_length, data, piece);
        log->partial_length += piece;
        if (newline == NULL)
            return 0;
        if (write_line(log, log->partial, log->partial_length, error) != 0)
            return -1;
        log->partial_length = 0;
        data += piece + 1;
        length -= piece + 1;
    }
    return 0;
}

void step_log_close(struct step_log *log)
{
    char *error = NULL;

    if (log->partial_length > 0)
        write_line(log, log->partial, log->partial_length, &error);
    free(error);
    if (log->fd >= 0)
        close(log->fd);
    free(log->path);
    free(log->header);
    free(log->partial);
    memset(log, 0, sizeof *log);
    log->fd = -1;
}
