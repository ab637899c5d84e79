// Manifests of file trees: every path with its type, permission bits, owner, size, device
// number, link target, extended attributes and content hash (sha256), and a Merkle root
// over the whole tree. A directory's node hash covers its own metadata and its children's
// names and node hashes, so two trees are equal exactly when their roots are, and a
// changed file changes the hash of every directory above it.
//
// Scanning walks the tree on one thread (directory fds, never following a symlink, never
// leaving the root's filesystem) and hashes regular files on all CPUs; every file is
// opened below the root with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS), so a tree that changes under the scan cannot make it read a
// file outside the root.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mobileops::integrity {

enum class EntryType : uint8_t { File, Directory, Symlink, CharDevice, BlockDevice, Fifo, Socket };

// "file", "dir", "symlink", "char", "block", "fifo", "socket".
const char *typeName(EntryType type);
// The inverse; throws std::invalid_argument naming an unknown word.
EntryType typeFromName(const std::string &name);

struct Entry {
    std::string path; // inside the tree, absolute: "/", "/etc", "/etc/passwd"
    EntryType type = EntryType::File;
    uint32_t mode = 0; // permission bits with setuid, setgid and sticky (07777)
    uint32_t uid = 0;
    uint32_t gid = 0;
    uint64_t size = 0;   // regular files; 0 otherwise
    uint64_t rdev = 0;   // devices: makedev(major, minor); 0 otherwise (also whiteouts)
    std::string target;  // symlinks: the link's text
    std::string digest;  // regular files: sha256 of the content, 64 hex; "" unhashed
    std::string xattrs;  // sha256 (64 hex) over the sorted name=value pairs of the
                         // extended attributes, trusted.overlay.* left out; "" none
    bool opaque = false; // directories: trusted.overlay.opaque=y (an overlay layer's
                         // "hide what is below")
    std::string node;    // Merkle node hash, 64 hex (filled by scan / fromJson)

    bool operator==(const Entry &) const = default;
};

struct Manifest {
    std::string algorithm = "sha256";
    std::vector<Entry> entries; // sorted by path (component-wise: "/a/b" before "/a b"),
                                // "/" first
    std::string root;           // Merkle root: entries.front().node
    uint64_t files = 0;         // regular files
    uint64_t bytes = 0;         // their bytes

    // Binary search by path; nullptr when absent.
    const Entry *find(const std::string &path) const;

    // Compact form for the state store: {algorithm, root, files, bytes,
    // entries: [[path, type, mode, uid, gid, size, rdev, target, digest, xattrs, opaque]]}
    // (node hashes are not stored; fromJson recomputes them and throws MO_E_STATE-style
    // std::runtime_error when the recomputed root differs from the stored one).
    nlohmann::json toJson() const;
    static Manifest fromJson(const nlohmann::json &doc);
};

struct ScanOptions {
    unsigned threads = 0; // hashing threads; 0: one per online CPU
    bool content = true;  // false: metadata only (digest stays "")
    // Called now and then (at most every 100 ms, from any thread, serialised) with the
    // bytes and files hashed so far, and once at the end.
    std::function<void(uint64_t bytes, uint64_t files)> progress;
};

// The manifest of the tree at `root`, a directory; a regular file is a manifest of one
// entry "/" (an asset may be one file). Throws common::Error naming the path:
// MO_E_NOT_FOUND (missing, or vanished during the scan), MO_E_STATE (a file changed type
// or inode between the walk and its hashing), MO_E_INVALID, or -errno from a system call.
Manifest scan(const std::string &root, const ScanOptions &options = {});

// Recompute every node hash and the root from the entries (sorted first if needed).
void computeTree(Manifest &manifest);

// One modified path and what differs: any of "type", "content", "size", "mode", "owner",
// "link", "device", "xattrs", "opaque". `before` / `after` hold the differing fields'
// values for display ({"mode": "0755"} / {"mode": "0777"}, {"uid": 0, "gid": 0}, ...).
struct Change {
    std::string path;
    std::vector<std::string> what;
    nlohmann::json before = nlohmann::json::object();
    nlohmann::json after = nlohmann::json::object();
};

struct Diff {
    std::vector<std::string> added;   // sorted
    std::vector<std::string> removed; // sorted
    std::vector<Change> modified;     // sorted by path
    bool clean() const { return added.empty() && removed.empty() && modified.empty(); }
    size_t count() const { return added.size() + removed.size() + modified.size(); }
    // {clean, added: [...], removed: [...], modified: [{path, what, before, after}]}
    nlohmann::json toJson() const;
    // The first `n` differing paths, in path order, as "PATH (content, mode)", "PATH
    // (added)", "PATH (removed)" for error messages.
    std::vector<std::string> first(size_t n) const;
};

// What changed from `recorded` to `live`. When both digests of a file are present they
// are compared; a size difference alone is reported as "size" and "content".
Diff compare(const Manifest &recorded, const Manifest &live);

// The tree an overlay mount shows for `layers` (bottom first): each upper layer's
// whiteouts (char devices 0:0) remove the path below, its opaque directories hide
// everything below them, everything else replaces or adds. Whiteouts themselves do not
// appear in the result. The root is recomputed.
Manifest merge(const std::vector<Manifest> &layers);

// A container's writable layer (an overlay upper directory, scanned into `upper`)
// against the merged image `image`: added (not in the image), removed (a whiteout, or
// hidden by an opaque directory), modified (present in both and different). Metadata
// compared as in compare(); content when the upper scan has digests.
Diff overlayDrift(const Manifest &image, const Manifest &upper);

} // namespace mobileops::integrity
