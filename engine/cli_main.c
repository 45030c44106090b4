/* The bgwf command line: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "luahost.h"
#include "spawner.h"

static const char main_help[] =
    "Usage: bgwf COMMAND [options]\n"
    "\n"
    "bgwf runs workflows of Lua steps in the background: submit stores a workflow\n"
    "and exits; executors, on one host or many, run its steps in forked processes.\n"
    "\n"
    "Commands:\n"
    "  submit NAME     store workflows/NAME.lua as a new execution and exit\n"
    "  executor        run steps of the given applications until stopped\n"
    "  run NAME        submit and run a workflow in this process until it ends\n"
    "  status [ID]     show the steps of an execution (default: the newest)\n"
    "  show ID         an execution, its attempts and its steps\n"
    "  list            executions, newest first\n"
    "  executors       executors with their heartbeats and running steps\n"
    "  wait ID         block until the execution's attempt ends\n"
    "  graph ID        the DAG in Graphviz DOT, coloured by status\n"
    "  logs ID [STEP]  what the steps wrote, interleaved by time\n"
    "  events          stored events: starts, successes, failures, dead executors\n"
    "  notify APP      deliver APP's events to a command or an action\n"
    "  revert ID STEP  mark a finished step REVERTED so the next attempt runs it\n"
    "  complete ID STEP  mark a step MANUALLY_COMPLETED so it does not run\n"
    "  shutdown ID     stop starting steps of the running attempt; resume later\n"
    "  cancel ID       cancel an execution for good, stopping its running steps\n"
    "  migrate         copy an SQLite store into a new PostgreSQL database\n"
    "\n"
    "Options:\n"
    "  --help          show this help and exit\n"
    "  --version       show the version and exit\n"
    "\n"
    "Run 'bgwf COMMAND --help' for a command's options.\n"
    "Environment: BGWF_DB (database file or postgresql:// URL), BGWF_PATH\n"
    "(folders with workflows/ and actions/).\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    { "submit", cmd_submit },
    { "executor", cmd_executor },
    { "run", cmd_run },
    { "status", cmd_status },
    { "show", cmd_show },
    { "list", cmd_list },
    { "executors", cmd_executors },
    { "wait", cmd_wait },
    { "graph", cmd_graph },
    { "logs", cmd_logs },
    { "events", cmd_events },
    { "notify", cmd_notify },
    { "revert", cmd_revert },
    { "complete", cmd_complete },
    { "shutdown", cmd_shutdown },
    { "cancel", cmd_cancel },
    { "migrate", cmd_migrate },
};

int cli_main(int argc, char **argv)
{
    spawner_set_program(argv[0]);
    luahost_time_builds_by_alarm();
    if (argc < 2) {
        fputs(main_help, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(main_help, stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("bgwf %s\n", BGWF_VERSION);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "__spawner") == 0)
        return spawner_main(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bgwf: unknown command '%s'\nRun 'bgwf --help' for the commands.\n",
            argv[1]);
    return EXIT_USAGE;
}
