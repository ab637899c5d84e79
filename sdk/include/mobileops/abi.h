/*
 * mobileops plugin ABI: versions, error codes, the error slot and host-owned buffers.
 *
 * Rules that hold for every struct and function of the ABI:
 *  - Every struct that crosses the boundary starts with `uint32_t size`, set by whoever
 *    fills it to `sizeof` the struct it was compiled with. Fields are only ever appended;
 *    a reader copies min(its size, the given size) into a zeroed struct of its own, so a
 *    field the other side does not know reads as 0 / NULL. A struct larger than the
 *    host's own from a plugin whose minor is not newer is corrupt and refused.
 *  - Functions return 0 on success and a negative value on failure: `-errno` or one of
 *    the MO_E_* codes below. Details go into the caller's mo_error, filled through
 *    mo_host_api.error_set; no heap string is ever handed across.
 *  - Memory: whoever allocates frees. Output data travels in mo_buffer, whose bytes are
 *    always allocated and freed by the host (mo_host_api.buffer_set / buffer_free).
 */
#ifndef MOBILEOPS_ABI_H
#define MOBILEOPS_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Major: breaking changes. Minor: additive changes (fields and functions appended). */
#define MO_ABI_MAJOR 1
#define MO_ABI_MINOR 0

/* The one symbol a plugin exports: `const mo_plugin_descriptor *mobileops_plugin_entry(void)`. */
#define MO_PLUGIN_ENTRY_SYMBOL "mobileops_plugin_entry"

#if defined(__GNUC__)
#define MO_EXPORT __attribute__((visibility("default")))
#else
#define MO_EXPORT
#endif

/* Error codes of our own; everything else is -errno. */
enum {
    MO_OK = 0,
    MO_E_INVALID = -1000,     /* bad argument or input; the message names it */
    MO_E_NOT_FOUND = -1001,   /* no such object (container, image, method, ...) */
    MO_E_EXISTS = -1002,      /* name or id already in use */
    MO_E_STATE = -1003,       /* object in the wrong state (e.g. start a running container) */
    MO_E_UNSUPPORTED = -1004, /* not available on this host or in this provider */
    MO_E_ABI = -1005,         /* ABI mismatch (version, struct size, missing callback) */
    MO_E_INTERNAL = -1006,    /* a bug: an exception or invariant broken inside a plugin */
    MO_E_BUSY = -1007,        /* locked by another command */
    MO_E_STORE = -1008        /* state store failure */
};

#define MO_ERROR_MESSAGE_MAX 2048

/* The error slot a caller passes to every fallible function. Filled with error_set. */
typedef struct mo_error {
    uint32_t size;
    int32_t code;
    char message[MO_ERROR_MESSAGE_MAX];
} mo_error;

/* Output bytes. `data` is allocated by the host (buffer_set) and released by whoever
 * received the buffer (buffer_free). `data` is NUL-terminated for convenience;
 * `len` excludes the terminator. */
typedef struct mo_buffer {
    uint32_t size;
    char *data;
    size_t len;
} mo_buffer;

/* Log levels for mo_host_api.log. */
enum { MO_LOG_ERROR = 0, MO_LOG_WARNING = 1, MO_LOG_INFO = 2, MO_LOG_DEBUG = 3 };

/* Opaque handle the host gives each loaded plugin. */
typedef struct mo_plugin mo_plugin;

/* Initialisers for a caller's error slot and output buffer. */
/* clang-format off */
#define MO_ERROR_INIT {sizeof(mo_error), 0, {0}}
#define MO_BUFFER_INIT {sizeof(mo_buffer), NULL, 0}
/* clang-format on */

#ifdef __cplusplus
}
#endif

#endif /* MOBILEOPS_ABI_H */
