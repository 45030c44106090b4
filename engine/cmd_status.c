/* bgwf status: the steps of an execution's current attempt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cli.h"
#include "json_text.h"
#include "strbuf.h"

static const char status_help[] =
    "Usage: bgwf status [EXECUTION_ID | --app NAME [--scope S]] [--json] [options]\n"
    "\n"
    "Shows the execution (default: the newest of any application), its current\n"
    "attempt, and each step with its status, executor, try, duration and status\n"
    "message or error.\n"
    "\n"
    "  --app NAME         the newest execution of application NAME\n"
    "  --scope S          with --app: the newest execution of NAME for scope S\n"
    "  --json             print one JSON object: {\"execution\": {id, app, scope,\n"
    "                     status}, \"attempt\": {id, status}, \"steps\": [{token,\n"
    "                     action, status, message, error, executor, try,\n"
    "                     started_at, ended_at}]} (times in ms since the epoch;\n"
    "                     absent fields were never set)\n"
    CLI_COMMON_HELP;

static int64_t duration_ms(const struct status_step *step)
{
    if (step->started_at == 0)
        return -1;
    if (step->ended_at != 0)
        return step->ended_at - step->started_at;
    if (strcmp(step->status, "RUNNING") == 0)
        return clock_wall_ms() - step->started_at;
    return -1;
}

/* Returns the first line of text, at most max bytes, in a malloc'd string. */
static char *first_line(const char *text, size_t max)
{
    size_t length = strcspn(text, "\n");

    if (length > max)
        return strbuf_printf("%.*s...", (int)(max - 3), text);
    return strbuf_printf("%.*s", (int)length, text);
}

static void print_table(const struct status_report *report)
{
    int token_width = 5;

    printf("execution %lld  %s%s%s  %s  attempt %lld %s\n", (long long)report->execution_id,
           report->app, report->scope ? "  scope " : "", report->scope ? report->scope : "",
           report->execution_status, (long long)report->attempt_id, report->attempt_status);
    for (int i = 0; i < report->step_count; i++) {
        int length = (int)strlen(report->steps[i].token);
        if (length > token_width)
            token_width = length;
    }
    printf("%-*s  %-18s  %-8s  %-3s  %-9s  %s\n", token_width, "STEP", "STATUS", "EXECUTOR",
           "TRY", "DURATION", "MESSAGE");
    for (int i = 0; i < report->step_count; i++) {
        const struct status_step *step = &report->steps[i];
        char executor[24] = "-", duration[24] = "-";
        int64_t elapsed = duration_ms(step);
        const char *detail = "";
        if (step->error)
            detail = step->error;
        else if (step->message)
            detail = step->message;
        char *line = first_line(detail, 200);

        if (step->executor_id)
            snprintf(executor, sizeof executor, "%lld", (long long)step->executor_id);
        if (elapsed >= 0)
            snprintf(duration, sizeof duration, "%.2fs", (double)elapsed / 1000.0);
        printf("%-*s  %-18s  %-8s  %-3d  %-9s  %s\n", token_width, step->token, step->status,
               executor, step->try_number, duration, line);
        free(line);
    }
}

static void append_field(struct strbuf *out, const char *name, const char *value, int *first)
{
    if (value == NULL)
        return;
    strbuf_appendf(out, "%s\"%s\":", *first ? "" : ",", name);
    json_append_string(out, value);
    *first = 0;
}

static void append_number(struct strbuf *out, const char *name, int64_t value, int *first)
{
    strbuf_appendf(out, "%s\"%s\":%lld", *first ? "" : ",", name, (long long)value);
    *first = 0;
}

static void append_attempts(struct strbuf *out, const struct attempt_row *attempts, int count)
{
    strbuf_appendf(out, ",\"attempts\":[");
    for (int i = 0; i < count; i++) {
        strbuf_appendf(out, "%s{\"id\":%lld,\"status\":", i ? "," : "",
                       (long long)attempts[i].id);
        json_append_string(out, attempts[i].status);
        strbuf_appendf(out, ",\"steps\":%d,\"created_at\":%lld", attempts[i].step_count,
                       (long long)attempts[i].created_at);
        if (attempts[i].ended_at)
            strbuf_appendf(out, ",\"ended_at\":%lld", (long long)attempts[i].ended_at);
        strbuf_append(out, "}", 1);
    }
    strbuf_append(out, "]", 1);
}

static void print_json(const struct status_report *report, const struct attempt_row *attempts,
                       int attempt_count)
{
    struct strbuf out = STRBUF_INIT;
    int first = 1;

    strbuf_appendf(&out, "{\"execution\":{\"id\":%lld,\"app\":", (long long)report->execution_id);
    json_append_string(&out, report->app);
    strbuf_appendf(&out, ",\"scope\":");
    json_append_string(&out, report->scope);
    strbuf_appendf(&out, ",\"status\":");
    json_append_string(&out, report->execution_status);
    strbuf_appendf(&out, ",\"created_at\":%lld},\"attempt\":{\"id\":%lld,\"status\":",
                   (long long)report->created_at, (long long)report->attempt_id);
    json_append_string(&out, report->attempt_status);
    strbuf_append(&out, "}", 1);
    if (attempts)
        append_attempts(&out, attempts, attempt_count);
    strbuf_appendf(&out, ",\"steps\":[");
    for (int i = 0; i < report->step_count; i++) {
        const struct status_step *step = &report->steps[i];
        strbuf_appendf(&out, "%s{", i ? "," : "");
        first = 1;
        append_field(&out, "token", step->token, &first);
        append_field(&out, "action", step->action, &first);
        append_field(&out, "status", step->status, &first);
        append_field(&out, "message", step->message, &first);
        append_field(&out, "error", step->error, &first);
        if (step->executor_id)
            append_number(&out, "executor", step->executor_id, &first);
        append_number(&out, "try", step->try_number, &first);
        if (step->started_at)
            append_number(&out, "started_at", step->started_at, &first);
        if (step->ended_at)
            append_number(&out, "ended_at", step->ended_at, &first);
        strbuf_append(&out, "}", 1);
    }
    strbuf_append(&out, "]}\n", 3);
    fwrite(out.data, 1, out.length, stdout);
    strbuf_free(&out);
}

static void print_attempts(const struct attempt_row *attempts, int count)
{
    printf("ATTEMPT  STATUS            STEPS  STARTED              ENDED\n");
    for (int i = 0; i < count; i++) {
        char started[32], ended[32];
        cli_format_time(attempts[i].created_at, started, sizeof started);
        cli_format_time(attempts[i].ended_at, ended, sizeof ended);
        printf("%-7lld  %-16s  %-5d  %-19s  %s\n", (long long)attempts[i].id, attempts[i].status,
               attempts[i].step_count, started, ended);
    }
    printf("\n");
}

int cli_print_status(struct store *store, int64_t execution_id, int as_json)
{
    return cli_print_execution(store, execution_id, as_json, 0);
}

int cli_print_execution(struct store *store, int64_t execution_id, int as_json,
                        int with_attempts)
{
    struct status_report report;
    struct attempt_row *attempts = NULL;
    int attempt_count = 0;
    char *error = NULL;

    if (store->ops->status(store, execution_id, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return EXIT_FAILED;
    }
    if (with_attempts && store->ops->list_attempts(store, report.execution_id, &attempts,
                                                   &attempt_count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store_free_status(&report);
        return EXIT_FAILED;
    }
    if (as_json) {
        print_json(&report, with_attempts ? attempts : NULL, attempt_count);
    } else {
        if (with_attempts)
            print_attempts(attempts, attempt_count);
        print_table(&report);
    }
    fflush(stdout);
    store_free_attempts(attempts, attempt_count);
    store_free_status(&report);
    return EXIT_OK;
}

int cmd_status(int argc, char **argv)
{
    static const struct option options[] = {
        { "json", no_argument, NULL, 'j' },
        { "app", required_argument, NULL, 'a' },
        { "scope", required_argument, NULL, 's' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    int64_t execution_id = 0;
    int as_json = 0, option, rc;
    const char *app = NULL, *scope = NULL;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (option == 'j') {
            as_json = 1;
            continue;
        }
        if (option == 'a' || option == 's') {
            *(option == 'a' ? &app : &scope) = optarg;
            continue;
        }
        rc = cli_common_option("status", option, optarg, &common, status_help);
        if (rc == -1)
            return cli_bad_option("status", argc, argv, option);
        if (rc != CLI_CONTINUE)
            return rc;
    }
    if (argc - optind > 1)
        return cli_usage_error("status", "expected at most one EXECUTION_ID");
    if (scope && !app)
        return cli_usage_error("status", "--scope needs --app");
    if (app && optind < argc)
        return cli_usage_error("status", "give EXECUTION_ID or --app, not both");
    if (optind < argc && cli_parse_int(argv[optind], 1, INT64_MAX, &execution_id) != 0)
        return cli_usage_error("status", "invalid EXECUTION_ID '%s': use the number that "
                               "bgwf submit printed", argv[optind]);

    struct store *store = cli_open_existing_store(&common);
    if (store == NULL)
        return EXIT_FAILED;
    if (app && (rc = cli_resolve_execution("status", store, NULL, app, scope,
                                           &execution_id)) != 0) {
        store->ops->close(store);
        return rc;
    }
    rc = cli_print_status(store, execution_id, as_json);
    store->ops->close(store);
    return rc;
}
