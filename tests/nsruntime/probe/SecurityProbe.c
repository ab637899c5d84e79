/* A static probe run inside test containers: each verb tries one thing and prints
 * "ok" or "errno N" (or a value), so the tests see what the kernel and the seccomp
 * filter answered. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int result(long r) {
    if (r < 0)
        printf("errno %d\n", errno);
    else
        printf("ok\n");
    return 0;
}

/* The i386 ABI from a 64-bit process: int $0x80 with i386 numbers, which the kernel
 * (and seccomp, as AUDIT_ARCH_I386) treats as a 32-bit syscall. */
static long syscall32(long nr, long a, long b) {
#if defined(__x86_64__)
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b) : "memory");
    return r;
#else
    (void)nr, (void)a, (void)b;
    return -ENOSYS;
#endif
}

int main(int argc, char **argv) {
    const char *verb = argc > 1 ? argv[1] : "";
    if (!strcmp(verb, "keyctl")) /* KEYCTL_GET_KEYRING_ID of the session keyring */
        return result(syscall(SYS_keyctl, 0, -3, 0));
    if (!strcmp(verb, "keyctl32")) { /* i386 keyctl is 288 */
        long r = syscall32(288, 0, -3);
        printf(r < 0 ? "errno %ld\n" : "ok\n", -r);
        return 0;
    }
    if (!strcmp(verb, "getpid32")) { /* i386 getpid is 20 */
        long r = syscall32(20, 0, 0);
        printf(r < 0 ? "errno %ld\n" : "ok\n", -r);
        return 0;
    }
    if (!strcmp(verb, "keyctlx32")) /* x32: the x86_64 number with __X32_SYSCALL_BIT */
        return result(syscall(0x40000000L | SYS_keyctl, 0, -3, 0));
    if (!strcmp(verb, "unshare-user")) return result(unshare(CLONE_NEWUSER));
    if (!strcmp(verb, "unshare-files")) return result(unshare(CLONE_FILES));
    if (!strcmp(verb, "clone-user")) {
        long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return result(pid);
    }
    if (!strcmp(verb, "clone3")) {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.exit_signal = SIGCHLD;
        long pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return result(pid);
    }
    if (!strcmp(verb, "fork")) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid > 0) waitpid(pid, NULL, 0);
        return result(pid);
    }
    if (!strcmp(verb, "mount")) {
        long r = mount("none", "/mnt", "tmpfs", 0, NULL);
        if (r == 0) umount("/mnt");
        return result(r);
    }
    if (!strcmp(verb, "newer")) return result(syscall(457 /* statmount: not in the profile */));
    if (!strcmp(verb, "personality")) return result(personality(0xffffffff));
    if (!strcmp(verb, "chown") && argc > 3) return result(chown(argv[2], atoi(argv[3]), -1));
    if (!strcmp(verb, "open-exe") && argc > 2) { /* another process's /proc/<pid>/exe */
        char path[64];
        snprintf(path, sizeof path, "/proc/%s/exe", argv[2]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) close(fd);
        return result(fd);
    }
    if (!strcmp(verb, "euid")) {
        printf("%d\n", (int)geteuid());
        return 0;
    }
    if (!strcmp(verb, "fds")) { /* this process's fds, its own directory stream excepted */
        DIR *d = opendir("/proc/self/fd");
        if (!d) return result(-1);
        struct dirent *e;
        const char *sep = "";
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d)) continue;
            printf("%s%s", sep, e->d_name);
            sep = " ";
        }
        printf("\n");
        closedir(d);
        return 0;
    }
    fprintf(stderr, "security-probe: unknown verb `%s`\n", verb);
    return 2;
}
