/*
 * The hello plugin in plain C, on the raw ABI: the same `greet` method as
 * examples/hello/hello.cpp, registered by a plugin named "hello_c".
 *
 *   mo.plugins.hello_c.greet{ name = "world" }  -->  { greeting = "hello, world" }
 *
 * Build it with nothing but a C compiler and the installed headers:
 *
 *   cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags mobileops) \
 *      -o hello_c.so hello.c
 *
 * The SDK ships no JSON library, so this file carries just enough JSON to read one string
 * member and to quote one string. A real plugin would use a JSON library instead.
 */
#include <mobileops/plugin.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What init hands back to the host as `user`; freed in fini. */
struct hello {
    const mo_host_api *host;
    mo_plugin *plugin;
};

/* --- just enough JSON ------------------------------------------------------------------- */

struct reader {
    const char *p, *end;
};

static void skip_space(struct reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static int eat(struct reader *r, char c) {
    skip_space(r);
    if (r->p == r->end || *r->p != c) return 0;
    r->p++;
    return 1;
}

static int hex4(struct reader *r, unsigned long *out) {
    unsigned long v = 0;
    int n;
    if (r->end - r->p < 4) return -1;
    for (n = 0; n < 4; n++) {
        char c = *r->p++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned long)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned long)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned long)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned long cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xc0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/*
 * Read a JSON string at r->p. With `out` non-NULL, write the decoded UTF-8 there (it needs
 * no more bytes than the encoded string) and NUL-terminate it. Returns 0 or -1.
 */
static int read_string(struct reader *r, char *out) {
    if (!eat(r, '"')) return -1;
    while (r->p < r->end) {
        unsigned long cp;
        char c = *r->p++;
        if (c == '"') {
            if (out) *out = '\0';
            return 0;
        }
        if ((unsigned char)c < 0x20) return -1;
        if (c != '\\') {
            if (out) *out++ = c;
            continue;
        }
        if (r->p == r->end) return -1;
        switch (*r->p++) {
        case '"':
            cp = '"';
            break;
        case '\\':
            cp = '\\';
            break;
        case '/':
            cp = '/';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            if (hex4(r, &cp) < 0) return -1;
            if (cp >= 0xd800 && cp < 0xdc00) { /* high surrogate: a low one must follow */
                unsigned long low;
                if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u') return -1;
                r->p += 2;
                if (hex4(r, &low) < 0 || low < 0xdc00 || low > 0xdfff) return -1;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return -1;
            }
            break;
        default:
            return -1;
        }
        if (out) out = put_utf8(out, cp);
    }
    return -1;
}

static int skip_value(struct reader *r) {
    skip_space(r);
    if (r->p == r->end) return -1;
    if (*r->p == '"') return read_string(r, NULL);
    if (*r->p == '{' || *r->p == '[') {
        char close = *r->p == '{' ? '}' : ']';
        r->p++;
        if (eat(r, close)) return 0;
        do {
            if (close == '}' && (read_string(r, NULL) < 0 || !eat(r, ':'))) return -1;
            if (skip_value(r) < 0) return -1;
        } while (eat(r, ','));
        return eat(r, close) ? 0 : -1;
    }
    {
        const char *start = r->p;
        while (r->p < r->end && strchr("truefalsn0123456789+-.eE", *r->p)) r->p++;
        return r->p > start ? 0 : -1;
    }
}

/*
 * Find top-level member `key` of the JSON object `json`. Returns 1 and sets *value (malloc'd,
 * the caller frees) when it is a string, 0 when it is missing or not a string, -1 when
 * `json` is not a JSON object or memory ran out.
 */
static int string_member(const char *json, const char *key, char **value) {
    struct reader r = {json, json + strlen(json)};
    char *name = malloc(strlen(json) + 1);
    int found = 0;
    *value = NULL;
    if (!name || !eat(&r, '{')) goto fail;
    if (!eat(&r, '}')) {
        do {
            if (read_string(&r, name) < 0 || !eat(&r, ':')) goto fail;
            skip_space(&r);
            if (strcmp(name, key) == 0 && r.p < r.end && *r.p == '"') {
                free(*value);
                *value = malloc(strlen(json) + 1);
                if (!*value || read_string(&r, *value) < 0) goto fail;
                found = 1;
            } else if (skip_value(&r) < 0) {
                goto fail;
            }
        } while (eat(&r, ','));
        if (!eat(&r, '}')) goto fail;
    }
    skip_space(&r);
    if (r.p != r.end) goto fail;
    free(name);
    return found;
fail:
    free(name);
    free(*value);
    *value = NULL;
    return -1;
}

/* Write `s` as a JSON string literal to `out`, which holds at least 6 * strlen(s) + 3. */
static char *put_quoted(char *out, const char *s) {
    static const char hex[] = "0123456789abcdef";
    *out++ = '"';
    for (; *s; s++) {
        unsigned char u = (unsigned char)*s;
        if (u == '"' || u == '\\') {
            *out++ = '\\';
            *out++ = (char)u;
        } else if (u < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[u >> 4];
            out[5] = hex[u & 0xf];
            out += 6;
        } else {
            *out++ = (char)u;
        }
    }
    *out++ = '"';
    return out;
}

/* --- the plugin ------------------------------------------------------------------------- */

/* mo_method_fn: {"name": "NAME"} -> {"greeting": "hello, NAME"}. */
static int hello_greet(void *self, const char *args_json, mo_buffer *result_json, mo_error *err) {
    const struct hello *h = self;
    char *name = NULL, *greeting = NULL, *json = NULL, *o;
    int rc = string_member(args_json ? args_json : "{}", "name", &name);

    if (rc < 0) {
        h->host->error_set(err, MO_E_INVALID, "invalid arguments: expected a JSON object");
        return MO_E_INVALID;
    }
    if (rc == 0 || name[0] == '\0') {
        free(name);
        h->host->error_set(err, MO_E_INVALID, "invalid 'name': expected a non-empty string");
        return MO_E_INVALID;
    }
    greeting = malloc(strlen("hello, ") + strlen(name) + 1);
    if (greeting) {
        strcpy(greeting, "hello, ");
        strcat(greeting, name);
        json = malloc(strlen("{\"greeting\":}") + 6 * strlen(greeting) + 3);
    }
    free(name);
    if (!json) {
        free(greeting);
        h->host->error_set(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    o = json;
    memcpy(o, "{\"greeting\":", strlen("{\"greeting\":"));
    o = put_quoted(o + strlen("{\"greeting\":"), greeting);
    *o++ = '}';
    free(greeting);

    /* The host allocates the result's bytes (and frees them once it has read them); our
     * own buffer is ours to free. */
    rc = h->host->buffer_set(result_json, json, (size_t)(o - json));
    free(json);
    if (rc < 0) h->host->error_set(err, rc, "out of memory");
    return rc;
}

static int hello_init(const mo_host_api *host, mo_plugin *plugin, void **user, mo_error *err) {
    struct hello *h;
    mo_method greet;
    int rc;

    /* Every function used here is from ABI 1.0; a function appended later must be checked:
     * host->size >= offsetof(mo_host_api, fn) + sizeof host->fn. */
    h = calloc(1, sizeof *h);
    if (!h) {
        host->error_set(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    h->host = host;
    h->plugin = plugin;

    memset(&greet, 0, sizeof greet);
    greet.size = sizeof greet;
    greet.name = "greet";
    greet.summary = "return a greeting for `name`";
    greet.params = "{\"name\": string, who to greet}";
    greet.call = hello_greet;
    greet.self = h;
    rc = host->register_method(plugin, &greet, err);
    if (rc == 0) rc = host->register_feature(plugin, "hello_c.greet", err);
    if (rc < 0) {
        free(h);
        return rc;
    }
    *user = h;
    return 0;
}

static void hello_fini(void *user) { free(user); }

static int hello_probe(void *user, mo_probe *out) {
    (void)user;
    out->usable = 1;
    snprintf(out->reason, sizeof out->reason, "%s", "needs nothing from the host");
    return 0;
}

MO_EXPORT const mo_plugin_descriptor *mobileops_plugin_entry(void) {
    static const mo_plugin_descriptor descriptor = {
        .size = sizeof(mo_plugin_descriptor),
        .abi_major = MO_ABI_MAJOR,
        .abi_minor = 0, /* uses only host functions of ABI 1.0 */
        .name = "hello_c",
        .version = "1.0.0",
        .description = "example plugin in C: greets by name",
        .provides = NULL, /* registers no services, so nothing to load lazily for */
        .init = hello_init,
        .fini = hello_fini,
        .probe = hello_probe,
    };
    return &descriptor;
}
