/* Writing JSON text from C for the commands' --json output. */
#include <stdio.h>
#include <string.h>

#include "json_text.h"

/* Returns the length of the valid UTF-8 sequence at p (1-4), or 0. */
static int utf8_sequence_length(const unsigned char *p)
{
    int length;
    unsigned int code;

    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) {
        length = 2;
        code = p[0] & 0x1f;
    } else if ((p[0] & 0xf0) == 0xe0) {
        length = 3;
        code = p[0] & 0x0f;
    } else if ((p[0] & 0xf8) == 0xf0) {
        length = 4;
        code = p[0] & 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < length; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        code = code << 6 | (p[i] & 0x3f);
    }
    if ((length == 2 && code < 0x80) || (length == 3 && code < 0x800) ||
        (length == 4 && (code < 0x10000 || code > 0x10ffff)) ||
        (code >= 0xd800 && code <= 0xdfff))
        return 0;
    return length;
}

void json_append_string(struct strbuf *out, const char *text)
{
    const unsigned char *p = (const unsigned char *)text;

    if (text == NULL) {
        strbuf_append(out, "null", 4);
        return;
    }
    strbuf_append(out, "\"", 1);
    while (*p) {
        int length = utf8_sequence_length(p);
        if (length == 0) {
            strbuf_append(out, "\\ufffd", 6);
            p++;
        } else if (*p == '"' || *p == '\\') {
            char escaped[2] = { '\\', (char)*p };
            strbuf_append(out, escaped, 2);
            p++;
        } else if (*p < 0x20) {
            strbuf_appendf(out, "\\u%04x", *p);
            p++;
        } else {
            strbuf_append(out, (const char *)p, (size_t)length);
            p += length;
        }
    }
    strbuf_append(out, "\"", 1);
}
