/* One leveled logger for the executor, its children and the commands. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "json_text.h"
#include "log.h"
#include "strbuf.h"

/* An identical warning or error within this many ms of the last one is
 * counted instead of written. */
#define REPEAT_WINDOW_MS 60000

enum log_level log_threshold = LOG_INFO;

static const char *current_role = "bgwf";
static enum log_format current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* The last warning or error written, to rate-limit repeats. */
static struct {
    char text[1024];
    enum log_level level;
    long long first_ms;
    int repeats;
} last_problem;

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

void log_set_format(enum log_format format)
{
    current_format = format;
}

void log_set_role(const char *role)
{
    current_role = role;
}

static int is_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || c == '_';
}

/* Appends message as JSON members: leading key=value words become fields,
 * the rest is "message". */
static void append_json_fields(struct strbuf *line, const char *message)
{
    const char *p = message;

    for (;;) {
        const char *key = p, *equals = p;
        while (is_key_char(*equals))
            equals++;
        if (equals == key || *equals != '=')
            break;
        const char *value = equals + 1, *end = value;
        while (*end && *end != ' ')
            end++;
        char *text = strbuf_printf("%.*s", (int)(end - value), value);
        strbuf_appendf(line, ",\"%.*s\":", (int)(equals - key), key);
        /* Ids and counts are numbers in JSON; everything else is a string. */
        size_t digits = strspn(text, "0123456789");
        if (digits > 0 && digits < 19 && text[digits] == '\0' && (text[0] != '0' || digits == 1))
            strbuf_appendf(line, "%s", text);
        else
            json_append_string(line, text);
        free(text);
        p = *end ? end + 1 : end;
    }
    strbuf_appendf(line, ",\"message\":");
    json_append_string(line, p);
}

static void emit(enum log_level level, const struct timeval *now, const char *message)
{
    struct strbuf line = STRBUF_INIT;
    char stamp[40];
    struct tm parts;

    localtime_r(&now->tv_sec, &parts);
    size_t used = strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &parts);
    snprintf(stamp + used, sizeof stamp - used, ".%03ld", (long)(now->tv_usec / 1000));

    if (current_format == LOG_FORMAT_JSON) {
        strbuf_appendf(&line, "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"role\":\"%s\"",
                       stamp, level_names[level], (int)getpid(), current_role);
        append_json_fields(&line, message);
        strbuf_append(&line, "}\n", 2);
    } else {
        /* A multi-line message (a traceback) stays on one line. */
        strbuf_appendf(&line, "%s %-5s %d %s: ", stamp, level_names[level], (int)getpid(),
                       current_role);
        for (const char *p = message; *p; p++) {
            if (*p == '\n')
                strbuf_append(&line, "\\n", 2);
            else if (*p != '\r')
                strbuf_append(&line, p, 1);
        }
        strbuf_append(&line, "\n", 1);
    }
    /* One write per line keeps lines whole when several processes share stderr. */
    ssize_t ignored = write(STDERR_FILENO, line.data, line.length);
    (void)ignored;
    strbuf_free(&line);
}

void log_write(enum log_level level, const char *format, ...)
{
    char message[4096];
    struct timeval now;
    va_list args;

    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    gettimeofday(&now, NULL);
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_usec / 1000;

    if (level >= LOG_WARN) {
        if (last_problem.level == level && now_ms - last_problem.first_ms < REPEAT_WINDOW_MS &&
            strncmp(last_problem.text, message, sizeof last_problem.text - 1) == 0) {
            last_problem.repeats++;
            return;
        }
        if (last_problem.repeats > 0) {
            char note[1200];
            snprintf(note, sizeof note, "the previous %s was repeated %d more times: %.1000s",
                     level_names[last_problem.level], last_problem.repeats, last_problem.text);
            emit(last_problem.level, &now, note);
        }
        /* Only the start of a long message is compared and kept. */
        snprintf(last_problem.text, sizeof last_problem.text, "%.1000s", message);
        last_problem.level = level;
        last_problem.first_ms = now_ms;
        last_problem.repeats = 0;
    }
    emit(level, &now, message);
}
