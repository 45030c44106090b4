/* The messages a step's process sends its executor over a pipe.
 *
 * A frame is one type byte, a 4-byte little-endian payload length and the
 * payload. The child writes whole frames; the executor reads them without
 * blocking and assembles them across partial reads. */
#ifndef BGWF_FRAME_H
#define BGWF_FRAME_H

#include <stddef.h>

enum frame_type {
    FRAME_STATUS = 'S',    /* payload: the new status message */
    FRAME_LOG = 'L',       /* payload: one log line */
    FRAME_SUCCESS = 'D',   /* execute returned; no payload */
    FRAME_FAILURE = 'E',   /* execute or precondition raised; payload: message and traceback */
    FRAME_READY = 'Y',     /* the precondition returned true; no payload */
    FRAME_NOT_READY = 'N', /* the precondition returned false; no payload */
    FRAME_RESOURCE = 'R',  /* step:set; payload: name, a NUL byte, the JSON value */
};

/* Payloads longer than this are cut (with a marker) by frame_write. */
#define FRAME_MAX_PAYLOAD (1024 * 1024)

struct frame_reader {
    char *buffer;
    size_t length;
    size_t capacity;
    size_t consumed;
};

/* Writes one frame to fd, retrying short writes and EINTR. Returns 0, or -1
 * with errno set. */
int frame_write(int fd, enum frame_type type, const char *payload, size_t length);

/* Reads what is available on the non-blocking fd into reader, at most
 * 256 KiB a call. Returns 1 when bytes arrived and none are left, 2 when it
 * stopped at the limit with more possibly waiting, 0 at end of file, -1
 * when nothing is available now (EAGAIN) and -2 on a read error (errno
 * set). */
int frame_read_available(struct frame_reader *reader, int fd);

/* Takes the next whole frame out of reader. Returns 1 and sets *type,
 * *payload (valid until the next call) and *length, returns 0 when no
 * whole frame is buffered, and -1 when the bytes are not a frame (an unknown
 * type or a length over FRAME_MAX_PAYLOAD). */
int frame_next(struct frame_reader *reader, char *type, const char **payload, size_t *length);

/* Releases the reader's buffer. */
void frame_reader_free(struct frame_reader *reader);

#endif
