#include "Digest.h"

#include <mobileops/common/Errors.h>

#include <openssl/evp.h>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace mobileops::storage {

Sha256::Sha256() : _ctx(EVP_MD_CTX_new()) {
    if (!_ctx || EVP_DigestInit_ex(_ctx, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(_ctx);
        throw sdk::Error(MO_E_INTERNAL, "sha256: cannot initialise OpenSSL's digest");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(_ctx); }

void Sha256::update(const void *data, size_t len) {
    if (len) EVP_DigestUpdate(_ctx, data, len);
}

std::string Sha256::finish() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(_ctx, md, &n);
    EVP_DigestInit_ex(_ctx, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned int i = 0; i < n; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 0xf];
    }
    return out;
}

std::string sha256Of(const std::string &bytes) {
    Sha256 h;
    h.update(bytes.data(), bytes.size());
    return h.finish();
}

std::string sha256File(const std::string &path) {
    struct File {
        int fd;
        ~File() {
            if (fd >= 0) ::close(fd);
        }
    } file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
    if (file.fd < 0) throw common::sysError("hash " + common::quote(path), errno);
    ::posix_fadvise(file.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    Sha256 h;
    std::vector<char> buf(1 << 20);
    for (;;) {
        ssize_t n = ::read(file.fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("hash " + common::quote(path), errno);
        if (n == 0) break;
        h.update(buf.data(), static_cast<size_t>(n));
    }
    return h.finish();
}

} // namespace mobileops::storage
