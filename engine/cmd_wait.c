/* bgwf wait: block until an execution's newest attempt ends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "cli.h"

#define EXIT_TIMED_OUT 3

static const char wait_help[] =
    "Usage: bgwf wait (EXECUTION_ID | --app NAME [--scope S]) [--timeout S] [options]\n"
    "\n"
    "Waits until the newest attempt of the execution ends. On a terminal, a line\n"
    "shows the progress: steps done of all, running, failed.\n"
    "\n"
    "  --app NAME         instead of EXECUTION_ID: the newest execution of NAME\n"
    "  --scope S          with --app: the newest execution of NAME for scope S\n"
    "  --timeout S        give up after S seconds (default: wait as long as it takes)\n"
    "  --poll-ms MS       how often to look (default 500)\n"
    CLI_COMMON_HELP
    "\n"
    "Exit status: 0 when the attempt FINISHED and the execution is COMPLETE; 1 when\n"
    "the attempt FAILED or was SHUTDOWN, when the execution was CANCELLED, or when it\n"
    "is INCOMPLETE because a step was reverted after the attempt finished (submit\n"
    "again to resume), or on an error; 2 on a usage error; 3 when the timeout passed\n"
    "first.\n";

static int attempt_has_ended(const char *status)
{
    return strcmp(status, "FINISHED") == 0 || strcmp(status, "FAILED") == 0 ||
           strcmp(status, "SHUTDOWN") == 0;
}

/* Returns 1, after saying why, when the execution whose newest attempt
 * ended is not COMPLETE although that attempt may have FINISHED: it was
 * cancelled, or a step was reverted since. */
static int execution_not_complete(struct store *store, int64_t execution_id)
{
    struct status_report report;
    char *error = NULL;
    int incomplete;

    if (store->ops->status(store, execution_id, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return 1;
    }
    incomplete = strcmp(report.execution_status, "COMPLETE") != 0;
    if (strcmp(report.execution_status, "CANCELLED") == 0)
        printf("execution %lld is CANCELLED\n", (long long)execution_id);
    else if (incomplete && strcmp(report.attempt_status, "FINISHED") == 0)
        printf("execution %lld is %s: a step was reverted after the attempt finished; "
               "submit again to resume\n", (long long)execution_id, report.execution_status);
    store_free_status(&report);
    return incomplete;
}

int cmd_wait(int argc, char **argv)
{
    static const struct option options[] = {
        { "app", required_argument, NULL, 'a' },
        { "scope", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "poll-ms", required_argument, NULL, 'p' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    const char *app = NULL, *scope = NULL;
    int64_t timeout_s = -1, poll_ms = 500, execution_id;
    int option, rc;

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
            if (cli_parse_int(optarg, 0, 100000000, &timeout_s) != 0)
                return cli_usage_error("wait", "invalid --timeout '%s': use whole seconds >= 0",
                                       optarg);
            break;
        case 'p':
            if (cli_parse_int(optarg, 10, 3600000, &poll_ms) != 0)
                return cli_usage_error("wait", "invalid --poll-ms '%s': use 10 to 3600000",
                                       optarg);
            break;
        default:
            rc = cli_common_option("wait", option, optarg, &common, wait_help);
            if (rc == -1)
                return cli_bad_option("wait", argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    if (argc - optind != (app ? 0 : 1))
        return cli_usage_error("wait", "expected one EXECUTION_ID (or --app NAME)");
    if (scope && !app)
        return cli_usage_error("wait", "--scope needs --app");

    struct store *store = cli_open_existing_store(&common);
    if (store == NULL)
        return EXIT_FAILED;
    rc = cli_resolve_execution("wait", store, app ? NULL : argv[optind], app, scope,
                               &execution_id);
    if (rc != 0) {
        store->ops->close(store);
        return rc;
    }

    struct status_report report;
    char *error = NULL;
    if (store->ops->status(store, execution_id, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        store->ops->close(store);
        return EXIT_FAILED;
    }
    int64_t attempt_id = report.attempt_id;
    store_free_status(&report);

    int show_progress = isatty(STDERR_FILENO);
    int64_t deadline = timeout_s >= 0 ? clock_mono_ms() + timeout_s * 1000 : -1;
    rc = EXIT_TIMED_OUT;
    for (;;) {
        struct attempt_progress progress;
        if (store->ops->attempt_progress(store, attempt_id, &progress, &error) != 0) {
            cli_error("%s", error);
            free(error);
            rc = EXIT_FAILED;
            break;
        }
        if (show_progress)
            fprintf(stderr, "\rexecution %lld attempt %lld %s: %d/%d steps done, %d running, "
                    "%d failed   ", (long long)execution_id, (long long)attempt_id,
                    progress.status, progress.done, progress.total, progress.running,
                    progress.failed);
        int ended = attempt_has_ended(progress.status);
        if (ended) {
            if (show_progress)
                fputc('\n', stderr);
            printf("execution %lld attempt %lld %s: %d/%d steps done, %d failed\n",
                   (long long)execution_id, (long long)attempt_id, progress.status,
                   progress.done, progress.total, progress.failed);
            rc = strcmp(progress.status, "FINISHED") == 0 ? EXIT_OK : EXIT_FAILED;
            if (execution_not_complete(store, execution_id))
                rc = EXIT_FAILED;
        }
        free(progress.status);
        if (ended)
            break;
        if (deadline >= 0 && clock_mono_ms() >= deadline) {
            if (show_progress)
                fputc('\n', stderr);
            fprintf(stderr, "bgwf: timed out after %lld s waiting for attempt %lld of "
                    "execution %lld\n", (long long)timeout_s, (long long)attempt_id,
                    (long long)execution_id);
            break;
        }
        struct timespec pause = { poll_ms / 1000, (poll_ms % 1000) * 1000000 };
        nanosleep(&pause, NULL);
    }
    store->ops->close(store);
    return rc;
}
