/* The SQLite store backend: opening the file, the schema and the statements. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "store_sqlite.h"
#include "strbuf.h"

#define SCHEMA_VERSION 1

/* Readiness is kept, not recomputed: steps.pending counts unfinished
 * dependencies and steps.active is cleared when the attempt stops starting
 * steps, so the partial index steps_due contains exactly the steps that may
 * start, ordered by their next precondition check. */
static const char schema_sql[] =
    "CREATE TABLE bgwf_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE applications(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
    "CREATE TABLE executions("
    "  id INTEGER PRIMARY KEY, app_id INTEGER NOT NULL REFERENCES applications(id),"
    "  scope TEXT, status TEXT NOT NULL DEFAULT 'INCOMPLETE',"
    "  created_at INTEGER NOT NULL, ended_at INTEGER);"
    "CREATE INDEX executions_by_app ON executions(app_id, scope, id);"
    "CREATE TABLE attempts("
    "  id INTEGER PRIMARY KEY, execution_id INTEGER NOT NULL REFERENCES executions(id),"
    "  app_id INTEGER NOT NULL, scope_key TEXT NOT NULL, status TEXT NOT NULL,"
    "  step_count INTEGER NOT NULL, remaining INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, ended_at INTEGER);"
    "CREATE UNIQUE INDEX attempts_one_live ON attempts(app_id, scope_key)"
    "  WHERE status IN ('RUNNING', 'FAIL_PENDING', 'SHUTDOWN_PENDING');"
    "CREATE INDEX attempts_by_execution ON attempts(execution_id, id);"
    "CREATE TABLE steps("
    "  id INTEGER PRIMARY KEY, attempt_id INTEGER NOT NULL REFERENCES attempts(id),"
    "  app_id INTEGER NOT NULL, token TEXT NOT NULL, action TEXT NOT NULL,"
    "  status TEXT NOT NULL DEFAULT 'WAITING', pending INTEGER NOT NULL,"
    "  active INTEGER NOT NULL DEFAULT 1, cooldown_ms INTEGER NOT NULL,"
    "  next_check INTEGER NOT NULL DEFAULT 0, executor_id INTEGER,"
    "  try INTEGER NOT NULL DEFAULT 0, started_at INTEGER, ended_at INTEGER,"
    "  status_message TEXT, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,"
    "  retries INTEGER NOT NULL DEFAULT 0, backoff_initial_ms INTEGER NOT NULL DEFAULT 0,"
    "  backoff_factor REAL NOT NULL DEFAULT 1, backoff_max_ms INTEGER NOT NULL DEFAULT 0,"
    "  timeout_ms INTEGER NOT NULL DEFAULT 0, max_memory INTEGER NOT NULL DEFAULT 0,"
    /* The context stays last so that reads of the other columns skip its
     * overflow pages. */
    "  context TEXT NOT NULL,"
    "  UNIQUE(attempt_id, token));"
    "CREATE INDEX steps_due ON steps(app_id, next_check)"
    "  WHERE status = 'WAITING' AND pending = 0 AND active = 1;"
    "CREATE INDEX steps_running ON steps(executor_id) WHERE status = 'RUNNING';"
    "CREATE INDEX steps_running_by_app ON steps(app_id) WHERE status = 'RUNNING';"
    "CREATE TABLE resources("
    "  execution_id INTEGER NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,"
    "  step_id INTEGER NOT NULL, written_at INTEGER NOT NULL,"
    "  PRIMARY KEY(execution_id, name)) WITHOUT ROWID;"
    "CREATE TABLE events("
    "  id INTEGER PRIMARY KEY, at INTEGER NOT NULL, type TEXT NOT NULL,"
    "  app_id INTEGER NOT NULL, execution_id INTEGER, attempt_id INTEGER, step_token TEXT,"
    "  executor_id INTEGER, detail TEXT);"
    "CREATE INDEX events_by_app ON events(app_id, id);"
    "CREATE TABLE subscriptions("
    "  id INTEGER PRIMARY KEY, app_id INTEGER NOT NULL, events TEXT NOT NULL,"
    "  command TEXT, action TEXT, created_at INTEGER NOT NULL);"
    "CREATE INDEX subscriptions_by_app ON subscriptions(app_id);"
    "CREATE TABLE deliveries("
    "  id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL, subscription_id INTEGER NOT NULL,"
    "  app_id INTEGER NOT NULL, status TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL, executor_id INTEGER, error TEXT);"
    "CREATE INDEX deliveries_due ON deliveries(app_id, next_at) WHERE status = 'PENDING';"
    "CREATE TABLE step_tries("
    "  step_id INTEGER NOT NULL, try INTEGER NOT NULL, executor_id INTEGER,"
    "  started_at INTEGER, ended_at INTEGER, status TEXT NOT NULL, error TEXT,"
    "  PRIMARY KEY(step_id, try)) WITHOUT ROWID;"
    "CREATE INDEX steps_live ON steps(app_id)"
    "  WHERE active = 1 AND status IN ('WAITING', 'RUNNING');"
    "CREATE TABLE dependencies("
    "  depends_on INTEGER NOT NULL, step_id INTEGER NOT NULL,"
    "  PRIMARY KEY(depends_on, step_id)) WITHOUT ROWID;"
    "CREATE INDEX dependencies_by_step ON dependencies(step_id);"
    "CREATE TABLE executors("
    "  id INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
    "  apps TEXT NOT NULL, status TEXT NOT NULL, started_at INTEGER NOT NULL,"
    "  heartbeat_at INTEGER NOT NULL, stopped_at INTEGER,"
    "  heartbeat_timeout_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX executors_live ON executors(heartbeat_at) WHERE status = 'RUNNING';";

static const char *const statement_sql[SQL_COUNT] = {
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_SAVEPOINT] = "SAVEPOINT bgwf_nested",
    [SQL_RELEASE] = "RELEASE bgwf_nested",
    [SQL_ROLLBACK_SAVEPOINT] = "ROLLBACK TO bgwf_nested",
    [SQL_APP_INSERT] = "INSERT OR IGNORE INTO applications(name) VALUES (?1)",
    [SQL_APP_ID] = "SELECT id FROM applications WHERE name = ?1",
    [SQL_LIVE_ATTEMPT] =
        "SELECT id, execution_id, status FROM attempts WHERE app_id = ?1 AND scope_key = ?2"
        " AND status IN ('RUNNING', 'FAIL_PENDING', 'SHUTDOWN_PENDING')",
    [SQL_EXECUTION_INSERT] =
        "INSERT INTO executions(app_id, scope, created_at) VALUES (?1, ?2, ?3)",
    [SQL_ATTEMPT_INSERT] =
        "INSERT INTO attempts(execution_id, app_id, scope_key, status, step_count, remaining,"
        " created_at) VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?4, ?5)",
    [SQL_STEP_INSERT] =
        "INSERT INTO steps(attempt_id, app_id, token, action, pending, cooldown_ms, context,"
        " retries, backoff_initial_ms, backoff_factor, backoff_max_ms, timeout_ms, max_memory)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [SQL_DEPENDENCY_INSERT] =
        "INSERT OR IGNORE INTO dependencies(depends_on, step_id) VALUES (?1, ?2)",
    [SQL_NEWEST_SIBLING] =
        "SELECT max(n.id) FROM executions n JOIN executions e"
        " ON n.app_id = e.app_id AND n.scope IS e.scope WHERE e.id = ?1",
    [SQL_PENDING_DECREMENT] = "UPDATE steps SET pending = pending - 1 WHERE id = ?1",
    [SQL_EXECUTOR_INSERT] =
        "INSERT INTO executors(host, pid, apps, status, started_at, heartbeat_at,"
        " heartbeat_timeout_ms) VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?4, ?5)",
    [SQL_EXECUTOR_HEARTBEAT] =
        "UPDATE executors SET heartbeat_at = ?2 WHERE id = ?1 AND status = 'RUNNING'",
    [SQL_EXECUTOR_REVIVE] =
        "UPDATE executors SET heartbeat_at = ?2, status = 'RUNNING', stopped_at = NULL"
        " WHERE id = ?1",
    [SQL_EXECUTOR_STOP] =
        "UPDATE executors SET status = 'STOPPED', stopped_at = ?2 WHERE id = ?1",
    [SQL_EXECUTORS_STALE] =
        "SELECT id, host, pid, heartbeat_at FROM executors"
        " WHERE status = 'RUNNING' AND heartbeat_at < ?1 - max(?2, heartbeat_timeout_ms)",
    [SQL_EXECUTOR_DECLARE_DEAD] =
        "UPDATE executors SET status = 'STOPPED', stopped_at = ?2"
        " WHERE id = ?1 AND status = 'RUNNING'"
        " AND heartbeat_at < ?2 - max(?3, heartbeat_timeout_ms)",
    [SQL_EXECUTOR_RUNNING_STEPS] =
        "SELECT id, try FROM steps WHERE executor_id = ?1 AND status = 'RUNNING'",
    [SQL_FIND_DUE] =
        "SELECT s.id, s.attempt_id, a.execution_id, s.cooldown_ms, s.token, s.action, e.scope,"
        " s.timeout_ms, s.max_memory"
        " FROM steps s JOIN attempts a ON a.id = s.attempt_id"
        " JOIN executions e ON e.id = a.execution_id"
        " WHERE s.app_id = (SELECT id FROM applications WHERE name = ?1)"
        " AND s.status = 'WAITING' AND s.pending = 0 AND s.active = 1"
        " AND s.next_check <= ?2 AND (?4 = 0 OR s.attempt_id = ?4)"
        " ORDER BY s.next_check LIMIT ?3",
    [SQL_LOAD_CONTEXT] = "SELECT context FROM steps WHERE id = ?1",
    [SQL_CLAIM] =
        "UPDATE steps SET status = 'RUNNING', executor_id = ?2, try = try + 1,"
        " started_at = ?3, ended_at = NULL, error = NULL"
        " WHERE id = ?1 AND status = 'WAITING' AND pending = 0 AND active = 1"
        " RETURNING try",
    [SQL_STEP_COMPLETE] =
        "UPDATE steps SET status = 'COMPLETED', ended_at = ?4,"
        " status_message = coalesce(?5, status_message)"
        " WHERE id = ?1 AND status = 'RUNNING' AND executor_id = ?2 AND try = ?3"
        " RETURNING attempt_id",
    [SQL_STEP_FAIL] =
        "UPDATE steps SET status = 'FAILED', ended_at = ?4,"
        " status_message = coalesce(?5, status_message), error = ?6"
        " WHERE id = ?1 AND status = 'RUNNING' AND executor_id = ?2 AND try = ?3"
        " RETURNING attempt_id, retries, backoff_initial_ms, backoff_factor, backoff_max_ms",
    [SQL_STEP_RETRY] =
        "UPDATE steps SET status = 'WAITING', next_check = ?2 WHERE id = ?1 AND active = 1",
    [SQL_TRY_INSERT] =
        "INSERT OR REPLACE INTO step_tries(step_id, try, executor_id, started_at, ended_at,"
        " status, error) SELECT id, try, executor_id, started_at, ended_at, ?2, error"
        " FROM steps WHERE id = ?1",
    [SQL_CLAIM_LIMITED] =
        "UPDATE steps SET status = 'RUNNING', executor_id = ?2, try = try + 1,"
        " started_at = ?3, ended_at = NULL, error = NULL"
        " WHERE id = ?1 AND status = 'WAITING' AND pending = 0 AND active = 1"
        " AND (SELECT count(*) FROM steps r WHERE r.app_id = steps.app_id"
        "  AND r.status = 'RUNNING') < ?4"
        " RETURNING try",
    [SQL_RESOURCES_LOAD] =
        "SELECT name, value FROM resources WHERE execution_id = ?1 ORDER BY name",
    [SQL_RESOURCE_WRITE] =
        "INSERT OR REPLACE INTO resources(execution_id, name, value, step_id, written_at)"
        " SELECT a.execution_id, ?2, ?3, s.id, ?4 FROM steps s"
        " JOIN attempts a ON a.id = s.attempt_id WHERE s.id = ?1",
    [SQL_LEASE_CHECK] =
        "UPDATE steps SET next_check = ?3"
        " WHERE id = ?1 AND status = 'WAITING' AND next_check <= ?2",
    [SQL_EVENT_FOR_STEP] =
        "INSERT INTO events(at, type, app_id, execution_id, attempt_id, step_token,"
        " executor_id, detail) SELECT ?2, ?3, s.app_id, a.execution_id, s.attempt_id, s.token,"
        " ?4, ?5 FROM steps s JOIN attempts a ON a.id = s.attempt_id WHERE s.id = ?1",
    [SQL_EVENT_FOR_ATTEMPT] =
        "INSERT INTO events(at, type, app_id, execution_id, attempt_id, detail)"
        " SELECT ?2, ?3, app_id, execution_id, id, ?4 FROM attempts WHERE id = ?1",
    [SQL_EVENT_INSERT] =
        "INSERT INTO events(at, type, app_id, execution_id, attempt_id, step_token,"
        " executor_id, detail) SELECT ?1, ?2, id, nullif(?4, 0), nullif(?5, 0), ?6,"
        " nullif(?7, 0), ?8 FROM applications WHERE name = ?3",
    [SQL_DELIVERIES_QUEUE] =
        "INSERT INTO deliveries(event_id, subscription_id, app_id, status, next_at)"
        " SELECT e.id, s.id, e.app_id, 'PENDING', e.at FROM events e"
        " JOIN subscriptions s ON s.app_id = e.app_id"
        " WHERE e.id = ?1 AND instr(',' || s.events || ',', ',' || e.type || ',') > 0",
    [SQL_EVENTS_LIST] =
        "SELECT e.id, e.at, e.type, ap.name, e.execution_id, e.attempt_id, e.step_token,"
        " e.executor_id, e.detail FROM events e JOIN applications ap ON ap.id = e.app_id"
        " WHERE (?1 IS NULL OR ap.name = ?1) AND e.id > ?2 AND e.at >= ?3"
        " ORDER BY e.id DESC LIMIT ?4",
    [SQL_SUBSCRIBE] =
        "INSERT INTO subscriptions(app_id, events, command, action, created_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQL_SUBSCRIPTIONS_LIST] =
        "SELECT s.id, ap.name, s.events, s.command, s.action, s.created_at"
        " FROM subscriptions s JOIN applications ap ON ap.id = s.app_id"
        " WHERE ap.name = ?1 ORDER BY s.id",
    [SQL_UNSUBSCRIBE] =
        "DELETE FROM subscriptions WHERE id = ?2"
        " AND app_id = (SELECT id FROM applications WHERE name = ?1)",
    [SQL_DELIVERIES_DUE] =
        "SELECT d.id, d.tries, e.id, e.at, e.type, ap.name, e.execution_id, e.attempt_id,"
        " e.step_token, e.executor_id, e.detail, s.command, s.action"
        " FROM deliveries d JOIN events e ON e.id = d.event_id"
        " JOIN subscriptions s ON s.id = d.subscription_id"
        " JOIN applications ap ON ap.id = d.app_id"
        " WHERE d.app_id = (SELECT id FROM applications WHERE name = ?1)"
        " AND d.status = 'PENDING' AND d.next_at <= ?2 ORDER BY d.next_at LIMIT ?3",
    [SQL_DELIVERY_CLAIM] =
        "UPDATE deliveries SET status = 'RUNNING', executor_id = ?2, tries = tries + 1"
        " WHERE id = ?1 AND status = 'PENDING'",
    [SQL_DELIVERY_FINISH] =
        "UPDATE deliveries SET status = ?2, next_at = ?3, error = ?4 WHERE id = ?1",
    [SQL_STEP_TRIES] =
        "SELECT t.try, t.executor_id, t.started_at, t.ended_at, t.status, t.error"
        " FROM step_tries t WHERE t.step_id = ?1 ORDER BY t.try",
    [SQL_STEP_MESSAGE] =
        "UPDATE steps SET status_message = ?4"
        " WHERE id = ?1 AND status = 'RUNNING' AND executor_id = ?2 AND try = ?3",
    [SQL_DEPENDENTS_RELEASE] =
        "UPDATE steps SET pending = pending - 1"
        " WHERE id IN (SELECT step_id FROM dependencies WHERE depends_on = ?1)",
    [SQL_ATTEMPT_DONE_ONE] = "UPDATE attempts SET remaining = remaining - 1 WHERE id = ?1",
    [SQL_ATTEMPT_FAIL_PENDING] =
        "UPDATE attempts SET status = 'FAIL_PENDING' WHERE id = ?1 AND status = 'RUNNING'",
    [SQL_ATTEMPT_DEACTIVATE] = "UPDATE steps SET active = 0 WHERE attempt_id = ?1",
    [SQL_ATTEMPT_STATE] = "SELECT status, remaining, execution_id FROM attempts WHERE id = ?1",
    [SQL_ATTEMPT_HAS_RUNNING] =
        "SELECT EXISTS(SELECT 1 FROM steps WHERE attempt_id = ?1 AND status = 'RUNNING')",
    [SQL_ATTEMPT_END] = "UPDATE attempts SET status = ?2, ended_at = ?3 WHERE id = ?1",
    [SQL_EXECUTION_COMPLETE] =
        "UPDATE executions SET status = 'COMPLETE', ended_at = ?2"
        " WHERE id = ?1 AND status = 'INCOMPLETE'",
    [SQL_HAS_WORK_APP] =
        "SELECT EXISTS(SELECT 1 FROM steps"
        " WHERE app_id = (SELECT id FROM applications WHERE name = ?1)"
        " AND active = 1 AND status IN ('WAITING', 'RUNNING'))",
    [SQL_HAS_WORK_ATTEMPT] =
        "SELECT EXISTS(SELECT 1 FROM steps"
        " WHERE attempt_id = ?1 AND active = 1 AND status IN ('WAITING', 'RUNNING'))",
    [SQL_LATEST_EXECUTION] = "SELECT max(id) FROM executions",
    [SQL_EXECUTION_INFO] =
        "SELECT ap.name, e.scope, e.status, a.id, a.status, e.created_at"
        " FROM executions e JOIN applications ap ON ap.id = e.app_id"
        " JOIN attempts a ON a.execution_id = e.id"
        " WHERE e.id = ?1 ORDER BY a.id DESC LIMIT 1",
    [SQL_STATUS_STEPS] =
        "SELECT token, action, status, status_message, error, executor_id, try,"
        " started_at, ended_at, id, next_check, pending FROM steps"
        " WHERE attempt_id = ?1 ORDER BY id",
    [SQL_LATEST_EXECUTION_OF] =
        "SELECT id, status FROM executions WHERE app_id = ?1 AND scope IS ?2"
        " ORDER BY id DESC LIMIT 1",
    [SQL_LATEST_ATTEMPT_OF] =
        "SELECT id, status FROM attempts WHERE execution_id = ?1 ORDER BY id DESC LIMIT 1",
    [SQL_RESUME_SKIP] =
        "UPDATE steps SET status = 'SKIPPED' WHERE attempt_id = ?1 AND token IN"
        " (SELECT token FROM steps WHERE attempt_id = ?2"
        "  AND status IN ('COMPLETED', 'SKIPPED', 'MANUALLY_COMPLETED'))",
    [SQL_RESUME_PENDING] =
        "UPDATE steps SET pending = (SELECT count(*) FROM dependencies d"
        " JOIN steps p ON p.id = d.depends_on"
        " WHERE d.step_id = steps.id AND p.status <> 'SKIPPED')"
        " WHERE attempt_id = ?1 AND status = 'WAITING'",
    [SQL_RESUME_REMAINING] =
        "UPDATE attempts SET remaining = (SELECT count(*) FROM steps"
        " WHERE attempt_id = ?1 AND status <> 'SKIPPED') WHERE id = ?1 RETURNING remaining",
    [SQL_RESUME_VANISHED] =
        "SELECT token FROM steps WHERE attempt_id = ?2"
        " AND token NOT IN (SELECT token FROM steps WHERE attempt_id = ?1) ORDER BY id",
    [SQL_FIND_EXECUTION] =
        "SELECT e.id FROM executions e JOIN applications a ON a.id = e.app_id"
        " WHERE a.name = ?1 AND e.scope IS ?2 ORDER BY e.id DESC LIMIT 1",
    [SQL_EXECUTION_STATE] =
        "SELECT e.status, a.id, a.status FROM executions e"
        " JOIN attempts a ON a.execution_id = e.id WHERE e.id = ?1 ORDER BY a.id DESC LIMIT 1",
    [SQL_STEP_BY_TOKEN] =
        "SELECT id, status, executor_id FROM steps WHERE attempt_id = ?1 AND token = ?2",
    [SQL_STEP_SET_STATUS] = "UPDATE steps SET status = ?2 WHERE id = ?1",
    [SQL_DEPENDENT_STEPS] = "SELECT step_id FROM dependencies WHERE depends_on = ?1",
    [SQL_STEP_TOKEN_STATUS] = "SELECT token, status FROM steps WHERE id = ?1",
    [SQL_EXECUTION_SET_STATUS] =
        "UPDATE executions SET status = ?2, ended_at = ?3 WHERE id = ?1",
    [SQL_ATTEMPT_SET_STATUS] = "UPDATE attempts SET status = ?2 WHERE id = ?1",
    [SQL_ATTEMPT_RUNNING_COUNT] =
        "SELECT count(*) FROM steps WHERE attempt_id = ?1 AND status = 'RUNNING'",
    [SQL_ATTEMPT_CANCEL_RUNNING] =
        "UPDATE steps SET cancel_requested = 1 WHERE attempt_id = ?1 AND status = 'RUNNING'",
    [SQL_CANCELLED_STEPS] =
        "SELECT id, try FROM steps"
        " WHERE executor_id = ?1 AND status = 'RUNNING' AND cancel_requested = 1",
    [SQL_LIST_EXECUTIONS] =
        "SELECT e.id, ap.name, e.scope, e.status, e.created_at, e.ended_at,"
        " (SELECT count(*) FROM attempts a WHERE a.execution_id = e.id),"
        " (SELECT max(a.id) FROM attempts a WHERE a.execution_id = e.id),"
        " (SELECT a.status FROM attempts a WHERE a.execution_id = e.id ORDER BY a.id DESC"
        "  LIMIT 1)"
        " FROM executions e JOIN applications ap ON ap.id = e.app_id"
        " WHERE (?1 IS NULL OR ap.name = ?1) AND (?2 IS NULL OR e.status = ?2)"
        " ORDER BY e.id DESC LIMIT ?3",
    [SQL_LIST_ATTEMPTS] =
        "SELECT id, status, step_count, created_at, ended_at FROM attempts"
        " WHERE execution_id = ?1 ORDER BY id",
    [SQL_LIST_EXECUTORS] =
        "SELECT x.id, x.host, x.pid, x.apps, x.status, x.started_at, x.heartbeat_at,"
        " x.stopped_at, (SELECT count(*) FROM steps s"
        "  WHERE s.executor_id = x.id AND s.status = 'RUNNING')"
        " FROM executors x ORDER BY x.id DESC",
    [SQL_ATTEMPT_PROGRESS] =
        "SELECT a.status, a.step_count,"
        " (SELECT count(*) FROM steps s WHERE s.attempt_id = a.id"
        "  AND s.status IN ('COMPLETED', 'SKIPPED', 'MANUALLY_COMPLETED')),"
        " (SELECT count(*) FROM steps s WHERE s.attempt_id = a.id AND s.status = 'RUNNING'),"
        " (SELECT count(*) FROM steps s WHERE s.attempt_id = a.id AND s.status = 'FAILED')"
        " FROM attempts a WHERE a.id = ?1",
    [SQL_STEP_EDGES] =
        "SELECT d.depends_on, d.step_id FROM dependencies d"
        " JOIN steps s ON s.id = d.step_id WHERE s.attempt_id = ?1",
};

char *sqlite_error(struct sqlite_store *store, const char *what)
{
    return strbuf_printf("%s: %s (database %s)", what, sqlite3_errmsg(store->db), store->path);
}

sqlite3_stmt *sqlite_statement(struct sqlite_store *store, enum sql_id id, char **error)
{
    sqlite3_stmt *statement = store->statements[id];

    if (statement != NULL) {
        sqlite3_reset(statement);
        sqlite3_clear_bindings(statement);
        return statement;
    }
    if (sqlite3_prepare_v3(store->db, statement_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                           &statement, NULL) != SQLITE_OK) {
        *error = sqlite_error(store, "preparing a statement failed");
        return NULL;
    }
    store->statements[id] = statement;
    return statement;
}

int sqlite_run(struct sqlite_store *store, enum sql_id id, char **error)
{
    sqlite3_stmt *statement = store->statements[id];
    int rc = sqlite3_step(statement);

    sqlite3_reset(statement);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        *error = sqlite_error(store, "writing to the store failed");
        return -1;
    }
    return 0;
}

static int run_simple(struct sqlite_store *store, enum sql_id id, char **error)
{
    if (sqlite_statement(store, id, error) == NULL)
        return -1;
    return sqlite_run(store, id, error);
}

/* Inside an open transaction, a begin opens a savepoint instead, so that
 * an operation can run within the executor's batch and still roll back
 * alone. */
int sqlite_begin(struct sqlite_store *store, char **error)
{
    if (store->depth > 0) {
        if (run_simple(store, SQL_SAVEPOINT, error) != 0)
            return -1;
        store->depth++;
        return 0;
    }
    if (run_simple(store, SQL_BEGIN, error) != 0)
        return -1;
    store->depth = 1;
    return 0;
}

int sqlite_commit(struct sqlite_store *store, char **error)
{
    if (store->depth > 1) {
        if (run_simple(store, SQL_RELEASE, error) != 0)
            return -1;
        store->depth--;
        return 0;
    }
    if (run_simple(store, SQL_COMMIT, error) != 0)
        return -1;
    store->depth = 0;
    return 0;
}

void sqlite_rollback(struct sqlite_store *store)
{
    char *ignored = NULL;

    if (store->depth > 1) {
        run_simple(store, SQL_ROLLBACK_SAVEPOINT, &ignored);
        free(ignored);
        ignored = NULL;
        run_simple(store, SQL_RELEASE, &ignored);
        free(ignored);
        store->depth--;
        return;
    }
    store->depth = 0;
    if (sqlite3_get_autocommit(store->db))
        return;
    run_simple(store, SQL_ROLLBACK, &ignored);
    free(ignored);
}

static int sqlite_batch_begin(struct store *base, char **error)
{
    return sqlite_begin((struct sqlite_store *)base, error);
}

static int sqlite_batch_end(struct store *base, int commit, char **error)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    if (commit && sqlite_commit(store, error) == 0)
        return 0;
    sqlite_rollback(store);
    return commit ? -1 : 0;
}

int sqlite_query_int64(struct sqlite_store *store, enum sql_id id, int64_t *value, char **error)
{
    sqlite3_stmt *statement = store->statements[id];
    int rc = sqlite3_step(statement);

    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(statement, 0);
        sqlite3_reset(statement);
        return 0;
    }
    sqlite3_reset(statement);
    if (rc == SQLITE_DONE)
        return 1;
    *error = sqlite_error(store, "reading the store failed");
    return -1;
}

char *sqlite_column_text_dup(sqlite3_stmt *statement, int column)
{
    const unsigned char *text = sqlite3_column_text(statement, column);

    return text ? strbuf_dup((const char *)text) : NULL;
}

static int schema_version(struct sqlite_store *store, int *version, char **error)
{
    sqlite3_stmt *statement = NULL;
    int rc;

    *version = 0;
    rc = sqlite3_prepare_v2(store->db,
                            "SELECT count(*) FROM sqlite_master WHERE name = 'bgwf_meta'",
                            -1, &statement, NULL);
    if (rc == SQLITE_OK && sqlite3_step(statement) == SQLITE_ROW &&
        sqlite3_column_int(statement, 0) == 1) {
        sqlite3_finalize(statement);
        rc = sqlite3_prepare_v2(store->db,
                                "SELECT value FROM bgwf_meta WHERE key = 'schema_version'",
                                -1, &statement, NULL);
        if (rc == SQLITE_OK && sqlite3_step(statement) == SQLITE_ROW)
            *version = sqlite3_column_int(statement, 0);
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_OK) {
        *error = sqlite_error(store, "reading the schema version failed");
        return -1;
    }
    return 0;
}

/* Creates the schema when the file is new. Two processes that open a new
 * file at once serialize on BEGIN IMMEDIATE; the second finds the version. */
static int ensure_schema(struct sqlite_store *store, char **error)
{
    int version;
    char *message = NULL;

    if (schema_version(store, &version, error) != 0)
        return -1;
    if (version == SCHEMA_VERSION)
        return 0;

    if (sqlite3_exec(store->db, "BEGIN IMMEDIATE", NULL, NULL, &message) != SQLITE_OK)
        goto fail;
    if (schema_version(store, &version, error) != 0) {
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (version == 0) {
        char *insert = strbuf_printf(
            "INSERT INTO bgwf_meta(key, value) VALUES ('schema_version', '%d')", SCHEMA_VERSION);
        int rc = sqlite3_exec(store->db, schema_sql, NULL, NULL, &message);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(store->db, insert, NULL, NULL, &message);
        free(insert);
        if (rc != SQLITE_OK) {
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
    } else if (version != SCHEMA_VERSION) {
        sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
        *error = strbuf_printf("database %s has schema version %d, but this bgwf %s knows only "
                               "version %d: use a bgwf release that matches the database",
                               store->path, version, BGWF_VERSION, SCHEMA_VERSION);
        return -1;
    }
    if (sqlite3_exec(store->db, "COMMIT", NULL, NULL, &message) != SQLITE_OK)
        goto fail;
    return 0;

fail:
    *error = strbuf_printf("creating the schema in %s failed: %s", store->path,
                           message ? message : sqlite3_errmsg(store->db));
    sqlite3_free(message);
    return -1;
}

static void sqlite_close(struct store *base)
{
    struct sqlite_store *store = (struct sqlite_store *)base;

    for (int i = 0; i < SQL_COUNT; i++)
        sqlite3_finalize(store->statements[i]);
    sqlite3_close(store->db);
    free(store->path);
    free(store);
}

static const struct store_ops sqlite_ops = {
    .backend = "sqlite",
    .close = sqlite_close,
    .batch_begin = sqlite_batch_begin,
    .batch_end = sqlite_batch_end,
    .submit = sqlite_submit,
    .executor_register = sqlite_executor_register,
    .executor_heartbeat = sqlite_executor_heartbeat,
    .executor_stop = sqlite_executor_stop,
    .reap_dead = sqlite_reap_dead,
    .find_due = sqlite_find_due,
    .load_context = sqlite_load_context,
    .lease_check = sqlite_lease_check,
    .claim = sqlite_claim,
    .step_tries = sqlite_step_tries,
    .load_resources = sqlite_load_resources,
    .record_event = sqlite_record_event,
    .list_events = sqlite_list_events,
    .subscribe = sqlite_subscribe,
    .list_subscriptions = sqlite_list_subscriptions,
    .unsubscribe = sqlite_unsubscribe,
    .claim_deliveries = sqlite_claim_deliveries,
    .finish_delivery = sqlite_finish_delivery,
    .apply_updates = sqlite_apply_updates,
    .attempt_status = sqlite_attempt_status,
    .has_work = sqlite_has_work,
    .status = sqlite_status,
    .find_execution = sqlite_find_execution,
    .revert = sqlite_revert,
    .complete = sqlite_complete,
    .shutdown = sqlite_shutdown,
    .cancel = sqlite_cancel,
    .cancelled_steps = sqlite_cancelled_steps,
    .list_executions = sqlite_list_executions,
    .list_attempts = sqlite_list_attempts,
    .list_executors = sqlite_list_executors,
    .attempt_progress = sqlite_attempt_progress,
    .step_edges = sqlite_step_edges,
};

/* How long a statement waits for another connection's lock, in total. */
#define BUSY_TIMEOUT_US 10000000

/* The busy handler: waits 50 us, doubling up to 2 ms, and gives up after
 * BUSY_TIMEOUT_US. SQLite's own (sqlite3_busy_timeout) waits 1 ms first
 * and then longer, which leaves the machine idle when two executors'
 * transactions of well under a millisecond collide. */
static int wait_while_busy(void *data, int count)
{
    int64_t waited_us = 0, wait_us = 50;

    (void)data;
    for (int i = 0; i < count; i++) {
        waited_us += wait_us;
        if (wait_us < 2000)
            wait_us *= 2;
    }
    if (waited_us >= BUSY_TIMEOUT_US)
        return 0;
    struct timespec pause = { 0, (long)wait_us * 1000 };
    nanosleep(&pause, NULL);
    return 1;
}

struct store *store_sqlite_open(const char *path, char **error)
{
    struct sqlite_store *store = calloc(1, sizeof *store);
    char *message = NULL;
    int rc;

    if (store == NULL) {
        *error = strbuf_printf("opening %s failed: %s", path, strerror(ENOMEM));
        return NULL;
    }
    store->base.ops = &sqlite_ops;
    store->path = strbuf_dup(path);

    rc = sqlite3_open_v2(path, &store->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        *error = strbuf_printf("cannot open database '%s': %s (check that the folder exists "
                               "and is writable, or choose another file with --db or BGWF_DB)",
                               path, store->db ? sqlite3_errmsg(store->db) : sqlite3_errstr(rc));
        goto fail;
    }
    /* Concurrent executors wait for each other's short write transactions. */
    sqlite3_busy_handler(store->db, wait_while_busy, NULL);
    /* Switching a new file to WAL takes a lock that the busy handler does
     * not wait for, so processes that open a new file at once retry here. */
    for (int tries = 0;; tries++) {
        rc = sqlite3_exec(store->db,
                          "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                          "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;",
                          NULL, NULL, &message);
        if (rc == SQLITE_OK)
            break;
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && tries < 200) {
            sqlite3_free(message);
            message = NULL;
            sqlite3_sleep(50);
            continue;
        }
        *error = strbuf_printf("cannot open database '%s': %s", path, message);
        sqlite3_free(message);
        goto fail;
    }
    if (ensure_schema(store, error) != 0)
        goto fail;
    return &store->base;

fail:
    sqlite3_close(store->db);
    free(store->path);
    free(store);
    return NULL;
}
