#include "Walk.h"

#include "Hash.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace mobileops::integrity {

using common::quote;

namespace {

constexpr unsigned kStatxMask =
    STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID | STATX_SIZE | STATX_INO | STATX_MNT_ID;
constexpr int kStatxFlags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_SYNC_AS_STAT;
constexpr const char kOverlayPrefix[] = "trusted.overlay.";

sdk::Error vanished(const std::string &where) {
    return sdk::Error(MO_E_NOT_FOUND, where + " vanished during the scan");
}

sdk::Error changed(const std::string &where) {
    return sdk::Error(MO_E_STATE, where + " changed during the scan");
}

// One reading for the fd and the name-in-directory flavours of the xattr calls:
// `list(buf, size)` and `get(name, buf, size)` return what llistxattr / lgetxattr would.
//
// The digest is sha256 over, for each attribute in byte order of its name (trusted.overlay.*
// left out), Canonical str(name) str(value).
template <class List, class Get> Xattrs collect(List list, Get get, const std::string &where) {
    char small[1024];
    std::string names;
    ssize_t n = list(small, sizeof small);
    while (n < 0 && errno == ERANGE) {
        n = list(nullptr, 0);
        if (n < 0) break;
        names.resize(static_cast<size_t>(n) + 256);
        n = list(names.data(), names.size());
    }
    if (n < 0 && (errno == ENOTSUP || errno == ENODATA)) return {};
    if (n < 0 && errno == ENOENT) throw vanished(where);
    if (n < 0) throw common::sysError("list the extended attributes of " + where, errno);
    if (n == 0) return {};
    if (names.empty())
        names.assign(small, static_cast<size_t>(n));
    else
        names.resize(static_cast<size_t>(n));

    std::vector<std::string> sorted;
    for (size_t at = 0; at < names.size();) {
        size_t end = names.find('\0', at);
        if (end == std::string::npos) end = names.size();
        if (end > at) sorted.emplace_back(names, at, end - at);
        at = end + 1;
    }
    std::sort(sorted.begin(), sorted.end());

    Xattrs out;
    Canonical encoded;
    std::string value;
    for (const auto &name : sorted) {
        value.resize(256);
        ssize_t len = get(name.c_str(), value.data(), value.size());
        while (len < 0 && errno == ERANGE) {
            len = get(name.c_str(), nullptr, 0);
            if (len < 0) break;
            value.resize(static_cast<size_t>(len) + 256);
            len = get(name.c_str(), value.data(), value.size());
        }
        if (len < 0 && errno == ENODATA) continue; // removed since the listing
        if (len < 0)
            throw common::sysError("read extended attribute " + quote(name) + " of " + where,
                                   errno);
        value.resize(static_cast<size_t>(len));
        if (name.starts_with(kOverlayPrefix)) {
            if (name == "trusted.overlay.opaque") out.opaque = value == "y";
            continue;
        }
        encoded.str(name).str(value);
    }
    if (!encoded.bytes().empty()) out.digest = sha256Hex(encoded.bytes());
    return out;
}

#ifndef SYS_listxattrat
#define SYS_listxattrat 465 // Linux 6.13, the same number on every architecture
#endif

// listxattrat resolves the name against the directory's fd; before Linux 6.13 the only
// way to the xattrs of a symlink or device below that fd is its /proc/self/fd link, whose
// lookup costs as much as the rest of the walk. Values are rare, so they always take it.
ssize_t listAt(int dirfd, const char *name, const char *procPath, char *buf, size_t size) {
    static std::atomic<bool> unavailable{false};
    if (!unavailable.load(std::memory_order_relaxed)) {
        long n = ::syscall(SYS_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf, size);
        // EPERM: a seccomp filter that does not know the call yet.
        if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n;
        unavailable.store(true, std::memory_order_relaxed);
    }
    return ::llistxattr(procPath, buf, size);
}

EntryType typeOf(uint16_t mode) {
    switch (mode & S_IFMT) {
    case S_IFDIR:
        return EntryType::Directory;
    case S_IFLNK:
        return EntryType::Symlink;
    case S_IFCHR:
        return EntryType::CharDevice;
    case S_IFBLK:
        return EntryType::BlockDevice;
    case S_IFIFO:
        return EntryType::Fifo;
    case S_IFSOCK:
        return EntryType::Socket;
    default:
        return EntryType::File;
    }
}

std::string readLink(int dirfd, const std::string &name, uint64_t hint, const std::string &where) {
    std::string target(std::max<uint64_t>(hint, 255) + 1, '\0');
    for (;;) {
        ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (n < 0 && errno == ENOENT) throw vanished(where);
        if (n < 0 && errno == EINVAL) throw changed(where);
        if (n < 0) throw common::sysError("read the link " + where, errno);
        if (static_cast<size_t>(n) < target.size()) {
            target.resize(static_cast<size_t>(n));
            return target;
        }
        target.resize(target.size() * 2);
    }
}

} // namespace

Xattrs readXattrsAt(int dirfd, const std::string &name, const std::string &where) {
    const std::string path = "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
    const char *p = path.c_str();
    return collect(
        [&](char *buf, size_t size) { return listAt(dirfd, name.c_str(), p, buf, size); },
        [p](const char *name, char *buf, size_t size) { return ::lgetxattr(p, name, buf, size); },
        where);
}

Xattrs readXattrs(int fd, const std::string &where) {
    return collect(
        [fd](char *buf, size_t size) { return ::flistxattr(fd, buf, size); },
        [fd](const char *name, char *buf, size_t size) { return ::fgetxattr(fd, name, buf, size); },
        where);
}

Entry entryOf(const struct statx &stx, std::string path) {
    Entry e;
    e.path = std::move(path);
    e.type = typeOf(stx.stx_mode);
    e.mode = stx.stx_mode & 07777;
    e.uid = stx.stx_uid;
    e.gid = stx.stx_gid;
    if (e.type == EntryType::File) e.size = stx.stx_size;
    if (e.type == EntryType::CharDevice || e.type == EntryType::BlockDevice)
        e.rdev = makedev(stx.stx_rdev_major, stx.stx_rdev_minor);
    return e;
}

std::vector<Entry> Walker::run() {
    // Extended attributes of symlinks and devices can only be read by path; going through
    // the directory's fd keeps that path below the root even if the tree changes.
    if (::access("/proc/self/fd", X_OK) != 0)
        throw sdk::Error(MO_E_UNSUPPORTED, "scan " + quote(_rootPath) + ": /proc is not mounted");
    struct statx stx {};
    if (::statx(_rootfd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, kStatxMask, &stx) < 0)
        throw common::sysError("stat " + quote(_rootPath), errno);
    _devMajor = stx.stx_dev_major;
    _devMinor = stx.stx_dev_minor;
    _hasMountId = stx.stx_mask & STATX_MNT_ID;
    _mountId = stx.stx_mnt_id;
    Entry root = entryOf(stx, "/");
    Xattrs x = readXattrs(_rootfd, quote(_rootPath));
    root.xattrs = x.digest;
    root.opaque = x.opaque;
    _entries.push_back(std::move(root));
    directory(_rootfd, "/");
    return std::move(_entries);
}

std::string Walker::where(const std::string &path) const {
    return quote(path == "/" ? _rootPath : _rootPath + path);
}

// The mount id says it best: it also catches a bind mount of the same filesystem, and an
// overlay's files report the device of the layer they come from, not the overlay's.
bool Walker::sameMount(const struct statx &stx) const {
    if (_hasMountId && (stx.stx_mask & STATX_MNT_ID)) return stx.stx_mnt_id == _mountId;
    return stx.stx_dev_major == _devMajor && stx.stx_dev_minor == _devMinor;
}

std::vector<std::string> Walker::names(int dirfd, const std::string &path) const {
    int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) throw common::sysError("read the directory " + where(path), errno);
    DIR *dir = ::fdopendir(copy);
    if (!dir) {
        int err = errno;
        ::close(copy);
        throw common::sysError("read the directory " + where(path), err);
    }
    // The copy shares the file offset with `dirfd`, which may have been read before.
    ::rewinddir(dir);
    std::vector<std::string> out;
    errno = 0;
    while (const dirent *de = ::readdir(dir)) {
        if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0)
            out.emplace_back(de->d_name);
        errno = 0;
    }
    int err = errno;
    ::closedir(dir);
    if (err) throw common::sysError("read the directory " + where(path), err);
    // Byte order of names within each directory, with each subtree emitted right after its
    // directory, is exactly the component-wise path order of Manifest::entries.
    std::sort(out.begin(), out.end());
    return out;
}

void Walker::directory(int dirfd, const std::string &path) {
    if (_cancelled && _cancelled()) return;
    const std::string prefix = path == "/" ? "/" : path + "/";
    for (const auto &name : names(dirfd, path)) {
        std::string child = prefix + name;
        struct statx stx {};
        if (::statx(dirfd, name.c_str(), kStatxFlags, kStatxMask, &stx) < 0) {
            if (errno == ENOENT) continue; // removed since readdir: not part of the tree
            throw common::sysError("stat " + where(child), errno);
        }
        Entry e = entryOf(stx, child);
        Xattrs x = readXattrsAt(dirfd, name, where(child));
        e.xattrs = std::move(x.digest);
        if (e.type == EntryType::Symlink)
            e.target = readLink(dirfd, name, stx.stx_size, where(child));
        if (e.type == EntryType::Directory) e.opaque = x.opaque;
        const EntryType type = e.type;
        const size_t index = _entries.size();
        _entries.push_back(std::move(e));

        // A mount point is recorded as the directory (or file) it shows, never entered.
        if (!sameMount(stx)) continue;
        const uint64_t dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        if (type == EntryType::File && _onFile) _onFile(index, child, dev, stx.stx_ino);
        if (type != EntryType::Directory) continue;

        int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) throw vanished(where(child));
        if (fd < 0 && (errno == ENOTDIR || errno == ELOOP)) throw changed(where(child));
        if (fd < 0) throw common::sysError("open the directory " + where(child), errno);
        common::Fd sub(fd);
        struct statx now {};
        if (::statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_INO | STATX_MNT_ID, &now) <
            0)
            throw common::sysError("stat " + where(child), errno);
        if (now.stx_ino != stx.stx_ino || !sameMount(now)) throw changed(where(child));
        directory(fd, child);
    }
}

} // namespace mobileops::integrity
