/* The container entry: the last program a container process runs before its own
 * command (CVE-2019-5736). The runtime copies it into a sealed memfd and execs that, so
 * when the command starts, /proc/self/exe of the process is no longer the host's
 * mobileops binary: a command that is /proc/self/exe (or a script naming it as its
 * interpreter) re-runs this sealed copy, never a writable host binary. The runtime's
 * runc-dmz, but freestanding: no libc, a few kilobytes, so the copy and the extra exec
 * cost tens of microseconds.
 *
 *   argv[1]  the report pipe's fd (kept open across this exec, closed on the next), or
 *            "-" when nobody reads reports (past the OCI start gate): a failure is then
 *            a line on stderr
 *   argv[2]  the PATH to search when argv[3] has no slash
 *   argv[3]  the container's command; argv[3..] its argv
 *
 * On failure it writes a report in Process.h's ChildReport layout whose message ends in
 * ": " (the runtime appends strerror) and exits 127 (not found) or 126. */

#define REPORT_MESSAGE 1536
#define PATH_BUF 4096

#define E_NOENT 2
#define E_ACCES 13
#define E_NOTDIR 20
#define E_NAMETOOLONG 36
#define E_LOOP 40

#if defined(__x86_64__)
#define NR_WRITE 1
#define NR_EXECVE 59
#define NR_EXIT_GROUP 231
#define NR_FCNTL 72

static long sys3(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %rbp, %rbp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call entry_main\n"
        "  hlt\n");
#elif defined(__aarch64__)
#define NR_WRITE 64
#define NR_EXECVE 221
#define NR_EXIT_GROUP 94
#define NR_FCNTL 25

static long sys3(long n, long a, long b, long c) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  mov x0, sp\n"
        "  and sp, x0, #-16\n"
        "  bl entry_main\n"
        "  brk #0\n");
#else
#error "the container entry supports x86_64 and aarch64"
#endif

#define F_SETFD_ 2
#define FD_CLOEXEC_ 1

/* The compiler may turn loops into calls to these. */
void *memset(void *d, int c, unsigned long n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, unsigned long n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static struct {
    int code;
    int exit_status;
    char message[REPORT_MESSAGE];
} report;

static char path_buf[PATH_BUF];

static __attribute__((noreturn)) void finish(int status) {
    for (;;) sys3(NR_EXIT_GROUP, status, 0, 0);
}

static unsigned long length(const char *s) {
    unsigned long n = 0;
    while (s[n]) ++n;
    return n;
}

static int has_slash(const char *s) {
    for (; *s; ++s)
        if (*s == '/') return 1;
    return 0;
}

static unsigned long append(char *dst, unsigned long at, unsigned long cap, const char *s) {
    while (*s && at + 1 < cap) dst[at++] = *s++;
    dst[at] = 0;
    return at;
}

static __attribute__((noreturn)) void fail(int fd, const char *command, long err) {
    unsigned long n = append(report.message, 0, sizeof report.message, "exec `");
    n = append(report.message, n, sizeof report.message - 4, command);
    append(report.message, n, sizeof report.message, "`: ");
    report.code = (int)err;
    report.exit_status = err == -E_NOENT ? 127 : 126;
    if (fd >= 0) {
        sys3(NR_WRITE, fd, (long)&report, sizeof report);
    } else {
        n = append(report.message, 0, sizeof report.message, "mobileops: exec `");
        n = append(report.message, n, sizeof report.message - 32, command);
        n = append(report.message, n, sizeof report.message,
                   err == -E_NOENT ? "`: not found\n" : "`: cannot execute\n");
        sys3(NR_WRITE, 2, (long)report.message, (long)n);
    }
    finish(report.exit_status);
}

static int parse_fd(const char *s) {
    int fd = 0;
    if (!*s) return -1;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || fd > 100000) return -1;
        fd = fd * 10 + (*s - '0');
    }
    return fd;
}

__attribute__((used, noreturn)) void entry_main(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    int fd = argc >= 4 ? parse_fd(argv[1]) : -1;
    const int no_report = argc >= 4 && argv[1][0] == '-' && !argv[1][1];
    if (fd < 0 && !no_report) {
        static const char usage[] =
            "mobileops container entry: not a command (it starts a container's process)\n";
        sys3(NR_WRITE, 2, (long)usage, sizeof usage - 1);
        finish(126);
    }
    if (fd >= 0) sys3(NR_FCNTL, fd, F_SETFD_, FD_CLOEXEC_);
    const char *command = argv[3];
    char **args = argv + 3;
    if (has_slash(command))
        fail(fd, command, sys3(NR_EXECVE, (long)command, (long)args, (long)envp));

    /* As execvp: past missing entries, remembering a permission error. */
    long result = -E_NOENT;
    const char *dir = argv[2];
    for (;;) {
        unsigned long len = 0;
        while (dir[len] && dir[len] != ':') ++len;
        unsigned long n = 0;
        if (len == 0) {
            n = append(path_buf, 0, sizeof path_buf, ".");
        } else {
            for (; n < len && n + 1 < sizeof path_buf; ++n) path_buf[n] = dir[n];
            path_buf[n] = 0;
        }
        n = append(path_buf, n, sizeof path_buf, "/");
        if (n + length(command) + 1 < sizeof path_buf) {
            append(path_buf, n, sizeof path_buf, command);
            long r = sys3(NR_EXECVE, (long)path_buf, (long)args, (long)envp);
            if (r == -E_ACCES)
                result = r;
            else if (r != -E_NOENT && r != -E_NOTDIR && r != -E_LOOP && r != -E_NAMETOOLONG)
                fail(fd, command, r);
        }
        if (!dir[len]) break;
        dir += len + 1;
    }
    fail(fd, command, result);
}
