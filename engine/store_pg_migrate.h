/* Copying an SQLite store into an empty PostgreSQL one (bgwf migrate). */
#ifndef BGWF_STORE_PG_MIGRATE_H
#define BGWF_STORE_PG_MIGRATE_H

#include <stdint.h>

#define MIGRATE_MAX_TABLES 16

/* How many rows of each table were copied. */
struct migrate_report {
    int table_count;
    struct {
        const char *name;  /* static */
        int64_t rows;
    } tables[MIGRATE_MAX_TABLES];
};

/* Copies every table of the SQLite store at sqlite_path into the PostgreSQL
 * database at url in one transaction, keeping ids, and moves the id
 * sequences past them. The target gets the schema when it has none, and
 * must hold no applications, executions or executors. Returns 0, or -1
 * with *error set (malloc'd) and nothing stored. */
int store_pg_migrate_from_sqlite(const char *sqlite_path, const char *url,
                                 struct migrate_report *report, char **error);

#endif
