/* The built-in action exec: runs a command without a shell and streams its
 * output to the step's log. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "bgwf.h"
#include "clock.h"
#include "native.h"
#include "strbuf.h"

/* Maximum bytes of one log line; longer lines are sent in pieces. */
#define LINE_MAX_BYTES (64 * 1024)

/* How many of the last stderr lines a failure message shows, and how many
 * bytes of each. */
#define TAIL_LINES 10
#define TAIL_LINE_BYTES 500

/* Seconds between SIGTERM and SIGKILL once the timeout has passed. */
#define KILL_GRACE_MS 5000

/* How often the command's exit is checked while it writes nothing. */
#define IDLE_POLL_MS 100

/* Report that the command's process sends over its status pipe when it
 * cannot start. Nothing arrives when execvp succeeded. */
struct start_failure {
    int stage;             /* STAGE_CHDIR or STAGE_EXEC */
    int error;             /* errno */
};

enum { STAGE_CHDIR = 1, STAGE_EXEC = 2 };

/* One output stream of the command, split into lines. */
struct stream {
    const char *label;     /* "stdout" or "stderr": starts each log line */
    int fd;                /* -1 once at end of file */
    char buffer[LINE_MAX_BYTES];
    size_t length;
};

/* The command being run, parsed from the context. String pointers stay valid
 * while the anchor table holding them is on the Lua stack. */
struct command {
    char **argv;           /* malloc'd, NULL-terminated */
    const char *cwd;       /* NULL: the step's working folder */
    const char **env_names;
    const char **env_values; /* NULL entry: unset that variable */
    int env_count;
    double timeout_seconds; /* 0: no limit */
};

struct tail {
    char *lines[TAIL_LINES];
    int next;              /* slot of the next line */
    int count;
};

/* Stores a copy of value in the anchor table at index anchor and returns it,
 * so that the pointer outlives the stack slot. [-0, +0, m] */
static const char *anchor_string(lua_State *L, int anchor, int value)
{
    const char *text;

    lua_pushvalue(L, value);
    text = lua_tostring(L, -1);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    return text;
}

/* Reads the command from ctx at index 2 into command; strings are kept in
 * the anchor table at index anchor. Raises on an invalid context.
 * [-0, +0, e] */
static void read_command(lua_State *L, int anchor, struct command *command)
{
    int count;

    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "argv") != LUA_TTABLE || (count = (int)lua_rawlen(L, -1)) == 0)
        luaL_error(L, "exec: ctx.argv must be a non-empty list of strings, for example "
                   "{ \"make\", \"-C\", \"/src\" }");
    command->argv = lua_newuserdatauv(L, sizeof *command->argv * ((size_t)count + 1), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    for (int i = 1; i <= count; i++) {
        int kind = lua_rawgeti(L, -1, i);
        if (kind != LUA_TSTRING && kind != LUA_TNUMBER)
            luaL_error(L, "exec: ctx.argv[%d] must be a string, not %s", i, lua_typename(L, kind));
        command->argv[i - 1] = (char *)anchor_string(L, anchor, -1);
        lua_pop(L, 1);
    }
    command->argv[count] = NULL;
    lua_pop(L, 1);

    int kind = lua_getfield(L, 2, "cwd");
    if (kind != LUA_TNIL && kind != LUA_TSTRING)
        luaL_error(L, "exec: ctx.cwd must be a folder path, not %s", lua_typename(L, kind));
    command->cwd = kind == LUA_TSTRING ? anchor_string(L, anchor, -1) : NULL;
    lua_pop(L, 1);

    kind = lua_getfield(L, 2, "timeout");
    if (kind != LUA_TNIL && (kind != LUA_TNUMBER || !(lua_tonumber(L, -1) > 0)))
        luaL_error(L, "exec: ctx.timeout must be a number of seconds above 0");
    command->timeout_seconds = kind == LUA_TNUMBER ? (double)lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);

    kind = lua_getfield(L, 2, "env");
    command->env_count = 0;
    if (kind == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (kind != LUA_TTABLE)
        luaL_error(L, "exec: ctx.env must be a table of NAME = value, not %s",
                   lua_typename(L, kind));
    int env = lua_gettop(L);
    count = 0;
    lua_pushnil(L);
    while (lua_next(L, env)) {
        count++;
        lua_pop(L, 1);
    }
    command->env_names = lua_newuserdatauv(L, sizeof (const char *) * ((size_t)count + 1), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    command->env_values = lua_newuserdatauv(L, sizeof (const char *) * ((size_t)count + 1), 0);
    lua_rawseti(L, anchor, (lua_Integer)lua_rawlen(L, anchor) + 1);
    lua_pushnil(L);
    while (lua_next(L, env)) {
        int value_kind = lua_type(L, -1);
        if (lua_type(L, -2) != LUA_TSTRING || lua_rawlen(L, -2) == 0 ||
            strchr(lua_tostring(L, -2), '=') != NULL)
            luaL_error(L, "exec: ctx.env keys must be variable names without '='");
        if (value_kind != LUA_TSTRING && value_kind != LUA_TNUMBER &&
            !(value_kind == LUA_TBOOLEAN && !lua_toboolean(L, -1)))
            luaL_error(L, "exec: ctx.env.%s must be a string, a number or false (to unset "
                       "it), not %s", lua_tostring(L, -2), lua_typename(L, value_kind));
        int i = command->env_count++;
        command->env_names[i] = anchor_string(L, anchor, -2);
        command->env_values[i] =
            value_kind == LUA_TBOOLEAN ? NULL : anchor_string(L, anchor, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Runs in the command's process: sets up its descriptors, environment and
 * folder, then execs. Never returns; a failure to start is sent to
 * status_fd. */
static void start_command(const struct command *command, int out_fd, int err_fd,
                          int status_fd)
{
    struct start_failure failure = { 0, 0 };
    int null_fd = open("/dev/null", O_RDONLY);

    /* The command must not outlive the step's process. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
        close(null_fd);
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    for (int i = 0; i < command->env_count; i++) {
        if (command->env_values[i])
            setenv(command->env_names[i], command->env_values[i], 1);
        else
            unsetenv(command->env_names[i]);
    }
    if (command->cwd && chdir(command->cwd) != 0) {
        failure = (struct start_failure){ STAGE_CHDIR, errno };
    } else {
        execvp(command->argv[0], command->argv);
        failure = (struct start_failure){ STAGE_EXEC, errno };
    }
    if (write(status_fd, &failure, sizeof failure) < 0) {
        /* Nothing is left to report to: the exit status 127 still fails the step. */
    }
    _exit(127);
}

/* Returns the malloc'd message for a command that could not start. */
static char *describe_start_failure(const struct command *command,
                                    const struct start_failure *failure)
{
    const char *program = command->argv[0];

    if (failure->stage == STAGE_CHDIR)
        return strbuf_printf("exec: cannot change to the working folder '%s': %s",
                             command->cwd, strerror(failure->error));
    if (failure->error == ENOENT || failure->error == ENOTDIR)
        return strbuf_printf("exec: command not found: %s", program);
    if (failure->error == EACCES)
        return strbuf_printf("exec: permission denied: %s", program);
    return strbuf_printf("exec: cannot run %s: %s", program, strerror(failure->error));
}

static void tail_add(struct tail *tail, const char *line, size_t length)
{
    free(tail->lines[tail->next]);
    if (length > TAIL_LINE_BYTES)
        tail->lines[tail->next] = strbuf_printf("%.*s...", TAIL_LINE_BYTES, line);
    else
        tail->lines[tail->next] = strbuf_printf("%.*s", (int)length, line);
    tail->next = (tail->next + 1) % TAIL_LINES;
    if (tail->count < TAIL_LINES)
        tail->count++;
}

static void tail_append_to(const struct tail *tail, struct strbuf *out)
{
    if (tail->count == 0) {
        strbuf_appendf(out, " (stderr was empty)");
        return;
    }
    /* The last line comes first, on the message's own line, because status
     * and list show only the first line of an error. */
    int last = (tail->next - 1 + TAIL_LINES) % TAIL_LINES;
    strbuf_appendf(out, ": %s", tail->lines[last]);
    if (tail->count == 1)
        return;
    strbuf_appendf(out, "\nlast %d lines of stderr:", tail->count);
    for (int i = 0; i < tail->count; i++) {
        int slot = (tail->next - tail->count + i + TAIL_LINES) % TAIL_LINES;
        strbuf_appendf(out, "\n%s", tail->lines[slot]);
    }
}

static void tail_free(struct tail *tail)
{
    for (int i = 0; i < TAIL_LINES; i++)
        free(tail->lines[i]);
}

/* Sends one line as a step log line through step:log of the step object
 * at index 1. Returns 0, or -1 with the error message pushed when sending
 * failed. [-0, +(0|1), m] */
static int send_line(lua_State *L, const struct stream *stream, const char *line,
                     size_t length)
{
    lua_getfield(L, 1, "log");
    lua_pushvalue(L, 1);
    lua_pushfstring(L, "%s: ", stream->label);
    lua_pushlstring(L, line, length);
    lua_concat(L, 2);
    return lua_pcall(L, 2, 0, 0) == LUA_OK ? 0 : -1;
}

/* Sends every whole line in the stream's buffer, and the whole buffer when
 * it is full or at_end is set. Returns 0, or -1 with the error pushed.
 * [-0, +(0|1), m] */
static int flush_lines(lua_State *L, struct stream *stream, struct tail *tail, int at_end)
{
    size_t start = 0;

    for (;;) {
        char *newline = memchr(stream->buffer + start, '\n', stream->length - start);
        size_t end;

        if (newline != NULL)
            end = (size_t)(newline - stream->buffer);
        else if (stream->length > start &&
                 (at_end || (start == 0 && stream->length == sizeof stream->buffer)))
            end = stream->length;
        else
            break;
        if (send_line(L, stream, stream->buffer + start, end - start) != 0)
            return -1;
        if (tail)
            tail_add(tail, stream->buffer + start, end - start);
        start = newline ? end + 1 : end;
    }
    memmove(stream->buffer, stream->buffer + start, stream->length - start);
    stream->length -= start;
    return 0;
}

/* Reads what is available from the stream and sends its whole lines.
 * Returns 0, or -1 with the error pushed when sending failed.
 * [-0, +(0|1), m] */
static int read_stream(lua_State *L, struct stream *stream, struct tail *tail)
{
    while (stream->fd >= 0) {
        ssize_t count = read(stream->fd, stream->buffer + stream->length,
                             sizeof stream->buffer - stream->length);
        if (count > 0) {
            stream->length += (size_t)count;
            if (flush_lines(L, stream, tail, 0) != 0)
                return -1;
            continue;
        }
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        /* End of file, or a read error that ends the stream the same way. */
        close(stream->fd);
        stream->fd = -1;
        return flush_lines(L, stream, tail, 1);
    }
    return 0;
}

/* Waits for the command, streaming its output, killing it once the timeout
 * has passed. Sets *wait_status and *timed_out. Returns 0, or -1 with the
 * error pushed when a log line could not be sent (the command is then
 * killed and reaped). [-0, +(0|1), m] */
static int supervise(lua_State *L, pid_t pid, struct stream streams[2], struct tail *tail,
                     double timeout_seconds, int *wait_status, int *timed_out)
{
    int64_t deadline = timeout_seconds > 0
        ? clock_mono_ms() + (int64_t)ceil(timeout_seconds * 1000.0) : 0;
    int64_t kill_at = 0;
    int exited = 0;

    *timed_out = 0;
    while (!exited) {
        struct pollfd fds[2];
        nfds_t count = 0;
        int64_t now = clock_mono_ms();
        int wait_ms = IDLE_POLL_MS;

        for (int i = 0; i < 2; i++)
            if (streams[i].fd >= 0)
                fds[count++] = (struct pollfd){ .fd = streams[i].fd, .events = POLLIN };
        if (deadline && !*timed_out && now >= deadline) {
            *timed_out = 1;
            kill(pid, SIGTERM);
            kill_at = now + KILL_GRACE_MS;
        }
        if (kill_at && now >= kill_at) {
            kill(pid, SIGKILL);
            kill_at = 0;
        }
        if (deadline && !*timed_out && deadline - now < wait_ms)
            wait_ms = (int)(deadline - now);
        if (poll(fds, count, wait_ms) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++)
            if (read_stream(L, &streams[i], i == 1 ? tail : NULL) != 0)
                goto send_failed;
        pid_t done = waitpid(pid, wait_status, WNOHANG);
        if (done == pid || (done < 0 && errno != EINTR))
            exited = 1;
    }

    /* NOTE: output that the command's own children write after it exited
     * is not read, because they may hold the pipes open indefinitely. */
    for (int i = 0; i < 2; i++)
        if (read_stream(L, &streams[i], i == 1 ? tail : NULL) != 0)
            return -1;
    for (int i = 0; i < 2; i++)
        if (streams[i].length > 0 && flush_lines(L, &streams[i], i == 1 ? tail : NULL, 1) != 0)
            return -1;
    return 0;

send_failed:
    kill(pid, SIGKILL);
    waitpid(pid, wait_status, 0);
    return -1;
}

/* Returns the malloc'd failure message for a command that ran, or NULL
 * when it exited with status 0. */
static char *describe_exit(const struct command *command, int wait_status, int timed_out,
                           const struct tail *tail)
{
    struct strbuf out = STRBUF_INIT;
    const char *program = command->argv[0];

    if (timed_out) {
        strbuf_appendf(&out, "exec: timed out after %g s: %s", command->timeout_seconds,
                       program);
    } else if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) {
        return NULL;
    } else if (WIFEXITED(wait_status)) {
        strbuf_appendf(&out, "exec: %s exited with status %d", program,
                       WEXITSTATUS(wait_status));
    } else if (WIFSIGNALED(wait_status)) {
        int number = WTERMSIG(wait_status);
        const char *name = sigabbrev_np(number);
        strbuf_appendf(&out, "exec: %s was killed by signal SIG%s (%s)", program,
                       name ? name : "?", strsignal(number));
    } else {
        strbuf_appendf(&out, "exec: %s ended with wait status 0x%x", program, wait_status);
    }
    tail_append_to(tail, &out);
    return strbuf_detach(&out);
}

static void close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* exec(step, ctx): runs ctx.argv (a list of strings; argv[1] is looked up
 * on PATH unless it contains '/') without a shell, in ctx.cwd, with ctx.env
 * added to the environment (false unsets a variable), and stdin from
 * /dev/null. Each line of its stdout and stderr is sent as a step log line
 * "stdout: ..." or "stderr: ...". After ctx.timeout seconds it gets SIGTERM,
 * then SIGKILL 5 s later. A command that cannot start, exits non-zero, is
 * killed by a signal or times out fails the step with the last lines of its
 * stderr. [-0, +0, e] */
static int exec_execute(lua_State *L)
{
    struct command command = { 0 };
    struct stream *streams = NULL;
    struct tail tail = { 0 };
    struct start_failure failure;
    int out_pipe[2] = { -1, -1 }, err_pipe[2] = { -1, -1 }, status_pipe[2] = { -1, -1 };
    int wait_status = 0, timed_out = 0, anchor;
    char *message = NULL;
    int rc = -1;
    pid_t pid;

    luaL_checkudata(L, 1, "bgwf.step");
    lua_newtable(L);
    anchor = lua_gettop(L);
    read_command(L, anchor, &command);

    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0 ||
        pipe2(status_pipe, O_CLOEXEC) != 0) {
        int saved = errno;
        message = strbuf_printf("exec: pipe2 failed: %s", strerror(saved));
        goto done;
    }
    streams = calloc(2, sizeof *streams);
    if (streams == NULL) {
        message = strbuf_printf("exec: %s", strerror(ENOMEM));
        goto done;
    }
    pid = fork();
    if (pid < 0) {
        int saved = errno;
        message = strbuf_printf("exec: fork failed: %s", strerror(saved));
        goto done;
    }
    if (pid == 0)
        start_command(&command, out_pipe[1], err_pipe[1], status_pipe[1]);

    close(out_pipe[1]);
    close(err_pipe[1]);
    close(status_pipe[1]);
    out_pipe[1] = err_pipe[1] = status_pipe[1] = -1;

    /* The status pipe closes on a successful exec (O_CLOEXEC); otherwise
     * the reason arrives first. */
    ssize_t got;
    do
        got = read(status_pipe[0], &failure, sizeof failure);
    while (got < 0 && errno == EINTR);
    if (got == (ssize_t)sizeof failure) {
        waitpid(pid, &wait_status, 0);
        message = describe_start_failure(&command, &failure);
        goto done;
    }

    streams[0] = (struct stream){ .label = "stdout", .fd = out_pipe[0] };
    streams[1] = (struct stream){ .label = "stderr", .fd = err_pipe[0] };
    out_pipe[0] = err_pipe[0] = -1;
    for (int i = 0; i < 2; i++)
        fcntl(streams[i].fd, F_SETFL, fcntl(streams[i].fd, F_GETFL) | O_NONBLOCK);
    if (supervise(L, pid, streams, &tail, command.timeout_seconds, &wait_status,
                  &timed_out) != 0) {
        message = strbuf_printf("exec: sending output to the step log failed: %s",
                                lua_tostring(L, -1));
        goto done;
    }
    message = describe_exit(&command, wait_status, timed_out, &tail);
    rc = message == NULL ? 0 : -1;

done:
    close_pair(out_pipe);
    close_pair(err_pipe);
    close_pair(status_pipe);
    if (streams) {
        for (int i = 0; i < 2; i++)
            if (streams[i].fd >= 0)
                close(streams[i].fd);
        free(streams);
    }
    tail_free(&tail);
    if (rc != 0) {
        lua_pushstring(L, message);
        free(message);
        return lua_error(L);
    }
    return 0;
}

const struct bgwf_action builtin_exec_action = BGWF_ACTION("exec", exec_execute, NULL);
