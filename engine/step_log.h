/* Per-step log files: everything a step's process writes, one timestamped
 * line at a time, capped in size, under LOG_DIR/APP/EXECUTION/ATTEMPT/. */
#ifndef BGWF_STEP_LOG_H
#define BGWF_STEP_LOG_H

#include <stddef.h>
#include <stdint.h>

/* Maximum length of a line kept whole; longer output is split at it. */
#define STEP_LOG_LINE_MAX 16384

struct step_log {
    char *path;            /* the file, opened on the first line */
    char *header;          /* written before the first line */
    int fd;                /* -1 until opened */
    int64_t written;       /* bytes this try wrote */
    int64_t max_bytes;     /* after this many, lines are dropped; 0: no cap */
    int capped;
    char *partial;         /* STEP_LOG_LINE_MAX bytes, allocated on first use */
    size_t partial_length;
};

/* Returns the malloc'd folder of an attempt's logs. */
char *step_log_folder(const char *log_dir, const char *app, int64_t execution_id,
                      int64_t attempt_id);

/* Returns the malloc'd default log folder for a database path: a
 * "bgwf-logs" folder beside the database file, or in the current folder
 * for a database URL (postgresql://...). */
char *step_log_default_dir(const char *db_path);

/* Prepares log (nothing is created until the first line). header is the
 * line that opens this try's part of the file. */
void step_log_init(struct step_log *log, const char *log_dir, const char *app,
                   int64_t execution_id, int64_t attempt_id, const char *token,
                   const char *header, int64_t max_bytes);

/* Appends raw output: complete lines are written with a timestamp, a
 * trailing partial line waits for its end. Returns 0, or -1 with *error set
 * (malloc'd) when the file cannot be created or written. */
int step_log_write(struct step_log *log, const char *data, size_t length, char **error);

/* Writes data as one whole line (step:log and native actions' lines). */
int step_log_line(struct step_log *log, const char *data, size_t length, char **error);

/* Writes the pending partial line, closes the file and frees log. */
void step_log_close(struct step_log *log);

#endif
