/*
 * Typed service interfaces. A plugin registers a filled struct with
 * mo_host_api.register_service; anyone (other plugins, the Lua layer) looks it up by kind
 * with mo_host_api.service_lookup and calls through it.
 *
 * Conventions for every interface:
 *  - The struct starts with `size` (sizeof at the provider's build) and `self`, an opaque
 *    pointer passed back as the first argument of every function.
 *  - A NULL function pointer means "not supported by this provider"; callers report
 *    MO_E_UNSUPPORTED naming the function.
 *  - Complex inputs and outputs are UTF-8 JSON documents; their schemas are described in
 *    docs/lua-api.md. `ref` arguments accept a container name or id.
 *  - Functions are not thread-safe unless stated; the host calls them from one thread.
 *  - Output buffers are filled with mo_host_api.buffer_set; the caller frees them.
 */
#ifndef MOBILEOPS_SERVICES_H
#define MOBILEOPS_SERVICES_H

#include <mobileops/abi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Service kinds. Append only. The name in parentheses is the kind's name in a
 * descriptor's `provides` entries ("runtime:namespace") and in messages. */
typedef enum mo_service_kind {
    MO_SERVICE_RUNTIME = 1,   /* ("runtime") container lifecycle: nsruntime, krun */
    MO_SERVICE_CGROUP = 2,    /* ("cgroup") resource control: cgroup */
    MO_SERVICE_NETWORK = 3,   /* ("network") container networking: bridge */
    MO_SERVICE_STORAGE = 4,   /* ("storage") images, root filesystems, volumes: storage */
    MO_SERVICE_INTEGRITY = 5, /* ("integrity") manifests and verification: integrity */
    MO_SERVICE_LOG = 6        /* ("log") output capture and search: logcollector */
} mo_service_kind;

#define MO_SERVICE_KIND_COUNT 6

/* Standard streams handed to foreground operations (run, exec, attach). */
typedef struct mo_stdio {
    uint32_t size;
    int in_fd;      /* -1: no stdin (the container reads /dev/null) */
    int out_fd;     /* -1: discard */
    int err_fd;     /* -1: discard */
    uint32_t flags; /* MO_STDIO_* */
} mo_stdio;

enum {
    MO_STDIO_TTY = 1u << 0,        /* allocate a pty; in/out fds are a terminal */
    MO_STDIO_INTERACTIVE = 1u << 1 /* keep stdin open */
};

/* Flags for runtime functions. */
enum {
    MO_RUNTIME_FORCE = 1u << 0,     /* remove: kill a running container first */
    MO_RUNTIME_ALL = 1u << 1,       /* kill: every process, list: stopped ones too */
    MO_RUNTIME_AUTOREMOVE = 1u << 2 /* run: remove the container when it exits */
};

/*
 * Runtime service (ABI 1.0). Providers: "namespace" (plugins/nsruntime), "krun".
 *
 * spec_json is the core container spec (see docs/lua-api.md, "container spec"): name,
 * rootfs, process {args, env, cwd, user, terminal, rlimits}, hostname, namespaces,
 * mounts, readonly, network, annotations. State JSON: {id, name, runtime, status
 * ("created"|"running"|"paused"|"stopped"), pid, created, started, finished, exit_code,
 * signal, rootfs, spec}.
 */
typedef struct mo_runtime_service {
    uint32_t size;
    void *self;
    /* Create a container; writes its state JSON to state_out. */
    int (*create)(void *self, const char *spec_json, mo_buffer *state_out, mo_error *err);
    /* Start a created container under its monitor; returns once the process runs. */
    int (*start)(void *self, const char *ref, mo_error *err);
    /* Create, start and wait in the foreground with the given stdio. *exit_status is the
     * container's exit code, or 128+N when killed by signal N. */
    int (*run)(void *self, const char *spec_json, const mo_stdio *stdio, uint32_t flags,
               int *exit_status, mo_error *err);
    /* Send a signal to the container's init (MO_RUNTIME_ALL: to every process). */
    int (*kill)(void *self, const char *ref, int signal, uint32_t flags, mo_error *err);
    /* SIGTERM (or the spec's stop signal), SIGKILL after timeout_seconds. */
    int (*stop)(void *self, const char *ref, uint32_t timeout_seconds, mo_error *err);
    /* Release everything the container holds. MO_RUNTIME_FORCE kills it first. */
    int (*remove)(void *self, const char *ref, uint32_t flags, mo_error *err);
    /* Inspect: state JSON (reconciled with reality first). */
    int (*state)(void *self, const char *ref, mo_buffer *state_out, mo_error *err);
    /* JSON array of state objects; MO_RUNTIME_ALL includes stopped containers. */
    int (*list)(void *self, uint32_t flags, mo_buffer *list_out, mo_error *err);
    /* Run a process in a running container. process_json: {args, env, cwd, user,
     * terminal}. Blocks until it exits; *exit_status as for run. */
    int (*exec)(void *self, const char *ref, const char *process_json, const mo_stdio *stdio,
                int *exit_status, mo_error *err);
    /* Connect stdio to a running container's console/output until it exits or detaches. */
    int (*attach)(void *self, const char *ref, const mo_stdio *stdio, mo_error *err);
    /* JSON array of {pid, ppid, user, state, command} for the container's processes. */
    int (*top)(void *self, const char *ref, mo_buffer *out, mo_error *err);
    /* Freeze / thaw every process (needs the cgroup service). */
    int (*pause)(void *self, const char *ref, mo_error *err);
    int (*resume)(void *self, const char *ref, mo_error *err);
    /* Change resources of a running container; resources_json as spec.resources. */
    int (*update)(void *self, const char *ref, const char *resources_json, mo_error *err);
    /* Wait until the container stops; *exit_status as for run. */
    int (*wait)(void *self, const char *ref, int *exit_status, mo_error *err);
    /* Release what interrupted commands left behind; report JSON {released: [...]}. */
    int (*gc)(void *self, mo_buffer *report_out, mo_error *err);
    /* Resource usage JSON {cpu, memory, pids, io, frozen} as mo_cgroup_service.stats,
     * plus {id, name}. Appended in ABI 1.0 before the first release. */
    int (*stats)(void *self, const char *ref, mo_buffer *out, mo_error *err);
} mo_runtime_service;

/*
 * Cgroup service (ABI 1.0, declared; provided by plugins/cgroup). `path` is relative to
 * the mobileops cgroup parent, e.g. "mobileops/<id>".
 */
typedef struct mo_cgroup_service {
    uint32_t size;
    void *self;
    /* Create the cgroup and apply resources_json (spec.resources); idempotent. A limit the
     * host cannot apply fails with MO_E_UNSUPPORTED, unless resources_json has
     * "ignoreUnsupported": true: then it is left out with a warning (update alike). */
    int (*create)(void *self, const char *path, const char *resources_json, mo_error *err);
    /* Move pid into the cgroup on every hierarchy. */
    int (*attach)(void *self, const char *path, int pid, mo_error *err);
    int (*update)(void *self, const char *path, const char *resources_json, mo_error *err);
    /* JSON {cpu, memory, pids, io} usage. */
    int (*stats)(void *self, const char *path, mo_buffer *out, mo_error *err);
    int (*freeze)(void *self, const char *path, mo_error *err);
    int (*thaw)(void *self, const char *path, mo_error *err);
    /* Signal every process in the cgroup (SIGKILL kills them all, frozen or not). */
    int (*kill)(void *self, const char *path, int signal, mo_error *err);
    /* JSON array of pids. */
    int (*pids)(void *self, const char *path, mo_buffer *out, mo_error *err);
    /* Remove the cgroup; fails with MO_E_STATE while processes remain. */
    int (*destroy)(void *self, const char *path, mo_error *err);
    /* Appended in ABI 1.0 before the first release; check for NULL.
     * Requested against applied, field by field, for resources_json as create takes it:
     * JSON {layout, fields: [{field, requested, applied, file, value, note}]}, `note`
     * saying why a value differs or was not applied. */
    int (*report)(void *self, const char *path, const char *resources_json, mo_buffer *out,
                  mo_error *err);
    /* Where a new process can be put at clone time (clone3 CLONE_INTO_CGROUP): JSON
     * {unified: the cgroup's cgroup2 directory or null, complete: true when joining that
     * directory alone places the process in every hierarchy the service uses}. */
    int (*placement)(void *self, const char *path, mo_buffer *out, mo_error *err);
} mo_cgroup_service;

/* Network service (ABI 1.0, declared; provided by plugins/bridge). */
typedef struct mo_network_service {
    uint32_t size;
    void *self;
    /* Attach the network namespace of pid to the networks in config_json; writes the
     * attachment JSON (interfaces, addresses, ports) to out. */
    int (*attach)(void *self, const char *container_id, int pid, const char *config_json,
                  mo_buffer *out, mo_error *err);
    int (*detach)(void *self, const char *container_id, mo_error *err);
} mo_network_service;

/* Storage service (ABI 1.0, declared; provided by plugins/storage). */
typedef struct mo_storage_service {
    uint32_t size;
    void *self;
    /* Prepare a root filesystem for a container from an image reference: an overlay of
     * the image's layers under a writable layer of the container's own, mounted at the
     * returned path. options_json (may be NULL): {readonly: bool, diskLimit: bytes,
     * flatten: bool}; flatten makes the overlay's only lower layer the image's flattened
     * copy (every layer applied, made once per image: what a micro-VM shares best).
     * Writes {path, upper, work, image: {id, name}, flat} JSON to out. Idempotent: a
     * second call for the same container mounts again what a reboot took away. */
    int (*prepare_rootfs)(void *self, const char *container_id, const char *image_ref,
                          const char *options_json, mo_buffer *out, mo_error *err);
    int (*release_rootfs)(void *self, const char *container_id, mo_error *err);
    /* Resolve volumes in spec.volumes form to host mounts JSON. */
    int (*prepare_volumes)(void *self, const char *container_id, const char *volumes_json,
                           mo_buffer *out, mo_error *err);
    int (*release_volumes)(void *self, const char *container_id, mo_error *err);
} mo_storage_service;

/*
 * Integrity service (ABI 1.0). Provider: "integrity" (plugins/integrity).
 *
 * Targets: "layer:<diffId>" (an extracted image layer), "image:<id>" (an image: its
 * layers' manifests in order), "container:<id>" (verify only: its image's layers, and its
 * writable layer against the image), "asset:<name>", "path:/abs" (or a plain path).
 * A manifest lists every path with type, mode, owner, size, device, link target, xattrs
 * and sha256, under a Merkle root; see docs/integrity.md.
 */
typedef struct mo_integrity_service {
    uint32_t size;
    void *self;
    /* Verify a target against its manifest; the report JSON goes to out: {target, kind,
     * clean, root, problems, first: ["PATH (what)"...], diff | layers, changes,
     * signature}. options_json (may be NULL): {keys: [public key files], requireSignature,
     * first: N, quiet}. Returns 0 when clean, MO_E_STATE (out still filled) when anything
     * differs, MO_E_NOT_FOUND when nothing was recorded for the target. */
    int (*verify)(void *self, const char *target, const char *options_json, mo_buffer *out,
                  mo_error *err);
    /* Record the manifest of `path` under `target` (an image's is composed from its
     * layers' records: path unused), replacing an earlier one. {target, root, files,
     * bytes} to out. */
    int (*record)(void *self, const char *target, const char *path, mo_buffer *out, mo_error *err);
} mo_integrity_service;

/*
 * Log service (ABI 1.0). Provider: "logcollector" (plugins/logcollector).
 *
 * A container's output goes to its journal: records of one line each (the newline is not
 * stored; a line longer than the service's line limit, or one the writer had to flush
 * before its newline came, is stored in pieces marked partial), with stream and a
 * nanosecond timestamp, in segments rotated within the container's retention. Exactly
 * one writer per container at a time. Readers never block the writer.
 */
typedef struct mo_log_writer mo_log_writer; /* one container's open journal */

enum { MO_STREAM_STDOUT = 1, MO_STREAM_STDERR = 2 };

typedef struct mo_log_service {
    uint32_t size;
    void *self;
    /* Open container_id's journal for writing, waiting for a previous writer to finish.
     * options_json (may be NULL): {name, maxSize, maxAge, cgroup, index, sampleInterval}:
     * retention ("10Mi", "7d"; defaults from the configuration), the container's cgroup
     * path for resource samples (the cgroup service's form, "mobileops/<id>"), and whether
     * to keep the search index current from a background thread (default true). */
    int (*open)(void *self, const char *container_id, const char *options_json, mo_log_writer **out,
                mo_error *err);
    /* Store `len` bytes read from `stream` (MO_STREAM_STDOUT or MO_STREAM_STDERR) at
     * timestamp_ns (0: now). Complete lines are written before it returns; the rest is
     * held until its newline, flush or close. Blocks rather than dropping: a writer that
     * cannot keep up slows the container down through its full pipe. */
    int (*write)(void *self, mo_log_writer *writer, int stream, int64_t timestamp_ns,
                 const char *data, size_t len, mo_error *err);
    /* Write held partial lines now (marked partial): call when the stream went quiet. */
    int (*flush)(void *self, mo_log_writer *writer, mo_error *err);
    /* Flush, mark the end of this run in the journal and release the writer. Frees it,
     * also on failure. */
    int (*close)(void *self, mo_log_writer *writer, mo_error *err);
    /* Copy container_id's output to out_fd (stdout lines) and err_fd (stderr lines; -1:
     * to out_fd), as `mobileops logs show` does. query_json: {since, until, tail,
     * stream, timestamps, follow, fromEnd, json}; see docs/logs.md. With follow, returns
     * when the container's writer is gone and everything it wrote was copied. */
    int (*read)(void *self, const char *container_id, const char *query_json, int out_fd,
                int err_fd, mo_error *err);
    /* Delete container_id's journal and index (the container is being removed). */
    int (*remove)(void *self, const char *container_id, mo_error *err);
} mo_log_service;

#ifdef __cplusplus
}
#endif

#endif /* MOBILEOPS_SERVICES_H */
