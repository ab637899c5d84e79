/*
 * The host function table: everything a plugin may ask of the core. The core passes a
 * pointer to it to the plugin's init; it stays valid until fini returns. The table only
 * ever grows at the end: check `size` (or abi_minor) before using a function added after
 * ABI 1.0.
 *
 * Thread-safety: every function may be called from any thread of the process that
 * loaded the plugin, and from a child it forked (the store reopens its connection in a
 * new process).
 */
#ifndef MOBILEOPS_HOST_H
#define MOBILEOPS_HOST_H

#include <mobileops/abi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A named method taking and returning JSON, exposed to Lua as
 * mo.plugins.<plugin>.<name>(args). Since ABI 1.0.
 *
 * `args_json` is NUL-terminated JSON owned by the host and valid during the call ("{}"
 * when the caller gave no arguments; from Lua, the argument table as a JSON object).
 * On success return 0 and put the result JSON in `result_json` with host->buffer_set
 * (leave it empty to return nothing); the host frees it. On failure return a negative
 * code and fill `err` with host->error_set; the host frees whatever `result_json` holds
 * and the Lua caller gets an error carrying the message. Called from the host's one
 * thread that runs Lua. */
typedef int (*mo_method_fn)(void *self, const char *args_json, mo_buffer *result_json,
                            mo_error *err);

typedef struct mo_method {
    uint32_t size;
    const char *name;    /* [a-z][a-z0-9_]*, at most 64 bytes, unique within the plugin */
    const char *summary; /* one line, shown by `mobileops plugin info` and the docs */
    const char *params;  /* free text describing the JSON argument, may be NULL */
    mo_method_fn call;
    void *self;
} mo_method;

/* flags for store_put */
enum { MO_STORE_CREATE = 1u << 0 /* fail with MO_E_EXISTS when key or name exists */ };
/* flags for lock */
enum { MO_LOCK_SHARED = 1u << 0, MO_LOCK_NOWAIT = 1u << 1 };

typedef struct mo_lock mo_lock;

typedef struct mo_host_api {
    uint32_t size;
    uint32_t abi_major;
    uint32_t abi_minor;

    /* --- ABI 1.0 --- */

    /* Log a line attributed to the plugin. `message` is copied. */
    void (*log)(mo_plugin *plugin, int level, const char *message);

    /* Fill an error slot: code (negative) and message (copied, truncated to fit).
     * Messages are lowercase, no trailing period, values in backticks. */
    void (*error_set)(mo_error *err, int32_t code, const char *message);

    /* Copy `len` bytes into buf (host-allocated, NUL-terminated). Frees what buf held.
     * Returns 0 or -ENOMEM. */
    int (*buffer_set)(mo_buffer *buf, const char *data, size_t len);
    /* Release buf's bytes; buf may be reused. NULL-safe. */
    void (*buffer_free)(mo_buffer *buf);

    /* A configuration value or NULL. The string is owned by the host and valid until
     * fini. Keys: "root_dir", "run_dir", "libexec_dir", "plugin_dir", "debug", and
     * "<plugin>.<key>" from the configuration file. */
    const char *(*config_get)(mo_plugin *plugin, const char *key);

    /* Register a service of `kind` (mo_service_kind) under `provider` name. `iface` points
     * to the kind's interface struct (it starts with its size) and must stay valid until
     * fini. Call from init only. */
    int (*register_service)(mo_plugin *plugin, uint32_t kind, const char *provider,
                            const void *iface, mo_error *err);
    /* Register a named JSON method; `method` is copied, its strings must stay valid until
     * fini. Call from init only. */
    int (*register_method)(mo_plugin *plugin, const mo_method *method, mo_error *err);
    /* Add a named feature (e.g. "nsruntime.userns") to `mobileops features`. */
    int (*register_feature)(mo_plugin *plugin, const char *name, mo_error *err);

    /* Find the service of `kind` from `provider` (NULL: the default provider), loading
     * its plugin on first use. Returns the interface, padded with NULLs to the host's
     * size of it, valid until the host unloads; NULL with err set when none exists. */
    const void *(*service_lookup)(mo_plugin *plugin, uint32_t kind, const char *provider,
                                  mo_error *err);

    /* Record an event (type like "container.start", payload JSON object). */
    int (*event_emit)(mo_plugin *plugin, const char *type, const char *payload_json, mo_error *err);

    /* State store: JSON documents keyed by (kind, key), with an optional name that is
     * unique within the kind. Kinds are shared between plugins ("container", "image"...).
     * Each put/delete is its own transaction unless inside store_begin/store_commit. */
    int (*store_get)(mo_plugin *plugin, const char *kind, const char *key, mo_buffer *out,
                     mo_error *err);
    int (*store_find)(mo_plugin *plugin, const char *kind, const char *name, mo_buffer *out,
                      mo_error *err);
    int (*store_put)(mo_plugin *plugin, const char *kind, const char *key, const char *name,
                     const char *json, uint32_t flags, mo_error *err);
    int (*store_delete)(mo_plugin *plugin, const char *kind, const char *key, mo_error *err);
    /* JSON array of the documents of `kind`, ordered by creation. */
    int (*store_list)(mo_plugin *plugin, const char *kind, mo_buffer *out, mo_error *err);
    /* Immediate (write-locked) transaction; nestable, the outermost commit writes. */
    int (*store_begin)(mo_plugin *plugin, mo_error *err);
    int (*store_commit)(mo_plugin *plugin, mo_error *err);
    void (*store_rollback)(mo_plugin *plugin);

    /* Advisory lock named `name` (e.g. "container/<id>") across processes. Blocks unless
     * MO_LOCK_NOWAIT (then MO_E_BUSY). Released by unlock or when the process exits. */
    int (*lock)(mo_plugin *plugin, const char *name, uint32_t flags, mo_lock **out, mo_error *err);
    void (*unlock)(mo_lock *lock);
} mo_host_api;

#ifdef __cplusplus
}
#endif

#endif /* MOBILEOPS_HOST_H */
