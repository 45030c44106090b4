/* The read-only views: list, show, executors and graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json_text.h"
#include "step_log.h"
#include "strbuf.h"

static const char list_help[] =
    "Usage: bgwf list [--app NAME] [--status S] [--limit N] [--json] [options]\n"
    "\n"
    "Lists executions, newest first: id, application, scope, status, number of\n"
    "attempts, the newest attempt and its status, start and end time.\n"
    "\n"
    "  --app NAME         only executions of application NAME\n"
    "  --status S         only executions in status INCOMPLETE, COMPLETE or CANCELLED\n"
    "  --limit N          at most N executions (default 50; 0 for all)\n"
    "  --json             print {\"executions\": [{id, app, scope, status, attempts,\n"
    "                     attempt: {id, status}, created_at, ended_at}]}; scope is\n"
    "                     null without one, ended_at is absent while not ended\n"
    CLI_COMMON_HELP;

static const char show_help[] =
    "Usage: bgwf show (EXECUTION_ID | --app NAME [--scope S]) [--step TOKEN] [--json]\n"
    "\n"
    "Shows an execution, its attempts, and the steps of its newest attempt.\n"
    "\n"
    "  --app NAME         instead of EXECUTION_ID: the newest execution of NAME\n"
    "  --scope S          with --app: the newest execution of NAME for scope S\n"
    "  --step TOKEN       show one step in full instead: its error with the\n"
    "                     traceback, and every try with its executor and error\n"
    "  --json             print the bgwf status --json object with an \"attempts\"\n"
    "                     array of {id, status, steps, created_at, ended_at}; with\n"
    "                     --step, {\"step\": {token, action, status, message, error,\n"
    "                     executor, try, started_at, ended_at, tries: [{try,\n"
    "                     executor, status, started_at, ended_at, error}],\n"
    "                     log_tail, next_check, pending_dependencies}} (log_tail:\n"
    "                     the last lines of its log; the last two for WAITING steps)\n"
    CLI_COMMON_HELP;

static const char executors_help[] =
    "Usage: bgwf executors [--json] [options]\n"
    "\n"
    "Lists executors, newest first: id, host, pid, status, last heartbeat, number\n"
    "of running steps and applications.\n"
    "\n"
    "  --json             print {\"executors\": [{id, host, pid, apps, status,\n"
    "                     started_at, heartbeat_at, stopped_at, running_steps}]}\n"
    CLI_COMMON_HELP;

static const char graph_help[] =
    "Usage: bgwf graph (EXECUTION_ID | --app NAME [--scope S]) [options]\n"
    "\n"
    "Prints the DAG of the execution's newest attempt in Graphviz DOT, each step\n"
    "coloured by its status. Render it with: bgwf graph 3 | dot -Tsvg > run.svg\n"
    "\n"
    "  --app NAME         instead of EXECUTION_ID: the newest execution of NAME\n"
    "  --scope S          with --app: the newest execution of NAME for scope S\n"
    CLI_COMMON_HELP;

/* Options shared by the views; each command rejects the ones it lacks. */
struct view_options {
    struct cli_common common;
    const char *app;
    const char *scope;
    const char *status;
    const char *step;
    int64_t limit;
    int as_json;
};

static int parse_view(const char *command, const char *help, const char *allowed, int argc,
                      char **argv, struct view_options *view)
{
    static const struct option options[] = {
        { "app", required_argument, NULL, 'a' },
        { "scope", required_argument, NULL, 's' },
        { "status", required_argument, NULL, 't' },
        { "limit", required_argument, NULL, 'l' },
        { "json", no_argument, NULL, 'j' },
        { "step", required_argument, NULL, 'p' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int option, rc;

    memset(view, 0, sizeof *view);
    view->limit = 50;
    cli_common_init(&view->common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (option < 256 && option != '?' && option != ':' && !strchr(allowed, option))
            return cli_bad_option(command, argc, argv, '?');
        switch (option) {
        case 'a':
            view->app = optarg;
            break;
        case 's':
            view->scope = optarg;
            break;
        case 't':
            if (strcmp(optarg, "INCOMPLETE") != 0 && strcmp(optarg, "COMPLETE") != 0 &&
                strcmp(optarg, "CANCELLED") != 0)
                return cli_usage_error(command, "invalid --status '%s': use INCOMPLETE, "
                                       "COMPLETE or CANCELLED", optarg);
            view->status = optarg;
            break;
        case 'l':
            if (cli_parse_int(optarg, 0, 1000000000, &view->limit) != 0)
                return cli_usage_error(command, "invalid --limit '%s': use a whole number "
                                       ">= 0", optarg);
            break;
        case 'j':
            view->as_json = 1;
            break;
        case 'p':
            view->step = optarg;
            break;
        default:
            rc = cli_common_option(command, option, optarg, &view->common, help);
            if (rc == -1)
                return cli_bad_option(command, argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    if (view->scope && !view->app)
        return cli_usage_error(command, "--scope needs --app");
    return CLI_CONTINUE;
}

/* Parses the view options and the EXECUTION_ID (or --app), opens the store
 * and resolves the execution. Returns CLI_CONTINUE with *store open, or an
 * exit status. */
static int open_execution(const char *command, const char *help, int argc, char **argv,
                          struct view_options *view, struct store **store, int64_t *id)
{
    int rc = parse_view(command, help, strcmp(command, "show") == 0 ? "asjp" : "asj", argc, argv,
                        view);

    if (rc != CLI_CONTINUE)
        return rc;
    if (argc - optind != (view->app ? 0 : 1))
        return cli_usage_error(command, view->app ? "unexpected argument '%s'"
                                                  : "expected one EXECUTION_ID (or --app NAME)%s",
                               view->app ? argv[optind] : "");
    *store = cli_open_existing_store(&view->common);
    if (*store == NULL)
        return EXIT_FAILED;
    rc = cli_resolve_execution(command, *store, view->app ? NULL : argv[optind], view->app,
                               view->scope, id);
    if (rc != 0) {
        (*store)->ops->close(*store);
        *store = NULL;
        return rc;
    }
    return CLI_CONTINUE;
}

static void print_executions_json(const struct execution_row *rows, int count)
{
    struct strbuf out = STRBUF_INIT;

    strbuf_appendf(&out, "{\"executions\":[");
    for (int i = 0; i < count; i++) {
        const struct execution_row *row = &rows[i];
        strbuf_appendf(&out, "%s{\"id\":%lld,\"app\":", i ? "," : "", (long long)row->id);
        json_append_string(&out, row->app);
        strbuf_appendf(&out, ",\"scope\":");
        json_append_string(&out, row->scope);
        strbuf_appendf(&out, ",\"status\":");
        json_append_string(&out, row->status);
        strbuf_appendf(&out, ",\"attempts\":%d,\"attempt\":{\"id\":%lld,\"status\":",
                       row->attempt_count, (long long)row->latest_attempt_id);
        json_append_string(&out, row->latest_attempt_status);
        strbuf_appendf(&out, "},\"created_at\":%lld", (long long)row->created_at);
        if (row->ended_at)
            strbuf_appendf(&out, ",\"ended_at\":%lld", (long long)row->ended_at);
        strbuf_append(&out, "}", 1);
    }
    strbuf_append(&out, "]}\n", 3);
    fwrite(out.data, 1, out.length, stdout);
    strbuf_free(&out);
}

int cmd_list(int argc, char **argv)
{
    struct view_options view;
    struct execution_row *rows = NULL;
    int count = 0;
    char *error = NULL;
    int rc = parse_view("list", list_help, "atlj", argc, argv, &view);

    if (rc != CLI_CONTINUE)
        return rc;
    if (optind != argc)
        return cli_usage_error("list", "unexpected argument '%s'", argv[optind]);
    struct store *store = cli_open_existing_store(&view.common);
    if (store == NULL)
        return EXIT_FAILED;
    struct execution_filter filter = { view.app, view.status, (int)view.limit };
    if (store->ops->list_executions(store, &filter, &rows, &count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store->ops->close(store);
        return EXIT_FAILED;
    }
    if (view.as_json) {
        print_executions_json(rows, count);
    } else {
        printf("%-6s  %-20s  %-12s  %-10s  %-8s  %-24s  %-19s  %s\n", "ID", "APP", "SCOPE",
               "STATUS", "ATTEMPTS", "NEWEST ATTEMPT", "STARTED", "ENDED");
        for (int i = 0; i < count; i++) {
            char started[32], ended[32], attempt[48];
            cli_format_time(rows[i].created_at, started, sizeof started);
            cli_format_time(rows[i].ended_at, ended, sizeof ended);
            snprintf(attempt, sizeof attempt, "%lld %s", (long long)rows[i].latest_attempt_id,
                     rows[i].latest_attempt_status ? rows[i].latest_attempt_status : "-");
            printf("%-6lld  %-20s  %-12s  %-10s  %-8d  %-24s  %-19s  %s\n",
                   (long long)rows[i].id, rows[i].app, rows[i].scope ? rows[i].scope : "-",
                   rows[i].status, rows[i].attempt_count, attempt, started, ended);
        }
    }
    store_free_executions(rows, count);
    store->ops->close(store);
    return EXIT_OK;
}

static void append_time_field(struct strbuf *out, const char *name, int64_t ms)
{
    if (ms)
        strbuf_appendf(out, ",\"%s\":%lld", name, (long long)ms);
}

static void print_step_json(const struct status_step *step, const struct step_try *tries,
                            int try_count, const char *tail)
{
    struct strbuf out = STRBUF_INIT;

    strbuf_appendf(&out, "{\"step\":{\"token\":");
    json_append_string(&out, step->token);
    strbuf_appendf(&out, ",\"action\":");
    json_append_string(&out, step->action);
    strbuf_appendf(&out, ",\"status\":");
    json_append_string(&out, step->status);
    if (step->message) {
        strbuf_appendf(&out, ",\"message\":");
        json_append_string(&out, step->message);
    }
    if (step->error) {
        strbuf_appendf(&out, ",\"error\":");
        json_append_string(&out, step->error);
    }
    if (step->executor_id)
        strbuf_appendf(&out, ",\"executor\":%lld", (long long)step->executor_id);
    strbuf_appendf(&out, ",\"try\":%d", step->try_number);
    append_time_field(&out, "started_at", step->started_at);
    append_time_field(&out, "ended_at", step->ended_at);
    if (strcmp(step->status, "WAITING") == 0) {
        append_time_field(&out, "next_check", step->next_check);
        strbuf_appendf(&out, ",\"pending_dependencies\":%d", step->pending);
    }
    strbuf_appendf(&out, ",\"tries\":[");
    for (int i = 0; i < try_count; i++) {
        strbuf_appendf(&out, "%s{\"try\":%d,\"executor\":%lld,\"status\":", i ? "," : "",
                       tries[i].try_number, (long long)tries[i].executor_id);
        json_append_string(&out, tries[i].status);
        append_time_field(&out, "started_at", tries[i].started_at);
        append_time_field(&out, "ended_at", tries[i].ended_at);
        if (tries[i].error) {
            strbuf_appendf(&out, ",\"error\":");
            json_append_string(&out, tries[i].error);
        }
        strbuf_append(&out, "}", 1);
    }
    strbuf_append(&out, "]", 1);
    if (tail) {
        strbuf_appendf(&out, ",\"log_tail\":");
        json_append_string(&out, tail);
    }
    strbuf_append(&out, "}}\n", 3);
    fwrite(out.data, 1, out.length, stdout);
    strbuf_free(&out);
}

/* Returns the last count lines of the step's log file as a malloc'd
 * string, or NULL when it has no log. */
static char *log_tail(const char *db, const struct status_report *report, const char *token,
                      int count)
{
    char *dir = step_log_default_dir(db);
    char *folder = step_log_folder(dir, report->app, report->execution_id, report->attempt_id);
    char *path = strbuf_printf("%s/%s.log", folder, token);
    FILE *file = fopen(path, "r");
    char *lines[64] = { 0 };
    char *line = NULL;
    size_t capacity = 0;
    int seen = 0;

    free(dir);
    free(folder);
    free(path);
    if (file == NULL)
        return NULL;
    while (getline(&line, &capacity, file) > 0) {
        free(lines[seen % count]);
        lines[seen % count] = strbuf_dup(line);
        seen++;
    }
    free(line);
    fclose(file);

    struct strbuf tail = STRBUF_INIT;
    int first = seen > count ? seen - count : 0;
    for (int i = first; i < seen; i++) {
        strbuf_appendf(&tail, "%s", lines[i % count]);
        free(lines[i % count]);
    }
    return strbuf_detach(&tail);
}

static void print_step_text(const struct status_report *report, const struct status_step *step,
                            const struct step_try *tries, int try_count, const char *tail)
{
    char started[32], ended[32];

    cli_format_time(step->started_at, started, sizeof started);
    cli_format_time(step->ended_at, ended, sizeof ended);
    printf("step %s of execution %lld, attempt %lld\n", step->token,
           (long long)report->execution_id, (long long)report->attempt_id);
    printf("  action:   %s\n", step->action);
    printf("  status:   %s (try %d)\n", step->status, step->try_number);
    if (step->executor_id)
        printf("  executor: %lld\n", (long long)step->executor_id);
    printf("  started:  %s\n  ended:    %s\n", started, ended);
    if (strcmp(step->status, "WAITING") == 0) {
        char next[32];
        cli_format_time(step->next_check, next, sizeof next);
        if (step->pending > 0)
            printf("  waiting:  for %d unfinished %s\n", step->pending,
                   step->pending == 1 ? "dependency" : "dependencies");
        else if (step->next_check > 0)
            printf("  waiting:  its next precondition check or retry is due at %s\n", next);
        else
            printf("  waiting:  for an executor of its application to take it\n");
    }
    if (step->message)
        printf("  message:  %s\n", step->message);
    if (step->error) {
        printf("  error:\n    ");
        for (const char *p = step->error; *p; p++) {
            putchar(*p);
            if (*p == '\n')
                fputs("    ", stdout);
        }
        putchar('\n');
    }
    if (tail && *tail) {
        printf("  last log lines:\n");
        for (const char *p = tail; *p;) {
            size_t length = strcspn(p, "\n");
            printf("    %.*s\n", (int)length, p);
            p += length + (p[length] == '\n');
        }
    }
    if (try_count == 0)
        return;
    printf("  tries:\n    %-3s  %-9s  %-8s  %-19s  %-19s  %s\n", "TRY", "STATUS", "EXECUTOR",
           "STARTED", "ENDED", "ERROR");
    for (int i = 0; i < try_count; i++) {
        const char *error = tries[i].error ? tries[i].error : "";
        cli_format_time(tries[i].started_at, started, sizeof started);
        cli_format_time(tries[i].ended_at, ended, sizeof ended);
        printf("    %-3d  %-9s  %-8lld  %-19s  %-19s  %.*s\n", tries[i].try_number,
               tries[i].status, (long long)tries[i].executor_id, started, ended,
               (int)strcspn(error, "\n"), error);
    }
}

static int show_step(struct store *store, const char *db, int64_t execution_id,
                     const char *token, int as_json)
{
    struct status_report report;
    struct step_try *tries = NULL;
    int try_count = 0, rc = EXIT_FAILED;
    char *error = NULL;

    if (store->ops->status(store, execution_id, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return EXIT_FAILED;
    }
    const struct status_step *step = NULL;
    for (int i = 0; i < report.step_count && step == NULL; i++)
        if (strcmp(report.steps[i].token, token) == 0)
            step = &report.steps[i];
    if (step == NULL) {
        cli_error("execution %lld has no step '%s' in attempt %lld: see 'bgwf show %lld' for "
                  "its steps", (long long)execution_id, token, (long long)report.attempt_id,
                  (long long)execution_id);
    } else if (store->ops->step_tries(store, step->step_id, &tries, &try_count, &error) != 0) {
        cli_error("%s", error);
        free(error);
    } else {
        char *tail = log_tail(db, &report, token, 10);
        if (as_json)
            print_step_json(step, tries, try_count, tail);
        else
            print_step_text(&report, step, tries, try_count, tail);
        free(tail);
        rc = EXIT_OK;
    }
    store_free_tries(tries, try_count);
    store_free_status(&report);
    return rc;
}

int cmd_show(int argc, char **argv)
{
    struct view_options view;
    struct store *store = NULL;
    int64_t execution_id;
    int rc = open_execution("show", show_help, argc, argv, &view, &store, &execution_id);

    if (rc != CLI_CONTINUE)
        return rc;
    if (view.step)
        rc = show_step(store, view.common.db, execution_id, view.step, view.as_json);
    else
        rc = cli_print_execution(store, execution_id, view.as_json, 1);
    store->ops->close(store);
    return rc;
}

static void print_executors_json(const struct executor_row *rows, int count)
{
    struct strbuf out = STRBUF_INIT;

    strbuf_appendf(&out, "{\"executors\":[");
    for (int i = 0; i < count; i++) {
        const struct executor_row *row = &rows[i];
        strbuf_appendf(&out, "%s{\"id\":%lld,\"host\":", i ? "," : "", (long long)row->id);
        json_append_string(&out, row->host);
        strbuf_appendf(&out, ",\"pid\":%d,\"apps\":", row->pid);
        json_append_string(&out, row->apps);
        strbuf_appendf(&out, ",\"status\":");
        json_append_string(&out, row->status);
        strbuf_appendf(&out, ",\"started_at\":%lld,\"heartbeat_at\":%lld",
                       (long long)row->started_at, (long long)row->heartbeat_at);
        if (row->stopped_at)
            strbuf_appendf(&out, ",\"stopped_at\":%lld", (long long)row->stopped_at);
        strbuf_appendf(&out, ",\"running_steps\":%d}", row->running_steps);
    }
    strbuf_append(&out, "]}\n", 3);
    fwrite(out.data, 1, out.length, stdout);
    strbuf_free(&out);
}

int cmd_executors(int argc, char **argv)
{
    struct view_options view;
    struct executor_row *rows = NULL;
    int count = 0;
    char *error = NULL;
    int rc = parse_view("executors", executors_help, "j", argc, argv, &view);

    if (rc != CLI_CONTINUE)
        return rc;
    if (optind != argc)
        return cli_usage_error("executors", "unexpected argument '%s'", argv[optind]);
    struct store *store = cli_open_existing_store(&view.common);
    if (store == NULL)
        return EXIT_FAILED;
    if (store->ops->list_executors(store, &rows, &count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store->ops->close(store);
        return EXIT_FAILED;
    }
    if (view.as_json) {
        print_executors_json(rows, count);
    } else {
        printf("%-6s  %-20s  %-8s  %-8s  %-19s  %-7s  %s\n", "ID", "HOST", "PID", "STATUS",
               "LAST HEARTBEAT", "RUNNING", "APPS");
        for (int i = 0; i < count; i++) {
            char heartbeat[32];
            cli_format_time(rows[i].heartbeat_at, heartbeat, sizeof heartbeat);
            printf("%-6lld  %-20s  %-8d  %-8s  %-19s  %-7d  %s\n", (long long)rows[i].id,
                   rows[i].host, rows[i].pid, rows[i].status, heartbeat, rows[i].running_steps,
                   rows[i].apps);
        }
    }
    store_free_executors(rows, count);
    store->ops->close(store);
    return EXIT_OK;
}

static const char *status_colour(const char *status)
{
    static const char *const colours[][2] = {
        { "WAITING", "white" },        { "RUNNING", "lightskyblue" },
        { "COMPLETED", "palegreen" },  { "FAILED", "salmon" },
        { "SKIPPED", "honeydew" },     { "REVERTED", "orange" },
        { "MANUALLY_COMPLETED", "darkseagreen" },
    };

    for (size_t i = 0; i < sizeof colours / sizeof colours[0]; i++)
        if (strcmp(status, colours[i][0]) == 0)
            return colours[i][1];
    return "gray";
}

/* Appends text as a DOT double-quoted string. */
static void append_dot_string(struct strbuf *out, const char *text)
{
    strbuf_append(out, "\"", 1);
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            strbuf_append(out, "\\n", 2);
            continue;
        }
        if (*p == '"' || *p == '\\')
            strbuf_append(out, "\\", 1);
        strbuf_append(out, p, 1);
    }
    strbuf_append(out, "\"", 1);
}

int cmd_graph(int argc, char **argv)
{
    struct view_options view;
    struct store *store = NULL;
    struct status_report report;
    struct step_edge *edges = NULL;
    struct strbuf out = STRBUF_INIT;
    int64_t execution_id;
    int edge_count = 0;
    char *error = NULL;
    int rc = open_execution("graph", graph_help, argc, argv, &view, &store, &execution_id);

    if (rc != CLI_CONTINUE)
        return rc;
    if (store->ops->status(store, execution_id, &report, &error) != 0 ||
        store->ops->step_edges(store, &report, &edges, &edge_count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store->ops->close(store);
        return EXIT_FAILED;
    }

    char *title = strbuf_printf("%s execution %lld attempt %lld (%s)", report.app,
                                (long long)report.execution_id, (long long)report.attempt_id,
                                report.attempt_status);
    strbuf_appendf(&out, "digraph ");
    append_dot_string(&out, title);
    strbuf_appendf(&out, " {\n  label=");
    append_dot_string(&out, title);
    strbuf_appendf(&out, ";\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\"];\n");
    for (int i = 0; i < report.step_count; i++) {
        char *label = strbuf_printf("%s\n%s", report.steps[i].token, report.steps[i].status);
        strbuf_appendf(&out, "  ");
        append_dot_string(&out, report.steps[i].token);
        strbuf_appendf(&out, " [label=");
        append_dot_string(&out, label);
        strbuf_appendf(&out, ", fillcolor=\"%s\"];\n", status_colour(report.steps[i].status));
        free(label);
    }
    for (int i = 0; i < edge_count; i++) {
        strbuf_appendf(&out, "  ");
        append_dot_string(&out, report.steps[edges[i].from].token);
        strbuf_appendf(&out, " -> ");
        append_dot_string(&out, report.steps[edges[i].to].token);
        strbuf_appendf(&out, ";\n");
    }
    strbuf_appendf(&out, "}\n");
    fwrite(out.data, 1, out.length, stdout);

    free(title);
    strbuf_free(&out);
    free(edges);
    store_free_status(&report);
    store->ops->close(store);
    return EXIT_OK;
}
