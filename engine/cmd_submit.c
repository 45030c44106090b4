/* bgwf submit: build a workflow from its file and store it for executors. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "luahost.h"
#include "names.h"
#include "strbuf.h"

static const char submit_help[] =
    "Usage: bgwf submit NAME [--scope S] [--context JSON|@FILE] [options]\n"
    "\n"
    "Builds the workflow in workflows/NAME.lua, stores it with every step WAITING,\n"
    "prints the execution and attempt ids and exits; executors run the steps.\n"
    "When the newest execution of (NAME, scope) is INCOMPLETE, its next attempt is\n"
    "stored instead: steps an earlier attempt finished are SKIPPED, the rest run.\n"
    "\n"
    "  --scope S          run the workflow for scope S; one attempt per (NAME, scope)\n"
    "                     runs at a time\n"
    "  --context JSON     the context passed to the workflow function; @FILE reads it\n"
    "                     from a file (default: an empty object)\n"
    "  --new-execution    start a new execution even when the last one is INCOMPLETE\n"
    "  --build-timeout S  stop running the workflow file's code after S seconds\n"
    "                     (default 60)\n"
    CLI_COMMON_HELP
    "\n"
    "Exit status: 0 when stored, 1 when the workflow is invalid or the store failed,\n"
    "2 on a usage error.\n";

char *cli_read_context(const char *argument)
{
    struct strbuf text = STRBUF_INIT;
    char chunk[65536];
    size_t count;
    FILE *file;

    if (argument[0] != '@')
        return strbuf_dup(argument);
    file = fopen(argument + 1, "rb");
    if (file == NULL) {
        int saved = errno;
        cli_error("cannot read the --context file '%s': %s", argument + 1, strerror(saved));
        return NULL;
    }
    while ((count = fread(chunk, 1, sizeof chunk, file)) > 0)
        strbuf_append(&text, chunk, count);
    if (ferror(file)) {
        int saved = errno;
        cli_error("reading the --context file '%s' failed: %s", argument + 1, strerror(saved));
        fclose(file);
        strbuf_free(&text);
        return NULL;
    }
    fclose(file);
    return strbuf_detach(&text);
}

static void print_outcome(const char *app, const struct submit_request *request,
                          const struct submit_outcome *outcome)
{
    if (!outcome->resumed) {
        printf("submitted %s: execution %lld, attempt %lld, %d %s\n", app,
               (long long)outcome->execution_id, (long long)outcome->attempt_id,
               request->step_count, request->step_count == 1 ? "step" : "steps");
    } else {
        printf("resumed %s: execution %lld, attempt %lld, %d %s (%d skipped: done by an "
               "earlier attempt)\n", app, (long long)outcome->execution_id,
               (long long)outcome->attempt_id, request->step_count,
               request->step_count == 1 ? "step" : "steps", outcome->skipped);
    }
    for (int i = 0; i < request->dropped_count; i++)
        fprintf(stderr, "bgwf: warning: step '%s' is not reachable from the steps workflow %s "
                "returned, so it was not stored (return it, or a step after it)\n",
                request->dropped[i], app);
    for (int i = 0; i < outcome->vanished_count; i++)
        fprintf(stderr, "bgwf: warning: step '%s' of the previous attempt is no longer in "
                "workflow %s; it will not run\n", outcome->vanished[i], app);
    if (strcmp(outcome->attempt_status, "FINISHED") == 0)
        printf("every step was done by an earlier attempt: attempt %lld FINISHED and "
               "execution %lld is COMPLETE\n", (long long)outcome->attempt_id,
               (long long)outcome->execution_id);
    fflush(stdout);
}

int cli_submit(const struct cli_common *common, struct store **store, lua_State *L,
               const char *app, const char *scope, const char *context_json, int new_execution,
               int64_t *execution_id, int64_t *attempt_id)
{
    struct submit_request request;
    struct submit_outcome outcome = { 0 };
    char *error = NULL;
    int rc = EXIT_FAILED;

    /* The workflow is checked before the store is opened, so that a
     * mistake leaves no database file behind. */
    if (luahost_build(L, app, scope, context_json, &request, &error) != 0)
        goto done;
    if (*store == NULL && (*store = cli_open_store(common)) == NULL)
        goto done;
    request.new_execution = new_execution;
    if ((*store)->ops->submit(*store, &request, &outcome, &error) != 0)
        goto done;
    print_outcome(app, &request, &outcome);
    *execution_id = outcome.execution_id;
    *attempt_id = outcome.attempt_id;
    rc = EXIT_OK;

done:
    if (error) {
        cli_error("%s", error);
        free(error);
    }
    luahost_free_request(&request);
    store_free_outcome(&outcome);
    return rc;
}

int cmd_submit(int argc, char **argv)
{
    static const struct option options[] = {
        { "scope", required_argument, NULL, 's' },
        { "context", required_argument, NULL, 'c' },
        { "new-execution", no_argument, NULL, 'n' },
        { "build-timeout", required_argument, NULL, 'b' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    const char *scope = NULL, *context_argument = NULL;
    char *context = NULL;
    int64_t execution_id, attempt_id;
    int option, rc, new_execution = 0;
    int64_t build_timeout_s = 60;

    cli_common_init(&common);
    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (option) {
        case 's':
            scope = optarg;
            break;
        case 'c':
            context_argument = optarg;
            break;
        case 'n':
            new_execution = 1;
            break;
        case 'b':
            if (cli_parse_int(optarg, 1, 86400, &build_timeout_s) != 0)
                return cli_usage_error("submit", "invalid --build-timeout '%s': use whole "
                                       "seconds from 1 to 86400", optarg);
            break;
        default:
            rc = cli_common_option("submit", option, optarg, &common, submit_help);
            if (rc == -1)
                return cli_bad_option("submit", argc, argv, option);
            if (rc != CLI_CONTINUE)
                return rc;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("submit", optind == argc ? "missing the workflow NAME"
                                                        : "expected one workflow NAME");
    const char *app = argv[optind];
    if (!names_is_valid(app)) {
        char *message = names_invalid_message("workflow", app);
        cli_error("%s", message);
        free(message);
        return EXIT_FAILED;
    }
    if (context_argument && (context = cli_read_context(context_argument)) == NULL)
        return EXIT_FAILED;

    lua_State *L = cli_open_lua(&common);
    struct store *store = NULL;
    rc = EXIT_FAILED;
    if (L)
        luahost_set_build_timeout(L, build_timeout_s * 1000);
    if (L)
        rc = cli_submit(&common, &store, L, app, scope, context, new_execution, &execution_id,
                        &attempt_id);
    if (store)
        store->ops->close(store);
    if (L)
        lua_close(L);
    free(context);
    return rc;
}
