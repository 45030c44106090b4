/* sqlite_claim_baseline: the cost floor of an unbatched claim. Fills a
 * table with COUNT waiting rows in a SQLite file in WAL mode with
 * synchronous=NORMAL, then claims each row with one conditional UPDATE in
 * its own BEGIN IMMEDIATE transaction, as a claim of one step would.
 *
 * Usage: sqlite_claim_baseline DATABASE COUNT
 * Prints one line: wall_s and claims_per_s of the claiming phase. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sqlite3.h>

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check(sqlite3 *db, int rc, const char *operation)
{
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "sqlite_claim_baseline: %s failed: %s\n", operation,
                sqlite3_errmsg(db));
        exit(1);
    }
}

static void exec(sqlite3 *db, const char *sql)
{
    check(db, sqlite3_exec(db, sql, NULL, NULL, NULL), sql);
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *statement = NULL;

    check(db, sqlite3_prepare_v2(db, sql, -1, &statement, NULL), sql);
    return statement;
}

static void run(sqlite3 *db, sqlite3_stmt *statement, const char *operation)
{
    check(db, sqlite3_step(statement), operation);
    sqlite3_reset(statement);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: sqlite_claim_baseline DATABASE COUNT\n");
        return 2;
    }
    long count = atol(argv[2]);
    sqlite3 *db;

    check(NULL, sqlite3_open(argv[1], &db), "opening the database");
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
             "DROP TABLE IF EXISTS steps;"
             "CREATE TABLE steps(id INTEGER PRIMARY KEY, status TEXT NOT NULL,"
             " executor_id INTEGER, try INTEGER NOT NULL DEFAULT 0, started_at INTEGER);");

    sqlite3_stmt *insert = prepare(db, "INSERT INTO steps(id, status) VALUES (?1, 'WAITING')");
    exec(db, "BEGIN");
    for (long i = 1; i <= count; i++) {
        sqlite3_bind_int64(insert, 1, i);
        run(db, insert, "inserting a row");
    }
    exec(db, "COMMIT");

    sqlite3_stmt *begin = prepare(db, "BEGIN IMMEDIATE");
    sqlite3_stmt *commit = prepare(db, "COMMIT");
    sqlite3_stmt *claim = prepare(db,
        "UPDATE steps SET status = 'RUNNING', executor_id = 1, try = try + 1, started_at = ?2"
        " WHERE id = ?1 AND status = 'WAITING'");
    long claimed = 0;
    double start = now_seconds();
    for (long i = 1; i <= count; i++) {
        run(db, begin, "BEGIN IMMEDIATE");
        sqlite3_bind_int64(claim, 1, i);
        sqlite3_bind_int64(claim, 2, (sqlite3_int64)time(NULL));
        run(db, claim, "claiming a row");
        claimed += sqlite3_changes(db);
        run(db, commit, "COMMIT");
    }
    double wall = now_seconds() - start;

    if (claimed != count) {
        fprintf(stderr, "sqlite_claim_baseline: claimed %ld of %ld rows\n", claimed, count);
        return 1;
    }
    printf("wall_s=%.4f claims_per_s=%.1f\n", wall, (double)count / wall);
    sqlite3_finalize(insert);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(claim);
    sqlite3_close(db);
    return 0;
}
