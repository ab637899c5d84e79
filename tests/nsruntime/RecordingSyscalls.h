// A fake kernel for unit tests: records every call as a readable line, answers path
// lookups from a small in-memory tree, and fails chosen calls on request. fds are fake
// numbers mapped to the paths they were opened on; "/proc/self/fd/N" in a mount target
// is recorded as that path.
#pragma once

#include "Syscalls.h"

#include <linux/openat2.h>
#include <sys/mount.h>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace mobileops::nsruntime::testing {

class RecordingSyscalls : public Syscalls {
public:
    std::vector<std::string> calls;
    std::map<std::string, mode_t> files; // existing paths -> S_IFDIR / S_IFREG
    std::map<std::string, int> failOn;   // call line prefix -> errno
    std::map<int, std::string> fds;
    int nextFd = 100;
    std::string root; // after pivot_root: the host path of "/"
    std::string cwd = "/";
    std::vector<int> execErrors; // errnos returned by successive execve calls

    void addDir(const std::string &p) { files[p] = S_IFDIR; }
    void addFile(const std::string &p) { files[p] = S_IFREG; }

    static std::string flagsText(unsigned long f) {
        static const std::pair<unsigned long, const char *> names[] = {
            {MS_RDONLY, "RDONLY"}, {MS_NOSUID, "NOSUID"},          {MS_NODEV, "NODEV"},
            {MS_NOEXEC, "NOEXEC"}, {MS_REMOUNT, "REMOUNT"},        {MS_BIND, "BIND"},
            {MS_REC, "REC"},       {MS_PRIVATE, "PRIVATE"},        {MS_SLAVE, "SLAVE"},
            {MS_SHARED, "SHARED"}, {MS_STRICTATIME, "STRICTATIME"}};
        std::string s;
        for (auto [bit, name] : names)
            if (f & bit) s += (s.empty() ? "" : "|") + std::string(name);
        return s.empty() ? "0" : s;
    }

    // A call line is recorded; failOn may turn it into an error.
    int record(const std::string &line) {
        calls.push_back(line);
        for (const auto &[prefix, err] : failOn)
            if (line.rfind(prefix, 0) == 0) return -err;
        return 0;
    }

    std::string hostPath(const std::string &p) const {
        std::string abs = p.empty() || p[0] != '/' ? join(cwd, p) : p;
        return root.empty() || abs.rfind(root, 0) == 0 ? abs : norm(root + abs);
    }
    static std::string norm(std::string p) {
        std::string out;
        size_t i = 0;
        while (i < p.size()) {
            size_t j = p.find('/', i);
            if (j == std::string::npos) j = p.size();
            std::string c = p.substr(i, j - i);
            if (c == "..") {
                auto k = out.rfind('/');
                out = k == std::string::npos ? "" : out.substr(0, k);
            } else if (!c.empty() && c != ".") {
                out += "/" + c;
            }
            i = j + 1;
        }
        return out.empty() ? "/" : out;
    }
    static std::string join(const std::string &a, const std::string &b) {
        return norm(a + "/" + b);
    }

    // Mount targets: the path behind /proc/self/fd/N, else the path as given.
    std::string shown(const char *p) const {
        if (!p) return "-";
        std::string s = p;
        const std::string prefix = "/proc/self/fd/";
        if (s.rfind(prefix, 0) == 0) {
            auto it = fds.find(std::stoi(s.substr(prefix.size())));
            if (it != fds.end()) return it->second;
        }
        return s;
    }

    int mount(const char *source, const char *target, const char *type, unsigned long flags,
              const char *data) override {
        // After pivot_root a bind of a missing path fails, as the kernel's would.
        if (!root.empty() && (flags & MS_BIND) && !(flags & MS_REMOUNT) && source &&
            source[0] == '/' && !files.count(hostPath(source)))
            return -ENOENT;
        return record("mount " + std::string(source ? source : "-") + " " + shown(target) + " " +
                      (type ? type : "-") + " " + flagsText(flags) +
                      (data ? std::string(" ") + data : ""));
    }
    int umount2(const char *target, int flags) override {
        return record("umount2 " + std::string(target) + (flags & MNT_DETACH ? " DETACH" : ""));
    }
    int pivotRoot(const char *newRoot, const char *putOld) override {
        int r = record("pivot_root " + std::string(newRoot) + " " + putOld);
        if (r == 0) {
            root = cwd;
            cwd = "/";
        }
        return r;
    }
    int open(const char *path, int, mode_t) override {
        std::string h = hostPath(path);
        if (int r = record("open " + std::string(path)); r < 0) return r;
        if (!files.count(h)) return -ENOENT;
        fds[nextFd] = path;
        return nextFd++;
    }
    int openat2(int dirfd, const char *path, uint64_t flags, uint64_t, uint64_t resolve) override {
        std::string base = fds.count(dirfd) ? fds[dirfd] : std::string("?");
        // RESOLVE_IN_ROOT: ".." stops at dirfd, as if it were "/".
        std::string full = (resolve & RESOLVE_IN_ROOT) ? join(base, norm(std::string("/") + path))
                                                       : join(base, path);
        if (flags & O_CREAT) {
            if (int r = record("create " + full); r < 0) return r;
            if (files.count(full)) return -EEXIST;
            files[full] = S_IFREG;
        } else if (!files.count(full)) {
            return -ENOENT;
        }
        fds[nextFd] = full;
        return nextFd++;
    }
    int close(int fd) override {
        fds.erase(fd);
        return 0;
    }
    int fstat(int fd, struct stat *st) override {
        *st = {};
        auto it = fds.find(fd);
        if (it == fds.end()) return -EBADF;
        auto f = files.find(hostPath(it->second));
        if (f == files.end()) f = files.find(it->second);
        st->st_mode = f == files.end() ? S_IFREG : f->second;
        return 0;
    }
    int fstatvfs(int, struct statvfs *st) override {
        *st = {};
        return 0;
    }
    int mkdirat(int dirfd, const char *path, mode_t) override {
        std::string full = join(fds.count(dirfd) ? fds[dirfd] : "?", path);
        if (int r = record("mkdir " + full); r < 0) return r;
        if (files.count(full)) return -EEXIST;
        files[full] = S_IFDIR;
        return 0;
    }
    int mknodat(int dirfd, const char *path, mode_t, dev_t) override {
        std::string full = join(fds.count(dirfd) ? fds[dirfd] : "?", path);
        files[full] = S_IFCHR;
        return record("mknod " + full);
    }
    int symlinkat(const char *target, int dirfd, const char *link) override {
        return record("symlink " + join(fds.count(dirfd) ? fds[dirfd] : "?", link) + " -> " +
                      target);
    }
    int chdir(const char *path) override {
        int r = record("chdir " + std::string(path));
        if (r == 0) cwd = norm(path[0] == '/' ? std::string(path) : join(cwd, path));
        return r;
    }
    int fchdir(int fd) override {
        int r = record("fchdir " + (fds.count(fd) ? fds[fd] : std::string("?")));
        if (r == 0 && fds.count(fd)) cwd = fds[fd];
        return r;
    }
    int writeFile(const char *path, const std::string &content) override {
        return record("write " + std::string(path) + " " + content);
    }
    long clone3(struct clone_args *) override { return record("clone3") ? -EPERM : 4242; }
    int unshare(int flags) override { return record("unshare " + std::to_string(flags)); }
    int setns(int fd, int nstype) override {
        return record("setns " + std::to_string(fd) + " " + std::to_string(nstype));
    }
    int sethostname(const std::string &name) override { return record("sethostname " + name); }
    int setgroups(const std::vector<gid_t> &groups) override {
        std::string s = "setgroups";
        for (gid_t g : groups) s += " " + std::to_string(g);
        return record(s);
    }
    int setresgid(gid_t r, gid_t, gid_t) override {
        return record("setresgid " + std::to_string(r));
    }
    int setresuid(uid_t r, uid_t, uid_t) override {
        return record("setresuid " + std::to_string(r));
    }
    int setrlimit(int resource, const struct rlimit &l) override {
        return record("setrlimit " + std::to_string(resource) + " " + std::to_string(l.rlim_cur) +
                      " " + std::to_string(l.rlim_max));
    }
    int prctl(int option, unsigned long a2, unsigned long, unsigned long, unsigned long) override {
        // PR_CAPBSET_DROP past the kernel's last capability answers EINVAL, as the kernel.
        if (option == 24 /* PR_CAPBSET_DROP */ && a2 > 40) return -EINVAL;
        return record("prctl " + std::to_string(option) + " " + std::to_string(a2));
    }
    int capset(uint64_t e, uint64_t p, uint64_t i) override {
        return record("capset " + std::to_string(e) + " " + std::to_string(p) + " " +
                      std::to_string(i));
    }
    int execve(const char *path, char *const[], char *const[]) override {
        record("execve " + std::string(path));
        if (execErrors.empty()) return -ENOENT;
        int e = execErrors.front();
        execErrors.erase(execErrors.begin());
        return -e;
    }
    int loopbackUp() override { return record("loopback up"); }

    // Index of the first call starting with `prefix`, -1 when none.
    int indexOf(const std::string &prefix) const {
        for (size_t i = 0; i < calls.size(); ++i)
            if (calls[i].rfind(prefix, 0) == 0) return static_cast<int>(i);
        return -1;
    }
    bool has(const std::string &line) const {
        for (const auto &c : calls)
            if (c == line) return true;
        return false;
    }
};

} // namespace mobileops::nsruntime::testing
