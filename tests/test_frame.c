/* C tests for frame.c: frames survive partial reads and reject garbage. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "frame.h"

static void test_round_trip_in_pieces(void)
{
    int fds[2];
    struct frame_reader reader = { 0 };
    char type;
    const char *payload;
    size_t length;

    CHECK("pipe", pipe(fds) == 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    CHECK("write status", frame_write(fds[1], FRAME_STATUS, "hello", 5) == 0);
    CHECK("write success", frame_write(fds[1], FRAME_SUCCESS, "", 0) == 0);

    CHECK("read", frame_read_available(&reader, fds[0]) == 1);
    CHECK("first frame", frame_next(&reader, &type, &payload, &length) == 1);
    CHECK("first type", type == FRAME_STATUS);
    CHECK("first length", length == 5);
    CHECK("first payload", memcmp(payload, "hello", 5) == 0);
    CHECK("second frame", frame_next(&reader, &type, &payload, &length) == 1);
    CHECK("second type", type == FRAME_SUCCESS);
    CHECK("second length", length == 0);
    CHECK("no third frame", frame_next(&reader, &type, &payload, &length) == 0);
    CHECK("nothing more now", frame_read_available(&reader, fds[0]) == -1);

    /* A frame split over two reads is assembled. */
    const char split[] = { 'L', 3, 0, 0, 0, 'a' };
    CHECK("write head", write(fds[1], split, sizeof split) == (ssize_t)sizeof split);
    frame_read_available(&reader, fds[0]);
    CHECK("partial frame waits", frame_next(&reader, &type, &payload, &length) == 0);
    CHECK("write tail", write(fds[1], "bc", 2) == 2);
    frame_read_available(&reader, fds[0]);
    CHECK("assembled frame", frame_next(&reader, &type, &payload, &length) == 1);
    CHECK("assembled type", type == FRAME_LOG);
    CHECK("assembled length", length == 3);
    CHECK("assembled payload", memcmp(payload, "abc", 3) == 0);

    close(fds[1]);
    CHECK("end of file", frame_read_available(&reader, fds[0]) == 0);
    close(fds[0]);
    frame_reader_free(&reader);
}

static void test_rejects_garbage(void)
{
    int fds[2];
    struct frame_reader reader = { 0 };
    char type;
    const char *payload;
    size_t length;
    const char garbage[] = { 'Z', 1, 0, 0, 0, 'x' };
    const unsigned char huge[] = { 'S', 0xff, 0xff, 0xff, 0x7f };

    CHECK("pipe", pipe(fds) == 0);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    CHECK("write garbage", write(fds[1], garbage, sizeof garbage) == (ssize_t)sizeof garbage);
    frame_read_available(&reader, fds[0]);
    CHECK("unknown type rejected", frame_next(&reader, &type, &payload, &length) == -1);
    frame_reader_free(&reader);

    CHECK("write huge", write(fds[1], huge, sizeof huge) == (ssize_t)sizeof huge);
    frame_read_available(&reader, fds[0]);
    CHECK("oversized length rejected", frame_next(&reader, &type, &payload, &length) == -1);
    close(fds[0]);
    close(fds[1]);
    frame_reader_free(&reader);
}

static void test_long_payload_is_cut(void)
{
    int fds[2];
    size_t size = FRAME_MAX_PAYLOAD + 4096;
    struct frame_reader reader = { 0 };
    char type;
    const char *payload = NULL;
    size_t length = 0;
    int found = 0;

    CHECK("pipe", pipe(fds) == 0);
    pid_t writer = fork();
    if (writer == 0) {
        char *big = malloc(size);
        memset(big, 'x', size);
        close(fds[0]);
        _exit(frame_write(fds[1], FRAME_LOG, big, size) == 0 ? 0 : 1);
    }
    close(fds[1]);
    /* The descriptor blocks, so this reads until the writer is done. */
    for (;;) {
        int rc = frame_read_available(&reader, fds[0]);
        found = frame_next(&reader, &type, &payload, &length) == 1;
        if (found || rc == 0 || rc == -2)
            break;
    }
    CHECK("long frame read", found);
    CHECK("long frame capped", length == FRAME_MAX_PAYLOAD);
    CHECK("long frame marked",
          length == FRAME_MAX_PAYLOAD && memmem(payload + length - 40, 40, "[cut:", 5) != NULL);
    waitpid(writer, NULL, 0);
    close(fds[0]);
    frame_reader_free(&reader);
}

int main(void)
{
    test_round_trip_in_pieces();
    test_rejects_garbage();
    test_long_payload_is_cut();
    return check_report("test_frame");
}
