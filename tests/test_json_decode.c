/* C tests for json_decode.c: every input decodes to the value dkjson gives
 * (number subtypes and the __jsontype metatables included), and bad text
 * is rejected with the byte offset. */
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "json_decode.h"

/* Compares the values at the top two stack slots, as Lua code: the same
 * types, number subtypes, strings, table contents and __jsontype. */
static const char compare_source[] =
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) == 'number' and math.type(a) ~= math.type(b) then\n"
    "    return false, path .. ': ' .. math.type(a) .. ' vs ' .. math.type(b)\n"
    "  end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a == b or (a ~= a and b ~= b) then return true end\n"
    "    return false, path .. ': ' .. tostring(a) .. ' vs ' .. tostring(b)\n"
    "  end\n"
    "  local ma, mb = getmetatable(a), getmetatable(b)\n"
    "  if (ma and ma.__jsontype) ~= (mb and mb.__jsontype) then\n"
    "    return false, path .. ': __jsontype differs'\n"
    "  end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, why = same(v, b[k], path .. '.' .. tostring(k))\n"
    "    if not ok then return false, why end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if a[k] == nil then return false, path .. '.' .. tostring(k) .. ' missing' end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "return same\n";

static void expect_like_dkjson(lua_State *L, const char *label, const char *text)
{
    char *error = NULL;
    int top = lua_gettop(L);

    CHECK(label, json_decode_push(L, text, strlen(text), &error) == 0);
    if (error != NULL) {
        fprintf(stderr, "  %s: %s\n", label, error);
        free(error);
        lua_settop(L, top);
        return;
    }
    lua_getglobal(L, "same");
    lua_insert(L, -2);
    lua_getglobal(L, "dkjson");
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushstring(L, text);
    lua_call(L, 1, 1);
    lua_pushliteral(L, "value");
    lua_call(L, 3, 2);
    CHECK(label, lua_toboolean(L, -2));
    if (!lua_toboolean(L, -2))
        fprintf(stderr, "  %s: %s\n", label, lua_tostring(L, -1));
    lua_settop(L, top);
}

static void expect_error(lua_State *L, const char *label, const char *text, const char *part)
{
    char *error = NULL;
    int top = lua_gettop(L);

    CHECK(label, json_decode_push(L, text, strlen(text), &error) == -1);
    CHECK(label, lua_gettop(L) == top);
    CHECK(label, error != NULL);
    CHECK(label, error == NULL || strstr(error, part) != NULL);
    if (error != NULL && strstr(error, part) == NULL)
        fprintf(stderr, "  %s: got \"%s\"\n", label, error);
    free(error);
    lua_settop(L, top);
}

int main(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    CHECK("dkjson loads", luaL_dostring(L, "dkjson = require('dkjson')") == LUA_OK);
    CHECK("comparison compiles", luaL_loadstring(L, compare_source) == LUA_OK);
    lua_call(L, 0, 1);
    lua_setglobal(L, "same");

    expect_like_dkjson(L, "empty object", "{}");
    expect_like_dkjson(L, "empty array", "[]");
    expect_like_dkjson(L, "integers", "[0, -0, 1, -17, 9223372036854775807, -9223372036854775808]");
    expect_like_dkjson(L, "integer too large becomes a float", "[9223372036854775808, 1e400]");
    expect_like_dkjson(L, "floats", "[1.0, -0.0, 0.5, 1e2, 2E-3, 1.5e+10, 3.14159265358979]");
    expect_like_dkjson(L, "literals", "[true, false]");
    expect_like_dkjson(L, "null in an array leaves a hole", "[1, null, 3]");
    expect_like_dkjson(L, "null member is absent", "{\"a\": null, \"b\": 2}");
    expect_like_dkjson(L, "escapes", "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"");
    expect_like_dkjson(L, "unicode escapes", "\"\\u0041\\u00e9\\u20ac\\u0001\"");
    expect_like_dkjson(L, "surrogate pair", "\"\\ud83d\\ude00\"");
    expect_like_dkjson(L, "raw UTF-8", "\"caf\xc3\xa9 \xe2\x82\xac\"");
    expect_like_dkjson(L, "nested", "{\"files\": [{\"name\": \"a\", \"size\": 3}, []], "
                                    "\"n\": {\"deep\": {\"er\": [1, [2, [3]]]}}}");
    expect_like_dkjson(L, "whitespace", " \n\t{ \"a\" :\r\n[ 1 , 2 ] } \n");
    expect_like_dkjson(L, "duplicate keys keep the last", "{\"a\": 1, \"a\": 2}");
    expect_like_dkjson(L, "top-level scalar", "42");
    expect_like_dkjson(L, "string with NUL escape", "\"a\\u0000b\"");

    expect_error(L, "empty text", "", "unexpected end of text at byte 1");
    expect_error(L, "truncated object", "{\"a\": 1", "expected ',' or '}' in object at byte 8");
    expect_error(L, "unterminated string", "\"abc", "unterminated string");
    expect_error(L, "trailing text", "{} x", "text after the value at byte 4");
    expect_error(L, "bad literal", "[tru]", "unexpected character at byte 2");
    expect_error(L, "bad number", "[-]", "bad number");
    expect_error(L, "bad fraction", "1.", "bad number");
    expect_error(L, "bad escape", "\"\\x\"", "unknown escape in string at byte 3");
    expect_error(L, "bad unicode escape", "\"\\u12\"", "bad \\u escape");
    expect_error(L, "key must be a string", "{1: 2}", "expected a string key");

    /* Nesting deeper than the limit is rejected, not a crash. */
    char deep[2 * (JSON_DECODE_MAX_DEPTH + 10) + 1];
    int depth = JSON_DECODE_MAX_DEPTH + 10;
    memset(deep, '[', (size_t)depth);
    memset(deep + depth, ']', (size_t)depth);
    deep[2 * depth] = '\0';
    expect_error(L, "too deep", deep, "nested too deep");

    lua_close(L);
    return check_report("test_json_decode");
}
