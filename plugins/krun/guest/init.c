/*
 * mobileops-guest-init: PID 1 of a krun qemu micro-VM. It loads the virtio and 9p modules
 * from the initramfs, reads the job from the job share, makes the root share the
 * program's root, runs the program and reports its exit status (protocol.h), then resets
 * the VM.
 *
 * `mobileops-guest-init --test DIR` runs the same job handling without a kernel of its
 * own, for the root tests (run it as PID 1 of fresh mount, pid and uts namespaces): the
 * shares are the directories DIR/<tag>, bind-mounted instead of 9p; the ports are found
 * by name under DIR/sys/class/virtio-ports and opened in DIR/dev (plain files, a FIFO
 * for control); the console is stderr; at the end init exits with the program's code
 * instead of draining the ports and resetting.
 *
 * Static, no heap: the job lives in one buffer, parsed in place.
 */
#define _GNU_SOURCE
#include "protocol.h"

#include <mobileops/common/rlimits.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum {
    JOB_MAX = 1 << 20,
    MAX_ARGS = 4096,
    MAX_ENV = 4096,
    MAX_GROUPS = 256,
    MAX_RLIMITS = 16,
    MAX_MOUNTS = 64,
    MAX_SYSCTLS = 256,
    MAX_FILTER = 4096, /* BPF_MAXINSNS */
    PORT_WAIT_MS = 10000,
    CONTROL_LINE_MAX = 64,
};

struct rlimit_rec {
    const char *name;
    int resource;
    struct rlimit limit;
};

struct sysctl_rec {
    const char *key, *value;
};

struct mount_rec {
    const char *tag, *path;
    int ro;
};

struct job {
    char *argv[MAX_ARGS + 1];
    int argc;
    char *env[MAX_ENV + 1];
    int envc;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    gid_t groups[MAX_GROUPS];
    int ngroups;
    struct rlimit_rec rlimits[MAX_RLIMITS];
    int nrlimits;
    mode_t umask;
    int has_caps;
    uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient */
    int nonewprivs;
    struct sock_fprog filter; /* .len 0: none */
    unsigned filter_flags;
    struct sysctl_rec sysctls[MAX_SYSCTLS];
    int nsysctls;
    const char *hostname;
    int rootro;
    struct mount_rec mounts[MAX_MOUNTS];
    int nmounts;
};

static struct job job = {.cwd = "/", .umask = 022};
static struct sock_filter filter_code[MAX_FILTER];
static char job_text[JOB_MAX + 1];

static int test_mode;
static const char *test_dir;
static int is_child;
static int console = 2;
static int job_dir = -1;
static int port_out = -1, port_err = -1, port_control = -1;
static char port_out_dev[NAME_MAX + 1], port_err_dev[NAME_MAX + 1];

/* What the control port has delivered of its current line. */
static struct {
    char line[CONTROL_LINE_MAX];
    size_t len;
    int skip; /* the line is too long: dropped */
} control_in;

static void drain_ports(void);

static _Noreturn void finish(int code);

static void say(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dprintf(console, "mobileops-init: %s\n", msg);
}

static _Noreturn void fail(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    say("%s", msg);
    finish(MO_EXIT_SETUP_FAILED);
}

/* fail() with strerror(errno) appended. */
static _Noreturn void die(const char *fmt, ...) {
    int err = errno;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail("%s: %s", msg, strerror(err));
}

static void path_join(char *out, size_t size, const char *a, const char *b) {
    if ((size_t)snprintf(out, size, "%s%s", a, b) >= size) fail("path `%s%s` is too long", a, b);
}

/* ---- the result ---------------------------------------------------------------- */

/* The signal that killed the program, 0 when it exited (or never ran). */
static int exit_signal;

/* "<code>" or "<code> signal <N>" (protocol.h), without the newline. */
static void format_exit(char *text, size_t size, int code) {
    if (exit_signal)
        snprintf(text, size, "%d signal %d", code, exit_signal);
    else
        snprintf(text, size, "%d", code);
}

static void write_exit_file(int code) {
    char text[32];
    format_exit(text, sizeof text - 1, code);
    strcat(text, "\n");
    int n = (int)strlen(text);
    int fd = openat(job_dir, MO_EXIT_FILE, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, text, (size_t)n) != n || fsync(fd) < 0)
        say("write the exit file: %s", strerror(errno));
    if (fd >= 0) close(fd);
}

/* Report `code` (protocol.h) and end: the VM resets, a test run exits. In the program's
 * child before exec, a setup failure just ends the child with that code. */
static _Noreturn void finish(int code) {
    if (is_child) _exit(code);
    drain_ports();
    if (job_dir >= 0) write_exit_file(code);
    char text[32];
    format_exit(text, sizeof text, code);
    dprintf(console, MO_EXIT_MARKER "%s\n", text);
    if (test_mode) exit(code);
    sync();
    reboot(RB_AUTOBOOT);
    say("reboot: %s", strerror(errno));
    _exit(code); /* PID 1 exiting panics the kernel, and panic=-1 resets it */
}

/* ---- the job file -------------------------------------------------------------- */

static int parse_uint(const char *s, char **end, unsigned long max, unsigned long *out) {
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    unsigned long v = strtoul(s, end, 10);
    if (errno || v > max) return -1;
    *out = v;
    return 0;
}

/* "-1" (unlimited) or a count. */
static int parse_limit(const char *s, char **end, rlim_t *out) {
    unsigned long v;
    if (strncmp(s, "-1", 2) == 0) {
        *end = (char *)s + 2;
        *out = RLIM_INFINITY;
        return 0;
    }
    if (parse_uint(s, end, ULONG_MAX - 1, &v) < 0) return -1;
    *out = v;
    return 0;
}

static _Noreturn void bad_value(const char *key, const char *value, const char *want) {
    fail("job: bad `%s` record `%s` (want %s)", key, value, want);
}

static void set_user(char *value) {
    unsigned long uid, gid;
    char *end;
    if (parse_uint(value, &end, UINT_MAX - 1, &uid) < 0 || *end != ':' ||
        parse_uint(end + 1, &end, UINT_MAX - 1, &gid) < 0 || *end)
        bad_value("user", value, "<uid>:<gid>");
    job.uid = (uid_t)uid;
    job.gid = (gid_t)gid;
}

static void set_groups(char *value) {
    char *p = value;
    job.ngroups = 0;
    while (*p) {
        unsigned long gid;
        if (job.ngroups == MAX_GROUPS) fail("job: more than %d groups", MAX_GROUPS);
        if (parse_uint(p, &p, UINT_MAX - 1, &gid) < 0 || (*p && *p != ' '))
            bad_value("groups", value, "space-separated gids");
        job.groups[job.ngroups++] = (gid_t)gid;
        while (*p == ' ') p++;
    }
}

static void add_rlimit(char *value) {
    char *soft = strchr(value, ' ');
    if (!soft) bad_value("rlimit", value, "<name> <soft> <hard>");
    *soft++ = 0;
    struct rlimit_rec *r = &job.rlimits[job.nrlimits];
    r->name = value;
    r->resource = mo_rlimit_resource(value);
    if (r->resource < 0) fail("job: unknown rlimit `%s`", value);
    char *end;
    if (parse_limit(soft, &end, &r->limit.rlim_cur) < 0 || *end != ' ' ||
        parse_limit(end + 1, &end, &r->limit.rlim_max) < 0 || *end)
        fail("job: bad `rlimit` record `%s %s` (want <name> <soft> <hard>)", value, soft);
    if (r->limit.rlim_cur > r->limit.rlim_max)
        fail("job: rlimit `%s`: soft limit above the hard limit", value);
    job.nrlimits++;
}

/* An absolute path below the root, without `..`. */
static int is_inner_path(const char *path) {
    if (path[0] != '/' || !path[strspn(path, "/")]) return 0;
    for (const char *p = path; (p = strstr(p, "..")); p += 2)
        if (p[-1] == '/' && (p[2] == '/' || !p[2])) return 0;
    return 1;
}

static void add_mount(char *value) {
    struct mount_rec *m = &job.mounts[job.nmounts];
    char *path = strchr(value, ' ');
    char *mode = strrchr(value, ' ');
    if (!path || path == value || mode == path || memchr(value, '/', (size_t)(path - value)))
        bad_value("mount", value, "<tag> <path> <ro|rw>");
    *path++ = 0;
    *mode++ = 0;
    if (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
        fail("job: mount `%s`: bad mode `%s` (want ro or rw)", path, mode);
    if (!is_inner_path(path))
        fail("job: mount path `%s` is not an absolute path below the root without `..`", path);
    m->tag = value;
    m->path = path;
    m->ro = mode[1] == 'o';
    job.nmounts++;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void set_umask(const char *value) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(value, &end, 8);
    if (!value[0] || *end || errno || v > 0777) bad_value("umask", value, "an octal mode");
    job.umask = (mode_t)v;
}

static void set_caps(const char *value) {
    const char *p = value;
    for (int i = 0; i < 5; i++) {
        char *end;
        if (hex_digit(*p) < 0) bad_value("caps", value, "five hex masks");
        errno = 0;
        unsigned long long v = strtoull(p, &end, 16);
        if (errno || (i < 4 ? *end != ' ' : *end != 0)) bad_value("caps", value, "five hex masks");
        job.caps[i] = v;
        p = end + (i < 4);
    }
    job.has_caps = 1;
}

/* "<flags> <hex>": the program's bytes decoded into filter_code. */
static void set_seccomp(const char *value) {
    unsigned long flags;
    char *hex;
    if (parse_uint(value, &hex, UINT_MAX, &flags) < 0 || *hex++ != ' ')
        fail("job: bad `seccomp` record (want <flags> <hex>)");
    size_t digits = strlen(hex);
    if (digits == 0 || digits % 16 || digits / 16 > MAX_FILTER)
        fail("job: `seccomp` filter of %zu hex digits (want 1 to %d instructions of 16)", digits,
             MAX_FILTER);
    unsigned char *out = (unsigned char *)filter_code;
    for (size_t i = 0; i < digits; i += 2) {
        int hi = hex_digit(hex[i]), lo = hex_digit(hex[i + 1]);
        if (hi < 0 || lo < 0) fail("job: `seccomp` filter is not lower-case hex");
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    job.filter.len = (unsigned short)(digits / 16);
    job.filter.filter = filter_code;
    job.filter_flags = (unsigned)flags;
}

/* "<key> <value>": a name of letters, digits and `_-./` without an empty part. */
static void add_sysctl(char *value) {
    char *space = strchr(value, ' ');
    if (!space || space == value) bad_value("sysctl", value, "<key> <value>");
    *space = 0;
    const char *key = value;
    if (key[0] == '.' || key[0] == '/' || space[-1] == '.' || strstr(key, "..") ||
        key[strspn(key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./")])
        fail("job: sysctl `%s` is not a sysctl name", key);
    job.sysctls[job.nsysctls].key = key;
    job.sysctls[job.nsysctls].value = space + 1;
    job.nsysctls++;
}

static int flag_value(const char *key, const char *value) {
    if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) bad_value(key, value, "0 or 1");
    return value[0] == '1';
}

static void apply_record(const char *key, char *value) {
    if (strcmp(key, "arg") == 0) {
        if (job.argc == MAX_ARGS) fail("job: more than %d arguments", MAX_ARGS);
        job.argv[job.argc++] = value;
    } else if (strcmp(key, "env") == 0) {
        if (job.envc == MAX_ENV) fail("job: more than %d environment variables", MAX_ENV);
        if (!strchr(value, '=') || value[0] == '=') bad_value("env", value, "NAME=value");
        job.env[job.envc++] = value;
    } else if (strcmp(key, "cwd") == 0) {
        if (value[0] != '/') bad_value("cwd", value, "an absolute path");
        job.cwd = value;
    } else if (strcmp(key, "user") == 0) {
        set_user(value);
    } else if (strcmp(key, "groups") == 0) {
        set_groups(value);
    } else if (strcmp(key, "rlimit") == 0) {
        if (job.nrlimits == MAX_RLIMITS) fail("job: more than %d rlimits", MAX_RLIMITS);
        add_rlimit(value);
    } else if (strcmp(key, "umask") == 0) {
        set_umask(value);
    } else if (strcmp(key, "caps") == 0) {
        set_caps(value);
    } else if (strcmp(key, "nonewprivs") == 0) {
        job.nonewprivs = flag_value(key, value);
    } else if (strcmp(key, "seccomp") == 0) {
        set_seccomp(value);
    } else if (strcmp(key, "sysctl") == 0) {
        if (job.nsysctls == MAX_SYSCTLS) fail("job: more than %d sysctls", MAX_SYSCTLS);
        add_sysctl(value);
    } else if (strcmp(key, "hostname") == 0) {
        if (!value[0] || strlen(value) > 64) bad_value("hostname", value, "1 to 64 bytes");
        job.hostname = value;
    } else if (strcmp(key, "rootro") == 0) {
        job.rootro = flag_value(key, value);
    } else if (strcmp(key, "mount") == 0) {
        if (job.nmounts == MAX_MOUNTS) fail("job: more than %d mounts", MAX_MOUNTS);
        add_mount(value);
    } else if (strcmp(key, "tty") == 0) {
        flag_value(key, value); /* not yet used */
    } else {
        fail("job: unknown record `%s`", key);
    }
}

/* Records "<key> <length>\n<length bytes>\n", parsed in place: each value's closing
 * newline becomes its NUL. */
static void parse_job(char *text, size_t size) {
    char *p = text, *end = text + size;
    while (p < end) {
        char *key = p;
        char *space = memchr(p, ' ', (size_t)(end - p));
        if (!space || space == key || space - key > 16)
            fail("job: bad record header at byte %zu", (size_t)(p - text));
        *space = 0;
        unsigned long len;
        char *nl;
        if (parse_uint(space + 1, &nl, JOB_MAX, &len) < 0 || *nl != '\n')
            fail("job: bad length in record `%s`", key);
        char *value = nl + 1;
        if ((size_t)(end - value) < len + 1 || value[len] != '\n')
            fail("job: record `%s` is truncated", key);
        if (memchr(value, 0, len)) fail("job: record `%s` holds a NUL byte", key);
        value[len] = 0;
        apply_record(key, value);
        p = value + len + 1;
    }
    if (job.argc == 0) fail("job: no `arg` record");
}

static void read_job(void) {
    int fd = openat(job_dir, MO_JOB_FILE, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open the job file `%s`", MO_JOB_FILE);
    size_t size = 0;
    for (;;) {
        ssize_t n = read(fd, job_text + size, sizeof job_text - size);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read the job file");
        if (n == 0) break;
        size += (size_t)n;
        if (size == sizeof job_text) fail("job: the job file is larger than %d bytes", JOB_MAX);
    }
    close(fd);
    parse_job(job_text, size);
}

/* ---- mounts -------------------------------------------------------------------- */

static void mkdir_p(const char *path) {
    char buf[PATH_MAX];
    path_join(buf, sizeof buf, path, "");
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST) die("mkdir `%s`", buf);
        *p = c;
        if (!c) return;
    }
}

/* A share (protocol.h) at `target`; `name` is what messages call the place. */
static void mount_share(const char *tag, const char *target, const char *name, int ro,
                        const char *cache) {
    if (test_mode) {
        /* A bind mount, made read-only before it is attached: a remount through `target`
         * (a /proc/self/fd link) would reach the directory below the mount. */
        char source[PATH_MAX];
        snprintf(source, sizeof source, "%s/%s", test_dir, tag);
        struct mount_attr attr = {.attr_set = ro ? MOUNT_ATTR_RDONLY : 0};
        int tree = open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (tree < 0 ||
            mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0 ||
            move_mount(tree, "", AT_FDCWD, target,
                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS) < 0)
            die("mount share `%s` at `%s`", tag, name);
        close(tree);
        return;
    }
    char options[128];
    /* msize: 9p's default 8 KiB makes reading binaries crawl under TCG. */
    snprintf(options, sizeof options, "trans=virtio,version=9p2000.L,msize=512000,cache=%s", cache);
    if (mount(tag, target, "9p", ro ? MS_RDONLY : 0, options) < 0)
        die("mount share `%s` at `%s`", tag, name);
}

/* The directory `path` inside the root, made when missing: symlinks on the way resolve
 * inside the root, as the program will see them. An O_PATH fd, or -1 with errno. */
static int open_in_root(int root, const char *path) {
    char prefix[PATH_MAX] = "";
    size_t len = 0;
    int dir = fcntl(root, F_DUPFD_CLOEXEC, 3);
    for (const char *p = path; dir >= 0;) {
        p += strspn(p, "/");
        if (!*p) break;
        size_t n = strcspn(p, "/");
        if (len + n + 2 > sizeof prefix) {
            close(dir);
            errno = ENAMETOOLONG;
            return -1;
        }
        char *name = prefix + len + (len > 0);
        if (len) prefix[len] = '/';
        memcpy(name, p, n);
        name[n] = 0;
        len = (size_t)(name - prefix) + n;
        p += n;
        if (mkdirat(dir, name, 0755) < 0 && errno != EEXIST) {
            close(dir);
            return -1;
        }
        struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                               .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
        int next = (int)syscall(SYS_openat2, root, prefix, &how, sizeof how);
        close(dir);
        dir = next;
    }
    return dir;
}

static void fd_path(char *out, size_t size, int fd) { snprintf(out, size, "/proc/self/fd/%d", fd); }

static const struct {
    const char *path, *type;
    unsigned long flags;
    const char *options;
} system_mounts[] = {
    {"/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL},
    {"/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"},
    {"/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
    {"/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
};

/* The kernel file systems first, then the volumes, so a volume may sit below /tmp. */
static void mount_inside_root(int root) {
    char target[64];
    for (size_t i = 0; i < sizeof system_mounts / sizeof system_mounts[0]; i++) {
        int fd = open_in_root(root, system_mounts[i].path);
        if (fd < 0) die("mount `%s` in the root", system_mounts[i].path);
        fd_path(target, sizeof target, fd);
        if (mount(system_mounts[i].type, target, system_mounts[i].type, system_mounts[i].flags,
                  system_mounts[i].options) < 0)
            die("mount `%s` in the root", system_mounts[i].path);
        close(fd);
    }
    for (int i = 0; i < job.nmounts; i++) {
        const struct mount_rec *m = &job.mounts[i];
        int fd = open_in_root(root, m->path);
        if (fd < 0) die("volume mount point `%s`", m->path);
        fd_path(target, sizeof target, fd);
        mount_share(m->tag, target, m->path, m->ro, "mmap");
        close(fd);
    }
}

/* ---- the kernel side (not in --test) -------------------------------------------- */

/* No parameters: Debian's kernel finds the microvm's virtio-mmio devices through ACPI
 * (it lacks VIRTIO_MMIO_CMDLINE_DEVICES, so `virtio_mmio.device=` words do nothing). */
static void load_modules(void) {
    FILE *order = fopen("/modules/order", "re");
    if (!order) die("open `/modules/order`");
    char name[256], path[300];
    while (fgets(name, sizeof name, order)) {
        name[strcspn(name, "\n")] = 0;
        if (!name[0]) continue;
        snprintf(path, sizeof path, "/modules/%s", name);
        int mod = open(path, O_RDONLY | O_CLOEXEC);
        if (mod < 0) die("open module `%s`", path);
        if (syscall(SYS_finit_module, mod, "", 0) < 0 && errno != EEXIST)
            die("load module `%s`", name);
        close(mod);
    }
    fclose(order);
}

static void mount_kernel_filesystems(void) {
    if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
        die("mount `/dev`");
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount `/proc`");
    if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        die("mount `/sys`");
    /* For the ports' byte counts (drain_ports); init's own, the program gets a fresh /sys. */
    if (mount("debugfs", "/sys/kernel/debug", "debugfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
        0)
        say("mount `/sys/kernel/debug`: %s (output may be cut at the end)", strerror(errno));
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) console = fd;
}

/* ---- ports and the program ------------------------------------------------------ */

/* Whether `<dir>/<dev>/name` holds `name` (and a newline). */
static int port_has_name(int dir, const char *dev, const char *name) {
    char path[NAME_MAX + 8], text[128];
    snprintf(path, sizeof path, "%s/name", dev);
    int fd = openat(dir, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return 0;
    text[n] = 0;
    text[strcspn(text, "\n")] = 0;
    return strcmp(text, name) == 0;
}

/* The device (e.g. "vport0p1") of the virtio-serial port called `name`, or 0. */
static int find_port(const char *class_dir, const char *name, char *dev, size_t size) {
    DIR *dir = opendir(class_dir);
    if (!dir) return 0;
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(dir));) {
        if (e->d_name[0] == '.' || !port_has_name(dirfd(dir), e->d_name, name)) continue;
        found = (size_t)snprintf(dev, size, "%s", e->d_name) < size;
    }
    closedir(dir);
    return found;
}

static void pause_ms(long ms) {
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}, NULL);
}

/* The virtio-serial port called `name` (protocol.h); its device name goes to `dev` when
 * given. Ports appear asynchronously after virtio_console loads, a port's name only once
 * the host has sent it, and the host's side opens a moment later (until then a reader
 * sees end of file), hence the waits. --test: DIR/sys/class/virtio-ports and DIR/dev,
 * already in place. */
static int open_port(const char *name, int flags, char *dev_out) {
    char class_dir[PATH_MAX], dev_dir[PATH_MAX], dev[NAME_MAX + 1], path[PATH_MAX];
    path_join(class_dir, sizeof class_dir, test_mode ? test_dir : "", "/sys/class/virtio-ports");
    path_join(dev_dir, sizeof dev_dir, test_mode ? test_dir : "", "/dev/");
    int wait_ms = test_mode ? 0 : PORT_WAIT_MS, waited = 0, fd = -1;
    for (;; waited += 5, pause_ms(5)) {
        if (find_port(class_dir, name, dev, sizeof dev)) {
            path_join(path, sizeof path, dev_dir, dev);
            if ((fd = open(path, flags | O_NOCTTY | O_CLOEXEC)) >= 0) break;
            if ((errno != ENOENT && errno != ENXIO) || waited >= wait_ms)
                die("open port `%s` (`%s`)", name, path);
        } else if (waited >= wait_ms) {
            fail("no virtio-serial port named `%s` (no `%s/*/name` holds it after %d ms)", name,
                 class_dir, waited);
        }
    }
    for (struct pollfd p = {.fd = fd}; !test_mode; waited += 5, pause_ms(5)) {
        if (poll(&p, 1, 0) < 0 && errno != EINTR) die("poll port `%s`", name);
        if (!(p.revents & POLLHUP)) break;
        if (waited >= wait_ms) fail("port `%s`: the host did not open it in %d ms", name, waited);
    }
    if (dev_out) memcpy(dev_out, dev, strlen(dev) + 1);
    return fd;
}

/* Read what the control port holds now and hand each complete line to `handle`. 1: read
 * everything there is, 0: end of file or a hangup (the host's side is closed), -1: a
 * read error. */
static int read_control(void (*handle)(const char *line, void *arg), void *arg) {
    char buf[256];
    for (;;) {
        ssize_t n = read(port_control, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        if (n == 0) return 0;
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (control_in.len < sizeof control_in.line - 1)
                    control_in.line[control_in.len++] = buf[i];
                else
                    control_in.skip = 1;
                continue;
            }
            control_in.line[control_in.len] = 0;
            if (!control_in.skip) handle(control_in.line, arg);
            control_in.len = 0;
            control_in.skip = 0;
        }
    }
}

/* The count a virtio_console debugfs file (/sys/kernel/debug/virtio-ports/<dev>) gives
 * for `field`, or -1. */
static long long port_stat(const char *dev, const char *field) {
    char path[PATH_MAX], text[1024], key[64];
    snprintf(path, sizeof path, "/sys/kernel/debug/virtio-ports/%s", dev);
    snprintf(key, sizeof key, "\n%s: ", field);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    text[0] = '\n';
    ssize_t n = read(fd, text + 1, sizeof text - 2);
    close(fd);
    if (n <= 0) return -1;
    text[n + 1] = 0;
    const char *at = strstr(text, key);
    return at ? strtoll(at + strlen(key), NULL, 10) : -1;
}

static void on_drained(const char *line, void *arg) {
    if (strcmp(line, "drained") == 0) *(int *)arg = 1;
    /* "signal <N>": the program is gone, nothing to forward to */
}

/* A port's write returns once the data is queued for the host, and what is still queued
 * dies with the VM: before the reset, tell the host how much the ports took and wait
 * until it has that much (protocol.h), or has hung up. */
static void drain_ports(void) {
    if (test_mode || port_out < 0 || port_err < 0 || port_control < 0) return;
    long long out = port_stat(port_out_dev, "bytes_sent");
    long long err = port_stat(port_err_dev, "bytes_sent");
    if (out < 0 || err < 0) {
        say("no byte counts for the output ports in debugfs: output may be cut at the end");
        return;
    }
    char request[64];
    int len = snprintf(request, sizeof request, "drain %lld %lld\n", out, err);
    for (int sent = 0; sent < len;) {
        ssize_t n = write(port_control, request + sent, (size_t)(len - sent));
        if (n > 0)
            sent += (int)n;
        else if (n < 0 && errno == EAGAIN)
            poll(&(struct pollfd){.fd = port_control, .events = POLLOUT}, 1, -1);
        else if (n < 0 && errno != EINTR)
            return say("control: send the drain request: %s", strerror(errno));
    }
    for (int drained = 0; !drained;) {
        if (poll(&(struct pollfd){.fd = port_control, .events = POLLIN}, 1, -1) < 0 &&
            errno != EINTR)
            return say("control: poll: %s", strerror(errno));
        int r = read_control(on_drained, &drained);
        if (r <= 0) return say("control: the host hung up before the output was drained");
    }
}

static void load_filter(void) {
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, job.filter_flags, &job.filter) < 0)
        die("load the seccomp filter");
}

static int capset_v3(const uint64_t *caps) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = (uint32_t)(caps[1] >> (32 * i));
        data[i].permitted = (uint32_t)(caps[2] >> (32 * i));
        data[i].inheritable = (uint32_t)(caps[3] >> (32 * i));
    }
    return (int)syscall(SYS_capset, &hdr, data);
}

/* The child's part: enter the root, become the user with the job's capabilities and
 * filter, exec like a shell does. The order is the namespace runtime's. */
static void run_program(int in, int out, int err) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0) die("setsid");
    if (chroot(".") < 0) die("chroot into the root");
    if (chdir(job.cwd) < 0) {
        if (errno != ENOENT) die("working directory `%s`", job.cwd);
        mkdir_p(job.cwd);
        if (chdir(job.cwd) < 0) die("working directory `%s`", job.cwd);
    }
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) die("dup2");
    for (int i = 0; i < job.nrlimits; i++)
        if (setrlimit(job.rlimits[i].resource, &job.rlimits[i].limit) < 0)
            die("rlimit `%s`", job.rlimits[i].name);
    /* Without no_new_privs only CAP_SYS_ADMIN lets us install the filter: now, while
     * we hold it. */
    if (job.filter.len && !job.nonewprivs) load_filter();
    if (job.has_caps) {
        for (int cap = 0; cap < 64; cap++) {
            if (job.caps[0] & ((uint64_t)1 << cap)) continue;
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
                if (errno == EINVAL) break; /* past this kernel's last capability */
                die("drop capability %d from the bounding set", cap);
            }
        }
        if (job.uid != 0 && (job.caps[2] | job.caps[3] | job.caps[4]) &&
            prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            die("keep capabilities across the uid change");
    }
    if (setgroups((size_t)job.ngroups, job.groups) < 0) die("setgroups");
    if (setgid(job.gid) < 0) die("setgid %u", (unsigned)job.gid);
    if (setuid(job.uid) < 0) die("setuid %u", (unsigned)job.uid);
    if (job.has_caps) {
        if (capset_v3(job.caps) < 0) die("set capabilities");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
            die("clear ambient capabilities");
        for (int cap = 0; cap < 64; cap++)
            if ((job.caps[4] & ((uint64_t)1 << cap)) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                die("raise ambient capability %d", cap);
    }
    if (job.nonewprivs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("set no_new_privs");
    umask(job.umask);
    environ = job.env;
    if (job.filter.len && job.nonewprivs) load_filter();
    execvp(job.argv[0], job.argv);
    int e = errno;
    if (e == ENOENT)
        dprintf(2, "%s: not found\n", job.argv[0]);
    else
        dprintf(2, "%s: %s\n", job.argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

static int exit_code(int status) {
    if (!WIFSIGNALED(status)) return WEXITSTATUS(status);
    exit_signal = WTERMSIG(status);
    return 128 + exit_signal;
}

static void control_line(const char *line, void *arg) {
    pid_t child = *(pid_t *)arg;
    int sig;
    char rest;
    if (sscanf(line, "signal %d%c", &sig, &rest) != 1 || sig <= 0 || sig >= NSIG) {
        say("control: unknown line `%s`", line);
        return;
    }
    /* Before the child's setsid there is no group yet. */
    if (kill(-child, sig) < 0 && errno == ESRCH) kill(child, sig);
}

/* Reap every child until the program ends, forwarding control lines meanwhile. A port
 * whose host side is closed reads as end of file or hangs up over and over: then it
 * is left alone for a while. */
static int supervise(pid_t child, int sigfd) {
    int control_ok = 1;
    for (;;) {
        struct pollfd fds[2] = {{.fd = sigfd, .events = POLLIN},
                                {.fd = port_control, .events = POLLIN}};
        if (poll(fds, control_ok ? 2 : 1, control_ok ? -1 : 200) < 0 && errno != EINTR) die("poll");
        if (fds[0].revents) {
            struct signalfd_siginfo info;
            if (read(sigfd, &info, sizeof info) < 0 && errno != EAGAIN) die("read signalfd");
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
            if (pid == child) return exit_code(status);
        if (!control_ok) {
            control_ok = 1;
            continue;
        }
        if (fds[1].revents) control_ok = read_control(control_line, &child) > 0;
    }
}

/* Keep 0, 1 and 2 taken, so no file init opens later lands there (the kernel leaves
 * them closed when the initramfs has no /dev/console). */
static void occupy_std_fds(void) {
    int fd;
    while ((fd = open("/", O_PATH | O_CLOEXEC)) >= 0 && fd <= 2) {
    }
    if (fd > 2) close(fd);
}

/* The guest is its own kernel: every key is the program's to set, none is namespaced. */
static void apply_sysctls(const char *base) {
    for (int i = 0; i < job.nsysctls; i++) {
        char rel[PATH_MAX], path[PATH_MAX];
        snprintf(rel, sizeof rel, "/proc/sys/%s", job.sysctls[i].key);
        for (char *c = rel + 10; *c; c++)
            if (*c == '.') *c = '/';
        path_join(path, sizeof path, base, rel);
        int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        if (fd < 0) die("sysctl `%s`", job.sysctls[i].key);
        size_t len = strlen(job.sysctls[i].value);
        if (write(fd, job.sysctls[i].value, len) != (ssize_t)len)
            die("sysctl `%s` = `%s`", job.sysctls[i].key, job.sysctls[i].value);
        close(fd);
    }
}

int main(int argc, char **argv) {
    char base[PATH_MAX] = "";
    if (argc == 3 && strcmp(argv[1], "--test") == 0) {
        test_mode = 1;
        test_dir = argv[2];
        path_join(base, sizeof base, test_dir, "/mnt");
    }
    occupy_std_fds();
    int fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    if (fd >= 0) console = fd;
    if (!test_mode) {
        mount_kernel_filesystems();
        load_modules();
    }

    char job_mnt[PATH_MAX], root_mnt[PATH_MAX];
    path_join(job_mnt, sizeof job_mnt, base, "/mo/job");
    path_join(root_mnt, sizeof root_mnt, base, "/mo/root");
    mkdir_p(job_mnt);
    mkdir_p(root_mnt);
    /* cache=none: the exit file must reach the host before the reset. */
    mount_share(MO_TAG_JOB, job_mnt, "/mo/job", 0, "none");
    job_dir = open(job_mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (job_dir < 0) die("open `%s`", job_mnt);
    read_job();

    /* cache=mmap: programs may map files shared and writable, which cache=none refuses. */
    mount_share(MO_TAG_ROOT, root_mnt, "/mo/root", job.rootro, "mmap");
    int root = open(root_mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) die("open `%s`", root_mnt);
    mount_inside_root(root);
    if (job.hostname && sethostname(job.hostname, strlen(job.hostname)) < 0)
        die("set hostname `%s`", job.hostname);
    apply_sysctls(base);

    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) die("open `/dev/null`");
    port_out = open_port(MO_PORT_STDOUT, O_WRONLY, port_out_dev);
    port_err = open_port(MO_PORT_STDERR, O_WRONLY, port_err_dev);
    /* Read-write: the drain request goes back to the host (a FIFO in --test). */
    port_control = open_port(MO_PORT_CONTROL, (test_mode ? O_RDONLY : O_RDWR) | O_NONBLOCK, NULL);

    /* The root becomes the mount at / (as switch_root does), not just a chroot: the
     * kernel refuses new user namespaces to a chrooted process. init keeps its own root
     * and with it the job share. */
    if (chdir(root_mnt) < 0) die("chdir `%s`", root_mnt);
    if (mount(".", "/", NULL, MS_MOVE, NULL) < 0) die("move the root to `/`");

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) die("signalfd");
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        is_child = 1;
        run_program(in, port_out, port_err);
    }
    finish(supervise(child, sigfd));
}
