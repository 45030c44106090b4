/* bgwf migrate: copy an SQLite store into a new PostgreSQL database. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "store.h"
#ifdef BGWF_WITH_POSTGRESQL
#include "store_pg_migrate.h"
#endif

static const char migrate_help[] =
    "Usage: bgwf migrate --from sqlite:PATH --to postgresql://...\n"
    "\n"
    "Copies every execution, attempt, step, event, subscription and executor of\n"
    "an SQLite store into a PostgreSQL database, keeping their ids, in one\n"
    "transaction. The target gets the schema when it has none and must hold no\n"
    "workflows yet. Stop the executors of the SQLite store first; a step that\n"
    "runs meanwhile is copied as RUNNING, and the executors of the new store\n"
    "fail it once the old executor's heartbeat is older than their timeout.\n"
    "\n"
    "  --from sqlite:PATH  the SQLite database file to copy (\"sqlite:\" is optional)\n"
    "  --to URL            the PostgreSQL database: postgresql://USER@HOST/DB or\n"
    "                      postgres://...; see libpq's connection URIs\n"
    "  --help              show this help and exit\n";

int cmd_migrate(int argc, char **argv)
{
    static const struct option options[] = {
        { "from", required_argument, NULL, 'f' },
        { "to", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *from = NULL, *to = NULL;
    int option;

    opterr = 0;
    while ((option = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (option) {
        case 'f':
            from = optarg;
            break;
        case 't':
            to = optarg;
            break;
        case 'h':
            fputs(migrate_help, stdout);
            return EXIT_OK;
        default:
            return cli_bad_option("migrate", argc, argv, option);
        }
    }
    if (optind < argc)
        return cli_usage_error("migrate", "invalid argument '%s': migrate takes only --from "
                               "and --to", argv[optind]);
    if (from == NULL || to == NULL)
        return cli_usage_error("migrate", "both --from sqlite:PATH and --to postgresql://... "
                               "are required");
    if (strncmp(from, "sqlite:", 7) == 0)
        from += 7;
    if (*from == '\0' || store_is_postgresql(from))
        return cli_usage_error("migrate", "invalid --from '%s': give the SQLite database file "
                               "as sqlite:PATH", from);
    if (!store_is_postgresql(to))
        return cli_usage_error("migrate", "invalid --to '%s': give a postgresql:// or "
                               "postgres:// URL", to);

    /* Opening a missing file would create an empty store and copy nothing. */
    struct stat info;
    if (stat(from, &info) != 0) {
        cli_error("cannot read the SQLite database '%s': %s", from, strerror(errno));
        return EXIT_FAILED;
    }

#ifdef BGWF_WITH_POSTGRESQL
    struct migrate_report report;
    char *error = NULL;

    if (store_pg_migrate_from_sqlite(from, to, &report, &error) != 0) {
        cli_error("%s", error);
        free(error);
        return EXIT_FAILED;
    }
    for (int i = 0; i < report.table_count; i++)
        printf("%-14s %lld rows\n", report.tables[i].name, (long long)report.tables[i].rows);
    printf("copied %s into the PostgreSQL database\n", from);
    return EXIT_OK;
#else
    cli_error("this bgwf was built without the PostgreSQL backend (libpq was not found at "
              "build time, or BGWF_WITH_POSTGRESQL was OFF): install libpq-dev and rebuild");
    return EXIT_FAILED;
#endif
}
