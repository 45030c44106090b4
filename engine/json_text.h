/* Writing JSON text from C for the commands' --json output. */
#ifndef BGWF_JSON_TEXT_H
#define BGWF_JSON_TEXT_H

#include "strbuf.h"

/* Appends text as a JSON string literal, or null when text is NULL. Bytes
 * that are not valid UTF-8 become U+FFFD, so the output is always valid. */
void json_append_string(struct strbuf *out, const char *text);

#endif
