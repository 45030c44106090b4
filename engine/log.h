/* One leveled logger for the executor, its children and the commands. */
#ifndef BGWF_LOG_H
#define BGWF_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

enum log_format {
    LOG_FORMAT_TEXT,   /* "TIME LEVEL PID ROLE: key=value ... message" */
    LOG_FORMAT_JSON,   /* one object a line; leading key=value words become fields */
};

/* Sets how lines are written. */
void log_set_format(enum log_format format);

/* Sets the lowest level that is written; lower levels cost one comparison. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn" or "error" into *level; returns 0, or -1 on
 * an unknown name. */
int log_parse_level(const char *name, enum log_level *level);

/* Sets the role shown on every line ("executor", "step", "submit"); the
 * string must outlive all later log calls. */
void log_set_role(const char *role);

/* Writes one line to stderr: timestamp with milliseconds, level, pid, role,
 * then the printf-style message. Callers start the message with the ids in
 * play as key=value pairs. A warning or error identical to the previous
 * one within a minute is counted, and the count is written with the next
 * different one. */
void log_write(enum log_level level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

extern enum log_level log_threshold;

#define log_debug(...) do { if (log_threshold <= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_threshold <= LOG_INFO)  log_write(LOG_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_threshold <= LOG_WARN)  log_write(LOG_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
