/* bgwf events and bgwf notify: the stored events, and subscriptions that
 * deliver them to a command or an action. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json_text.h"
#include "luahost.h"
#include "names.h"
#include "strbuf.h"

static const char *const event_types[] = {
    "START", "SUCCESS", "FAILURE", "SHUTDOWN", "INTERNAL_ERROR", "STEP_FAILURE",
    "STEP_SUCCESS", "DIED_UNCLEAN", NULL,
};

static const char events_help[] =
    "Usage: bgwf events [--app NAME] [--since TIME|ID] [--limit N] [--json] [options]\n"
    "\n"
    "Lists the newest stored events, the oldest of them first: START, SUCCESS,\n"
    "FAILURE, SHUTDOWN (of an attempt), STEP_SUCCESS, STEP_FAILURE, DIED_UNCLEAN\n"
    "(a step whose executor stopped heartbeating) and INTERNAL_ERROR (an error of\n"
    "the executor itself).\n"
    "\n"
    "  --app NAME         only events of application NAME\n"
    "  --since TIME|ID    only events after event ID, or at or after TIME given as\n"
    "                     \"YYYY-MM-DD HH:MM:SS\" (local time) or as N s, m, h or d ago\n"
    "                     (for example 10m)\n"
    "  --limit N          the newest N events (default 1000; 0 for all)\n"
    "  --json             print {\"events\": [{id, type, at, app, execution, attempt,\n"
    "                     step, executor, detail}]}; absent fields do not apply\n"
    CLI_COMMON_HELP;

static const char notify_help[] =
    "Usage: bgwf notify APP --on EVENT,... (--command CMD | --action NAME)\n"
    "       bgwf notify APP --list [--json]\n"
    "       bgwf notify APP --remove ID\n"
    "\n"
    "Subscribes to events of application APP. The executor whose work causes an\n"
    "event delivers it: a command runs under /bin/sh with the event as JSON on\n"
    "stdin and in BGWF_EVENT_JSON, and BGWF_EVENT, BGWF_APP, BGWF_EXECUTION,\n"
    "BGWF_ATTEMPT and BGWF_STEP set; an action runs like a step with the event as\n"
    "its context. A failed delivery is tried 3 times in all; it never fails the\n"
    "workflow. Output goes to the attempt's logs as step notify_ID. STEP_FAILURE\n"
    "fires for every failed try; its detail starts with \"will be retried: \" when\n"
    "another try follows, so a FAILURE event (of the attempt) marks a final failure.\n"
    "\n"
    "  --on EVENTS        comma-separated: START, SUCCESS, FAILURE, SHUTDOWN,\n"
    "                     INTERNAL_ERROR, STEP_FAILURE, STEP_SUCCESS, DIED_UNCLEAN\n"
    "  --command CMD      run CMD for each event\n"
    "  --action NAME      run action NAME for each event\n"
    "  --list             list APP's subscriptions\n"
    "  --remove ID        remove subscription ID\n"
    "  --json             with --list: {\"subscriptions\": [{id, app, events,\n"
    "                     command, action, created_at}]}\n"
    CLI_COMMON_HELP;

/* Parses --since: an event id, a local time, or an age like 10m. */
static int parse_since(const char *text, int64_t *after_id, int64_t *since_ms)
{
    struct tm parts;
    char unit;
    long long amount;
    int used = 0;
    const char *end;

    if (cli_parse_int(text, 0, INT64_MAX, after_id) == 0)
        return 0;
    if (sscanf(text, "%lld%c%n", &amount, &unit, &used) == 2 && text[used] == '\0' &&
        amount >= 0 && strchr("smhd", unit)) {
        int64_t scale = 86400000;
        if (unit == 's')
            scale = 1000;
        else if (unit == 'm')
            scale = 60000;
        else if (unit == 'h')
            scale = 3600000;
        *since_ms = (int64_t)time(NULL) * 1000 - amount * scale;
        return 0;
    }
    memset(&parts, 0, sizeof parts);
    end = strptime(text, "%Y-%m-%d %H:%M:%S", &parts);
    if (end == NULL)
        end = strptime(text, "%Y-%m-%dT%H:%M:%S", &parts);
    if (end == NULL || *end != '\0')
        return -1;
    parts.tm_isdst = -1;
    *since_ms = (int64_t)mktime(&parts) * 1000;
    return 0;
}

static void print_events_json(const struct event_row *rows, int count)
{
    struct strbuf out = STRBUF_INIT;

    strbuf_appendf(&out, "{\"events\":[");
    for (int i = 0; i < count; i++) {
        const struct event_row *event = &rows[i];
        strbuf_appendf(&out, "%s{\"id\":%lld,\"type\":", i ? "," : "", (long long)event->id);
        json_append_string(&out, event->type);
        strbuf_appendf(&out, ",\"at\":%lld,\"app\":", (long long)event->at);
        json_append_string(&out, event->app);
        if (event->execution_id)
            strbuf_appendf(&out, ",\"execution\":%lld", (long long)event->execution_id);
        if (event->attempt_id)
            strbuf_appendf(&out, ",\"attempt\":%lld", (long long)event->attempt_id);
        if (event->step) {
            strbuf_appendf(&out, ",\"step\":");
            json_append_string(&out, event->step);
        }
        if (event->executor_id)
            strbuf_appendf(&out, ",\"executor\":%lld", (long long)event->executor_id);
        if (event->detail) {
            strbuf_appendf(&out, ",\"detail\":");
            json_append_string(&out, event->detail);
        }
        strbuf_append(&out, "}", 1);
    }
    strbuf_append(&out, "]}\n", 3);
    fwrite(out.data, 1, out.length, stdout);
    strbuf_free(&out);
}

int cmd_events(int argc, char **argv)
{
    static const struct option options[] = {
        { "app", required_argument, NULL, 'a' },
        { "since", required_argument, NULL, 's' },
        { "limit", required_argument, NULL, 'l' },
        { "json", no_argument, NULL, 'j' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    struct event_filter filter = { NULL, 0, 0, 1000 };
    int as_json = 0, option, rc;
    int64_t limit;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (option) {
        case 'a':
            filter.app = optarg;
            break;
        case 's':
            if (parse_since(optarg, &filter.after_id, &filter.since_ms) != 0)
                return cli_usage_error("events", "invalid --since '%s': use an event id, "
                                       "\"YYYY-MM-DD HH:MM:SS\", or an age like 10m", optarg);
            break;
        case 'l':
            if (cli_parse_int(optarg, 0, 100000000, &limit) != 0)
                return cli_usage_error("events", "invalid --limit '%s': use a whole number "
                                       ">= 0", optarg);
            filter.limit = (int)limit;
            break;
        case 'j':
            as_json = 1;
            break;
        default:
            rc = cli_common_option("events", option, optarg, &common, events_help);
            if (rc == -1)
                return cli_bad_option("events", argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc)
        return cli_usage_error("events", "unexpected argument '%s'", argv[optind]);

    struct store *store = cli_open_existing_store(&common);
    struct event_row *rows = NULL;
    int count = 0;
    char *error = NULL;
    if (store == NULL)
        return EXIT_FAILED;
    if (store->ops->list_events(store, &filter, &rows, &count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store->ops->close(store);
        return EXIT_FAILED;
    }
    /* The store returns the newest first; they print oldest first. */
    for (int i = 0; i < count / 2; i++) {
        struct event_row swap = rows[i];
        rows[i] = rows[count - 1 - i];
        rows[count - 1 - i] = swap;
    }
    if (as_json) {
        print_events_json(rows, count);
    } else {
        printf("%-6s  %-19s  %-14s  %-16s  %-9s  %-7s  %-16s  %s\n", "ID", "TIME", "TYPE", "APP",
               "EXECUTION", "ATTEMPT", "STEP", "DETAIL");
        for (int i = 0; i < count; i++) {
            char at[32];
            const char *detail = rows[i].detail ? rows[i].detail : "";
            cli_format_time(rows[i].at, at, sizeof at);
            printf("%-6lld  %-19s  %-14s  %-16s  %-9lld  %-7lld  %-16s  %.*s\n",
                   (long long)rows[i].id, at, rows[i].type, rows[i].app,
                   (long long)rows[i].execution_id, (long long)rows[i].attempt_id,
                   rows[i].step ? rows[i].step : "-", (int)strcspn(detail, "\n"), detail);
        }
    }
    store_free_events(rows, count);
    store->ops->close(store);
    return EXIT_OK;
}

/* Checks a comma-separated list of event types; returns the first invalid
 * one in *bad (malloc'd), or 0 when all are known. */
static int check_event_list(const char *list, char **bad)
{
    char *copy = strbuf_dup(list);
    int rc = 0;

    for (char *save = NULL, *type = strtok_r(copy, ",", &save); type;
         type = strtok_r(NULL, ",", &save)) {
        int known = 0;
        for (int i = 0; event_types[i] && !known; i++)
            known = strcmp(type, event_types[i]) == 0;
        if (!known) {
            *bad = strbuf_dup(type);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && (list[0] == '\0' || list[0] == ',' || strstr(list, ",,") ||
                    list[strlen(list) - 1] == ',')) {
        *bad = strbuf_dup("");
        rc = -1;
    }
    free(copy);
    return rc;
}

static int list_subscriptions(struct store *store, const char *app, int as_json)
{
    struct subscription_row *rows = NULL;
    int count = 0;
    char *error = NULL;

    if (store->ops->list_subscriptions(store, app, &rows, &count, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return EXIT_FAILED;
    }
    if (as_json) {
        struct strbuf out = STRBUF_INIT;
        strbuf_appendf(&out, "{\"subscriptions\":[");
        for (int i = 0; i < count; i++) {
            strbuf_appendf(&out, "%s{\"id\":%lld,\"app\":", i ? "," : "",
                           (long long)rows[i].id);
            json_append_string(&out, rows[i].app);
            strbuf_appendf(&out, ",\"events\":");
            json_append_string(&out, rows[i].events);
            strbuf_appendf(&out, ",\"command\":");
            json_append_string(&out, rows[i].command);
            strbuf_appendf(&out, ",\"action\":");
            json_append_string(&out, rows[i].action);
            strbuf_appendf(&out, ",\"created_at\":%lld}", (long long)rows[i].created_at);
        }
        strbuf_append(&out, "]}\n", 3);
        fwrite(out.data, 1, out.length, stdout);
        strbuf_free(&out);
    } else {
        printf("%-4s  %-40s  %s\n", "ID", "EVENTS", "DELIVERED TO");
        for (int i = 0; i < count; i++)
            printf("%-4lld  %-40s  %s %s\n", (long long)rows[i].id, rows[i].events,
                   rows[i].command ? "command" : "action",
                   rows[i].command ? rows[i].command : rows[i].action);
    }
    store_free_subscriptions(rows, count);
    return EXIT_OK;
}

int cmd_notify(int argc, char **argv)
{
    static const struct option options[] = {
        { "on", required_argument, NULL, 'o' },
        { "command", required_argument, NULL, 'c' },
        { "action", required_argument, NULL, 'a' },
        { "list", no_argument, NULL, 'l' },
        { "remove", required_argument, NULL, 'r' },
        { "json", no_argument, NULL, 'j' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    const char *on = NULL, *command = NULL, *action = NULL, *remove_text = NULL;
    int list = 0, as_json = 0, option, rc;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (option) {
        case 'o':
            on = optarg;
            break;
        case 'c':
            command = optarg;
            break;
        case 'a':
            action = optarg;
            break;
        case 'l':
            list = 1;
            break;
        case 'r':
            remove_text = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        default:
            rc = cli_common_option("notify", option, optarg, &common, notify_help);
            if (rc == -1)
                return cli_bad_option("notify", argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("notify", "expected one application name APP");
    const char *app = argv[optind];
    if (!names_is_valid(app)) {
        char *message = names_invalid_message("application", app);
        rc = cli_usage_error("notify", "%s", message);
        free(message);
        return rc;
    }
    int modes = (list ? 1 : 0) + (remove_text ? 1 : 0) + (on || command || action ? 1 : 0);
    if (modes != 1)
        return cli_usage_error("notify", "use one of: --on EVENTS with --command or --action, "
                               "--list, or --remove ID");
    int64_t remove_id = 0;
    if (remove_text && cli_parse_int(remove_text, 1, INT64_MAX, &remove_id) != 0)
        return cli_usage_error("notify", "invalid --remove '%s': use a subscription id from "
                               "--list", remove_text);
    if (!list && !remove_text) {
        char *bad = NULL;
        if (on == NULL)
            return cli_usage_error("notify", "--on is required: name the events, for example "
                                   "--on FAILURE,STEP_FAILURE");
        if (check_event_list(on, &bad) != 0) {
            rc = cli_usage_error("notify", "invalid event '%s' in --on: use START, SUCCESS, "
                                 "FAILURE, SHUTDOWN, INTERNAL_ERROR, STEP_FAILURE, "
                                 "STEP_SUCCESS or DIED_UNCLEAN, separated by commas", bad);
            free(bad);
            return rc;
        }
        if ((command == NULL) == (action == NULL))
            return cli_usage_error("notify", "give exactly one of --command CMD and --action "
                                   "NAME");
        if (command && *command == '\0')
            return cli_usage_error("notify", "--command needs a command");
        if (action) {
            lua_State *L = cli_open_lua(&common);
            char *error = NULL;
            if (L == NULL)
                return EXIT_FAILED;
            rc = luahost_check_action(L, action, &error);
            lua_close(L);
            if (rc != 0) {
                cli_error("%s", error);
                free(error);
                return EXIT_FAILED;
            }
        }
    }

    struct store *store = cli_open_store(&common);
    char *error = NULL;
    if (store == NULL)
        return EXIT_FAILED;
    rc = EXIT_OK;
    if (list) {
        rc = list_subscriptions(store, app, as_json);
    } else if (remove_text) {
        if (store->ops->unsubscribe(store, app, remove_id, &error) != 0)
            rc = EXIT_FAILED;
        else
            printf("removed subscription %lld of %s\n", (long long)remove_id, app);
    } else {
        int64_t id;
        if (store->ops->subscribe(store, app, on, command, action, &id, &error) != 0)
            rc = EXIT_FAILED;
        else
            printf("subscription %lld: %s events %s go to %s %s\n", (long long)id, app, on,
                   command ? "command" : "action", command ? command : action);
    }
    if (error) {
        cli_error("%s", error);
        free(error);
    }
    store->ops->close(store);
    return rc;
}
