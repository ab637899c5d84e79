// sha256 digests in the "sha256:<64 hex>" form the OCI image spec uses for blobs and diffIDs,
// computed with OpenSSL's EVP (which takes the CPU's SHA extensions where it has them, and
// every byte of every blob and layer goes through here).
#pragma once

#include <cstddef>
#include <string>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace mobileops::storage {

class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256 &) = delete;
    Sha256 &operator=(const Sha256 &) = delete;

    void update(const void *data, size_t len);
    // "sha256:<hex>"; the object is reset and can hash again.
    std::string finish();

private:
    EVP_MD_CTX *_ctx;
};

std::string sha256Of(const std::string &bytes);
// Throws naming the file when it cannot be read.
std::string sha256File(const std::string &path);

} // namespace mobileops::storage
