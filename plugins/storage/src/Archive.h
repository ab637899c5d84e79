// Tar archives in and out: image layers, rootfs tarballs, image archives, backups.
//
// Archives are untrusted. extract() resolves every path inside the target with openat2
// (RESOLVE_IN_ROOT), so no entry, symlink or hard link can write outside it, refuses
// hostile entries naming them, and leaves nothing behind when it fails. It hashes the
// blob digest and the OCI diffID in the same single pass that extracts. The writers make
// reproducible pax tars (sorted, numeric owners, no wall-clock times) under a temporary
// name renamed into place, and turn an overlayfs upper directory into an OCI layer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace mobileops::storage {

enum class Whiteouts {
    Overlay, // image layers for overlayfs lowers: `.wh.NAME` -> character device 0/0
             // named NAME; `.wh..wh..opq` -> xattr trusted.overlay.opaque=y on its dir
    Apply,   // flattening onto a tree holding the layers below: `.wh.NAME` deletes NAME
             // (recursively); `.wh..wh..opq` empties the dir of what earlier layers put
             // there (not of entries from this same layer: OCI layer.md "Opaque Whiteout")
    Refuse,  // plain rootfs tarballs, backups: a `.wh.` entry is an error
};

struct ExtractOptions {
    Whiteouts whiteouts = Whiteouts::Overlay;
    bool allowDevices = false; // char/block device entries (fifos always OK)
    bool createTarget = true;  // target must not exist; created; REMOVED ENTIRELY if
                               // extraction fails. false: extract into an existing dir
                               // (Apply; the caller works on a copy it can throw away)
    uint64_t maxEntrySize = 0; // 0: no limit besides free space
    // Bytes of the archive file read so far (compressed bytes) and its size.
    std::function<void(uint64_t readBytes, uint64_t totalBytes)> progress;
};

struct ExtractResult {
    std::string digest;        // sha256 of the archive file's bytes (the blob digest)
    std::string diffId;        // sha256 of the uncompressed tar stream (OCI diffID)
    uint64_t size = 0;         // archive file bytes
    uint64_t unpackedSize = 0; // sum of regular file sizes written
    uint64_t entries = 0;
};

// Any compression libarchive detects (none, gzip, xz, lzma, zstd, bzip2, lz4), tar formats
// (ustar, pax, gnu). Errors name the entry: MO_E_INVALID for hostile or corrupt input,
// MO_E_EXISTS when createTarget and the target exists, -ENOSPC when an entry cannot fit,
// -errno for system failures.
ExtractResult extract(const std::string &archive, const std::string &target,
                      const ExtractOptions &options);

enum class Compression { None, Gzip, Zstd, Xz };

struct WriteOptions {
    Compression compression = Compression::None;
    bool overlayWhiteouts = true; // 0/0 char devices -> `.wh.NAME`, opaque xattr ->
                                  // `.wh..wh..opq` (the upper dir of a container becomes
                                  // an OCI layer); trusted.overlay.* xattrs are dropped
    bool rootEntry = false;       // a first entry `.` carrying the owner, mode, xattrs and
                                  // mtime of `source` itself (backups of a volume whose
                                  // root is not root-owned; layers have none)
    std::function<void(uint64_t bytesWritten)> progress; // bytes of the output file
};

struct WriteResult {
    std::string digest; // sha256 of the output file
    std::string diffId; // sha256 of the uncompressed tar stream
    uint64_t size = 0;  // output file bytes
};

// Tar (pax) of the tree below `source`: entries relative, without a "./" prefix, sorted by
// name (parents first) so the same tree gives the same bytes; mtimes kept, numeric uid/gid,
// modes, xattrs (incl. security.capability), hard links as links, symlinks as symlinks
// (never followed), sockets skipped. Written to `output` under a temporary name, synced
// and renamed at the end; nothing is left on failure.
WriteResult writeTree(const std::string &source, const std::string &output,
                      const WriteOptions &options);

// An archive built entry by entry (image save writes oci-layout, index.json,
// blobs/sha256/... and docker's manifest.json into one tar). Entries are owned by 0:0 with
// mtime 0, so saving the same image twice gives the same bytes. commit() syncs and renames
// the temporary file into place; the destructor without commit() removes it.
class ArchiveWriter {
public:
    ArchiveWriter(const std::string &output, Compression compression);
    ~ArchiveWriter();
    ArchiveWriter(const ArchiveWriter &) = delete;
    ArchiveWriter &operator=(const ArchiveWriter &) = delete;

    void addBytes(const std::string &name, const std::string &bytes, mode_t mode = 0644);
    void addFile(const std::string &name, const std::string &path); // regular file, 0644
    void addDirectory(const std::string &name);                     // 0755
    void commit();
    // Digest, diffID and size of the output; valid after commit().
    const WriteResult &result() const;

private:
    struct Impl;
    std::unique_ptr<Impl> _impl;
};

} // namespace mobileops::storage
