/* bgwf logs: the output of one step, or of every step of an attempt
 * interleaved by time. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "step_log.h"
#include "strbuf.h"

static const char logs_help[] =
    "Usage: bgwf logs (EXECUTION_ID | --app NAME [--scope S]) [STEP] [options]\n"
    "\n"
    "Prints what the steps of the execution's newest attempt wrote (print,\n"
    "io.write, io.stderr, step:log, and the output of the processes they ran),\n"
    "each line with its time. With STEP, that step's log; without, every step's\n"
    "lines interleaved by time and prefixed with the step's token.\n"
    "\n"
    "  --tail N           only the last N lines\n"
    "  --follow           keep printing new lines until the attempt ends\n"
    "  --log-dir DIR      where the executors keep logs (default: bgwf-logs beside\n"
    "                     the database)\n"
    "  --app NAME         instead of EXECUTION_ID: the newest execution of NAME\n"
    "  --scope S          with --app: the newest execution of NAME for scope S\n"
    CLI_COMMON_HELP;

/* One log file being read, with what was already printed. */
struct log_source {
    char *token;
    char *path;
    long offset;
    char *pending;          /* a line read without its newline yet */
};

struct log_line {
    const char *token;
    char *text;
    long order;             /* position among the lines read, for a stable sort */
};

/* Reads the complete lines added to source since the last call. */
static void read_new_lines(struct log_source *source, struct log_line **lines, int *count)
{
    FILE *file = fopen(source->path, "r");
    char *line = NULL;
    size_t capacity = 0;
    ssize_t length;

    if (file == NULL)
        return;
    fseek(file, source->offset, SEEK_SET);
    while ((length = getline(&line, &capacity, file)) > 0) {
        if (line[length - 1] != '\n')
            break;
        source->offset += length;
        line[length - 1] = '\0';
        *lines = realloc(*lines, (size_t)(*count + 1) * sizeof **lines);
        (*lines)[*count] = (struct log_line){ source->token, strbuf_dup(line), *count };
        (*count)++;
    }
    free(line);
    fclose(file);
}

/* Lines start with "YYYY-MM-DD HH:MM:SS.mmm ", so comparing the first 23
 * bytes orders them by time. */
static int by_time(const void *left, const void *right)
{
    const struct log_line *a = left, *b = right;
    int rc = strncmp(a->text, b->text, 23);

    if (rc != 0)
        return rc;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void print_lines(struct log_line *lines, int count, int with_tokens, int64_t tail)
{
    int start = tail >= 0 && count > tail ? count - (int)tail : 0;

    if (with_tokens)
        qsort(lines, (size_t)count, sizeof *lines, by_time);
    for (int i = start; i < count; i++) {
        if (with_tokens)
            printf("%s | %s\n", lines[i].token, lines[i].text);
        else
            printf("%s\n", lines[i].text);
    }
    for (int i = 0; i < count; i++)
        free(lines[i].text);
    fflush(stdout);
}

/* Lists the .log files of folder as sources; only token's when given. */
static int list_sources(const char *folder, const char *token, struct log_source **sources,
                        int *count)
{
    DIR *dir = opendir(folder);
    struct dirent *entry;

    *sources = NULL;
    *count = 0;
    if (dir == NULL)
        return errno == ENOENT ? 0 : -1;
    while ((entry = readdir(dir)) != NULL) {
        size_t length = strlen(entry->d_name);
        if (length < 5 || strcmp(entry->d_name + length - 4, ".log") != 0)
            continue;
        char *name = strbuf_printf("%.*s", (int)(length - 4), entry->d_name);
        if (token && strcmp(name, token) != 0) {
            free(name);
            continue;
        }
        *sources = realloc(*sources, (size_t)(*count + 1) * sizeof **sources);
        (*sources)[(*count)++] = (struct log_source){
            name, strbuf_printf("%s/%s", folder, entry->d_name), 0, NULL,
        };
    }
    closedir(dir);
    return 0;
}

static void free_sources(struct log_source *sources, int count)
{
    for (int i = 0; i < count; i++) {
        free(sources[i].token);
        free(sources[i].path);
        free(sources[i].pending);
    }
    free(sources);
}

static int attempt_running(struct store *store, int64_t attempt_id)
{
    char *status = NULL, *error = NULL;
    int running = 0;

    if (store->ops->attempt_status(store, attempt_id, &status, &error) == 0)
        running = strcmp(status, "RUNNING") == 0 || strstr(status, "PENDING") != NULL;
    free(status);
    free(error);
    return running;
}

int cmd_logs(int argc, char **argv)
{
    static const struct option options[] = {
        { "app", required_argument, NULL, 'a' },
        { "scope", required_argument, NULL, 's' },
        { "tail", required_argument, NULL, 't' },
        { "follow", no_argument, NULL, 'f' },
        { "log-dir", required_argument, NULL, 'l' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    const char *app = NULL, *scope = NULL, *log_dir = NULL, *token = NULL;
    int64_t tail = -1, execution_id;
    int follow = 0, option, rc;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (option) {
        case 'a':
            app = optarg;
            break;
        case 's':
            scope = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, 0, 100000000, &tail) != 0)
                return cli_usage_error("logs", "invalid --tail '%s': use a whole number >= 0",
                                       optarg);
            break;
        case 'f':
            follow = 1;
            break;
        case 'l':
            log_dir = optarg;
            break;
        default:
            rc = cli_common_option("logs", option, optarg, &common, logs_help);
            if (rc == -1)
                return cli_bad_option("logs", argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    int positional = argc - optind, needed = app ? 0 : 1;
    if (positional < needed || positional > needed + 1)
        return cli_usage_error("logs", "expected EXECUTION_ID (or --app NAME) and an optional "
                               "STEP");
    if (scope && !app)
        return cli_usage_error("logs", "--scope needs --app");
    const char *id_text = app ? NULL : argv[optind];
    if (positional > needed)
        token = argv[optind + needed];

    struct store *store = cli_open_existing_store(&common);
    if (store == NULL)
        return EXIT_FAILED;
    rc = cli_resolve_execution("logs", store, id_text, app, scope, &execution_id);
    struct status_report report;
    char *error = NULL;
    if (rc == 0 && store->ops->status(store, execution_id, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        rc = EXIT_FAILED;
    }
    if (rc != 0) {
        store->ops->close(store);
        return rc;
    }
    if (token) {
        int known = 0;
        for (int i = 0; i < report.step_count && !known; i++)
            known = strcmp(report.steps[i].token, token) == 0;
        if (!known) {
            cli_error("execution %lld has no step '%s' in attempt %lld: see 'bgwf show %lld' "
                      "for its steps", (long long)execution_id, token,
                      (long long)report.attempt_id, (long long)execution_id);
            store_free_status(&report);
            store->ops->close(store);
            return EXIT_FAILED;
        }
    }

    char *default_dir = step_log_default_dir(common.db);
    char *folder = step_log_folder(log_dir ? log_dir : default_dir, report.app,
                                   report.execution_id, report.attempt_id);
    int64_t attempt_id = report.attempt_id;
    store_free_status(&report);

    struct log_source *sources = NULL;
    int source_count = 0;
    rc = EXIT_OK;
    for (int round = 0;; round++) {
        struct log_line *lines = NULL;
        int line_count = 0;
        int running = follow && attempt_running(store, attempt_id);

        /* Step files appear while the attempt runs; those already read
         * keep their offsets. */
        struct log_source *listed = NULL;
        int listed_count = 0;
        if (list_sources(folder, token, &listed, &listed_count) != 0) {
            cli_error("reading the log folder %s failed: %s", folder, strerror(errno));
            rc = EXIT_FAILED;
            break;
        }
        for (int i = 0; i < listed_count; i++)
            for (int j = 0; j < source_count; j++)
                if (strcmp(listed[i].token, sources[j].token) == 0)
                    listed[i].offset = sources[j].offset;
        free_sources(sources, source_count);
        sources = listed;
        source_count = listed_count;
        if (round == 0 && source_count == 0 && !follow) {
            if (token)
                fprintf(stderr, "bgwf: step '%s' has written no output in attempt %lld\n", token,
                        (long long)attempt_id);
            else
                fprintf(stderr, "bgwf: no step of attempt %lld has written output (logs are "
                        "kept in %s)\n", (long long)attempt_id, folder);
        }
        for (int i = 0; i < source_count; i++)
            read_new_lines(&sources[i], &lines, &line_count);
        print_lines(lines, line_count, token == NULL, round == 0 ? tail : -1);
        free(lines);
        if (!running)
            break;
        struct timespec pause = { 0, 200 * 1000000 };
        nanosleep(&pause, NULL);
    }
    free_sources(sources, source_count);
    free(folder);
    free(default_dir);
    store->ops->close(store);
    return rc;
}
