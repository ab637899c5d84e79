// The integrity service's records and verifications over the state store.
//
// Targets (the keys of kind "manifest" records):
//   layer:<diffId>   an image layer as the storage plugin extracted it; the record keeps
//                    the layer's directory
//   image:<id>       an image: its layers (bottom first) and their roots, and the image
//                    root over them; layers are verified through their own records
//   container:<id>   (verify only) the container's image layers, and the drift of its
//                    writable layer against the image
//   asset:<name>     a registered asset's path
//   path:<abs>       any directory or file (`integrity record PATH`)
//
// Records:
//   kind "manifest"   key target  {target, path, recorded, root, files, bytes}
//   kind "manifest-entries"  key target  Manifest::toJson() (apart, so that listing the
//                                 manifests never parses every path of every one)
//                                 images: {target, image, layers: [{diffId, root}], root,
//                                 recorded}
//   kind "signature"  key "<target> <keyId>"  {target, keyId, root, statement, signature,
//                                 signed}
#pragma once

#include "Manifest.h"

#include <mobileops/common/Host.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::integrity {

struct VerifyOptions {
    std::vector<std::string> keys; // public key files: a valid signature by one is needed
    bool requireSignature = false; // ... even when `keys` is empty (then: trusted keys)
    size_t first = 10;             // how many differing paths `first` lists
    bool quiet = true;             // no progress on the terminal
};

class IntegrityService {
public:
    explicit IntegrityService(const common::Host &host);

    // "PATH" (absolute or relative) -> "path:<canonical>"; other forms checked and kept.
    static std::string normalize(const std::string &target);

    // Scan `path` (layers, assets, paths) or compose the image record from its layers'
    // records (image: `path` unused). {target, root, files, bytes, seconds}
    nlohmann::json record(const std::string &target, const std::string &path);

    // {target, kind, clean, root, checked: {files, bytes, seconds}, problems, first: [...],
    //  diff (trees) | layers: [{diffId, path, clean, diff}] (images, containers),
    //  changes (containers: the writable layer against the image),
    //  signature: {required, valid, keyId, message}}
    // Throws MO_E_NOT_FOUND when nothing was recorded for the target.
    nlohmann::json verify(const std::string &target, const VerifyOptions &options);

    // The recorded manifest ({target, path, recorded, root, files, bytes, entries: [{path,
    // type, mode, uid, gid, size, target, digest}]}).
    nlohmann::json show(const std::string &target) const;
    // Every record: [{target, path, root, files, bytes, recorded, signatures: [keyId]}].
    nlohmann::json list() const;
    bool forget(const std::string &target);

    // Sign the target's recorded root with the private key in `keyFile`.
    // {target, keyId, root, signature}
    nlohmann::json sign(const std::string &target, const std::string &keyFile);

    // Drop records whose subject is gone (layer directories, images, assets, paths) and
    // signatures of dropped records. {removed: [target...]}
    nlohmann::json gc();

    // What a signature covers: {"format": "mobileops-manifest-v1", "target", "root"}
    // serialised with sorted keys and no spaces.
    static std::string statement(const std::string &target, const std::string &root);

private:
    nlohmann::json mustRecord(const std::string &target) const;
    Manifest manifestOf(const nlohmann::json &record) const;
    nlohmann::json recordImage(const std::string &target);
    nlohmann::json verifyTree(const nlohmann::json &record, const VerifyOptions &options,
                              Manifest *live);
    nlohmann::json verifyImage(const std::string &imageId, const VerifyOptions &options,
                               std::vector<Manifest> *layers);
    nlohmann::json verifyContainer(const std::string &containerId, const VerifyOptions &options);
    nlohmann::json checkSignature(const std::string &target, const std::string &root,
                                  const VerifyOptions &options) const;
    std::vector<std::string> trustedKeys() const;

    const common::Host &_host;
};

} // namespace mobileops::integrity
