/* A minimal assertion harness for the C test suites: each check is
 * labelled with the function and case, and the suite exits non-zero when
 * any check failed. */
#ifndef BGWF_CHECK_H
#define BGWF_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(label, condition)                                                   \
    do {                                                                          \
        check_count++;                                                            \
        if (!(condition)) {                                                       \
            check_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d %s: %s\n", __FILE__, __LINE__, label,     \
                    #condition);                                                  \
        }                                                                         \
    } while (0)

#define CHECK_STR(label, expected, actual)                                        \
    do {                                                                          \
        const char *check_expected = (expected), *check_actual = (actual);        \
        check_count++;                                                            \
        if (check_actual == NULL || strcmp(check_expected, check_actual) != 0) {  \
            check_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d %s: expected \"%s\", got \"%s\"\n",       \
                    __FILE__, __LINE__, label, check_expected,                    \
                    check_actual ? check_actual : "(null)");                      \
        }                                                                         \
    } while (0)

static int check_report(const char *suite)
{
    printf("%s: %d checks, %d failed\n", suite, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

#endif
