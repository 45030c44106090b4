/* Checking names that become paths, and finding their files on the search path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "names.h"
#include "strbuf.h"

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int names_is_valid(const char *name)
{
    int segment_length = 0;

    if (name == NULL || *name == '\0')
        return 0;
    for (const char *p = name; *p; p++) {
        if (*p == '.') {
            if (segment_length == 0)
                return 0;
            segment_length = 0;
        } else if (is_name_char(*p)) {
            segment_length++;
        } else {
            return 0;
        }
    }
    return segment_length > 0;
}

int names_is_valid_token(const char *token)
{
    if (token == NULL || *token == '\0')
        return 0;
    for (const char *p = token; *p; p++)
        if (!is_name_char(*p))
            return 0;
    return 1;
}

char *names_invalid_message(const char *kind, const char *name)
{
    return strbuf_printf("invalid %s name '%s': use letters, digits and '_', "
                         "in segments joined by '.' (for example 'reports.daily')",
                         kind, name);
}

int names_find_file(const char *search_path, const char *folder, const char *kind,
                    const char *name, const char *ext, char **path, char **error)
{
    struct strbuf searched = STRBUF_INIT;
    char *relative;
    const char *start = search_path;

    *path = NULL;
    if (!names_is_valid(name)) {
        *error = names_invalid_message(kind, name);
        return -1;
    }

    relative = strbuf_printf("%s/%s%s", folder, name, ext);
    for (char *p = relative + strlen(folder) + 1; *p; p++)
        if (*p == '.' && strcmp(p, ext) != 0)
            *p = '/';

    for (;;) {
        const char *end = strchr(start, ':');
        size_t length = end ? (size_t)(end - start) : strlen(start);
        char *candidate;
        struct stat info;

        if (length == 0)
            candidate = strbuf_printf("%s", relative);
        else
            candidate = strbuf_printf("%.*s/%s", (int)length, start, relative);
        if (stat(candidate, &info) == 0 && S_ISREG(info.st_mode)) {
            *path = candidate;
            free(relative);
            strbuf_free(&searched);
            return 0;
        }
        free(candidate);
        strbuf_appendf(&searched, "%s%.*s", searched.length ? ", " : "",
                       (int)(length ? length : 1), length ? start : ".");
        if (!end)
            break;
        start = end + 1;
    }

    *error = strbuf_printf("%s '%s' not found: no %s in %s (set the search path with "
                           "--path or BGWF_PATH)", kind, name, relative, searched.data);
    free(relative);
    strbuf_free(&searched);
    return -1;
}
