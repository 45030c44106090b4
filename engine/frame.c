/* The messages a step's process sends its executor over a pipe. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frame.h"

static const char cut_marker[] = "\n[cut: message longer than 1 MiB]";

static int write_all(int fd, const char *data, size_t length)
{
    while (length > 0) {
        ssize_t written = write(fd, data, length);
        if (written < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += written;
        length -= (size_t)written;
    }
    return 0;
}

int frame_write(int fd, enum frame_type type, const char *payload, size_t length)
{
    unsigned char header[5];
    int cut = length > FRAME_MAX_PAYLOAD;
    size_t kept = cut ? FRAME_MAX_PAYLOAD - (sizeof cut_marker - 1) : length;
    uint32_t total = (uint32_t)(kept + (cut ? sizeof cut_marker - 1 : 0));

    header[0] = (unsigned char)type;
    header[1] = (unsigned char)(total & 0xff);
    header[2] = (unsigned char)((total >> 8) & 0xff);
    header[3] = (unsigned char)((total >> 16) & 0xff);
    header[4] = (unsigned char)((total >> 24) & 0xff);
    if (write_all(fd, (const char *)header, sizeof header) != 0)
        return -1;
    if (write_all(fd, payload, kept) != 0)
        return -1;
    if (cut && write_all(fd, cut_marker, sizeof cut_marker - 1) != 0)
        return -1;
    return 0;
}

/* One call reads at most this much, so that a chatty child cannot make the
 * executor buffer without bound before the frames are handled. */
#define READ_LIMIT (256 * 1024)

int frame_read_available(struct frame_reader *reader, int fd)
{
    int got_bytes = 0;
    size_t read_total = 0;

    for (;;) {
        if (read_total >= READ_LIMIT)
            return 2;
        if (reader->consumed > 0 && reader->consumed == reader->length) {
            reader->consumed = 0;
            reader->length = 0;
        }
        if (reader->capacity - reader->length < 4096) {
            size_t capacity = reader->capacity ? reader->capacity * 2 : 8192;
            char *buffer = realloc(reader->buffer, capacity);
            if (buffer == NULL)
                return -2;
            reader->buffer = buffer;
            reader->capacity = capacity;
        }
        ssize_t count = read(fd, reader->buffer + reader->length,
                             reader->capacity - reader->length);
        if (count > 0) {
            reader->length += (size_t)count;
            read_total += (size_t)count;
            got_bytes = 1;
            continue;
        }
        if (count == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return got_bytes ? 1 : -1;
        return -2;
    }
}

int frame_next(struct frame_reader *reader, char *type, const char **payload, size_t *length)
{
    size_t available = reader->length - reader->consumed;
    const unsigned char *start = (const unsigned char *)reader->buffer + reader->consumed;
    uint32_t size;

    if (available < 5)
        goto compact;
    size = (uint32_t)start[1] | (uint32_t)start[2] << 8 | (uint32_t)start[3] << 16 |
           (uint32_t)start[4] << 24;
    if (size > FRAME_MAX_PAYLOAD || strchr("SLDEYNR", start[0]) == NULL || start[0] == '\0')
        return -1;
    if (available < 5 + (size_t)size)
        goto compact;
    *type = (char)start[0];
    *payload = (const char *)start + 5;
    *length = size;
    reader->consumed += 5 + (size_t)size;
    return 1;

compact:
    /* Keep the partial frame at the front so the buffer does not grow. */
    if (reader->consumed > 0) {
        memmove(reader->buffer, reader->buffer + reader->consumed, available);
        reader->length = available;
        reader->consumed = 0;
    }
    return 0;
}

void frame_reader_free(struct frame_reader *reader)
{
    free(reader->buffer);
    *reader = (struct frame_reader){ 0 };
}
