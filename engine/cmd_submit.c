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
    "\n"
    "  --scope S          run the workflow for scope S; one attempt per (NAME, scope)\n"
    "                     runs at a time\n"
    "  --context JSON     the context passed to the workflow function; @FILE reads it\n"
    "                     from a file (default: an empty object)\n"
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

int cli_submit(const struct cli_common *common, struct store **store, lua_State *L,
               const char *app, const char *scope, const char *context_json,
               int64_t *execution_id, int64_t *attempt_id)
{
    struct submit_request request;
    char *error = NULL;
    int rc = EXIT_FAILED;

    /* The workflow is checked before the store is opened, so that a
     * mistake leaves no database file behind. */
    if (luahost_build(L, app, scope, context_json, &request, &error) != 0)
        goto done;
    if (*store == NULL && (*store = cli_open_store(common)) == NULL)
        goto done;
    if ((*store)->ops->submit(*store, &request, execution_id, attempt_id, &error) != 0)
        goto done;
    printf("submitted %s: execution %lld, attempt %lld, %d steps\n", app,
           (long long)*execution_id, (long long)*attempt_id, request.step_count);
    fflush(stdout);
    rc = EXIT_OK;

done:
    if (error) {
        cli_error("%s", error);
        free(error);
    }
    luahost_free_request(&request);
    return rc;
}

int cmd_submit(int argc, char **argv)
{
    static const struct option options[] = {
        { "scope", required_argument, NULL, 's' },
        { "context", required_argument, NULL, 'c' },
        CLI_COMMON_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    struct cli_common common;
    const char *scope = NULL, *context_argument = NULL;
    char *context = NULL;
    int64_t execution_id, attempt_id;
    int option, rc;

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
        rc = cli_submit(&common, &store, L, app, scope, context, &execution_id, &attempt_id);
    if (store)
        store->ops->close(store);
    if (L)
        lua_close(L);
    free(context);
    return rc;
}
