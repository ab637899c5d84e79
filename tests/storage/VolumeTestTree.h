// What the volume, backup and asset tests compare and check after themselves: a tree's
// every entry (type, mode, owner, bytes or link target) for byte-for-byte comparisons, and
// the mounts and loop devices a test must not leave behind.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace mobileops::test {

inline std::string readAll(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void writeAll(const std::string &path, const std::string &bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Pseudo-random bytes (incompressible, so the archive stores them as they are).
inline std::string randomBytes(size_t n, unsigned seed) {
    std::string out(n, '\0');
    unsigned x = seed * 2654435761u + 1;
    for (auto &c : out) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    return out;
}

// rel path -> "type mode uid:gid nlink-group | bytes-or-target"; the root itself as ".".
inline void snapshotInto(const std::string &root, const std::string &rel,
                         std::map<std::string, std::string> &out) {
    std::string path = rel.empty() ? root : root + "/" + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) < 0) return;
    std::string desc = std::to_string(st.st_mode) + " " + std::to_string(st.st_uid) + ":" +
                       std::to_string(st.st_gid);
    if (S_ISREG(st.st_mode)) {
        desc += " links=" + std::to_string(st.st_nlink) + " | " + readAll(path);
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = ::readlink(path.c_str(), target, sizeof target);
        desc += " -> " + std::string(target, n > 0 ? static_cast<size_t>(n) : 0);
    }
    out[rel.empty() ? "." : rel] = desc;
    if (!S_ISDIR(st.st_mode)) return;
    DIR *d = ::opendir(path.c_str());
    if (!d) return;
    std::vector<std::string> names;
    while (struct dirent *e = ::readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..")
            names.push_back(e->d_name);
    ::closedir(d);
    for (const auto &n : names) snapshotInto(root, rel.empty() ? n : rel + "/" + n, out);
}

inline std::map<std::string, std::string> snapshot(const std::string &root) {
    std::map<std::string, std::string> out;
    snapshotInto(root, "", out);
    return out;
}

// A tree with what a backup must keep: owners, modes, a symlink, a hard link, an empty
// directory, a file with no read permission, incompressible data.
inline void makeSampleTree(const std::string &root) {
    ::mkdir((root + "/etc").c_str(), 0755);
    ::mkdir((root + "/etc/private").c_str(), 0700);
    ::mkdir((root + "/empty").c_str(), 0555);
    writeAll(root + "/etc/config", "name = sample\n");
    writeAll(root + "/etc/private/key", randomBytes(4096, 7));
    writeAll(root + "/blob", randomBytes(1 << 20, 11));
    writeAll(root + "/secret", "no one may read this\n");
    ::chmod((root + "/secret").c_str(), 0);
    ::chmod((root + "/etc/config").c_str(), 0640);
    if (::chown((root + "/etc/config").c_str(), 1234, 5678) < 0) {
    }
    if (::chown((root + "/etc/private").c_str(), 1000, 1000) < 0) {
    }
    if (::symlink("etc/config", (root + "/config-link").c_str()) < 0) {
    }
    if (::link((root + "/blob").c_str(), (root + "/blob-again").c_str()) < 0) {
    }
}

// Mount points at or below `dir`.
inline std::vector<std::string> mountsUnder(const std::string &dir) {
    std::vector<std::string> out;
    std::ifstream in("/proc/self/mountinfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::string id, parent, dev, root, point;
        f >> id >> parent >> dev >> root >> point;
        if (point == dir || point.rfind(dir + "/", 0) == 0) out.push_back(point);
    }
    return out;
}

// Loop devices whose backing file is at or below `dir`.
inline std::vector<std::string> loopsUnder(const std::string &dir) {
    std::vector<std::string> out;
    DIR *d = ::opendir("/sys/block");
    if (!d) return out;
    while (struct dirent *e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.rfind("loop", 0) != 0) continue;
        std::string backing = readAll("/sys/block/" + name + "/loop/backing_file");
        if (backing.rfind(dir + "/", 0) == 0) out.push_back("/dev/" + name + " " + backing);
    }
    ::closedir(d);
    return out;
}

// A loop device goes with its last mount, asynchronously: give it a moment.
inline std::vector<std::string> loopsUnderSettled(const std::string &dir) {
    auto loops = loopsUnder(dir);
    for (int i = 0; i < 50 && !loops.empty(); ++i) {
        ::usleep(20000);
        loops = loopsUnder(dir);
    }
    return loops;
}

// Write `bytes` to a new file; the errno of the first failing write (or close/fsync), 0
// when all went through. *written gets what was written.
inline int fillFile(const std::string &path, size_t bytes, size_t *written = nullptr) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    std::string chunk = randomBytes(1 << 20, 3);
    size_t done = 0;
    int err = 0;
    while (done < bytes) {
        ssize_t n = ::write(fd, chunk.data(), std::min(chunk.size(), bytes - done));
        if (n < 0) {
            err = errno;
            break;
        }
        done += static_cast<size_t>(n);
    }
    if (!err && ::fsync(fd) < 0) err = errno;
    if (::close(fd) < 0 && !err) err = errno;
    if (written) *written = done;
    return err;
}

} // namespace mobileops::test
