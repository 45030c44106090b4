/* The parts every bgwf command shares: common options, errors and opening
 * the store and the Lua state. */
#ifndef BGWF_CLI_H
#define BGWF_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "store.h"

/* Exit statuses of the commands. */
#define EXIT_OK 0
#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* Option values above this are the common options below. */
enum {
    OPTION_DB = 1000,
    OPTION_PATH,
    OPTION_LOG_LEVEL,
    OPTION_LOG_FORMAT,
    OPTION_HELP,
};

#define CLI_COMMON_OPTIONS                                   \
    { "db", required_argument, NULL, OPTION_DB },            \
    { "path", required_argument, NULL, OPTION_PATH },        \
    { "log-level", required_argument, NULL, OPTION_LOG_LEVEL }, \
    { "log-format", required_argument, NULL, OPTION_LOG_FORMAT }, \
    { "help", no_argument, NULL, OPTION_HELP }

#define CLI_COMMON_HELP                                                              \
    "  --db PATH|URL      SQLite database file, or a postgresql:// URL\n"             \
    "                     (default $BGWF_DB, else ./bgwf.db)\n"                       \
    "  --path DIRS        ':'-separated folders holding workflows/ and actions/\n"     \
    "                     (default $BGWF_PATH, else the current folder)\n"             \
    "  --log-level LEVEL  debug, info, warn or error (default info)\n"                 \
    "  --log-format F     text or json: how log lines on stderr look (default text)\n"  \
    "  --help             show this help and exit\n"

/* Returned by cli_common_option when it took the option and parsing goes on. */
#define CLI_CONTINUE (-2)

struct cli_common {
    const char *db;
    const char *path;
};

/* Fills common with the defaults from BGWF_DB and BGWF_PATH. */
void cli_common_init(struct cli_common *common);

/* Handles one of the common options. Returns CLI_CONTINUE when it took the
 * option, EXIT_OK after printing help for --help, EXIT_USAGE after printing
 * the error for a bad value, and -1 when option is not a common one. */
int cli_common_option(const char *command, int option, const char *value,
                      struct cli_common *common, const char *help);


/* Prints "bgwf COMMAND: MESSAGE" and a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const char *command, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns the usage error for the getopt failure on argv[optind - 1]. */
int cli_bad_option(const char *command, int argc, char **argv, int option);

/* Prints "bgwf: MESSAGE" to stderr. */
void cli_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Parses a decimal integer in [min, max]. Returns 0, or -1 when text is not
 * one. */
int cli_parse_int(const char *text, int64_t min, int64_t max, int64_t *value);

/* Opens the store named by common->db; prints the error and returns NULL on
 * failure. */
struct store *cli_open_store(const struct cli_common *common);

/* Opens the store like cli_open_store, but fails instead of creating an
 * SQLite file that does not exist: for commands that only read or steer. */
struct store *cli_open_existing_store(const struct cli_common *common);

/* Opens a Lua state with common->path as the search path; prints the error
 * and returns NULL on failure. */
lua_State *cli_open_lua(const struct cli_common *common);

/* Runs the bgwf command line (argv[1] is the command) and returns the
 * process exit status. */
int cli_main(int argc, char **argv);

/* The commands: each takes its own argv (argv[0] is the command name) and
 * returns the process exit status. */
int cmd_submit(int argc, char **argv);
int cmd_executor(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* Submits app with scope and the context JSON (NULL for none), printing the
 * ids. Opens the store into *store when it is NULL, once the workflow was
 * built; the caller closes it. Shared by submit and run. Returns EXIT_OK
 * with the ids set, or EXIT_FAILED after printing the error. */
int cli_submit(const struct cli_common *common, struct store **store, lua_State *L,
               const char *app, const char *scope, const char *context_json, int new_execution,
               int64_t *execution_id, int64_t *attempt_id);

/* Reads --context: JSON text, or @FILE for a file's contents. Returns a
 * malloc'd string, or NULL after printing the error. */
char *cli_read_context(const char *argument);

/* Prints the status table of an execution (0: the latest). Returns an exit
 * status. */
int cli_print_status(struct store *store, int64_t execution_id, int as_json);

/* Prints an execution as status does, and with with_attempts its attempts
 * first (bgwf show). Returns an exit status. */
int cli_print_execution(struct store *store, int64_t execution_id, int as_json,
                        int with_attempts);

/* Writes ms since the epoch as local "YYYY-MM-DD HH:MM:SS" into text, or "-"
 * for 0. */
void cli_format_time(int64_t ms, char *text, size_t size);

/* Resolves the execution an operator command names: the EXECUTION_ID
 * argument id_text, or else the newest execution of app (with scope).
 * Returns 0, or an exit status after printing the error. */
int cli_resolve_execution(const char *command, struct store *store, const char *id_text,
                          const char *app, const char *scope, int64_t *execution_id);

int cmd_revert(int argc, char **argv);
int cmd_complete(int argc, char **argv);
int cmd_shutdown(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_executors(int argc, char **argv);
int cmd_wait(int argc, char **argv);
int cmd_graph(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_notify(int argc, char **argv);
int cmd_migrate(int argc, char **argv);

#endif
