/* The operator commands: revert, complete, shutdown and cancel. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define TARGET_HELP                                                                   \
    "  --app NAME         instead of EXECUTION_ID: the newest execution of NAME\n"     \
    "  --scope S          with --app: the newest execution of NAME for scope S\n"

static const char revert_help[] =
    "Usage: bgwf revert (EXECUTION_ID | --app NAME [--scope S]) STEP [--downstream]\n"
    "\n"
    "Marks a COMPLETED (or SKIPPED or MANUALLY_COMPLETED) step of the execution's\n"
    "newest attempt REVERTED, so that the next attempt runs it again. The attempt\n"
    "must have ended; a COMPLETE execution becomes INCOMPLETE again.\n"
    "\n"
    "  --downstream       also revert every finished step that depends on STEP\n"
    TARGET_HELP CLI_COMMON_HELP;

static const char complete_help[] =
    "Usage: bgwf complete (EXECUTION_ID | --app NAME [--scope S]) STEP\n"
    "\n"
    "Marks a WAITING, FAILED or REVERTED step MANUALLY_COMPLETED: it will not run,\n"
    "and in a running attempt the steps that wait for it may start.\n"
    "\n"
    TARGET_HELP CLI_COMMON_HELP;

static const char shutdown_help[] =
    "Usage: bgwf shutdown (EXECUTION_ID | --app NAME [--scope S])\n"
    "\n"
    "Asks the running attempt to stop: it turns SHUTDOWN_PENDING, no new step\n"
    "starts, running steps finish, then it is SHUTDOWN. A later submit resumes it.\n"
    "\n"
    TARGET_HELP CLI_COMMON_HELP;

static const char cancel_help[] =
    "Usage: bgwf cancel (EXECUTION_ID | --app NAME [--scope S])\n"
    "\n"
    "Cancels an INCOMPLETE execution: it becomes CANCELLED and is never resumed (a\n"
    "later submit starts a new execution). Running steps get SIGTERM, then SIGKILL\n"
    "after the executor's grace period, and are recorded FAILED \"cancelled by\n"
    "operator\".\n"
    "\n"
    TARGET_HELP CLI_COMMON_HELP;

enum operation { OPERATION_REVERT, OPERATION_COMPLETE, OPERATION_SHUTDOWN, OPERATION_CANCEL };

struct operation_spec {
    const char *command;
    const char *help;
    int takes_step;
};

static const struct operation_spec operations[] = {
    [OPERATION_REVERT] = { "revert", revert_help, 1 },
    [OPERATION_COMPLETE] = { "complete", complete_help, 1 },
    [OPERATION_SHUTDOWN] = { "shutdown", shutdown_help, 0 },
    [OPERATION_CANCEL] = { "cancel", cancel_help, 0 },
};

static void print_changes(const struct change_report *report)
{
    for (int i = 0; i < report->change_count; i++)
        printf("execution %lld: step '%s' %s -> %s\n", (long long)report->execution_id,
               report->changes[i].token, report->changes[i].from, report->changes[i].to);
    if (report->attempt_to)
        printf("execution %lld: attempt %lld %s -> %s%s\n", (long long)report->execution_id,
               (long long)report->attempt_id, report->attempt_from, report->attempt_to,
               report->running_steps > 0 ? " (waiting for its running steps)" : "");
    if (report->execution_to)
        printf("execution %lld: %s -> %s\n", (long long)report->execution_id,
               report->execution_from, report->execution_to);
    if (report->running_steps > 0)
        printf("execution %lld: %d %s still running\n", (long long)report->execution_id,
               report->running_steps, report->running_steps == 1 ? "step" : "steps");
}

static int run_operation(enum operation operation, int argc, char **argv)
{
    static const struct option options[] = {
        { "app", required_argument, NULL, 'a' },
        { "scope", required_argument, NULL, 's' },
        { "downstream", no_argument, NULL, 'd' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    const struct operation_spec *spec = &operations[operation];
    struct cli_common common;
    const char *app = NULL, *scope = NULL, *id_text = NULL, *token = NULL;
    int downstream = 0, option, rc;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (option == 'a') {
            app = optarg;
        } else if (option == 's') {
            scope = optarg;
        } else if (option == 'd' && operation == OPERATION_REVERT) {
            downstream = 1;
        } else {
            rc = cli_common_option(spec->command, option, optarg, &common, spec->help);
            if (rc == -1)
                return cli_bad_option(spec->command, argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }

    int expected = (app ? 0 : 1) + spec->takes_step;
    if (argc - optind != expected)
        return cli_usage_error(spec->command, "expected %s%s%s",
                               app ? "" : "EXECUTION_ID (or --app NAME)",
                               !app && spec->takes_step ? " and " : "",
                               spec->takes_step ? "STEP" : "");
    if (scope && !app)
        return cli_usage_error(spec->command, "--scope needs --app");
    if (!app)
        id_text = argv[optind++];
    if (spec->takes_step)
        token = argv[optind];

    struct store *store = cli_open_existing_store(&common);
    if (store == NULL)
        return EXIT_FAILED;
    int64_t execution_id;
    rc = cli_resolve_execution(spec->command, store, id_text, app, scope, &execution_id);
    if (rc == 0) {
        struct change_report report;
        char *error = NULL;
        int failed;

        switch (operation) {
        case OPERATION_REVERT:
            failed = store->ops->revert(store, execution_id, token, downstream, &report, &error);
            break;
        case OPERATION_COMPLETE:
            failed = store->ops->complete(store, execution_id, token, &report, &error);
            break;
        case OPERATION_SHUTDOWN:
            failed = store->ops->shutdown(store, execution_id, &report, &error);
            break;
        default:
            failed = store->ops->cancel(store, execution_id, &report, &error);
            break;
        }
        if (failed) {
            cli_error("%s", error);
            free(error);
            rc = EXIT_FAILED;
        } else {
            print_changes(&report);
            store_free_changes(&report);
        }
    }
    store->ops->close(store);
    return rc;
}

int cmd_revert(int argc, char **argv)
{
    return run_operation(OPERATION_REVERT, argc, argv);
}

int cmd_complete(int argc, char **argv)
{
    return run_operation(OPERATION_COMPLETE, argc, argv);
}

int cmd_shutdown(int argc, char **argv)
{
    return run_operation(OPERATION_SHUTDOWN, argc, argv);
}

int cmd_cancel(int argc, char **argv)
{
    return run_operation(OPERATION_CANCEL, argc, argv);
}
