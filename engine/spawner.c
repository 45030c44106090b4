/* The spawner: a small process, started fresh with exec, that forks the
 * children of steps for the executor. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>

#include "clock.h"
#include "log.h"
#include "luahost.h"
#include "spawner.h"
#include "strbuf.h"

/* Set in the spawner's environment when bgwf, not the user, set
 * LD_BIND_NOW there; the spawner then removes both before any step runs. */
#define BIND_NOW_ADDED "BGWF_SPAWNER_BIND_NOW"

/* Marks a NULL string in a request. */
#define NULL_LENGTH UINT32_MAX

/* The program that runs the spawner: this program, as found from argv[0].
 * /proc/self/exe is the fallback; it names the wrong file under a tool
 * such as valgrind. */
static char program_path[4096] = "/proc/self/exe";

/* The spawner's SIGCHLD handler writes here to wake its poll(). */
static int child_signal_pipe[2] = { -1, -1 };

static int write_all(int fd, const void *data, size_t length)
{
    const char *p = data;

    while (length > 0) {
        ssize_t written = write(fd, p, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += written;
        length -= (size_t)written;
    }
    return 0;
}

static int read_all(int fd, void *data, size_t length)
{
    char *p = data;

    while (length > 0) {
        ssize_t count = read(fd, p, length);
        if (count == 0)
            return -1;
        if (count < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += count;
        length -= (size_t)count;
    }
    return 0;
}

static void put_int(struct strbuf *out, int64_t value)
{
    strbuf_append(out, (const char *)&value, sizeof value);
}

static void put_text(struct strbuf *out, const char *text)
{
    uint32_t length = text ? (uint32_t)strlen(text) : NULL_LENGTH;

    strbuf_append(out, (const char *)&length, sizeof length);
    if (text)
        strbuf_append(out, text, length);
}

/* A cursor over a received request. */
struct reader {
    const char *data;
    size_t length;
    size_t offset;
    int failed;
};

static int64_t get_int(struct reader *reader)
{
    int64_t value = 0;

    if (reader->offset + sizeof value > reader->length) {
        reader->failed = 1;
        return 0;
    }
    memcpy(&value, reader->data + reader->offset, sizeof value);
    reader->offset += sizeof value;
    return value;
}

static char *get_text(struct reader *reader)
{
    uint32_t length;

    if (reader->offset + sizeof length > reader->length) {
        reader->failed = 1;
        return NULL;
    }
    memcpy(&length, reader->data + reader->offset, sizeof length);
    reader->offset += sizeof length;
    if (length == NULL_LENGTH)
        return NULL;
    if (reader->offset + length > reader->length) {
        reader->failed = 1;
        return NULL;
    }
    char *text = strbuf_printf("%.*s", (int)length, reader->data + reader->offset);
    reader->offset += length;
    return text;
}

/* Serializes what the child of run needs. */
static void encode_request(const struct step_run *run, struct strbuf *out)
{
    uint32_t placeholder = 0;
    size_t start = out->length;

    strbuf_append(out, (const char *)&placeholder, sizeof placeholder);
    put_int(out, run->kind);
    put_int(out, run->step.step_id);
    put_int(out, run->step.attempt_id);
    put_int(out, run->step.execution_id);
    put_int(out, run->try_number);
    put_int(out, run->step.max_memory);
    put_text(out, run->step.token);
    put_text(out, run->step.action);
    put_text(out, run->step.app);
    put_text(out, run->step.scope);
    put_text(out, run->context);
    put_text(out, run->command);
    put_text(out, run->event_type);
    put_text(out, run->event_step);
    put_int(out, run->snapshot_count);
    for (int i = 0; i < run->snapshot_count; i++) {
        put_text(out, run->snapshot[i].name);
        put_text(out, run->snapshot[i].value);
    }
    uint32_t length = (uint32_t)(out->length - start - sizeof placeholder);
    memcpy(out->data + start, &length, sizeof length);
}

static int decode_request(struct reader *reader, struct step_run *run)
{
    memset(run, 0, sizeof *run);
    run->report_fd = -1;
    run->output_fd = -1;
    run->log.fd = -1;
    run->kind = (enum run_kind)get_int(reader);
    run->step.step_id = get_int(reader);
    run->step.attempt_id = get_int(reader);
    run->step.execution_id = get_int(reader);
    run->try_number = (int)get_int(reader);
    run->step.max_memory = get_int(reader);
    run->step.token = get_text(reader);
    run->step.action = get_text(reader);
    run->step.app = get_text(reader);
    run->step.scope = get_text(reader);
    run->context = get_text(reader);
    run->command = get_text(reader);
    run->event_type = get_text(reader);
    run->event_step = get_text(reader);
    int64_t count = get_int(reader);
    if (count < 0 || count > 1000000)
        reader->failed = 1;
    for (int64_t i = 0; i < count && !reader->failed; i++) {
        run->snapshot = realloc(run->snapshot, (size_t)(i + 1) * sizeof *run->snapshot);
        run->snapshot[i].name = get_text(reader);
        run->snapshot[i].value = get_text(reader);
        run->snapshot_count = (int)i + 1;
    }
    return reader->failed ? -1 : 0;
}

/* The spawner replies to the requests it found waiting together, in one
 * message of at most REPLY_MAX entries: each entry is the child's pid, or
 * 0 and the length of an error text. The texts follow the message in
 * entry order, and the two pipe ends of each child that started ride on
 * it as SCM_RIGHTS, in the same order. */
#define REPLY_MAX SPAWNER_REPLY_MAX

struct reply {
    int32_t count;
    int32_t pid[REPLY_MAX];
    uint32_t error_length[REPLY_MAX];
};

/* The entries, descriptors and error texts of one reply. */
struct reply_batch {
    struct reply reply;
    int fds[2 * REPLY_MAX];
    int fd_count;
    struct strbuf errors;
};

static int send_reply(int fd, struct reply_batch *batch)
{
    struct iovec part = { &batch->reply, sizeof batch->reply };
    union {
        char buffer[CMSG_SPACE(2 * REPLY_MAX * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr message = { .msg_iov = &part, .msg_iovlen = 1 };

    if (batch->fd_count > 0) {
        memset(&control, 0, sizeof control);
        message.msg_control = control.buffer;
        message.msg_controllen = CMSG_SPACE((size_t)batch->fd_count * sizeof(int));
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN((size_t)batch->fd_count * sizeof(int));
        memcpy(CMSG_DATA(cmsg), batch->fds, (size_t)batch->fd_count * sizeof(int));
    }
    while (sendmsg(fd, &message, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    if (batch->errors.length > 0 && write_all(fd, batch->errors.data, batch->errors.length) != 0)
        return -1;
    return 0;
}

void spawner_set_program(const char *argv0)
{
    char resolved[4096];

    if (argv0 == NULL)
        return;
    if (strchr(argv0, '/') != NULL) {
        if (realpath(argv0, resolved) != NULL)
            snprintf(program_path, sizeof program_path, "%s", resolved);
        return;
    }
    /* A bare name was found on PATH by the shell; look it up the same way. */
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t length = end ? (size_t)(end - path) : strlen(path);
        char candidate[4096];
        snprintf(candidate, sizeof candidate, "%.*s/%s", (int)length, length ? path : ".",
                 argv0);
        if (access(candidate, X_OK) == 0 && realpath(candidate, resolved) != NULL) {
            snprintf(program_path, sizeof program_path, "%s", resolved);
            return;
        }
        path = end ? end + 1 : NULL;
    }
}

int spawner_start(struct spawner *spawner, const char *search_path, char **error)
{
    int sockets[2], exits[2];

    spawner->pid = 0;
    spawner->request_fd = spawner->exit_fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets) != 0) {
        int saved = errno;
        *error = strbuf_printf("socketpair failed: %s", strerror(saved));
        return -1;
    }
    if (pipe2(exits, O_CLOEXEC) != 0) {
        int saved = errno;
        close(sockets[0]);
        close(sockets[1]);
        *error = strbuf_printf("pipe2 failed: %s", strerror(saved));
        return -1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(sockets[0]);
        close(sockets[1]);
        close(exits[0]);
        close(exits[1]);
        *error = strbuf_printf("fork failed: %s", strerror(saved));
        return -1;
    }
    if (pid == 0) {
        char request_text[16], exit_text[16];
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        fcntl(sockets[1], F_SETFD, 0);
        fcntl(exits[1], F_SETFD, 0);
        snprintf(request_text, sizeof request_text, "%d", sockets[1]);
        snprintf(exit_text, sizeof exit_text, "%d", exits[1]);
        /* Bind every library symbol when the spawner starts, not on first
         * call: lazy binding would repeat in each child. */
        if (getenv("LD_BIND_NOW") == NULL) {
            setenv("LD_BIND_NOW", "1", 1);
            setenv(BIND_NOW_ADDED, "1", 1);
        }
        execl(program_path, "bgwf", "__spawner", request_text, exit_text, search_path,
              (char *)NULL);
        int saved = errno;
        fprintf(stderr, "bgwf: starting the spawner (%s) failed: %s\n", program_path,
                strerror(saved));
        _exit(127);
    }
    close(sockets[1]);
    close(exits[1]);
    fcntl(exits[0], F_SETFL, fcntl(exits[0], F_GETFL) | O_NONBLOCK);
    spawner->pid = pid;
    spawner->request_fd = sockets[0];
    spawner->exit_fd = exits[0];
    return 0;
}

int spawner_send(struct spawner *spawner, struct step_run **runs, int count, char **error)
{
    struct strbuf request = STRBUF_INIT;

    for (int i = 0; i < count; i++)
        encode_request(runs[i], &request);
    int sent = write_all(spawner->request_fd, request.data, request.length);
    strbuf_free(&request);
    if (sent != 0) {
        int saved = errno;
        *error = strbuf_printf("sending the start request to the spawner failed: %s",
                               strerror(saved));
        return -1;
    }
    return 0;
}

int spawner_read_reply(struct spawner *spawner, struct step_run **runs, int count, char **errors)
{
    struct reply reply;
    union {
        char buffer[CMSG_SPACE(2 * REPLY_MAX * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec part = { &reply, sizeof reply };
    struct msghdr message = {
        .msg_iov = &part, .msg_iovlen = 1,
        .msg_control = control.buffer, .msg_controllen = sizeof control.buffer,
    };
    ssize_t received;
    int fds[2 * REPLY_MAX];
    int fd_count = 0;

    do {
        received = recvmsg(spawner->request_fd, &message, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (received < 0 && errno == EINTR);
    if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (received <= 0)
        return -1;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message); cmsg != NULL;
         cmsg = CMSG_NXTHDR(&message, cmsg)) {
        if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        if (n > 2 * REPLY_MAX - fd_count)
            n = 2 * REPLY_MAX - fd_count;
        memcpy(fds + fd_count, CMSG_DATA(cmsg), (size_t)n * sizeof(int));
        fd_count += n;
    }
    /* The spawner is writing the rest of this reply now. */
    if ((size_t)received < sizeof reply &&
        read_all(spawner->request_fd, (char *)&reply + received, sizeof reply - (size_t)received) != 0)
        return -1;
    if (reply.count < 1 || reply.count > REPLY_MAX || reply.count > count) {
        for (int i = 0; i < fd_count; i++)
            close(fds[i]);
        return -2;
    }
    int next_fd = 0;
    for (int i = 0; i < reply.count; i++) {
        struct step_run *run = runs[i];
        errors[i] = NULL;
        if (reply.pid[i] <= 0) {
            char *text = calloc(1, (size_t)reply.error_length[i] + 1);
            if (read_all(spawner->request_fd, text, reply.error_length[i]) != 0) {
                free(text);
                for (int j = 0; j < i; j++)
                    free(errors[j]);
                return -1;
            }
            errors[i] = strbuf_printf("the spawner could not start the step: %s", text);
            free(text);
            continue;
        }
        if (next_fd + 2 > fd_count) {
            errors[i] = strbuf_printf("the spawner sent no pipes for process %d",
                                      (int)reply.pid[i]);
            kill(-reply.pid[i], SIGKILL);
            continue;
        }
        run->pid = reply.pid[i];
        run->report_fd = fds[next_fd++];
        run->output_fd = fds[next_fd++];
        run->started_mono = clock_mono_ms();
    }
    return reply.count;
}

int spawner_read_exits(struct spawner *spawner, struct spawner_exit *exits, int max)
{
    int32_t record[2];
    int count = 0;

    while (count < max) {
        ssize_t got = read(spawner->exit_fd, record, sizeof record);
        if (got == (ssize_t)sizeof record) {
            exits[count].pid = record[0];
            exits[count].wait_status = record[1];
            count++;
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return count;
        /* End of file: the spawner is gone. Records are written whole. */
        return count > 0 ? count : -1;
    }
    return count;
}

void spawner_stop(struct spawner *spawner)
{
    if (spawner->request_fd >= 0)
        close(spawner->request_fd);
    if (spawner->exit_fd >= 0)
        close(spawner->exit_fd);
    if (spawner->pid > 0)
        waitpid(spawner->pid, NULL, 0);
    spawner->pid = 0;
    spawner->request_fd = spawner->exit_fd = -1;
}

static void on_child_signal(int number)
{
    int saved = errno;
    char byte = 0;
    ssize_t ignored = write(child_signal_pipe[1], &byte, 1);

    (void)ignored;
    (void)number;
    errno = saved;
}

/* Reaps the children that ended and reports them. A child's process group
 * is killed before it is reaped, while its zombie still keeps the group
 * id, so that what the step left behind goes with it. */
static void reap_and_report(int exit_fd)
{
    for (;;) {
        siginfo_t info;
        int status;

        memset(&info, 0, sizeof info);
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0)
            return;
        pid_t pid = info.si_pid;
        kill(-pid, SIGKILL);
        if (waitpid(pid, &status, 0) != pid)
            return;
        int32_t record[2] = { (int32_t)pid, (int32_t)status };
        if (write_all(exit_fd, record, sizeof record) != 0)
            _exit(0);
    }
}

/* Loads the action into the spawner's own Lua state, once, so that each
 * child finds it compiled instead of reading and compiling its file. The
 * executor ran the file's top level already, to look for a precondition.
 * An action that fails to load is left to the child, which reports why. */
static void warm_action(lua_State *L, const struct step_run *run)
{
    char *error = NULL;

    if (run->kind == RUN_NOTIFY && run->command != NULL)
        return;
    if (luahost_push_action(L, run->step.action, &error) == 0)
        lua_pop(L, 1);
    else
        free(error);
}

/* A request read from the executor, until its child started. */
struct request {
    struct step_run run;
    char *payload;
    char *error;           /* why its child did not start; malloc'd */
};

/* Static, so that the pages they live on are the same for every batch. */
static struct request requests[REPLY_MAX];
static struct reply_batch batch;

/* Reads and decodes one request into request. */
static void read_request(int request_fd, struct request *request)
{
    uint32_t length;

    if (read_all(request_fd, &length, sizeof length) != 0)
        _exit(0);
    request->payload = malloc(length ? length : 1);
    request->error = NULL;
    if (request->payload == NULL || read_all(request_fd, request->payload, length) != 0)
        _exit(0);
    struct reader reader = { request->payload, length, 0, 0 };
    if (decode_request(&reader, &request->run) != 0)
        request->error = strbuf_dup("the start request was malformed");
}

/* Returns 1 when the next request is already waiting on fd. */
static int request_waiting(int fd)
{
    struct pollfd ready = { .fd = fd, .events = POLLIN };

    return poll(&ready, 1, 0) == 1 && (ready.revents & POLLIN);
}

/* Starts the children of the requests waiting together, at most
 * REPLY_MAX, and replies to them in one message.
 *
 * The kernel copies every page the spawner writes while a child still
 * shares it. So the work goes in phases: all requests are read and their
 * actions loaded first, then the children are forked back to back, and
 * the allocations are freed last. */
static void serve_requests(lua_State *L, int request_fd)
{
    int count = 0;

    do {
        read_request(request_fd, &requests[count++]);
    } while (count < REPLY_MAX && request_waiting(request_fd));
    for (int i = 0; i < count; i++)
        if (requests[i].error == NULL)
            warm_action(L, &requests[i].run);
    for (int i = 0; i < count; i++)
        if (requests[i].error == NULL)
            runner_spawn(L, &requests[i].run, &requests[i].error);

    memset(&batch.reply, 0, sizeof batch.reply);
    batch.fd_count = 0;
    batch.errors = (struct strbuf)STRBUF_INIT;
    batch.reply.count = count;
    for (int i = 0; i < count; i++) {
        struct request *request = &requests[i];
        if (request->error != NULL) {
            batch.reply.error_length[i] = (uint32_t)strlen(request->error);
            strbuf_append(&batch.errors, request->error, strlen(request->error));
            continue;
        }
        batch.reply.pid[i] = (int32_t)request->run.pid;
        batch.fds[batch.fd_count++] = request->run.report_fd;
        batch.fds[batch.fd_count++] = request->run.output_fd;
    }
    if (send_reply(request_fd, &batch) != 0)
        _exit(0);
    for (int i = 0; i < count; i++) {
        runner_release(&requests[i].run);
        free(requests[i].payload);
        free(requests[i].error);
    }
    strbuf_free(&batch.errors);
}

int spawner_main(int argc, char **argv)
{
    struct sigaction action;
    char *error = NULL;

    if (argc != 4) {
        fprintf(stderr, "bgwf: __spawner is started by bgwf executor, not by hand\n");
        return 2;
    }
    if (getenv(BIND_NOW_ADDED) != NULL) {
        unsetenv("LD_BIND_NOW");
        unsetenv(BIND_NOW_ADDED);
    }
    /* Without fast bins, malloc has no fast-bin chunks to consolidate, a
     * walk that would write to (and so copy) many inherited heap pages in
     * each child on its first large allocation. */
    mallopt(M_MXFAST, 0);
    int request_fd = atoi(argv[1]);
    int exit_fd = atoi(argv[2]);
    pid_t executor = getppid();

    /* The spawner lives exactly as long as its executor. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != executor || executor == 1)
        return 1;
    fcntl(request_fd, F_SETFD, FD_CLOEXEC);
    fcntl(exit_fd, F_SETFD, FD_CLOEXEC);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    log_set_role("spawner");
    if (pipe2(child_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return 1;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_child_signal;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&action.sa_mask);
    sigaction(SIGCHLD, &action, NULL);

    lua_State *L = luahost_open(argv[3], &error);
    if (L == NULL) {
        log_error("starting the spawner failed: %s", error);
        free(error);
        return 1;
    }
    luahost_prepare_forking(L);
    for (;;) {
        struct pollfd fds[2] = {
            { .fd = request_fd, .events = POLLIN },
            { .fd = child_signal_pipe[0], .events = POLLIN },
        };
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            return 1;
        char drain[64];
        while (read(child_signal_pipe[0], drain, sizeof drain) > 0)
            continue;
        reap_and_report(exit_fd);
        if (fds[0].revents & (POLLIN | POLLHUP))
            serve_requests(L, request_fd);
    }
}
