/* bgwf executor and bgwf run: the long-running executor, and a one-off run
 * of one workflow with an executor inside the command. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "executor.h"
#include "log.h"
#include "luahost.h"
#include "names.h"
#include "step_log.h"
#include "strbuf.h"

#define DEFAULT_MAX_CONCURRENT 8
#define DEFAULT_HEARTBEAT_MS 5000
#define DEFAULT_HEARTBEAT_TIMEOUT_MS 30000
#define DEFAULT_PRECONDITION_TIMEOUT_MS 30000
#define DEFAULT_KILL_GRACE_MS 5000
#define DEFAULT_LOG_MAX_BYTES (64LL * 1024 * 1024)

#define EXECUTOR_TUNING_HELP                                                            \
    "  --max-concurrent N         steps running at once (default 8)\n"                    \
    "  --poll-ms MS               wait between looks for due steps when idle (default\n"   \
    "                             500 for executor, 200 for run)\n"                         \
    "  --heartbeat-ms MS          heartbeat interval (default 5000)\n"                     \
    "  --heartbeat-timeout-ms MS  declare an executor dead after this long without a\n"     \
    "                             heartbeat and fail its steps (default 30000)\n"           \
    "  --kill-grace-ms MS         after SIGTERM to a cancelled or timed-out step,\n"         \
    "                             wait this long before SIGKILL (default 5000)\n"           \
    "  --log-dir DIR              step logs go to DIR/APP/EXECUTION/ATTEMPT/STEP.log\n"     \
    "                             (default: bgwf-logs beside the database)\n"                \
    "  --log-max-bytes N          cap each try's step log at N bytes (default 64 MiB;\n"    \
    "                             0: no cap)\n"                                              \
    "  --precondition-timeout-ms MS  fail a step whose precondition runs longer\n"          \
    "                             (default 30000)\n"

static const char executor_help[] =
    "Usage: bgwf executor --apps A,B [options]\n"
    "\n"
    "Runs steps of the named applications until stopped: finds due steps, checks\n"
    "their preconditions, claims them and runs each in its own process. Any number\n"
    "of executors may share a database. SIGTERM or SIGINT stops it after the\n"
    "running steps finish; a second one kills them (they are recorded FAILED).\n"
    "\n"
    "  --apps A,B                 applications (workflow names) this executor runs\n"
    EXECUTOR_TUNING_HELP
    "  --exit-when-idle           exit once no step of the applications is waiting or\n"
    "                             running in a running attempt\n"
    "  --app-limit APP=N          at most N steps of APP run at once across all\n"
    "                             executors that use this option; repeatable\n"
    CLI_COMMON_HELP
    "\n"
    "Exit status: 0 after a clean stop, 1 when running steps were killed or the\n"
    "store failed, 2 on a usage error.\n";

static const char run_help[] =
    "Usage: bgwf run NAME [--scope S] [--context JSON|@FILE] [options]\n"
    "\n"
    "Submits the workflow, runs its steps with an executor inside this command\n"
    "until the attempt ends, and prints the step statuses.\n"
    "\n"
    "  --scope S                  as for bgwf submit\n"
    "  --context JSON             as for bgwf submit (@FILE reads a file)\n"
    "  --new-execution            as for bgwf submit\n"
    "  --build-timeout S          as for bgwf submit\n"
    EXECUTOR_TUNING_HELP
    CLI_COMMON_HELP
    "\n"
    "Exit status: 0 when the attempt FINISHED, 1 when it did not, 2 on a usage error.\n";

enum {
    OPTION_APPS = 1,
    OPTION_MAX_CONCURRENT,
    OPTION_POLL_MS,
    OPTION_HEARTBEAT_MS,
    OPTION_HEARTBEAT_TIMEOUT_MS,
    OPTION_EXIT_WHEN_IDLE,
    OPTION_SCOPE,
    OPTION_CONTEXT,
    OPTION_NEW_EXECUTION,
    OPTION_KILL_GRACE_MS,
    OPTION_APP_LIMIT,
    OPTION_LOG_DIR,
    OPTION_LOG_MAX_BYTES,
    OPTION_BUILD_TIMEOUT,
    OPTION_PRECONDITION_TIMEOUT,
};

static const struct option executor_options[] = {
    { "apps", required_argument, NULL, OPTION_APPS },
    { "max-concurrent", required_argument, NULL, OPTION_MAX_CONCURRENT },
    { "poll-ms", required_argument, NULL, OPTION_POLL_MS },
    { "heartbeat-ms", required_argument, NULL, OPTION_HEARTBEAT_MS },
    { "heartbeat-timeout-ms", required_argument, NULL, OPTION_HEARTBEAT_TIMEOUT_MS },
    { "exit-when-idle", no_argument, NULL, OPTION_EXIT_WHEN_IDLE },
    { "scope", required_argument, NULL, OPTION_SCOPE },
    { "context", required_argument, NULL, OPTION_CONTEXT },
    { "new-execution", no_argument, NULL, OPTION_NEW_EXECUTION },
    { "kill-grace-ms", required_argument, NULL, OPTION_KILL_GRACE_MS },
    { "app-limit", required_argument, NULL, OPTION_APP_LIMIT },
    { "log-dir", required_argument, NULL, OPTION_LOG_DIR },
    { "log-max-bytes", required_argument, NULL, OPTION_LOG_MAX_BYTES },
    { "build-timeout", required_argument, NULL, OPTION_BUILD_TIMEOUT },
    { "precondition-timeout-ms", required_argument, NULL, OPTION_PRECONDITION_TIMEOUT },
    CLI_COMMON_OPTIONS,
    { NULL, 0, NULL, 0 },
};

struct parsed {
    struct cli_common common;
    struct executor_config config;
    char *apps_copy;
    const char **apps;
    const char *scope;
    const char *context;
    int new_execution;
    int build_timeout_s;
    struct app_limit *limits;
};

static int parse_number(const char *command, const char *name, const char *text, int64_t min,
                        int64_t max, int *value)
{
    int64_t parsed;

    if (cli_parse_int(text, min, max, &parsed) != 0)
        return cli_usage_error(command, "invalid %s '%s': use a whole number from %lld to %lld",
                               name, text, (long long)min, (long long)max);
    *value = (int)parsed;
    return CLI_CONTINUE;
}

/* Parses APP=N from --app-limit. */
static int add_app_limit(const char *command, struct parsed *parsed, const char *text)
{
    const char *equals = strchr(text, '=');
    int64_t limit;
    char *app;

    if (equals == NULL || cli_parse_int(equals + 1, 1, 1000000, &limit) != 0)
        return cli_usage_error(command, "invalid --app-limit '%s': use APP=N with N >= 1, for "
                               "example --app-limit reports=4", text);
    app = strbuf_printf("%.*s", (int)(equals - text), text);
    if (!names_is_valid(app)) {
        char *message = names_invalid_message("application", app);
        int rc = cli_usage_error(command, "%s", message);
        free(message);
        free(app);
        return rc;
    }
    struct executor_config *config = &parsed->config;
    parsed->limits = realloc(parsed->limits,
                             (size_t)(config->app_limit_count + 1) * sizeof *parsed->limits);
    parsed->limits[config->app_limit_count++] = (struct app_limit){ app, (int)limit };
    config->app_limits = parsed->limits;
    return CLI_CONTINUE;
}

static int split_apps(const char *command, struct parsed *parsed, const char *text)
{
    int count = 1;

    for (const char *p = text; *p; p++)
        count += *p == ',';
    free(parsed->apps_copy);
    free(parsed->apps);
    parsed->apps_copy = strbuf_dup(text);
    parsed->apps = calloc((size_t)count + 1, sizeof *parsed->apps);
    parsed->config.app_count = 0;
    for (char *save = NULL, *app = strtok_r(parsed->apps_copy, ",", &save); app;
         app = strtok_r(NULL, ",", &save)) {
        if (!names_is_valid(app)) {
            char *message = names_invalid_message("application", app);
            int rc = cli_usage_error(command, "%s", message);
            free(message);
            return rc;
        }
        parsed->apps[parsed->config.app_count++] = app;
    }
    if (parsed->config.app_count == 0)
        return cli_usage_error(command, "--apps needs at least one application name");
    parsed->config.apps = parsed->apps;
    parsed->config.apps_text = text;
    return CLI_CONTINUE;
}

/* Parses the options of executor or run into parsed. Returns CLI_CONTINUE to
 * go on, or an exit status. */
static int parse(const char *command, int argc, char **argv, struct parsed *parsed,
                 const char *help)
{
    struct executor_config *config = &parsed->config;
    int option, rc;

    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", executor_options, NULL)) != -1) {
        int is_run = strcmp(command, "run") == 0;
        switch (option) {
        case OPTION_APPS:
            rc = is_run ? -1 : split_apps(command, parsed, optarg);
            break;
        case OPTION_MAX_CONCURRENT:
            rc = parse_number(command, "--max-concurrent", optarg, 1, 4096,
                              &config->max_concurrent);
            break;
        case OPTION_POLL_MS:
            rc = parse_number(command, "--poll-ms", optarg, 1, 3600000, &config->poll_ms);
            break;
        case OPTION_HEARTBEAT_MS:
            rc = parse_number(command, "--heartbeat-ms", optarg, 10, 3600000,
                              &config->heartbeat_ms);
            break;
        case OPTION_HEARTBEAT_TIMEOUT_MS:
            rc = parse_number(command, "--heartbeat-timeout-ms", optarg, 100, 86400000,
                              &config->heartbeat_timeout_ms);
            break;
        case OPTION_EXIT_WHEN_IDLE:
            config->exit_when_idle = 1;
            rc = is_run ? -1 : CLI_CONTINUE;
            break;
        case OPTION_SCOPE:
            parsed->scope = optarg;
            rc = is_run ? CLI_CONTINUE : -1;
            break;
        case OPTION_CONTEXT:
            parsed->context = optarg;
            rc = is_run ? CLI_CONTINUE : -1;
            break;
        case OPTION_NEW_EXECUTION:
            parsed->new_execution = 1;
            rc = is_run ? CLI_CONTINUE : -1;
            break;
        case OPTION_BUILD_TIMEOUT:
            rc = is_run ? parse_number(command, "--build-timeout", optarg, 1, 86400,
                                       &parsed->build_timeout_s)
                        : -1;
            break;
        case OPTION_PRECONDITION_TIMEOUT: {
            int milliseconds = 0;
            rc = parse_number(command, "--precondition-timeout-ms", optarg, 10, 86400000,
                              &milliseconds);
            config->precondition_timeout_ms = milliseconds;
            break;
        }
        case OPTION_LOG_DIR:
            parsed->config.log_dir = optarg;
            rc = *optarg ? CLI_CONTINUE : cli_usage_error(command, "--log-dir needs a folder");
            break;
        case OPTION_LOG_MAX_BYTES: {
            int64_t bytes;
            rc = CLI_CONTINUE;
            if (cli_parse_int(optarg, 0, INT64_MAX, &bytes) != 0)
                rc = cli_usage_error(command, "invalid --log-max-bytes '%s': use a whole number "
                                     "of bytes, 0 for no cap", optarg);
            config->log_max_bytes = bytes;
            break;
        }
        case OPTION_APP_LIMIT:
            rc = is_run ? -1 : add_app_limit(command, parsed, optarg);
            break;
        case OPTION_KILL_GRACE_MS:
            rc = parse_number(command, "--kill-grace-ms", optarg, 0, 3600000,
                              &config->kill_grace_ms);
            break;
        default:
            rc = cli_common_option(command, option, optarg, &parsed->common, help);
        }
        if (rc == -1)
            return cli_bad_option(command, argc, argv, option);
        if (rc != CLI_CONTINUE)
            return rc;
    }
    if (config->heartbeat_timeout_ms <= config->heartbeat_ms)
        return cli_usage_error(command, "--heartbeat-timeout-ms (%d) must be longer than "
                               "--heartbeat-ms (%d), or live executors are declared dead",
                               config->heartbeat_timeout_ms, config->heartbeat_ms);
    return CLI_CONTINUE;
}

static void parsed_init(struct parsed *parsed, int poll_ms)
{
    memset(parsed, 0, sizeof *parsed);
    cli_common_init(&parsed->common);
    parsed->config.max_concurrent = DEFAULT_MAX_CONCURRENT;
    parsed->config.poll_ms = poll_ms;
    parsed->config.heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    parsed->config.heartbeat_timeout_ms = DEFAULT_HEARTBEAT_TIMEOUT_MS;
    parsed->config.precondition_timeout_ms = DEFAULT_PRECONDITION_TIMEOUT_MS;
    parsed->config.kill_grace_ms = DEFAULT_KILL_GRACE_MS;
    parsed->config.log_max_bytes = DEFAULT_LOG_MAX_BYTES;
    parsed->build_timeout_s = 60;
}

static void parsed_free(struct parsed *parsed)
{
    for (int i = 0; i < parsed->config.app_limit_count; i++)
        free((char *)parsed->limits[i].app);
    free(parsed->limits);
    free(parsed->apps_copy);
    free(parsed->apps);
}

static int runs_app(const struct executor_config *config, const char *app)
{
    for (int i = 0; i < config->app_count; i++)
        if (strcmp(config->apps[i], app) == 0)
            return 1;
    return 0;
}

/* Warns about each application with no workflow file on the search path:
 * most likely a misspelling. It is only a warning, because the Lua module
 * can submit workflows built by a function, with no file. */
static void warn_about_unknown_apps(const struct executor_config *config)
{
    for (int i = 0; i < config->app_count; i++) {
        char *path = NULL, *error = NULL;
        if (names_find_file(config->search_path, "workflows", "workflow", config->apps[i],
                            ".lua", &path, &error) != 0) {
            log_warn("app=%s has no workflows/%s.lua on the search path %s; check the "
                     "spelling of --apps (only executions that the Lua module submitted "
                     "with a builder function can run)", config->apps[i], config->apps[i],
                     config->search_path);
            free(error);
        }
        free(path);
    }
}

int cmd_executor(int argc, char **argv)
{
    struct parsed parsed;
    int rc;

    parsed_init(&parsed, 500);
    rc = parse("executor", argc, argv, &parsed, executor_help);
    if (rc == CLI_CONTINUE && optind != argc)
        rc = cli_usage_error("executor", "unexpected argument '%s'", argv[optind]);
    if (rc == CLI_CONTINUE && parsed.config.app_count == 0)
        rc = cli_usage_error("executor", "--apps is required: name the applications this "
                             "executor runs, for example --apps simple,reports");
    for (int i = 0; rc == CLI_CONTINUE && i < parsed.config.app_limit_count; i++)
        if (!runs_app(&parsed.config, parsed.limits[i].app))
            rc = cli_usage_error("executor", "--app-limit names '%s', which is not in --apps "
                                 "%s", parsed.limits[i].app, parsed.config.apps_text);
    if (rc != CLI_CONTINUE) {
        parsed_free(&parsed);
        return rc;
    }

    log_set_role("executor");
    parsed.config.search_path = parsed.common.path;
    warn_about_unknown_apps(&parsed.config);
    char *default_log_dir = step_log_default_dir(parsed.common.db);
    if (parsed.config.log_dir == NULL)
        parsed.config.log_dir = default_log_dir;
    lua_State *L = cli_open_lua(&parsed.common);
    struct store *store = L ? cli_open_store(&parsed.common) : NULL;
    rc = EXIT_FAILED;
    if (store)
        rc = executor_run(store, L, &parsed.config);
    if (store)
        store->ops->close(store);
    if (L)
        lua_close(L);
    free(default_log_dir);
    parsed_free(&parsed);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    struct parsed parsed;
    struct store *store = NULL;
    char *context = NULL;
    int64_t execution_id = 0, attempt_id = 0;
    int rc;

    parsed_init(&parsed, 200);
    rc = parse("run", argc, argv, &parsed, run_help);
    if (rc == CLI_CONTINUE && optind != argc - 1)
        rc = cli_usage_error("run", optind == argc ? "missing the workflow NAME"
                                                   : "expected one workflow NAME");
    if (rc != CLI_CONTINUE) {
        parsed_free(&parsed);
        return rc;
    }
    const char *app = argv[optind];
    if (!names_is_valid(app)) {
        char *message = names_invalid_message("workflow", app);
        cli_error("%s", message);
        free(message);
        parsed_free(&parsed);
        return EXIT_FAILED;
    }
    if (parsed.context && (context = cli_read_context(parsed.context)) == NULL) {
        parsed_free(&parsed);
        return EXIT_FAILED;
    }

    char *default_log_dir = step_log_default_dir(parsed.common.db);
    if (parsed.config.log_dir == NULL)
        parsed.config.log_dir = default_log_dir;
    parsed.config.search_path = parsed.common.path;
    lua_State *L = cli_open_lua(&parsed.common);
    rc = EXIT_FAILED;
    if (L)
        luahost_set_build_timeout(L, (int64_t)parsed.build_timeout_s * 1000);
    if (L && cli_submit(&parsed.common, &store, L, app, parsed.scope, context,
                        parsed.new_execution, &execution_id, &attempt_id) == EXIT_OK) {
        const char *apps[] = { app };
        parsed.config.apps = apps;
        parsed.config.app_count = 1;
        parsed.config.apps_text = app;
        parsed.config.only_attempt = attempt_id;
        log_set_role("run");
        rc = executor_run(store, L, &parsed.config);
        if (cli_print_status(store, execution_id, 0) != EXIT_OK)
            rc = EXIT_FAILED;
    }
    if (store)
        store->ops->close(store);
    if (L)
        lua_close(L);
    free(context);
    free(default_log_dir);
    parsed_free(&parsed);
    return rc;
}
