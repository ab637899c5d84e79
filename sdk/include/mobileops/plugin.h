/*
 * The plugin descriptor and entry point.
 *
 * A plugin is a shared object exporting exactly one symbol:
 *
 *     MO_EXPORT const mo_plugin_descriptor *mobileops_plugin_entry(void);
 *
 * which returns a pointer to a static descriptor that stays valid while the object is
 * loaded. The entry point must have no side effects: the host calls it to learn what a
 * file provides without initialising the plugin (the answer is cached by path, inode,
 * size and mtime). The host checks the ABI version, copies min(descriptor->size, its own
 * sizeof) bytes into a zeroed descriptor, and only when the plugin is needed calls init,
 * then (for `mobileops doctor` and `plugin info`) probe. A plugin built for another major,
 * or for a newer minor than the host offers, is refused with a message naming the file,
 * the plugin and both versions; so is a descriptor without name, init or probe.
 *
 * Threads: the host calls entry, init, probe and fini from one thread, never
 * concurrently with each other. Since ABI 1.0.
 */
#ifndef MOBILEOPS_PLUGIN_H
#define MOBILEOPS_PLUGIN_H

#include <mobileops/abi.h>
#include <mobileops/host.h>
#include <mobileops/services.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Filled by probe: can the plugin do its work on this host, and if not, why. */
typedef struct mo_probe {
    uint32_t size;
    int32_t usable;   /* 1 usable, 0 not */
    char reason[512]; /* why not, or a short description of what was found */
} mo_probe;

typedef struct mo_plugin_descriptor {
    uint32_t size;      /* sizeof(mo_plugin_descriptor) at build time */
    uint32_t abi_major; /* MO_ABI_MAJOR at build time */
    uint32_t abi_minor; /* MO_ABI_MINOR of the headers it was built with (or lower, when
                         * it only uses older functions); the host refuses a plugin whose
                         * abi_minor exceeds its own */
    const char *name;   /* [a-z][a-z0-9_-]*, at most 64 bytes, unique among plugins */
    const char *version;
    const char *description;
    /* NULL-terminated list of "kind:provider" this plugin registers in init, e.g.
     * {"runtime:namespace", NULL}; lets the host load plugins lazily. May be NULL. */
    const char *const *provides;

    /* Required. Register services, methods and features. `host` and `plugin` stay valid
     * until fini returns; keep them. `user` receives the plugin's private pointer (owned by
     * the plugin), handed back to fini and probe. Return 0, or a negative code with err
     * filled through host->error_set. On failure the host forgets everything the plugin
     * registered, does not call fini, and reports the plugin as failed: release what init
     * acquired before returning. No exception may escape (the host survives one, reporting
     * MO_E_INTERNAL, but that is not part of the ABI). */
    int (*init)(const mo_host_api *host, mo_plugin *plugin, void **user, mo_error *err);
    /* Optional. Release everything init acquired, `user` included. Called once, when the
     * host shuts down, and only after a successful init. */
    void (*fini)(void *user);
    /* Required. Fill out->usable and out->reason (NUL-terminated; the host zeroes `out`
     * and sets out->size). Must not change the host: it only looks. Return 0; a negative
     * value means the probe itself failed. */
    int (*probe)(void *user, mo_probe *out);
} mo_plugin_descriptor;

typedef const mo_plugin_descriptor *(*mo_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MOBILEOPS_PLUGIN_H */
