// The walk behind scan(): one thread, directory fds, never following a symlink and never
// descending into another mount than the root's.
#pragma once

#include "Manifest.h"

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mobileops::integrity {

struct Xattrs {
    std::string digest; // "" when there are none besides trusted.overlay.*
    bool opaque = false;
};

// The extended attributes of `name` in the directory open at `dirfd` (a symlink's own, not
// its target's) or of the open file `fd`; `where` names the file in errors.
Xattrs readXattrsAt(int dirfd, const std::string &name, const std::string &where);
Xattrs readXattrs(int fd, const std::string &where);

// An entry at `path` with the type, permission bits, owner, size and device of `stx`.
Entry entryOf(const struct statx &stx, std::string path);

class Walker {
public:
    // Called for each regular file recorded, with its index in the entries and the inode
    // the walk saw, so that hashing can check it is still the same file.
    using FileFound =
        std::function<void(size_t entry, const std::string &path, uint64_t dev, uint64_t ino)>;

    // `rootfd`: the tree's root directory, open for reading; `rootPath` names it in errors.
    // `cancelled` is asked between directories.
    Walker(int rootfd, std::string rootPath, FileFound onFile, std::function<bool()> cancelled)
        : _rootfd(rootfd), _rootPath(std::move(rootPath)), _onFile(std::move(onFile)),
          _cancelled(std::move(cancelled)) {}

    // "/" and everything below it, in component order (each directory's names sorted, its
    // subtree right after it).
    std::vector<Entry> run();

private:
    void directory(int dirfd, const std::string &path);
    std::vector<std::string> names(int dirfd, const std::string &path) const;
    bool sameMount(const struct statx &stx) const;
    std::string where(const std::string &path) const;

    int _rootfd;
    std::string _rootPath;
    FileFound _onFile;
    std::function<bool()> _cancelled;
    std::vector<Entry> _entries;
    uint32_t _devMajor = 0, _devMinor = 0;
    uint64_t _mountId = 0;
    bool _hasMountId = false;
};

} // namespace mobileops::integrity
