// Image references as docker/podman read them: "busybox" -> docker.io/library/busybox:latest,
// "localhost:5000/a/b:1.0", "reg.example/x@sha256:...", "name:tag@sha256:..." (digest wins).
#pragma once

#include <string>

namespace mobileops::storage {

struct Reference {
    std::string registry;   // "docker.io", "localhost:5000", "127.0.0.1:41234"
    std::string repository; // "library/busybox"
    std::string tag;        // "latest" unless a digest alone was given
    std::string digest;     // "" or "sha256:..."

    // Throws MO_E_INVALID naming the reference and what is wrong with it.
    static Reference parse(const std::string &text);

    std::string str() const;      // fully qualified "docker.io/library/busybox:latest"
    std::string familiar() const; // "busybox:latest" for docker.io/library, else str()
    std::string name() const;     // without tag/digest
    bool isLocalhost() const;     // localhost / 127.0.0.0/8 / ::1 registries
    // What a manifest GET asks for: the digest when there is one, else the tag.
    std::string tagOrDigest() const { return digest.empty() ? tag : digest; }
};

} // namespace mobileops::storage
