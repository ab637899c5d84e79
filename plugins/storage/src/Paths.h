// Where the storage plugin keeps things, all under one directory (`$MOBILEOPS_ROOT/storage`
// unless `storage.root` is configured), on one filesystem so that every "write under a
// temporary name, then rename" is atomic:
//
//   blobs/sha256/<hex>          content-addressed blobs: layer archives, configs, manifests
//   layers/<hex>/fs             a layer extracted once (hex of its uncompressed digest, the
//                               diffID), overlay-ready: whiteouts as 0/0 character devices,
//                               opaque directories with trusted.overlay.opaque=y
//   containers/<id>/            a container's writable layer (upper/, work/, or layer.img
//                               when its size is limited) and its root (merged/)
//   flat/<hex>/fs               an image flattened once for micro-VMs (hex of the image
//                               id): every layer applied in order, no whiteouts left;
//                               flat/<hex>/info.json says when and how big
//   volumes/<class>/<name>/     default backing of the built-in storage classes
//   snapshots/<id>/<snap>.tar.zst  container snapshots (sha256 recorded)
//   tmp/                        work in progress; anything here is garbage after a crash
#pragma once

#include <string>

namespace mobileops::storage {

class Paths {
public:
    explicit Paths(std::string root) : _root(std::move(root)) {}

    const std::string &root() const { return _root; }
    std::string blobs() const { return _root + "/blobs/sha256"; }
    // "sha256:<hex>" -> blobs/sha256/<hex>; throws on any other form.
    std::string blob(const std::string &digest) const;
    std::string layers() const { return _root + "/layers"; }
    std::string layer(const std::string &diffId) const; // layers/<hex>
    std::string containers() const { return _root + "/containers"; }
    std::string container(const std::string &id) const { return containers() + "/" + id; }
    std::string flats() const { return _root + "/flat"; }
    std::string flat(const std::string &imageId) const; // flat/<hex>
    std::string volumes() const { return _root + "/volumes"; }
    std::string snapshots() const { return _root + "/snapshots"; }
    std::string tmp() const { return _root + "/tmp"; }

    // Make every directory above (0700 where it holds container data).
    void create() const;

private:
    std::string _root;
};

// The hex part of "sha256:<hex>" after checking the form (64 lowercase hex digits);
// throws MO_E_INVALID naming the digest.
std::string digestHex(const std::string &digest);

} // namespace mobileops::storage
