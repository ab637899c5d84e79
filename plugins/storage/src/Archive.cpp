#include "Archive.h"

#include "Digest.h"

#include <mobileops/common/Errors.h>

#include <archive.h>
#include <archive_entry.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mobileops::storage {

using common::quote;
using common::sysError;

namespace {

constexpr size_t kBufferSize = 1 << 20;
constexpr uint64_t kResolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : _fd(fd) {}
    Fd(Fd &&o) noexcept : _fd(o.release()) {}
    Fd &operator=(Fd &&o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return _fd; }
    int release() { return std::exchange(_fd, -1); }
    void reset(int fd = -1) {
        if (_fd >= 0) ::close(_fd);
        _fd = fd;
    }

private:
    int _fd = -1;
};

struct ReadFree {
    void operator()(archive *a) const { archive_read_free(a); }
};
using ReadArchive = std::unique_ptr<archive, ReadFree>;

int openInRoot(int root, const char *path, uint64_t flags) {
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.resolve = kResolve;
    long r;
    // EAGAIN: a concurrent rename or mount somewhere below; the kernel asks for a retry.
    do r = ::syscall(SYS_openat2, root, path, &how, sizeof how);
    while (r < 0 && (errno == EINTR || errno == EAGAIN));
    return static_cast<int>(r);
}

// The process umask, read without changing it (umask(2) can only set it, and another
// thread may be creating files).
mode_t currentUmask() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("Umask:", 0) == 0)
            return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
    return 022;
}

std::string procPath(int fd, const std::string &name = {}) {
    std::string p = "/proc/self/fd/" + std::to_string(fd);
    return name.empty() ? p : p + "/" + name;
}

// Remove `name` below `dirfd` and everything under it, never following a symlink.
void removeTreeAt(int dirfd, const std::string &name) {
    if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) return;
    if (errno != EISDIR) throw sysError("remove " + quote(name), errno);
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw sysError("remove " + quote(name), errno);
    DIR *dir = ::fdopendir(fd);
    if (!dir) {
        int err = errno;
        ::close(fd);
        throw sysError("remove " + quote(name), err);
    }
    std::unique_ptr<DIR, int (*)(DIR *)> guard(dir, ::closedir);
    std::vector<std::string> names;
    while (dirent *d = ::readdir(dir))
        if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0)
            names.emplace_back(d->d_name);
    for (auto &n : names) removeTreeAt(::dirfd(dir), n);
    guard.reset();
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT)
        throw sysError("remove " + quote(name), errno);
}

std::vector<std::string> listDir(int fd, const std::string &what) {
    int dup = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0) throw sysError("read " + quote(what), errno);
    DIR *dir = ::fdopendir(dup);
    if (!dir) {
        int err = errno;
        ::close(dup);
        throw sysError("read " + quote(what), err);
    }
    std::unique_ptr<DIR, int (*)(DIR *)> guard(dir, ::closedir);
    std::vector<std::string> names;
    errno = 0;
    while (dirent *d = ::readdir(dir)) {
        if (std::strcmp(d->d_name, ".") != 0 && std::strcmp(d->d_name, "..") != 0)
            names.emplace_back(d->d_name);
        errno = 0;
    }
    if (errno) throw sysError("read " + quote(what), errno);
    return names;
}

// What a long hostile name looks like in a message.
std::string shown(const std::string &name) {
    return name.size() <= 120
               ? name
               : name.substr(0, 100) + "...(" + std::to_string(name.size()) + " bytes)";
}

std::vector<std::string> splitPath(const std::string &path) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= path.size()) {
        size_t end = path.find('/', start);
        if (end == std::string::npos) end = path.size();
        if (end > start) out.push_back(path.substr(start, end - start));
        start = end + 1;
    }
    return out;
}

bool startsWith(const std::string &s, std::string_view prefix) {
    return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

bool overlayXattr(const char *name) {
    return std::strncmp(name, "trusted.overlay.", 16) == 0 ||
           std::strncmp(name, "user.overlay.", 13) == 0;
}

constexpr std::string_view kWhiteout = ".wh.";
constexpr std::string_view kMeta = ".wh..wh.";
constexpr std::string_view kOpaque = ".wh..wh..opq";

// --- reading -----------------------------------------------------------------------------

// The archive file as read by the outer (decompressing) reader: hashes every byte (the blob
// digest) and reports progress.
struct Source {
    int fd = -1;
    uint64_t total = 0;
    uint64_t read = 0;
    const std::function<void(uint64_t, uint64_t)> *progress = nullptr;
    std::exception_ptr error;

    // The block last read; valid until the next call, as libarchive's callbacks require.
    const char *data() const { return _buf.data(); }

    ssize_t next() {
        ssize_t n;
        do n = ::read(fd, _buf.data(), _buf.size());
        while (n < 0 && errno == EINTR);
        if (n <= 0) return n;
        _digest.update(_buf.data(), static_cast<size_t>(n));
        read += static_cast<uint64_t>(n);
        if (*progress) (*progress)(read, total);
        return n;
    }

    std::string digest() { return _digest.finish(); }

    static la_ssize_t callback(archive *a, void *self, const void **out) {
        auto *s = static_cast<Source *>(self);
        try {
            ssize_t n = s->next();
            if (n < 0) {
                archive_set_error(a, errno, "read: %s", std::strerror(errno));
                return -1;
            }
            *out = s->data();
            return n;
        } catch (...) {
            s->error = std::current_exception();
            archive_set_error(a, ECANCELED, "cancelled");
            return -1;
        }
    }

private:
    Sha256 _digest;
    std::vector<char> _buf = std::vector<char>(kBufferSize);
};

// The uncompressed tar stream, handed to the tar reader block by block without copying and
// hashed on the way (the diffID).
class Stream {
public:
    virtual ~Stream() = default;

    // The next block: its size, 0 at the end, -1 on error (message in error()).
    la_ssize_t next(const void **out) {
        la_ssize_t n = read(out);
        if (n > 0 && hash) diff.update(*out, static_cast<size_t>(n));
        return n;
    }
    virtual std::string error() const = 0;

    static la_ssize_t callback(archive *a, void *self, const void **out) {
        auto *s = static_cast<Stream *>(self);
        try {
            la_ssize_t n = s->next(out);
            if (n < 0) archive_set_error(a, EILSEQ, "%s", s->error().c_str());
            return n;
        } catch (...) {
            s->thrown = std::current_exception();
            archive_set_error(a, ECANCELED, "cancelled");
            return -1;
        }
    }

    Sha256 diff;
    bool hash = true;
    std::exception_ptr thrown;

protected:
    virtual la_ssize_t read(const void **out) = 0;
};

// Everything but gzip: libarchive's filters, which check the checksums of xz, zstd and
// bzip2 themselves, behind its "raw" format (the decompressed bytes as one entry).
class FilterStream final : public Stream {
public:
    FilterStream(Source &source, const std::string &path) : _outer(archive_read_new()) {
        archive *a = _outer.get();
        archive_read_support_filter_bzip2(a);
        archive_read_support_filter_xz(a);
        archive_read_support_filter_lzma(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_filter_lz4(a);
        archive_read_support_format_raw(a);
        archive_entry *entry;
        if (archive_read_open(a, &source, nullptr, &Source::callback, nullptr) != ARCHIVE_OK ||
            archive_read_next_header(a, &entry) < ARCHIVE_WARN) {
            if (source.error) std::rethrow_exception(source.error);
            throw sdk::Error(MO_E_INVALID, "read " + quote(path) + ": " + error());
        }
        // Uncompressed, the tar stream is the file: its digest is the diffID.
        hash = archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE;
    }

    std::string error() const override {
        const char *msg = archive_error_string(_outer.get());
        return msg ? msg : "read error";
    }

protected:
    la_ssize_t read(const void **out) override {
        for (;;) {
            size_t len = 0;
            la_int64_t offset = 0;
            int r = archive_read_data_block(_outer.get(), out, &len, &offset);
            if (r == ARCHIVE_EOF) return 0;
            if (r < ARCHIVE_WARN) return -1;
            if (len > 0) return static_cast<la_ssize_t>(len);
        }
    }

private:
    ReadArchive _outer;
};

// gzip through zlib, because libarchive 3.6's gzip reader never checks the members' CRC32
// and length ("XXX TODO: Verify the length and CRC" in its consume_trailer), so a corrupt
// layer would unpack silently. Concatenated members are read as one stream, as gzip does.
class GzipStream final : public Stream {
public:
    explicit GzipStream(Source &source) : _source(source), _out(kBufferSize) {
        if (inflateInit2(&_z, 16 + MAX_WBITS) != Z_OK)
            throw sdk::Error(MO_E_INTERNAL, "gzip: cannot initialise zlib");
    }
    ~GzipStream() override { inflateEnd(&_z); }

    std::string error() const override { return _error; }

protected:
    la_ssize_t read(const void **out) override {
        if (!_error.empty()) return -1;
        if (_done) return 0;
        _z.next_out = _out.data();
        _z.avail_out = static_cast<uInt>(_out.size());
        while (_z.avail_out > 0 && _error.empty()) {
            if (_z.avail_in == 0) {
                ssize_t n = _source.next();
                if (n < 0) {
                    _error = std::string("read: ") + std::strerror(errno);
                    break;
                }
                if (n == 0) {
                    if (_inMember) _error = "gzip: unexpected end of file";
                    _done = true;
                    break;
                }
                _z.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(_source.data()));
                _z.avail_in = static_cast<uInt>(n);
            }
            if (!_inMember) {
                // Another member, or data after the last one that gzip ignores (it still
                // counts for the digest: Source hashed it).
                if (_z.next_in[0] != 0x1f) {
                    _done = true;
                    break;
                }
                inflateReset(&_z);
                _inMember = true;
            }
            int r = inflate(&_z, Z_NO_FLUSH);
            if (r == Z_STREAM_END)
                _inMember = false;
            else if (r != Z_OK && !(r == Z_BUF_ERROR && _z.avail_in == 0))
                _error = std::string("gzip: ") + (_z.msg ? _z.msg : "corrupt data");
        }
        // What inflated before an error goes first, so that the error names the entry the
        // damage is in rather than an earlier one.
        size_t produced = _out.size() - _z.avail_out;
        if (produced == 0 && !_error.empty()) return -1;
        *out = _out.data();
        return static_cast<la_ssize_t>(produced);
    }

private:
    Source &_source;
    z_stream _z{};
    std::vector<unsigned char> _out;
    bool _inMember = false;
    bool _done = false;
    std::string _error;
};

// Entry names as a path relative to the root ("" for the root itself), checked.
struct Refuse {
    std::string entry;
    [[noreturn]] void operator()(const std::string &why) const {
        throw sdk::Error(MO_E_INVALID, "entry " + quote(shown(entry)) + ": " + why);
    }
};

std::string normalize(const std::string &raw, const Refuse &refuse) {
    if (raw.empty()) refuse("empty name");
    if (raw[0] == '/') refuse("absolute paths are not allowed");
    if (raw.size() >= PATH_MAX)
        refuse("name longer than PATH_MAX (" + std::to_string(PATH_MAX) + ")");
    std::string out;
    out.reserve(raw.size());
    size_t start = 0;
    while (start <= raw.size()) {
        size_t end = raw.find('/', start);
        if (end == std::string::npos) end = raw.size();
        std::string_view comp(raw.data() + start, end - start);
        start = end + 1;
        if (comp.empty() || comp == ".") continue;
        if (comp == "..") refuse("path climbs out of the root");
        if (comp.size() > NAME_MAX)
            refuse("component longer than NAME_MAX (" + std::to_string(NAME_MAX) + ")");
        if (!out.empty()) out += '/';
        out += comp;
    }
    return out;
}

class Extractor {
public:
    Extractor(const ExtractOptions &options, int root, std::string target)
        : _options(options), _root(root), _target(std::move(target)), _umask(currentUmask()),
          _isRoot(::geteuid() == 0) {
        struct statvfs vfs;
        if (::fstatvfs(_root, &vfs) == 0)
            _free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    }

    uint64_t unpackedSize() const { return _unpacked; }

    void entry(archive *a, archive_entry *e) {
        const char *rawName = archive_entry_pathname(e);
        std::string raw = rawName ? rawName : "";
        Refuse refuse{raw};
        std::string path = normalize(raw, refuse);
        size_t slash = path.rfind('/');
        std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
        std::string base = slash == std::string::npos ? path : path.substr(slash + 1);

        if (startsWith(base, kWhiteout) || startsWith(path, kMeta) ||
            path.find("/.wh..wh.") != std::string::npos) {
            whiteout(path, parent, base, refuse);
            return;
        }

        if (const char *link = archive_entry_hardlink(e)) {
            hardlink(path, parent, base, link);
            remember(path);
            return;
        }

        auto type = archive_entry_filetype(e);
        if (path.empty() && type != AE_IFDIR) refuse("the root must be a directory");
        switch (type) {
        case AE_IFREG:
            file(a, e, path, parent, base, refuse);
            break;
        case AE_IFDIR:
            directory(e, path, parent, base);
            break;
        case AE_IFLNK:
            symlink(e, path, parent, base);
            break;
        case AE_IFCHR:
        case AE_IFBLK:
            if (!_options.allowDevices)
                refuse("device nodes are not allowed (use --allow-devices)");
            [[fallthrough]];
        case AE_IFIFO:
            node(e, path, parent, base, type);
            break;
        case AE_IFSOCK:
            return; // a socket is only meaningful to the process that bound it
        default:
            refuse("unsupported entry type " + std::to_string(type));
        }
        remember(path);
    }

    // Directory mtimes last: writing their contents changed them.
    void finish() {
        invalidate();
        for (auto &[path, times] : _dirTimes) {
            if (path.empty()) {
                if (::utimensat(_root, "", times.data(), AT_EMPTY_PATH) < 0)
                    throw sysError("set times of " + quote(_target), errno);
                continue;
            }
            size_t slash = path.rfind('/');
            std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
            std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
            int pfd = parentFd(parent, path, false);
            if (pfd < 0) continue; // removed by a later entry or whiteout
            if (::utimensat(pfd, base.c_str(), times.data(), AT_SYMLINK_NOFOLLOW) < 0 &&
                errno != ENOENT)
                throw sysError("entry " + quote(path) + ": set times", errno);
        }
        invalidate();
    }

private:
    using Times = std::array<timespec, 2>;

    [[noreturn]] void fail(const std::string &path, const std::string &what, int err) {
        throw sysError("entry " + quote(shown(path)) + ": " + what, err);
    }

    void remember(const std::string &path) {
        _seen.insert(path);
        if (_options.whiteouts != Whiteouts::Apply) return;
        // Apply's opaque directories keep what this layer wrote, including the parents it
        // created implicitly.
        for (size_t p = path.rfind('/'); p != std::string::npos && p > 0;
             p = path.rfind('/', p - 1))
            if (!_ancestors.insert(path.substr(0, p)).second) break;
    }

    void invalidate() {
        _cache.reset();
        _cachePath.clear();
        _cacheValid = false;
    }

    // A removal or a new symlink at `path` changes what the cached parent resolves to only
    // when it lies on the cached path.
    void touched(const std::string &path) {
        if (_cacheValid && (_cachePath == path || startsWith(_cachePath, path + "/"))) invalidate();
    }

    // The directory `parent` resolved inside the root (created with its missing parents
    // when `create`), cached for the next entry; -1 when it does not exist and !create.
    int parentFd(const std::string &parent, const std::string &entry, bool create = true) {
        if (parent.empty()) return _root;
        if (_cacheValid && _cachePath == parent) return _cache.get();
        int fd = openInRoot(_root, parent.c_str(), O_PATH | O_DIRECTORY);
        if (fd < 0 && errno == ENOENT && create) fd = makeDirs(parent, entry);
        if (fd < 0) {
            if (!create && (errno == ENOENT || errno == ENOTDIR)) return -1;
            fail(entry, "open " + quote(parent), errno);
        }
        _cache.reset(fd);
        _cachePath = parent;
        _cacheValid = true;
        return fd;
    }

    int makeDirs(const std::string &path, const std::string &entry) {
        Fd cur;
        int curFd = _root;
        std::string prefix;
        for (auto &comp : splitPath(path)) {
            prefix += (prefix.empty() ? "" : "/") + comp;
            int fd = openInRoot(_root, prefix.c_str(), O_PATH | O_DIRECTORY);
            if (fd < 0 && errno == ENOENT) {
                if (::mkdirat(curFd, comp.c_str(), 0755) < 0 && errno != EEXIST)
                    fail(entry, "create " + quote(prefix), errno);
                fd = openInRoot(_root, prefix.c_str(), O_PATH | O_DIRECTORY);
            }
            if (fd < 0) fail(entry, "open " + quote(prefix), errno);
            cur.reset(fd);
            curFd = fd;
        }
        return cur.release();
    }

    // Make room for a new `base` below `pfd` (a later entry replaces an earlier one).
    void clear(int pfd, const std::string &path, const std::string &base) {
        try {
            removeTreeAt(pfd, base);
        } catch (const sdk::Error &err) {
            throw common::wrap(err, "entry " + quote(path));
        }
        touched(path);
    }

    void checkSize(uint64_t size, const Refuse &refuse) {
        if (_options.maxEntrySize && size > _options.maxEntrySize)
            refuse(std::to_string(size) + " bytes is over the limit of " +
                   std::to_string(_options.maxEntrySize) + " bytes per entry");
        if (size > _free) {
            struct statvfs vfs;
            if (::fstatvfs(_root, &vfs) == 0)
                _free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
            if (size > _free)
                throw sdk::Error(-ENOSPC, "entry " + quote(shown(refuse.entry)) + ": " +
                                              std::to_string(size) + " bytes do not fit in the " +
                                              std::to_string(_free) + " bytes free on " +
                                              quote(_target));
        }
        _free -= size;
    }

    static Times times(archive_entry *e) {
        Times t;
        t[0].tv_nsec = UTIME_OMIT;
        t[1].tv_nsec = UTIME_OMIT;
        if (archive_entry_atime_is_set(e))
            t[0] = {archive_entry_atime(e), archive_entry_atime_nsec(e)};
        if (archive_entry_mtime_is_set(e))
            t[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
        return t;
    }

    bool needsChmod(mode_t mode) const { return (mode & 07000) || (mode & 0777 & _umask); }

    // Owner before mode (chown clears setuid/setgid) and before xattrs (chown clears
    // security.capability). `fd` is an open file or directory; without one, `pfd`/`base`
    // name a symlink, fifo or device node.
    void metadata(archive_entry *e, const std::string &path, int fd, int pfd,
                  const std::string &base, bool forceChmod) {
        mode_t mode = archive_entry_perm(e);
        bool isLink = archive_entry_filetype(e) == AE_IFLNK;
        if (_isRoot) {
            uid_t uid = static_cast<uid_t>(archive_entry_uid(e));
            gid_t gid = static_cast<gid_t>(archive_entry_gid(e));
            int r = fd >= 0 ? ::fchown(fd, uid, gid)
                            : ::fchownat(pfd, base.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW);
            if (r < 0) fail(path, "set owner", errno);
        }
        if (!isLink && (forceChmod || needsChmod(mode))) {
            int r = fd >= 0 ? ::fchmod(fd, mode) : ::fchmodat(pfd, base.c_str(), mode, 0);
            if (r < 0) fail(path, "set mode", errno);
        }
        archive_entry_xattr_reset(e);
        const char *name;
        const void *value;
        size_t size;
        std::string proc;
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
            if (overlayXattr(name)) continue;
            int r;
            if (fd >= 0) {
                r = ::fsetxattr(fd, name, value, size, 0);
            } else {
                if (proc.empty()) proc = procPath(pfd, base);
                r = ::lsetxattr(proc.c_str(), name, value, size, 0);
            }
            // Unprivileged extraction cannot set trusted.* or security.*, as tar would not.
            if (r < 0 && !(errno == EPERM && !_isRoot))
                fail(path, "set xattr " + quote(name), errno);
        }
    }

    void file(archive *a, archive_entry *e, const std::string &path, const std::string &parent,
              const std::string &base, const Refuse &refuse) {
        uint64_t size =
            archive_entry_size_is_set(e) ? static_cast<uint64_t>(archive_entry_size(e)) : 0;
        checkSize(size, refuse);
        int pfd = parentFd(parent, path);
        mode_t mode = archive_entry_perm(e);
        const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
        Fd fd(::openat(pfd, base.c_str(), flags, mode & 0777));
        if (fd.get() < 0 && errno == EEXIST) {
            clear(pfd, path, base);
            pfd = parentFd(parent, path);
            fd.reset(::openat(pfd, base.c_str(), flags, mode & 0777));
        }
        if (fd.get() < 0) fail(path, "create", errno);
        _dirTimes.erase(path);

        uint64_t end = 0;
        for (;;) {
            const void *buf;
            size_t len;
            la_int64_t offset;
            int r = archive_read_data_block(a, &buf, &len, &offset);
            if (r == ARCHIVE_EOF) break;
            if (r < ARCHIVE_WARN) throw corrupt(a, "entry " + quote(shown(path)));
            auto *p = static_cast<const char *>(buf);
            auto off = static_cast<off_t>(offset);
            while (len > 0) {
                ssize_t n = ::pwrite(fd.get(), p, len, off);
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) fail(path, "write", errno);
                p += n;
                off += n;
                len -= static_cast<size_t>(n);
            }
            end = std::max(end, static_cast<uint64_t>(off));
        }
        if (end < size && ::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
            fail(path, "write", errno);
        _unpacked += size;
        metadata(e, path, fd.get(), pfd, base, false);
        Times t = times(e);
        if (::futimens(fd.get(), t.data()) < 0) fail(path, "set times", errno);
    }

    void directory(archive_entry *e, const std::string &path, const std::string &parent,
                   const std::string &base) {
        Fd fd;
        int pfd = _root;
        if (path.empty()) {
            fd.reset(::openat(_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        } else {
            pfd = parentFd(parent, path);
            if (::mkdirat(pfd, base.c_str(), 0700) < 0) {
                struct stat st;
                if (errno != EEXIST) fail(path, "create", errno);
                if (::fstatat(pfd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
                    fail(path, "create", errno);
                if (!S_ISDIR(st.st_mode)) {
                    clear(pfd, path, base);
                    pfd = parentFd(parent, path);
                    if (::mkdirat(pfd, base.c_str(), 0700) < 0) fail(path, "create", errno);
                }
            }
            fd.reset(::openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        }
        if (fd.get() < 0) fail(path, "open", errno);
        metadata(e, path, fd.get(), pfd, base, true);
        _dirTimes[path] = times(e);
    }

    void symlink(archive_entry *e, const std::string &path, const std::string &parent,
                 const std::string &base) {
        const char *t = archive_entry_symlink(e);
        std::string target = t ? t : "";
        if (target.empty())
            throw sdk::Error(MO_E_INVALID, "symlink " + quote(shown(path)) + " has no target");
        if (path.empty()) Refuse{path}("the root cannot be a symlink");
        if (target[0] != '/') {
            // Absolute targets resolve inside the root at run time; a relative one that
            // climbs above the root only ever makes sense on the host.
            long depth = static_cast<long>(std::count(parent.begin(), parent.end(), '/')) +
                         (parent.empty() ? 0 : 1);
            for (auto &comp : splitPath(target)) {
                if (comp == ".") continue;
                depth += comp == ".." ? -1 : 1;
                if (depth < 0)
                    throw sdk::Error(MO_E_INVALID,
                                     "symlink " + quote(shown(path)) +
                                         " points outside the root: " + quote(target));
            }
        }
        int pfd = parentFd(parent, path);
        if (::symlinkat(target.c_str(), pfd, base.c_str()) < 0) {
            if (errno != EEXIST) fail(path, "create symlink", errno);
            clear(pfd, path, base);
            pfd = parentFd(parent, path);
            if (::symlinkat(target.c_str(), pfd, base.c_str()) < 0)
                fail(path, "create symlink", errno);
        }
        touched(path);
        _dirTimes.erase(path);
        metadata(e, path, -1, pfd, base, false);
        Times tm = times(e);
        if (::utimensat(pfd, base.c_str(), tm.data(), AT_SYMLINK_NOFOLLOW) < 0)
            fail(path, "set times", errno);
    }

    void node(archive_entry *e, const std::string &path, const std::string &parent,
              const std::string &base, mode_t type) {
        int pfd = parentFd(parent, path);
        mode_t mode = type | (archive_entry_perm(e) & 0777);
        dev_t rdev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
        if (::mknodat(pfd, base.c_str(), mode, rdev) < 0) {
            if (errno != EEXIST) fail(path, "create", errno);
            clear(pfd, path, base);
            pfd = parentFd(parent, path);
            if (::mknodat(pfd, base.c_str(), mode, rdev) < 0) fail(path, "create", errno);
        }
        _dirTimes.erase(path);
        metadata(e, path, -1, pfd, base, false);
        Times tm = times(e);
        if (::utimensat(pfd, base.c_str(), tm.data(), AT_SYMLINK_NOFOLLOW) < 0)
            fail(path, "set times", errno);
    }

    void hardlink(const std::string &path, const std::string &parent, const std::string &base,
                  const std::string &rawTarget) {
        auto refuse = [&](const std::string &why) {
            throw sdk::Error(MO_E_INVALID, "hard link " + quote(shown(path)) + " " + why);
        };
        if (path.empty()) Refuse{path}("the root cannot be a hard link");
        if (rawTarget.empty() || rawTarget[0] == '/')
            refuse("points outside the root: " + quote(shown(rawTarget)));
        std::string target;
        try {
            target = normalize(rawTarget, Refuse{rawTarget});
        } catch (const sdk::Error &) {
            refuse("points outside the root: " + quote(shown(rawTarget)));
        }
        if (target.empty() || !_seen.count(target))
            refuse("names " + quote(shown(rawTarget)) + ", which is not an earlier entry");

        size_t slash = target.rfind('/');
        std::string tparent = slash == std::string::npos ? "" : target.substr(0, slash);
        std::string tbase = slash == std::string::npos ? target : target.substr(slash + 1);
        Fd tfd;
        if (!tparent.empty()) {
            tfd.reset(openInRoot(_root, tparent.c_str(), O_PATH | O_DIRECTORY));
            if (tfd.get() < 0) fail(path, "open " + quote(tparent), errno);
        }
        int tpfd = tparent.empty() ? _root : tfd.get();
        int pfd = parentFd(parent, path);
        if (::linkat(tpfd, tbase.c_str(), pfd, base.c_str(), 0) < 0) {
            if (errno != EEXIST) fail(path, "link to " + quote(target), errno);
            if (target == path) return;
            clear(pfd, path, base);
            pfd = parentFd(parent, path);
            if (::linkat(tpfd, tbase.c_str(), pfd, base.c_str(), 0) < 0)
                fail(path, "link to " + quote(target), errno);
        }
        _dirTimes.erase(path);
    }

    void whiteout(const std::string &path, const std::string &parent, const std::string &base,
                  const Refuse &refuse) {
        if (_options.whiteouts == Whiteouts::Refuse)
            refuse("whiteout entries are not allowed in this archive");
        if (base == kOpaque) {
            opaque(parent, path);
            return;
        }
        // aufs keeps its own metadata under `.wh..wh.` names (`.wh..wh.plnk/`, ...).
        if (startsWith(base, kMeta) || path.find("/.wh..wh.") != std::string::npos ||
            startsWith(path, kMeta))
            return;
        std::string name = base.substr(kWhiteout.size());
        if (name.empty() || name == "." || name == "..") refuse("whiteout of no valid name");
        std::string victim = parent.empty() ? name : parent + "/" + name;
        if (_options.whiteouts == Whiteouts::Overlay) {
            int pfd = parentFd(parent, path);
            if (::mknodat(pfd, name.c_str(), S_IFCHR, ::makedev(0, 0)) < 0) {
                if (errno != EEXIST) fail(path, "create whiteout", errno);
                clear(pfd, victim, name);
                pfd = parentFd(parent, path);
                if (::mknodat(pfd, name.c_str(), S_IFCHR, ::makedev(0, 0)) < 0)
                    fail(path, "create whiteout", errno);
            }
            _dirTimes.erase(victim);
            return;
        }
        int pfd = parentFd(parent, path, false);
        if (pfd < 0) return; // nothing below to delete
        clear(pfd, victim, name);
        _dirTimes.erase(victim);
    }

    void opaque(const std::string &dir, const std::string &path) {
        Fd fd(dir.empty() ? ::openat(_root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                          : openInRoot(_root, dir.c_str(), O_RDONLY | O_DIRECTORY));
        if (fd.get() < 0 && errno == ENOENT) {
            Fd made(makeDirs(dir, path));
            fd.reset(openInRoot(_root, dir.c_str(), O_RDONLY | O_DIRECTORY));
        }
        if (fd.get() < 0) fail(path, "open " + quote(dir.empty() ? "." : dir), errno);
        if (_options.whiteouts == Whiteouts::Overlay) {
            if (::fsetxattr(fd.get(), "trusted.overlay.opaque", "y", 1, 0) < 0)
                fail(path, "set xattr `trusted.overlay.opaque`", errno);
            return;
        }
        invalidate();
        prune(fd.get(), dir, path);
    }

    // Remove below `fd` (the directory `dir`) whatever this layer did not write.
    void prune(int fd, const std::string &dir, const std::string &entry) {
        for (auto &name : listDir(fd, dir.empty() ? "." : dir)) {
            std::string child = dir.empty() ? name : dir + "/" + name;
            if (!_seen.count(child) && !_ancestors.count(child)) {
                try {
                    removeTreeAt(fd, name);
                } catch (const sdk::Error &err) {
                    throw common::wrap(err, "entry " + quote(entry));
                }
                continue;
            }
            Fd sub(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (sub.get() >= 0) prune(sub.get(), child, entry);
        }
    }

public:
    static sdk::Error corrupt(archive *a, const std::string &where) {
        const char *msg = archive_error_string(a);
        return sdk::Error(MO_E_INVALID,
                          where + ": corrupt or truncated archive: " + (msg ? msg : "read error"));
    }

private:
    const ExtractOptions &_options;
    int _root;
    std::string _target;
    mode_t _umask;
    bool _isRoot;
    uint64_t _free = UINT64_MAX;
    uint64_t _unpacked = 0;
    Fd _cache;
    std::string _cachePath;
    bool _cacheValid = false;
    std::unordered_set<std::string> _seen;      // entries written by this archive
    std::unordered_set<std::string> _ancestors; // their parents (Apply only)
    std::map<std::string, Times> _dirTimes;
};

// --- writing -----------------------------------------------------------------------------

struct WriteFree {
    // Failed first, so that freeing an unfinished archive does not flush it.
    void operator()(archive *a) const {
        archive_write_fail(a);
        archive_write_free(a);
    }
};
using WriteArchive = std::unique_ptr<archive, WriteFree>;

// A file beside `output`, removed unless it was renamed into place.
struct TempFile {
    std::string path;
    Fd fd;
    bool kept = false;
    ~TempFile() {
        fd.reset();
        if (!kept && !path.empty()) ::unlink(path.c_str());
    }
};

// A tar stream into `output`: pax through an optional compressing raw writer into a
// temporary file beside `output`, hashed on both sides of the compressor.
class TarOutput {
public:
    TarOutput(const std::string &output, Compression compression,
              std::function<void(uint64_t)> progress)
        : _output(output), _progress(std::move(progress)) {
        size_t slash = output.rfind('/');
        std::string dir = slash == std::string::npos ? "." : output.substr(0, slash);
        std::string name = slash == std::string::npos ? output : output.substr(slash + 1);
        std::string tmpl = dir + "/." + name + ".tmp-XXXXXX";
        int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
        if (fd < 0) throw sysError("write " + quote(output), errno);
        _file.fd.reset(fd);
        _file.path = tmpl;
        ::fchmod(fd, 0666 & ~currentUmask());
        struct stat st;
        if (::fstat(fd, &st) == 0) _id = {st.st_dev, st.st_ino};

        if (compression != Compression::None) {
            _filter.reset(archive_write_new());
            archive_write_set_format_raw(_filter.get());
            int r = ARCHIVE_OK;
            switch (compression) {
            case Compression::Gzip:
                r = archive_write_add_filter_gzip(_filter.get());
                // No wall-clock time in the header: the same tree gives the same blob.
                if (r == ARCHIVE_OK)
                    r = archive_write_set_filter_option(_filter.get(), "gzip", "timestamp",
                                                        nullptr);
                break;
            case Compression::Zstd:
                r = archive_write_add_filter_zstd(_filter.get());
                break;
            case Compression::Xz:
                r = archive_write_add_filter_xz(_filter.get());
                break;
            case Compression::None:
                break;
            }
            if (r != ARCHIVE_OK) fail(_filter.get(), "set up compression");
            openWriter(_filter.get(), &TarOutput::fileWrite);
            archive_entry *e = archive_entry_new();
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_copy_pathname(e, "tar");
            r = archive_write_header(_filter.get(), e);
            archive_entry_free(e);
            if (r < ARCHIVE_WARN) fail(_filter.get(), "start");
        }
        _tar.reset(archive_write_new());
        // Full pax: an extended header only where ustar cannot say it (long names, xattrs,
        // sub-second mtimes, big ids), so nanosecond mtimes survive.
        archive_write_set_format_pax(_tar.get());
        // What Go's archive/tar (docker, containerd, podman) writes and reads.
        archive_write_set_format_option(_tar.get(), "pax", "xattrheader", "SCHILY");
        openWriter(_tar.get(), &TarOutput::tarWrite);
    }

    // The temporary file, which a tree written into its own directory must skip.
    std::pair<dev_t, ino_t> id() const { return _id; }

    void header(archive_entry *e, const std::string &name) {
        if (archive_write_header(_tar.get(), e) < ARCHIVE_WARN)
            fail(_tar.get(), "entry " + quote(name));
    }

    void data(const void *buf, size_t len, const std::string &name) {
        if (archive_write_data(_tar.get(), buf, len) < 0) fail(_tar.get(), "entry " + quote(name));
    }

    WriteResult commit() {
        if (archive_write_close(_tar.get()) != ARCHIVE_OK) fail(_tar.get(), "finish");
        if (_filter && archive_write_close(_filter.get()) != ARCHIVE_OK)
            fail(_filter.get(), "finish");
        WriteResult result;
        result.diffId = _diff.finish();
        result.digest = _filter ? _digest.finish() : result.diffId;
        result.size = _size;
        if (::fsync(_file.fd.get()) < 0) throw sysError("write " + quote(_output), errno);
        _file.fd.reset();
        if (::rename(_file.path.c_str(), _output.c_str()) < 0)
            throw sysError("write " + quote(_output), errno);
        _file.kept = true;
        return result;
    }

private:
    using Callback = la_ssize_t (*)(archive *, void *, const void *, size_t);

    void openWriter(archive *a, Callback cb) {
        // Big blocks and no padding of the last one: a tar ends with its two zero records,
        // as Go's archive/tar writes it, and a compressed stream with nothing after it.
        archive_write_set_bytes_per_block(a, 65536);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open(a, this, nullptr, cb, nullptr) != ARCHIVE_OK) fail(a, "open");
    }

    [[noreturn]] void fail(archive *a, const std::string &what) {
        if (_error) std::rethrow_exception(_error);
        const char *msg = archive_error_string(a);
        int err = archive_errno(a);
        throw sdk::Error(err > 0 ? -err : MO_E_INTERNAL,
                         "write " + quote(_output) + ": " + what + ": " + (msg ? msg : "failed"));
    }

    static la_ssize_t tarWrite(archive *a, void *self, const void *buf, size_t len) {
        auto *t = static_cast<TarOutput *>(self);
        t->_diff.update(buf, len);
        if (!t->_filter) return t->toFile(a, buf, len);
        if (archive_write_data(t->_filter.get(), buf, len) < 0) {
            if (!t->_error) {
                const char *msg = archive_error_string(t->_filter.get());
                archive_set_error(a, archive_errno(t->_filter.get()), "%s", msg ? msg : "compress");
            }
            return -1;
        }
        return static_cast<la_ssize_t>(len);
    }

    static la_ssize_t fileWrite(archive *a, void *self, const void *buf, size_t len) {
        auto *t = static_cast<TarOutput *>(self);
        t->_digest.update(buf, len);
        return t->toFile(a, buf, len);
    }

    la_ssize_t toFile(archive *a, const void *buf, size_t len) {
        auto *p = static_cast<const char *>(buf);
        size_t left = len;
        while (left > 0) {
            ssize_t n = ::write(_file.fd.get(), p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                archive_set_error(a, errno, "%s", std::strerror(errno));
                return -1;
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
        _size += len;
        if (_progress) {
            try {
                _progress(_size);
            } catch (...) {
                _error = std::current_exception();
                archive_set_error(a, ECANCELED, "cancelled");
                return -1;
            }
        }
        return static_cast<la_ssize_t>(len);
    }

    // Declared before the archives, so that it outlives them (freeing one may still write).
    std::string _output;
    std::function<void(uint64_t)> _progress;
    TempFile _file;
    std::pair<dev_t, ino_t> _id{};
    Sha256 _diff;
    Sha256 _digest;
    uint64_t _size = 0;
    std::exception_ptr _error;
    WriteArchive _filter;
    WriteArchive _tar;
};

struct EntryFree {
    void operator()(archive_entry *e) const { archive_entry_free(e); }
};
using Entry = std::unique_ptr<archive_entry, EntryFree>;

// Xattrs of an open file (`fd` >= 0) or of the node a /proc path names, in name order.
std::vector<std::pair<std::string, std::string>> readXattrs(int fd, const std::string &proc,
                                                            const std::string &what) {
    std::vector<std::pair<std::string, std::string>> out;
    std::string names(256, '\0');
    for (;;) {
        ssize_t n = fd >= 0 ? ::flistxattr(fd, names.data(), names.size())
                            : ::llistxattr(proc.c_str(), names.data(), names.size());
        if (n >= 0) {
            names.resize(static_cast<size_t>(n));
            break;
        }
        if (errno == ENOTSUP) return out;
        if (errno != ERANGE) throw sysError("read xattrs of " + quote(what), errno);
        names.resize(names.size() * 4);
    }
    for (size_t p = 0; p < names.size();) {
        std::string name(names.c_str() + p);
        p += name.size() + 1;
        std::string value(256, '\0');
        for (;;) {
            ssize_t n = fd >= 0
                            ? ::fgetxattr(fd, name.c_str(), value.data(), value.size())
                            : ::lgetxattr(proc.c_str(), name.c_str(), value.data(), value.size());
            if (n >= 0) {
                value.resize(static_cast<size_t>(n));
                break;
            }
            if (errno == ENODATA) break;
            if (errno != ERANGE)
                throw sysError("read xattr " + quote(name) + " of " + quote(what), errno);
            value.resize(value.size() * 4 + 65536);
        }
        out.emplace_back(std::move(name), std::move(value));
    }
    std::sort(out.begin(), out.end());
    return out;
}

class TreeWriter {
public:
    TreeWriter(TarOutput &out, const WriteOptions &options) : _out(out), _options(options) {}

    void root(int fd, const struct stat &st) {
        Entry e = entry(".", st);
        addXattrs(e.get(), fd, {}, ".");
        _out.header(e.get(), ".");
    }

    void walk(int dirfd, const std::string &prefix) {
        auto names = listDir(dirfd, prefix.empty() ? "." : prefix);
        std::sort(names.begin(), names.end());
        for (auto &name : names) {
            std::string path = prefix.empty() ? name : prefix + "/" + name;
            struct stat st;
            if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT) continue; // gone while we walked
                throw sysError("read " + quote(path), errno);
            }
            switch (st.st_mode & S_IFMT) {
            case S_IFSOCK:
                break;
            case S_IFDIR:
                directory(dirfd, name, path, st);
                break;
            case S_IFREG:
                file(dirfd, name, path, st);
                break;
            case S_IFCHR:
                if (_options.overlayWhiteouts && st.st_rdev == ::makedev(0, 0)) {
                    std::string wh = (prefix.empty() ? "" : prefix + "/") + ".wh." + name;
                    struct stat w = st;
                    w.st_mode = S_IFREG | 0600;
                    w.st_size = 0;
                    Entry e = entry(wh, w);
                    _out.header(e.get(), wh);
                    break;
                }
                [[fallthrough]];
            default: {
                Entry e = entry(path, st);
                if (S_ISLNK(st.st_mode)) {
                    std::string target(PATH_MAX, '\0');
                    ssize_t n = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
                    if (n < 0) throw sysError("read " + quote(path), errno);
                    target.resize(static_cast<size_t>(n));
                    archive_entry_copy_symlink(e.get(), target.c_str());
                }
                addXattrs(e.get(), -1, procPath(dirfd, name), path);
                _out.header(e.get(), path);
            }
            }
        }
    }

private:
    Entry entry(const std::string &path, const struct stat &st) {
        Entry e(archive_entry_new());
        archive_entry_copy_pathname(e.get(), path.c_str());
        archive_entry_set_mode(e.get(), st.st_mode);
        archive_entry_set_uid(e.get(), st.st_uid);
        archive_entry_set_gid(e.get(), st.st_gid);
        archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) archive_entry_set_rdev(e.get(), st.st_rdev);
        archive_entry_set_size(e.get(), S_ISREG(st.st_mode) ? st.st_size : 0);
        return e;
    }

    // True when the directory is an overlayfs opaque one.
    bool addXattrs(archive_entry *e, int fd, const std::string &proc, const std::string &path) {
        bool opaque = false;
        for (auto &[name, value] : readXattrs(fd, proc, path)) {
            if (_options.overlayWhiteouts && overlayXattr(name.c_str())) {
                opaque |= name.ends_with(".overlay.opaque") && value == "y";
                continue;
            }
            archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
        }
        return opaque;
    }

    void directory(int dirfd, const std::string &name, const std::string &path,
                   const struct stat &st) {
        Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (fd.get() < 0) throw sysError("read " + quote(path), errno);
        Entry e = entry(path, st);
        bool opaque = addXattrs(e.get(), fd.get(), {}, path);
        _out.header(e.get(), path);
        if (opaque) {
            struct stat w = st;
            w.st_mode = S_IFREG | (st.st_mode & 0777);
            w.st_size = 0;
            std::string wh = path + "/" + std::string(kOpaque);
            Entry o = entry(wh, w);
            _out.header(o.get(), wh);
        }
        walk(fd.get(), path);
    }

    void file(int dirfd, const std::string &name, const std::string &path, const struct stat &st) {
        if (std::pair(st.st_dev, st.st_ino) == _out.id()) return;
        if (st.st_nlink > 1) {
            auto [it, first] = _links.try_emplace({st.st_dev, st.st_ino}, path);
            if (!first) {
                Entry e = entry(path, st);
                archive_entry_set_size(e.get(), 0);
                archive_entry_copy_hardlink(e.get(), it->second.c_str());
                _out.header(e.get(), path);
                return;
            }
        }
        Fd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (fd.get() < 0) throw sysError("read " + quote(path), errno);
        Entry e = entry(path, st);
        addXattrs(e.get(), fd.get(), {}, path);
        _out.header(e.get(), path);
        // The header promised st_size bytes: a file that shrank meanwhile is padded with
        // zeros by libarchive, one that grew is cut.
        auto left = static_cast<uint64_t>(st.st_size);
        while (left > 0) {
            ssize_t n = ::read(fd.get(), _buf.data(), std::min<uint64_t>(left, _buf.size()));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw sysError("read " + quote(path), errno);
            if (n == 0) break;
            _out.data(_buf.data(), static_cast<size_t>(n), path);
            left -= static_cast<uint64_t>(n);
        }
    }

    struct DevIno {
        dev_t dev;
        ino_t ino;
        bool operator<(const DevIno &o) const { return dev != o.dev ? dev < o.dev : ino < o.ino; }
    };

    TarOutput &_out;
    const WriteOptions &_options;
    std::map<DevIno, std::string> _links;
    std::vector<char> _buf = std::vector<char>(kBufferSize);
};

} // namespace

ExtractResult extract(const std::string &archivePath, const std::string &target,
                      const ExtractOptions &options) {
    Source source;
    Fd file(::open(archivePath.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.get() < 0) throw sysError("open " + quote(archivePath), errno);
    struct stat st;
    if (::fstat(file.get(), &st) < 0) throw sysError("open " + quote(archivePath), errno);
    ::posix_fadvise(file.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    source.fd = file.get();
    source.total = static_cast<uint64_t>(st.st_size);
    source.progress = &options.progress;
    unsigned char magic[2] = {};
    bool gzip = ::pread(file.get(), magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;

    if (options.createTarget && ::mkdir(target.c_str(), 0755) < 0) {
        if (errno == EEXIST)
            throw sdk::Error(MO_E_EXISTS, "extract into " + quote(target) + ": it already exists");
        throw sysError("create " + quote(target), errno);
    }
    Fd root;
    try {
        root.reset(::open(target.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (root.get() < 0) throw sysError("open " + quote(target), errno);

        // An empty file is an empty layer, as Go's archive/tar (docker, containerd) reads it.
        if (source.total == 0) {
            ExtractResult result;
            result.digest = result.diffId = source.digest();
            return result;
        }
        std::unique_ptr<Stream> stream;
        if (gzip)
            stream = std::make_unique<GzipStream>(source);
        else
            stream = std::make_unique<FilterStream>(source, archivePath);
        ReadArchive inner(archive_read_new());
        archive_read_support_format_tar(inner.get());
        std::string last;
        auto corrupt = [&](archive *a) -> sdk::Error {
            if (source.error) std::rethrow_exception(source.error);
            if (stream->thrown) std::rethrow_exception(stream->thrown);
            return Extractor::corrupt(a, last.empty() ? "read " + quote(archivePath)
                                                      : "after entry " + quote(shown(last)));
        };
        if (archive_read_open(inner.get(), stream.get(), nullptr, &Stream::callback, nullptr) !=
            ARCHIVE_OK)
            throw corrupt(inner.get());

        Extractor extractor(options, root.get(), target);
        ExtractResult result;
        for (;;) {
            archive_entry *e;
            int r = archive_read_next_header(inner.get(), &e);
            if (r == ARCHIVE_EOF) break;
            if (r < ARCHIVE_WARN) throw corrupt(inner.get());
            const char *name = archive_entry_pathname(e);
            last = name ? name : "";
            try {
                extractor.entry(inner.get(), e);
            } catch (...) {
                if (source.error) std::rethrow_exception(source.error);
                if (stream->thrown) std::rethrow_exception(stream->thrown);
                throw;
            }
            ++result.entries;
        }
        // The rest of the stream (tar padding, the compressor's trailer and checksum) still
        // counts for both digests and must be intact.
        const void *block;
        la_ssize_t n;
        while ((n = stream->next(&block)) > 0) {
        }
        if (n < 0) {
            if (source.error) std::rethrow_exception(source.error);
            throw sdk::Error(MO_E_INVALID,
                             (last.empty() ? "read " + quote(archivePath)
                                           : "after entry " + quote(shown(last))) +
                                 ": corrupt or truncated archive: " + stream->error());
        }
        while ((n = source.next()) > 0) {
        }
        if (n < 0) throw sysError("read " + quote(archivePath), errno);
        extractor.finish();

        result.digest = source.digest();
        result.diffId = stream->hash ? stream->diff.finish() : result.digest;
        result.size = source.read;
        result.unpackedSize = extractor.unpackedSize();
        return result;
    } catch (...) {
        if (options.createTarget) {
            root.reset();
            try {
                removeTreeAt(AT_FDCWD, target);
            } catch (...) {
                // The first error is the one to report.
            }
        }
        throw;
    }
}

WriteResult writeTree(const std::string &source, const std::string &output,
                      const WriteOptions &options) {
    Fd root(::open(source.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.get() < 0) throw sysError("read " + quote(source), errno);
    TarOutput out(output, options.compression, options.progress);
    TreeWriter writer(out, options);
    if (options.rootEntry) {
        struct stat st;
        if (::fstat(root.get(), &st) < 0) throw sysError("read " + quote(source), errno);
        writer.root(root.get(), st);
    }
    writer.walk(root.get(), "");
    return out.commit();
}

struct ArchiveWriter::Impl {
    Impl(const std::string &output, Compression compression) : out(output, compression, nullptr) {}

    void add(const std::string &name, mode_t mode, uint64_t size) {
        if (name.empty() || name[0] == '/')
            throw sdk::Error(MO_E_INVALID,
                             "archive entry " + quote(name) + ": not a relative name");
        if (committed)
            throw sdk::Error(MO_E_STATE, "archive entry " + quote(name) + ": already committed");
        Entry e(archive_entry_new());
        archive_entry_copy_pathname(e.get(), name.c_str());
        archive_entry_set_mode(e.get(), mode);
        archive_entry_set_uid(e.get(), 0);
        archive_entry_set_gid(e.get(), 0);
        archive_entry_set_mtime(e.get(), 0, 0);
        archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
        out.header(e.get(), name);
    }

    TarOutput out;
    WriteResult result;
    bool committed = false;
};

ArchiveWriter::ArchiveWriter(const std::string &output, Compression compression)
    : _impl(std::make_unique<Impl>(output, compression)) {}

ArchiveWriter::~ArchiveWriter() = default;

void ArchiveWriter::addBytes(const std::string &name, const std::string &bytes, mode_t mode) {
    _impl->add(name, S_IFREG | (mode & 07777), bytes.size());
    _impl->out.data(bytes.data(), bytes.size(), name);
}

void ArchiveWriter::addFile(const std::string &name, const std::string &path) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (fd.get() < 0 || ::fstat(fd.get(), &st) < 0) throw sysError("read " + quote(path), errno);
    if (!S_ISREG(st.st_mode))
        throw sdk::Error(MO_E_INVALID, "archive entry " + quote(name) + ": " + quote(path) +
                                           " is not a regular file");
    _impl->add(name, S_IFREG | 0644, static_cast<uint64_t>(st.st_size));
    std::vector<char> buf(kBufferSize);
    auto left = static_cast<uint64_t>(st.st_size);
    while (left > 0) {
        ssize_t n = ::read(fd.get(), buf.data(), std::min<uint64_t>(left, buf.size()));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("read " + quote(path), errno);
        if (n == 0) break;
        _impl->out.data(buf.data(), static_cast<size_t>(n), name);
        left -= static_cast<uint64_t>(n);
    }
}

void ArchiveWriter::addDirectory(const std::string &name) { _impl->add(name, S_IFDIR | 0755, 0); }

void ArchiveWriter::commit() {
    if (_impl->committed) return;
    _impl->result = _impl->out.commit();
    _impl->committed = true;
}

const WriteResult &ArchiveWriter::result() const { return _impl->result; }

} // namespace mobileops::storage
