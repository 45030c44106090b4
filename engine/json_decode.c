/* Reading JSON text into Lua values from C (see json_decode.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "json_decode.h"
#include "strbuf.h"

/* Registry keys of the metatables decoded objects and arrays carry. */
static const char object_meta_key[] = "bgwf.json_object";
static const char array_meta_key[] = "bgwf.json_array";

struct parser {
    lua_State *L;
    const char *text;
    const char *at;
    const char *end;
};

static int fail(struct parser *p, const char *problem)
{
    return luaL_error(p->L, "%s at byte %d", problem, (int)(p->at - p->text) + 1);
}

static void skip_space(struct parser *p)
{
    while (p->at < p->end &&
           (*p->at == ' ' || *p->at == '\t' || *p->at == '\n' || *p->at == '\r'))
        p->at++;
}

/* Pushes the metatable stored under key, creating it on first use. */
static void push_meta(lua_State *L, const char *key, const char *type)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "__jsontype");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads the four hex digits after "\u". Returns the code unit or -1. */
static long read_hex4(struct parser *p)
{
    long value = 0;

    if (p->end - p->at < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int digit = hex_value(p->at[i]);
        if (digit < 0)
            return -1;
        value = value * 16 + digit;
    }
    p->at += 4;
    return value;
}

static void add_utf8(luaL_Buffer *out, unsigned long code)
{
    char bytes[4];
    int length;

    if (code < 0x80) {
        bytes[0] = (char)code;
        length = 1;
    } else if (code < 0x800) {
        bytes[0] = (char)(0xc0 | (code >> 6));
        bytes[1] = (char)(0x80 | (code & 0x3f));
        length = 2;
    } else if (code < 0x10000) {
        bytes[0] = (char)(0xe0 | (code >> 12));
        bytes[1] = (char)(0x80 | ((code >> 6) & 0x3f));
        bytes[2] = (char)(0x80 | (code & 0x3f));
        length = 3;
    } else {
        bytes[0] = (char)(0xf0 | (code >> 18));
        bytes[1] = (char)(0x80 | ((code >> 12) & 0x3f));
        bytes[2] = (char)(0x80 | ((code >> 6) & 0x3f));
        bytes[3] = (char)(0x80 | (code & 0x3f));
        length = 4;
    }
    luaL_addlstring(out, bytes, (size_t)length);
}

/* Reads the \u escape at p->at (past the backslash and 'u'), joining a
 * surrogate pair; a lone surrogate becomes U+FFFD. */
static void read_unicode_escape(struct parser *p, luaL_Buffer *out)
{
    long unit = read_hex4(p);

    if (unit < 0)
        fail(p, "bad \\u escape");
    if (unit >= 0xd800 && unit <= 0xdbff && p->end - p->at >= 6 && p->at[0] == '\\' &&
        p->at[1] == 'u') {
        const char *saved = p->at;
        p->at += 2;
        long low = read_hex4(p);
        if (low >= 0xdc00 && low <= 0xdfff) {
            add_utf8(out, 0x10000 + (((unsigned long)unit - 0xd800) << 10) +
                              ((unsigned long)low - 0xdc00));
            return;
        }
        p->at = saved;
    }
    add_utf8(out, unit >= 0xd800 && unit <= 0xdfff ? 0xfffd : (unsigned long)unit);
}

/* Pushes the string whose opening quote p->at is past. */
static void read_string(struct parser *p)
{
    const char *start = p->at;

    /* Most strings have no escape: push them in one piece. */
    while (p->at < p->end && *p->at != '"' && *p->at != '\\')
        p->at++;
    if (p->at < p->end && *p->at == '"') {
        lua_pushlstring(p->L, start, (size_t)(p->at - start));
        p->at++;
        return;
    }
    luaL_Buffer out;
    luaL_buffinit(p->L, &out);
    luaL_addlstring(&out, start, (size_t)(p->at - start));
    while (p->at < p->end && *p->at != '"') {
        if (*p->at != '\\') {
            const char *run = p->at;
            while (p->at < p->end && *p->at != '"' && *p->at != '\\')
                p->at++;
            luaL_addlstring(&out, run, (size_t)(p->at - run));
            continue;
        }
        if (++p->at >= p->end)
            break;
        char escape = *p->at++;
        switch (escape) {
        case '"': luaL_addchar(&out, '"'); break;
        case '\\': luaL_addchar(&out, '\\'); break;
        case '/': luaL_addchar(&out, '/'); break;
        case 'b': luaL_addchar(&out, '\b'); break;
        case 'f': luaL_addchar(&out, '\f'); break;
        case 'n': luaL_addchar(&out, '\n'); break;
        case 'r': luaL_addchar(&out, '\r'); break;
        case 't': luaL_addchar(&out, '\t'); break;
        case 'u': read_unicode_escape(p, &out); break;
        default:
            p->at--;
            fail(p, "unknown escape in string");
        }
    }
    if (p->at >= p->end)
        fail(p, "unterminated string");
    p->at++;
    luaL_pushresult(&out);
}

/* Pushes the number at p->at: an integer when it has no fraction or
 * exponent and fits in 64 bits, else a float. */
static void read_number(struct parser *p)
{
    const char *start = p->at;
    int integral = 1;
    char digits[64];

    if (p->at < p->end && *p->at == '-')
        p->at++;
    if (p->at >= p->end || *p->at < '0' || *p->at > '9')
        fail(p, "bad number");
    while (p->at < p->end && *p->at >= '0' && *p->at <= '9')
        p->at++;
    if (p->at < p->end && *p->at == '.') {
        integral = 0;
        p->at++;
        if (p->at >= p->end || *p->at < '0' || *p->at > '9')
            fail(p, "bad number");
        while (p->at < p->end && *p->at >= '0' && *p->at <= '9')
            p->at++;
    }
    if (p->at < p->end && (*p->at == 'e' || *p->at == 'E')) {
        integral = 0;
        p->at++;
        if (p->at < p->end && (*p->at == '+' || *p->at == '-'))
            p->at++;
        if (p->at >= p->end || *p->at < '0' || *p->at > '9')
            fail(p, "bad number");
        while (p->at < p->end && *p->at >= '0' && *p->at <= '9')
            p->at++;
    }
    size_t length = (size_t)(p->at - start);
    /* The text is not NUL-terminated where the number ends: copy it. */
    char *copy = length < sizeof digits ? digits : malloc(length + 1);
    if (copy == NULL)
        fail(p, "not enough memory");
    memcpy(copy, start, length);
    copy[length] = '\0';
    if (integral) {
        errno = 0;
        long long value = strtoll(copy, NULL, 10);
        if (errno == 0) {
            lua_pushinteger(p->L, (lua_Integer)value);
            if (copy != digits)
                free(copy);
            return;
        }
    }
    lua_pushnumber(p->L, (lua_Number)strtod(copy, NULL));
    if (copy != digits)
        free(copy);
}

static int match_word(struct parser *p, const char *word)
{
    size_t length = strlen(word);

    if ((size_t)(p->end - p->at) < length || memcmp(p->at, word, length) != 0)
        return 0;
    p->at += length;
    return 1;
}

static void read_value(struct parser *p, int depth);

static void read_array(struct parser *p, int depth)
{
    lua_Integer index = 0;

    lua_newtable(p->L);
    skip_space(p);
    if (p->at < p->end && *p->at == ']') {
        p->at++;
    } else {
        for (;;) {
            read_value(p, depth + 1);
            /* A JSON null leaves a hole, as dkjson does. */
            lua_rawseti(p->L, -2, ++index);
            skip_space(p);
            if (p->at < p->end && *p->at == ',') {
                p->at++;
                continue;
            }
            if (p->at < p->end && *p->at == ']') {
                p->at++;
                break;
            }
            fail(p, "expected ',' or ']' in array");
        }
    }
    push_meta(p->L, array_meta_key, "array");
    lua_setmetatable(p->L, -2);
}

static void read_object(struct parser *p, int depth)
{
    lua_newtable(p->L);
    skip_space(p);
    if (p->at < p->end && *p->at == '}') {
        p->at++;
    } else {
        for (;;) {
            skip_space(p);
            if (p->at >= p->end || *p->at != '"')
                fail(p, "expected a string key in object");
            p->at++;
            read_string(p);
            skip_space(p);
            if (p->at >= p->end || *p->at != ':')
                fail(p, "expected ':' after object key");
            p->at++;
            read_value(p, depth + 1);
            lua_rawset(p->L, -3);
            skip_space(p);
            if (p->at < p->end && *p->at == ',') {
                p->at++;
                continue;
            }
            if (p->at < p->end && *p->at == '}') {
                p->at++;
                break;
            }
            fail(p, "expected ',' or '}' in object");
        }
    }
    push_meta(p->L, object_meta_key, "object");
    lua_setmetatable(p->L, -2);
}

static void read_value(struct parser *p, int depth)
{
    if (depth > JSON_DECODE_MAX_DEPTH)
        fail(p, "nested too deep");
    luaL_checkstack(p->L, 4, "JSON nested too deep");
    skip_space(p);
    if (p->at >= p->end)
        fail(p, "unexpected end of text");
    switch (*p->at) {
    case '{':
        p->at++;
        read_object(p, depth);
        return;
    case '[':
        p->at++;
        read_array(p, depth);
        return;
    case '"':
        p->at++;
        read_string(p);
        return;
    case 't':
        if (match_word(p, "true")) {
            lua_pushboolean(p->L, 1);
            return;
        }
        break;
    case 'f':
        if (match_word(p, "false")) {
            lua_pushboolean(p->L, 0);
            return;
        }
        break;
    case 'n':
        if (match_word(p, "null")) {
            lua_pushnil(p->L);
            return;
        }
        break;
    default:
        if (*p->at == '-' || (*p->at >= '0' && *p->at <= '9')) {
            read_number(p);
            return;
        }
    }
    fail(p, "unexpected character");
}

/* The protected part: decode(text pointer, length) -> value. */
static int decode_protected(lua_State *L)
{
    struct parser p = { L, NULL, NULL, NULL };

    p.text = lua_touserdata(L, 1);
    p.at = p.text;
    p.end = p.text + (size_t)lua_tointeger(L, 2);
    read_value(&p, 0);
    skip_space(&p);
    if (p.at != p.end)
        fail(&p, "text after the value");
    return 1;
}

int json_decode_push(lua_State *L, const char *text, size_t length, char **error)
{
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, (void *)text);
    lua_pushinteger(L, (lua_Integer)length);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *message = lua_tostring(L, -1);
        *error = strbuf_dup(message ? message : "JSON decoding failed");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}
