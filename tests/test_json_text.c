/* C tests for json_text.c: escaping and invalid UTF-8. */
#include "check.h"
#include "json_text.h"

static void expect(const char *label, const char *input, const char *expected)
{
    struct strbuf out = STRBUF_INIT;

    json_append_string(&out, input);
    CHECK_STR(label, expected, out.data);
    strbuf_free(&out);
}

int main(void)
{
    expect("plain", "abc", "\"abc\"");
    expect("quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\"");
    expect("control characters", "a\nb\x01", "\"a\\u000ab\\u0001\"");
    expect("valid UTF-8 kept", "caf\xc3\xa9", "\"caf\xc3\xa9\"");
    expect("invalid byte replaced", "a\xff" "b", "\"a\\ufffdb\"");
    expect("truncated sequence replaced", "a\xc3", "\"a\\ufffd\"");
    expect("overlong form replaced", "\xc0\xaf", "\"\\ufffd\\ufffd\"");
    expect("null", NULL, "null");
    return check_report("test_json_text");
}
