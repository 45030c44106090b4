/* The parts every bgwf command shares: common options, errors and opening
 * the store and the Lua state. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "log.h"
#include "luahost.h"

void cli_common_init(struct cli_common *common)
{
    const char *db = getenv("BGWF_DB");
    const char *path = getenv("BGWF_PATH");

    common->db = db && *db ? db : "bgwf.db";
    common->path = path && *path ? path : ".";
}

int cli_common_option(const char *command, int option, const char *value,
                      struct cli_common *common, const char *help)
{
    enum log_level level;

    switch (option) {
    case OPTION_DB:
        if (*value == '\0')
            return cli_usage_error(command, "--db needs a file path");
        common->db = value;
        return CLI_CONTINUE;
    case OPTION_PATH:
        if (*value == '\0')
            return cli_usage_error(command, "--path needs one or more folders");
        common->path = value;
        return CLI_CONTINUE;
    case OPTION_LOG_LEVEL:
        if (log_parse_level(value, &level) != 0)
            return cli_usage_error(command, "invalid --log-level '%s': use debug, info, warn "
                                   "or error", value);
        log_set_level(level);
        return CLI_CONTINUE;
    case OPTION_LOG_FORMAT:
        if (strcmp(value, "text") == 0)
            log_set_format(LOG_FORMAT_TEXT);
        else if (strcmp(value, "json") == 0)
            log_set_format(LOG_FORMAT_JSON);
        else
            return cli_usage_error(command, "invalid --log-format '%s': use text or json", value);
        return CLI_CONTINUE;
    case OPTION_HELP:
        fputs(help, stdout);
        return EXIT_OK;
    default:
        return -1;
    }
}

int cli_usage_error(const char *command, const char *format, ...)
{
    va_list args;

    fprintf(stderr, "bgwf %s: ", command);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fprintf(stderr, "\nRun 'bgwf %s --help' for usage.\n", command);
    return EXIT_USAGE;
}

int cli_bad_option(const char *command, int argc, char **argv, int option)
{
    const char *given = optind - 1 < argc ? argv[optind - 1] : "?";

    if (option == ':')
        return cli_usage_error(command, "option '%s' needs a value", given);
    return cli_usage_error(command, "unknown option '%s'", given);
}

void cli_error(const char *format, ...)
{
    va_list args;

    fputs("bgwf: ", stderr);
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

int cli_parse_int(const char *text, int64_t min, int64_t max, int64_t *value)
{
    char *end;
    long long parsed;

    errno = 0;
    parsed = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < min || parsed > max)
        return -1;
    *value = parsed;
    return 0;
}

struct store *cli_open_store(const struct cli_common *common)
{
    char *error = NULL;
    struct store *store = store_open(common->db, &error);

    if (store == NULL) {
        cli_error("%s", error);
        free(error);
    }
    return store;
}

struct store *cli_open_existing_store(const struct cli_common *common)
{
    struct stat info;

    if (strstr(common->db, "://") == NULL && stat(common->db, &info) != 0) {
        int saved = errno;
        cli_error("database '%s' cannot be read: %s (nothing was submitted to it yet? check "
                  "--db or BGWF_DB)", common->db, strerror(saved));
        return NULL;
    }
    return cli_open_store(common);
}

lua_State *cli_open_lua(const struct cli_common *common)
{
    char *error = NULL;
    lua_State *L = luahost_open(common->path, &error);

    if (L == NULL) {
        cli_error("%s", error);
        free(error);
    }
    return L;
}

void cli_format_time(int64_t ms, char *text, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm parts;

    if (ms == 0) {
        snprintf(text, size, "-");
        return;
    }
    localtime_r(&seconds, &parts);
    strftime(text, size, "%Y-%m-%d %H:%M:%S", &parts);
}

int cli_resolve_execution(const char *command, struct store *store, const char *id_text,
                          const char *app, const char *scope, int64_t *execution_id)
{
    char *error = NULL;

    if (id_text) {
        if (cli_parse_int(id_text, 1, INT64_MAX, execution_id) != 0)
            return cli_usage_error(command, "invalid EXECUTION_ID '%s': use the number that "
                                   "bgwf submit or bgwf list printed", id_text);
        return 0;
    }
    if (store->ops->find_execution(store, app, scope, execution_id, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return EXIT_FAILED;
    }
    return 0;
}
