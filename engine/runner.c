/* Running one claimed step in a forked child and collecting its outcome. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lua.h>

#include "clock.h"
#include "log.h"
#include "luahost.h"
#include "runner.h"
#include "strbuf.h"

/* The descriptor the child's report pipe is moved to. */
#define CHILD_REPORT_FD 3

static void reset_child_signals(void)
{
    static const int handled[] = { SIGTERM, SIGINT, SIGCHLD, SIGPIPE, SIGHUP };
    sigset_t none;

    for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++)
        signal(handled[i], SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* /dev/null, opened once by the forking process for every child's stdin. */
static int null_fd = -1;

/* Prepares, once, what every child inherits instead of setting it up
 * itself: /dev/null open, and stdout line buffered so that lines reach the
 * log as they are printed, not when the step ends. */
static void prepare_forking_process(void)
{
    if (null_fd >= 0)
        return;
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Points stdin at /dev/null and stdout and stderr at the output pipe. */
static void redirect_standard_streams(int output_fd)
{
    if (null_fd >= 0)
        dup2(null_fd, STDIN_FILENO);
    else
        close(STDIN_FILENO);
    dup2(output_fd, STDOUT_FILENO);
    dup2(output_fd, STDERR_FILENO);
}

static void close_inherited_descriptors(int report_fd)
{
    if (report_fd != CHILD_REPORT_FD) {
        dup2(report_fd, CHILD_REPORT_FD);
        close(report_fd);
    }
    /* The executor's store connection, other steps' pipes and its signal
     * pipe all live above fd 3. */
    close_range(CHILD_REPORT_FD + 1, ~0U, 0);
}

/* Limits the child's address space, so that a memory blow-up fails the
 * step with Lua's "not enough memory" instead of hurting the machine. */
static void limit_memory(int64_t max_memory)
{
    struct rlimit limit = { (rlim_t)max_memory, (rlim_t)max_memory };

    if (max_memory > 0)
        setrlimit(RLIMIT_AS, &limit);
}

/* Replaces the child with /bin/sh running the notification command, the
 * event's JSON on stdin and its fields in BGWF_* variables. */
static void exec_command(const struct step_run *run, int input_fd)
{
    char number[32];

    dup2(input_fd, STDIN_FILENO);
    close(input_fd);
    setenv("BGWF_EVENT_JSON", run->context, 1);
    setenv("BGWF_APP", run->step.app, 1);
    snprintf(number, sizeof number, "%lld", (long long)run->step.execution_id);
    setenv("BGWF_EXECUTION", number, 1);
    snprintf(number, sizeof number, "%lld", (long long)run->step.attempt_id);
    setenv("BGWF_ATTEMPT", number, 1);
    setenv("BGWF_EVENT", run->event_type, 1);
    if (run->event_step)
        setenv("BGWF_STEP", run->event_step, 1);
    execl("/bin/sh", "sh", "-c", run->command, (char *)NULL);
    int saved = errno;
    fprintf(stderr, "bgwf: running /bin/sh for the notification failed: %s\n", strerror(saved));
    _exit(127);
}

static void run_child(lua_State *L, struct step_run *run, int report_fd, int output_fd,
                      int input_fd, pid_t executor_pid)
{
    struct step_info info = {
        .token = run->step.token,
        .action = run->step.action,
        .app = run->step.app,
        .scope = run->step.scope,
        .execution_id = run->step.execution_id,
        .attempt_id = run->step.attempt_id,
        .step_id = run->step.step_id,
        .try_number = run->try_number,
        .resources = run->snapshot,
        .resource_count = run->snapshot_count,
    };
    int rc;

    setpgid(0, 0);
    /* A step must not outlive its executor: once the executor is gone, it
     * is declared dead and the step may run again elsewhere. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != executor_pid)
        _exit(1);
    reset_child_signals();
    redirect_standard_streams(output_fd);
    if (run->kind == RUN_NOTIFY && run->command) {
        close(report_fd);
        exec_command(run, input_fd);
    }
    close_inherited_descriptors(report_fd);
    limit_memory(run->step.max_memory);
    log_set_role(run->kind == RUN_CHECK ? "precondition" : "step");
    if (run->kind == RUN_CHECK)
        rc = luahost_check(L, run->step.action, run->context, CHILD_REPORT_FD);
    else
        rc = luahost_execute(L, &info, run->context, CHILD_REPORT_FD);
    fflush(stdout);
    fflush(stderr);
    _exit(rc == 0 ? 0 : 1);
}

/* Creates the pipe that feeds a notification command its event on stdin.
 * The event text is small, so it fits in the pipe before the child runs. */
static int prepare_input(const struct step_run *run, int input[2], char **error)
{
    input[0] = input[1] = -1;
    if (run->kind != RUN_NOTIFY || run->command == NULL)
        return 0;
    if (pipe2(input, O_CLOEXEC) != 0) {
        int saved = errno;
        *error = strbuf_printf("pipe2 failed: %s", strerror(saved));
        return -1;
    }
    size_t length = strlen(run->context);
    ssize_t written = write(input[1], run->context, length < 60000 ? length : 60000);
    (void)written;
    close(input[1]);
    input[1] = -1;
    return 0;
}

int runner_spawn(lua_State *L, struct step_run *run, char **error)
{
    int report[2], output[2], input[2];
    pid_t pid;

    prepare_forking_process();
    if (prepare_input(run, input, error) != 0)
        return -1;

    if (pipe2(report, O_CLOEXEC) != 0) {
        int saved = errno;
        if (input[0] >= 0)
            close(input[0]);
        *error = strbuf_printf("pipe2 failed: %s", strerror(saved));
        return -1;
    }
    if (pipe2(output, O_CLOEXEC) != 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        if (input[0] >= 0)
            close(input[0]);
        *error = strbuf_printf("pipe2 failed: %s", strerror(saved));
        return -1;
    }
    /* Flushing an empty stream still writes its lock, and so copies the
     * page it is on while earlier children share it. */
    if (__fpending(stdout) > 0)
        fflush(stdout);
    if (__fpending(stderr) > 0)
        fflush(stderr);
    pid_t executor_pid = getpid();
    pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        close(output[0]);
        close(output[1]);
        if (input[0] >= 0)
            close(input[0]);
        *error = strbuf_printf("fork failed: %s", strerror(saved));
        return -1;
    }
    if (pid == 0) {
        close(report[0]);
        close(output[0]);
        run_child(L, run, report[1], output[1], input[0], executor_pid);
    }

    /* Both sides set the group so that a kill right after fork reaches it. */
    setpgid(pid, pid);
    close(report[1]);
    close(output[1]);
    if (input[0] >= 0)
        close(input[0]);
    fcntl(report[0], F_SETFL, fcntl(report[0], F_GETFL) | O_NONBLOCK);
    fcntl(output[0], F_SETFL, fcntl(output[0], F_GETFL) | O_NONBLOCK);
    run->pid = pid;
    run->report_fd = report[0];
    run->output_fd = output[0];
    run->started_mono = clock_mono_ms();
    return 0;
}

void runner_read_output(struct step_run *run)
{
    char chunk[65536];
    char *error = NULL;

    while (run->output_fd >= 0) {
        ssize_t count = read(run->output_fd, chunk, sizeof chunk);
        if (count > 0) {
            if (step_log_write(&run->log, chunk, (size_t)count, &error) != 0) {
                log_warn("app=%s step=%s %s", run->step.app, run->step.token, error);
                free(error);
                error = NULL;
            }
            continue;
        }
        if (count < 0 && errno == EINTR)
            continue;
        if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        close(run->output_fd);
        run->output_fd = -1;
    }
}

static void set_text(char **slot, const char *text, size_t length)
{
    free(*slot);
    *slot = malloc(length + 1);
    memcpy(*slot, text, length);
    (*slot)[length] = '\0';
}

/* Keeps the newest value the child set for a resource. */
static void keep_resource(struct step_run *run, const char *payload, size_t length)
{
    const char *separator = memchr(payload, '\0', length);
    size_t name_length;

    if (separator == NULL)
        return;
    name_length = (size_t)(separator - payload);
    struct resource *slot = NULL;
    for (int i = 0; i < run->written_count && slot == NULL; i++)
        if (strlen(run->written[i].name) == name_length &&
            memcmp(run->written[i].name, payload, name_length) == 0)
            slot = &run->written[i];
    if (slot == NULL) {
        run->written = realloc(run->written, (size_t)(run->written_count + 1) * sizeof *slot);
        slot = &run->written[run->written_count++];
        slot->name = NULL;
        slot->value = NULL;
        set_text(&slot->name, payload, name_length);
    }
    set_text(&slot->value, separator + 1, length - name_length - 1);
}

static void handle_frame(struct step_run *run, char type, const char *payload, size_t length)
{
    switch (type) {
    case FRAME_STATUS:
        set_text(&run->message, payload, length);
        /* The store keeps text: a NUL byte becomes U+FFFD, not the end. */
        for (size_t i = 0; i < length; i++) {
            if (run->message[i] == '\0') {
                struct strbuf text = STRBUF_INIT;
                for (size_t j = 0; j < length; j++) {
                    if (payload[j] == '\0')
                        strbuf_append(&text, "\xef\xbf\xbd", 3);
                    else
                        strbuf_append(&text, payload + j, 1);
                }
                free(run->message);
                run->message = strbuf_detach(&text);
                break;
            }
        }
        run->message_unsaved = 1;
        break;
    case FRAME_LOG: {
        char *error = NULL;
        if (step_log_line(&run->log, payload, length, &error) != 0) {
            log_warn("app=%s step=%s %s", run->step.app, run->step.token, error);
            free(error);
        }
        break;
    }
    case FRAME_SUCCESS:
        run->outcome = OUTCOME_SUCCESS;
        break;
    case FRAME_FAILURE:
        set_text(&run->failure, payload, length);
        run->outcome = OUTCOME_FAILURE;
        break;
    case FRAME_RESOURCE:
        keep_resource(run, payload, length);
        break;
    case FRAME_READY:
        run->outcome = OUTCOME_READY;
        break;
    case FRAME_NOT_READY:
        run->outcome = OUTCOME_NOT_READY;
        break;
    }
}

int runner_read(struct step_run *run)
{
    char type;
    const char *payload;
    size_t length;
    int rc, framed = 0;

    if (run->report_fd < 0)
        return 1;
    rc = frame_read_available(&run->reader, run->report_fd);
    if (!run->report_corrupt) {
        while ((framed = frame_next(&run->reader, &type, &payload, &length)) == 1)
            handle_frame(run, type, payload, length);
    }
    if (framed < 0) {
        log_warn("app=%s step=%s wrote bytes that are not report frames to its report pipe "
                 "(file descriptor 3); ignoring the rest", run->step.app, run->step.token);
        run->report_corrupt = 1;
    }
    if (run->report_corrupt) {
        /* Keep reading, so that the step never dies of SIGPIPE, but drop it. */
        run->reader.length = 0;
        run->reader.consumed = 0;
    }
    if (rc == 0 || rc == -2) {
        close(run->report_fd);
        run->report_fd = -1;
        return 1;
    }
    return rc == 2 ? 2 : 0;
}

static char *describe_exit(const struct step_run *run)
{
    int status = run->wait_status;
    const char *process = run->kind == RUN_CHECK ? "precondition process" : "step process";
    const char *function = run->kind == RUN_CHECK ? "the precondition" : "execute";

    if (run->kill_reason)
        return strbuf_dup(run->kill_reason);
    if (WIFSIGNALED(status)) {
        int number = WTERMSIG(status);
        const char *name = sigabbrev_np(number);
        return strbuf_printf("%s was killed by signal SIG%s (%s)%s", process, name ? name : "?",
                             strsignal(number), WCOREDUMP(status) ? ", core dumped" : "");
    }
    if (WIFEXITED(status))
        return strbuf_printf("%s ended with exit status %d before %s returned (os.exit or a "
                             "crash in native code?)", process, WEXITSTATUS(status), function);
    return strbuf_printf("%s ended with wait status 0x%x", process, status);
}

/* Adds the memory limit to Lua's out-of-memory message, which names none. */
static char *explain_memory(const struct step_run *run, char *failure)
{
    char *explained;

    if (failure == NULL || run->step.max_memory <= 0 || strstr(failure, "not enough memory") == NULL)
        return failure;
    explained = strbuf_printf("%s (the step's max_memory of %lld bytes was reached)", failure,
                              (long long)run->step.max_memory);
    free(failure);
    return explained;
}

char *runner_finish(struct step_run *run)
{
    if (run->report_fd >= 0) {
        /* The child is gone; whatever it wrote is already in the pipe. A
         * grandchild that inherited the pipe can keep it open, so read what
         * is there without waiting for end of file. */
        while (runner_read(run) == 2)
            continue;
        if (run->report_fd >= 0) {
            close(run->report_fd);
            run->report_fd = -1;
        }
    }
    runner_read_output(run);
    if (run->output_fd >= 0) {
        close(run->output_fd);
        run->output_fd = -1;
    }
    step_log_close(&run->log);

    if (run->kill_reason)
        return strbuf_dup(run->kill_reason);
    if (run->kind == RUN_NOTIFY && run->command) {
        if (WIFEXITED(run->wait_status) && WEXITSTATUS(run->wait_status) == 0)
            return NULL;
        if (WIFEXITED(run->wait_status))
            return strbuf_printf("the notification command exited with status %d",
                                 WEXITSTATUS(run->wait_status));
        return strbuf_printf("the notification command was killed by signal SIG%s",
                             sigabbrev_np(WTERMSIG(run->wait_status)));
    }
    if (run->report_corrupt && run->outcome == OUTCOME_NONE)
        return strbuf_printf("the step wrote bytes that are not report frames to its report "
                             "pipe (file descriptor 3), so its result is unknown; leave that "
                             "descriptor alone");
    if (run->outcome == OUTCOME_FAILURE)
        return explain_memory(run, strbuf_dup(run->failure));
    if (run->kind == RUN_CHECK &&
        (run->outcome == OUTCOME_READY || run->outcome == OUTCOME_NOT_READY))
        return NULL;
    if (run->kind != RUN_CHECK && run->outcome == OUTCOME_SUCCESS &&
        WIFEXITED(run->wait_status) && WEXITSTATUS(run->wait_status) == 0)
        return NULL;
    if (run->outcome == OUTCOME_SUCCESS) {
        char *how = describe_exit(run);
        char *text = strbuf_printf("execute returned, but then the %s", how + strlen("step "));
        free(how);
        return text;
    }
    return describe_exit(run);
}

void runner_kill(struct step_run *run, const char *reason)
{
    if (run->kill_reason == NULL)
        run->kill_reason = strbuf_dup(reason);
    if (!run->exited)
        kill(-run->pid, SIGKILL);
}

void runner_terminate(struct step_run *run, const char *reason, int grace_ms)
{
    if (run->kill_reason != NULL)
        return;
    run->kill_reason = strbuf_dup(reason);
    run->kill_deadline_mono = clock_mono_ms() + grace_ms;
    if (!run->exited)
        kill(-run->pid, SIGTERM);
}

void runner_enforce_deadline(struct step_run *run, int64_t now_mono)
{
    if (run->kill_deadline_mono != 0 && now_mono >= run->kill_deadline_mono && !run->exited) {
        kill(-run->pid, SIGKILL);
        run->kill_deadline_mono = 0;
    }
}

void runner_reset(struct step_run *run, enum run_kind kind)
{
    if (run->report_fd >= 0)
        close(run->report_fd);
    run->report_fd = -1;
    if (run->output_fd >= 0)
        close(run->output_fd);
    run->output_fd = -1;
    step_log_close(&run->log);
    frame_reader_free(&run->reader);
    free(run->failure);
    free(run->kill_reason);
    run->failure = NULL;
    run->kill_reason = NULL;
    run->kill_deadline_mono = 0;
    run->outcome = OUTCOME_NONE;
    run->exited = 0;
    run->wait_status = 0;
    run->pid = 0;
    run->kind = kind;
}

void runner_release(struct step_run *run)
{
    free(run->command);
    free(run->event_type);
    free(run->event_step);
    if (run->output_fd >= 0)
        close(run->output_fd);
    step_log_close(&run->log);
    free(run->context);
    store_free_resources(run->snapshot, run->snapshot_count);
    store_free_resources(run->written, run->written_count);
    if (run->report_fd >= 0)
        close(run->report_fd);
    frame_reader_free(&run->reader);
    free(run->step.token);
    free(run->step.action);
    free(run->step.app);
    free(run->step.scope);
    free(run->message);
    free(run->failure);
    free(run->kill_reason);
}
