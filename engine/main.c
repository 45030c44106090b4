/* The bgwf command: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

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
    "\n"
    "Options:\n"
    "  --help          show this help and exit\n"
    "  --version       show the version and exit\n"
    "\n"
    "Run 'bgwf COMMAND --help' for a command's options.\n"
    "Environment: BGWF_DB (database file), BGWF_PATH (folders with workflows/ and\n"
    "actions/).\n";

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    { "submit", cmd_submit },
    { "executor", cmd_executor },
    { "run", cmd_run },
    { "status", cmd_status },
};

int main(int argc, char **argv)
{
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
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "bgwf: unknown command '%s'\nRun 'bgwf --help' for the commands.\n",
            argv[1]);
    return EXIT_USAGE;
}
