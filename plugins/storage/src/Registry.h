// A client for the OCI distribution API (what `docker pull/push` speak): manifests and
// indexes, blobs verified by digest, parallel and resumable downloads, chunked uploads,
// Basic and Bearer-token auth, over HTTP or HTTPS (Poco::Net).
#pragma once

#include "MediaTypes.h"
#include "Reference.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mobileops::storage {

// The platform an index entry is for.
struct Platform {
    std::string os = "linux", architecture = "amd64", variant;
    std::string str() const; // "linux/arm64/v8"
};

struct Descriptor {
    std::string mediaType, digest;
    uint64_t size = 0;
    std::optional<Platform> platform;
};

struct Credentials {
    std::string username, password; // empty: anonymous
};

struct RegistryOptions {
    bool plainHttp = false; // default: true for localhost registries, else HTTPS
    // HTTPS even for a localhost registry (a test server with its own certificate).
    bool forceHttps = false;
    bool tlsVerify = true;
    std::string caFile; // extra CA (PEM) for self-signed test servers
    Credentials credentials;
    unsigned parallel = 3; // concurrent blob transfers
    std::string userAgent = "mobileops";
    unsigned timeoutSeconds = 60; // connect, and each send/receive on an open connection
};

struct ResolvedImage {
    std::string manifestDigest, manifestMediaType, manifestBytes; // the image manifest
    std::string indexDigest; // "" unless the ref named an index/manifest list
    Descriptor config;
    std::vector<Descriptor> layers;
};

// Called from transfer threads (serialize inside if you share state): bytes done and total
// of one blob, by digest.
using TransferProgress =
    std::function<void(const std::string &digest, uint64_t done, uint64_t total)>;

// One client per reference; it keeps the connections and tokens it has got. Use it from one
// thread at a time: fetchBlobs and pushBlobs run their own transfer threads inside.
class RegistryClient {
public:
    RegistryClient(Reference ref, RegistryOptions options);
    ~RegistryClient();
    RegistryClient(const RegistryClient &) = delete;
    RegistryClient &operator=(const RegistryClient &) = delete;

    const Reference &reference() const;

    // GET the manifest by tag or digest (Accept: OCI manifest+index, docker v2 manifest +
    // manifest list); an index picks `platform` (error listing the platforms it has when
    // none matches); verifies every digest it can (the manifest bytes against a digest
    // reference or Docker-Content-Digest).
    ResolvedImage resolve(const Platform &platform = {});

    // Small blobs (a config) into memory, verified.
    std::string fetchBlob(const Descriptor &d);

    // Download blobs in parallel (options.parallel) to `path(d)`: each is written to
    // path(d) + ".partial" and resumed from its size with a Range request when that file
    // exists (a server that ignores Range -> start over); the sha256 is checked (mismatch:
    // ".partial" removed, error names the blob) before the rename to path(d).
    void fetchBlobs(const std::vector<Descriptor> &blobs,
                    const std::function<std::string(const Descriptor &)> &path,
                    const TransferProgress &progress);

    bool hasBlob(const Descriptor &d); // HEAD

    // POST an upload, then PUT (monolithic; PATCH chunks of 8 MiB for big blobs), skipping
    // blobs the registry already has.
    void pushBlobs(const std::vector<std::pair<Descriptor, std::string /*file*/>> &blobs,
                   const TransferProgress &progress);

    // PUT a manifest (or index) under a tag or its digest; returns the digest the registry
    // reports (Docker-Content-Digest), which is checked against the bytes.
    std::string pushManifest(const std::string &tagOrDigest, const std::string &mediaType,
                             const std::string &bytes);

    class Impl;

private:
    std::unique_ptr<Impl> _impl;
};

} // namespace mobileops::storage
