/* A recording stand-in for libkrun.so.1 (libkrun is not packaged for Debian 12): the same
 * C signatures as libkrun's include/libkrun.h, each call appended as one line to the file
 * named by $FAKE_LIBKRUN_LOG, e.g. "krun_set_exec 1 /bin/echo [hello] [world] envp [A=1]".
 *
 *   FAKE_LIBKRUN_FAIL=<symbol>  that call returns -EINVAL (after its line is written)
 *   FAKE_LIBKRUN_EXIT=<n>       krun_start_enter exits with n, as the VMM does when the
 *                               program in the guest exits with n (default 0)
 *   FAKE_LIBKRUN_HANG=1         krun_start_enter never returns: a VM that runs forever
 *
 * Like libkrun, contexts live in the process that created them: a call naming a context
 * this process (or the one it was forked from) did not create gets -ENOENT.
 *
 * Built three ways: complete; FAKE_MINIMAL without the optional calls (krun_add_virtiofs*,
 * krun_set_port_map, krun_set_rlimits, krun_set_log_level); FAKE_BROKEN without
 * krun_start_enter, a library that is no usable libkrun. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CTX 64

static bool live[MAX_CTX];
static int32_t next_ctx = 1;

static void put_line(const char *line, size_t len) {
    const char *path = getenv("FAKE_LIBKRUN_LOG");
    if (!path) return;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    /* One write with O_APPEND: lines of the parent and the forked child never interleave. */
    ssize_t ignored = write(fd, line, len);
    (void)ignored;
    close(fd);
}

/* " [a] [b]" for an array (after " label" when given), " NULL" for a null one. */
static char *join(const char *label, const char *const array[]) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    if (label) fprintf(f, " %s", label);
    if (!array) fputs(" NULL", f);
    for (size_t i = 0; array && array[i]; ++i) fprintf(f, " [%s]", array[i]);
    fclose(f);
    return buf;
}

/* Write the call's line; -EINVAL when $FAKE_LIBKRUN_FAIL names this call. */
__attribute__((format(printf, 2, 3))) static int32_t record(const char *call, const char *fmt,
                                                            ...) {
    char *args = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&args, fmt, ap);
    va_end(ap);
    if (n >= 0) {
        char *line = NULL;
        int len = asprintf(&line, "%s%s\n", call, args);
        if (len > 0) {
            put_line(line, (size_t)len);
            free(line);
        }
        free(args);
    }
    const char *fail = getenv("FAKE_LIBKRUN_FAIL");
    return fail && strcmp(fail, call) == 0 ? -EINVAL : 0;
}

static int32_t exists(uint32_t ctx) { return ctx < MAX_CTX && live[ctx] ? 0 : -ENOENT; }

int32_t krun_create_ctx(void) {
    int32_t r = record("krun_create_ctx", " %d", next_ctx);
    if (r < 0) return r;
    if (next_ctx >= MAX_CTX) return -ENOMEM;
    live[next_ctx] = true;
    return next_ctx++;
}

int32_t krun_free_ctx(uint32_t ctx_id) {
    int32_t r = record("krun_free_ctx", " %u", ctx_id);
    if (r < 0 || (r = exists(ctx_id)) < 0) return r;
    live[ctx_id] = false;
    return 0;
}

int32_t krun_set_vm_config(uint32_t ctx_id, uint8_t num_vcpus, uint32_t ram_mib) {
    int32_t r = record("krun_set_vm_config", " %u %u %u", ctx_id, num_vcpus, ram_mib);
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_set_root(uint32_t ctx_id, const char *root_path) {
    int32_t r = record("krun_set_root", " %u %s", ctx_id, root_path);
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_set_workdir(uint32_t ctx_id, const char *workdir_path) {
    int32_t r = record("krun_set_workdir", " %u %s", ctx_id, workdir_path);
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_set_exec(uint32_t ctx_id, const char *exec_path, const char *const argv[],
                      const char *const envp[]) {
    char *args = join(NULL, argv), *env = join("envp", envp);
    int32_t r =
        record("krun_set_exec", " %u %s%s%s", ctx_id, exec_path, args ? args : "", env ? env : "");
    free(args);
    free(env);
    return r < 0 ? r : exists(ctx_id);
}

#ifndef FAKE_BROKEN
int32_t krun_start_enter(uint32_t ctx_id) {
    int32_t r = record("krun_start_enter", " %u", ctx_id);
    if (r < 0 || (r = exists(ctx_id)) < 0) return r;
    if (getenv("FAKE_LIBKRUN_HANG"))
        for (;;) pause();
    const char *status = getenv("FAKE_LIBKRUN_EXIT");
    _exit(status ? atoi(status) : 0);
}
#endif

#ifndef FAKE_MINIMAL
int32_t krun_set_log_level(uint32_t level) { return record("krun_set_log_level", " %u", level); }

int32_t krun_add_virtiofs(uint32_t ctx_id, const char *c_tag, const char *c_path) {
    int32_t r = record("krun_add_virtiofs", " %u %s %s", ctx_id, c_tag, c_path);
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_add_virtiofs3(uint32_t ctx_id, const char *c_tag, const char *c_path,
                           uint64_t shm_size, bool read_only) {
    int32_t r = record("krun_add_virtiofs3", " %u %s %s %llu %s", ctx_id, c_tag, c_path,
                       (unsigned long long)shm_size, read_only ? "ro" : "rw");
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_set_port_map(uint32_t ctx_id, const char *const port_map[]) {
    char *ports = join(NULL, port_map);
    int32_t r = record("krun_set_port_map", " %u%s", ctx_id, ports ? ports : "");
    free(ports);
    return r < 0 ? r : exists(ctx_id);
}

int32_t krun_set_rlimits(uint32_t ctx_id, const char *const rlimits[]) {
    char *limits = join(NULL, rlimits);
    int32_t r = record("krun_set_rlimits", " %u%s", ctx_id, limits ? limits : "");
    free(limits);
    return r < 0 ? r : exists(ctx_id);
}
#endif
