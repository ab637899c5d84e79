// The image store: content-addressed blobs (layer archives, configs, manifests), layers
// extracted once and shared by every image and container that uses them, image records
// and their names in the state store, and container roots made from them (an overlay of
// the image's layers under a per-container writable layer).
//
// Records (state store):
//   kind "image"       key: image id (the config digest)  {id, names, manifest, config,
//                      layers[{digest, diffId, size, mediaType}], created, os,
//                      architecture, size, source}
//   kind "image-name"  key: fully qualified name ("docker.io/library/busybox:latest") {id}
//   kind "rootfs"      key: container id  {image, path, upper, diskLimit, flat}
// Flattened images (flat/<hex>) need no record either: they appear by an atomic rename.
// Layers need no record: layers/<hex> appears by an atomic rename once extracted whole.
#pragma once

#include "Archive.h"
#include "MediaTypes.h"
#include "Paths.h"
#include <mobileops/common/Progress.h>

#include <mobileops/common/Host.h>
#include <nlohmann/json.hpp>

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mobileops::storage {

using Progress = common::Progress;

// A layer as an image names it: its blob and what the blob unpacks to.
struct LayerRef {
    std::string digest;    // the blob ("sha256:...")
    std::string diffId;    // the uncompressed tar's digest
    std::string mediaType; // of the blob
    uint64_t size = 0;     // blob bytes
};

struct IngestOptions {
    bool allowDevices = false; // device nodes in layers
    bool quiet = false;        // no progress on the terminal
};

class ImageStore {
public:
    ImageStore(const common::Host &host, const Paths &paths);
    ~ImageStore();
    ImageStore(const ImageStore &) = delete;
    ImageStore &operator=(const ImageStore &) = delete;

    // --- lookups ---
    // An image by id ("sha256:<hex>", or 12+ hex digits of it) or by name; throws
    // MO_E_NOT_FOUND naming the reference.
    nlohmann::json resolve(const std::string &ref) const;
    std::optional<nlohmann::json> find(const std::string &ref) const;
    nlohmann::json list() const;
    nlohmann::json inspect(const std::string &ref) const;
    // The fully qualified form of a name ("busybox" -> "docker.io/library/busybox:latest").
    static std::string qualify(const std::string &name);
    // How list and inspect show a name ("busybox:latest").
    static std::string familiar(const std::string &name);

    // --- names and removal ---
    nlohmann::json tag(const std::string &ref, const std::string &name);
    // Untag names; remove an image whose last name went (or given by id) unless a
    // container uses it (then refuse, naming them; `force` still refuses: a container's
    // root would vanish). Returns {untagged, deleted, layersRemoved, bytesFreed}.
    nlohmann::json remove(const std::vector<std::string> &refs, bool force);
    // Images without names that no container uses, then blobs and layers no image
    // references, then temporary files of dead processes.
    nlohmann::json prune();
    // Blobs and layers no image references, dead work files (what `rm` leaves to sweep).
    nlohmann::json sweep();

    // --- ingest ---
    // A rootfs tarball (any compression) as a one-layer image.
    nlohmann::json importTarball(const std::string &file, const std::string &name,
                                 const IngestOptions &options);
    // A directory as a one-layer image (written to a tar, then imported).
    nlohmann::json buildRootfs(const std::string &dir, const std::string &name,
                               const IngestOptions &options);
    // An OCI image layout (directory or tar) or a docker-archive (docker/podman save).
    // `name`, when given, names the (single) image instead of the archive's names.
    nlohmann::json load(const std::string &path, const std::string &name,
                        const IngestOptions &options);
    // `format`: "docker-archive" (default) or "oci-archive".
    nlohmann::json save(const std::vector<std::string> &refs, const std::string &output,
                        const std::string &format, bool quiet);

    // --- building blocks (load, pull) ---
    // Move (or copy, when `move` is false) a file into the blob store after checking it
    // hashes to `expected` (empty: whatever it hashes to). Returns the digest.
    std::string putBlobFile(const std::string &file, const std::string &expected, bool move);
    std::string putBlobBytes(const std::string &bytes, const std::string &expected = {});
    std::string readBlob(const std::string &digest) const;
    bool hasBlob(const std::string &digest) const;
    // Extract a layer blob once (skipped when layers/<diffId> exists); the unpacked tar
    // must hash to `diffId` when one is given. Returns the diffId.
    std::string ensureLayer(const LayerRef &layer, const IngestOptions &options,
                            Progress *progress);
    // Record an image from its manifest and config (both already blobs) under `names`.
    nlohmann::json commit(const std::string &manifestBytes, const std::string &configBytes,
                          const std::vector<LayerRef> &layers,
                          const std::vector<std::string> &names, const std::string &source);

    // Manifests through the integrity service: each layer's that has none yet (every
    // layer's with `again`), then the image's over them. Nothing without an integrity
    // provider. Returns the image's record result ({target, root, files, bytes}) or null.
    nlohmann::json recordManifests(const std::string &id, const std::vector<LayerRef> &layers,
                                   bool again = false);
    nlohmann::json recordManifests(const std::string &ref, bool again);

    // --- containers ---
    // {diskLimit: bytes, flatten: bool} -> {path, upper, work, image{id, name}, flat};
    // see services.h. `flatten`: the overlay's one lower layer is the image's flattened
    // copy (made on first use) instead of its layers: what a micro-VM's 9p share serves
    // best (one directory tree, no whiteouts or opaque directories to resolve per lookup).
    nlohmann::json prepareRootfs(const std::string &containerId, const std::string &imageRef,
                                 const nlohmann::json &options);
    void releaseRootfs(const std::string &containerId);
    // A flattened copy of an image (every layer applied in order) at `target`, for
    // backends that cannot use an overlay (micro-VMs).
    nlohmann::json flatten(const std::string &imageRef, const std::string &target);
    // The image's cached flattened copy (flat/<hex>/fs), made once: the first caller
    // builds it under tmp/ and renames it into place while holding the image's flat lock;
    // concurrent callers wait on that lock and reuse it. Returns {path, image, bytes,
    // entries, created, built (this call made it)}.
    nlohmann::json ensureFlat(const std::string &imageRef);
    // The cached copy's description (as ensureFlat) or null when there is none.
    nlohmann::json flatInfo(const std::string &imageId) const;
    // Remove the cached copy of an image; false when there was none.
    bool removeFlat(const std::string &imageId);
    // Container roots whose container is gone: unmounted and removed; flattened copies
    // that no container root uses (they are a cache, made again on the next use); work
    // left below tmp/ by processes that are gone.
    nlohmann::json gc();
    int cleanTmp();

    const Paths &paths() const { return _paths; }
    const common::Host &host() const { return _host; }

    // Keep a blob or layer from `rm` and `prune` of other processes until this one has
    // recorded the image that uses it (or exits): its hex goes into tmp/<pid>-ingest,
    // which sweep() reads while that process lives. Called before anything is stored.
    void protect(const std::string &digest);

    // A fresh path below tmp/ ("<pid>-<random>-<what>"), not created.
    std::string tempPath(const std::string &what) const;

private:
    std::vector<std::string> namesOf(const std::string &id) const;
    std::set<std::string> protectedDigests() const;
    void removeImage(const nlohmann::json &image, nlohmann::json &report);
    nlohmann::json record(const std::string &id) const;
    nlohmann::json ensureFlatLocked(const nlohmann::json &image); // flat lock held
    bool removeFlatLocked(const std::string &imageId);            // flat lock held

    const common::Host &_host;
    Paths _paths;
    std::string _ingestMarker; // tmp/<pid>-ingest, made by the first protect()
};

// The uncompressed bytes of a compressed file (any filter libarchive reads) in `output`.
void decompressBlob(const std::string &input, const std::string &output);

// "sha256:<hex>" as image lists show it: the first 12 hex digits.
std::string shortId(const std::string &digest);

} // namespace mobileops::storage
