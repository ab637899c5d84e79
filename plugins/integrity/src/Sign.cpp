#include "Sign.h"

#include "Hash.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

namespace mobileops::integrity {

using common::Error;
using common::quote;

namespace {

constexpr size_t kSignatureSize = 64;
constexpr size_t kPublicKeySize = 32;

struct Free {
    void operator()(EVP_PKEY *k) const { EVP_PKEY_free(k); }
    void operator()(BIO *b) const { BIO_free(b); }
    void operator()(EVP_MD_CTX *c) const { EVP_MD_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, Free>;
using Bio = std::unique_ptr<BIO, Free>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Free>;

Bio readBio(const std::string &pem) {
    Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (!bio) throw Error(MO_E_INTERNAL, "cannot allocate an OpenSSL buffer");
    return bio;
}

// What a key that is not an Ed25519 key is instead, for the message.
std::string notEd25519(const std::string &what, EVP_PKEY *key) {
    if (!key) return "not an Ed25519 " + what + ": no PEM " + what + " found";
    const char *type = EVP_PKEY_get0_type_name(key);
    return "not an Ed25519 " + what + ": found " + quote(type ? type : "unknown") + " key";
}

Pkey privateKey(const std::string &pem) {
    Bio bio = readBio(pem);
    Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
    ERR_clear_error();
    if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
        throw Error(MO_E_INVALID, notEd25519("private key", key.get()));
    return key;
}

// A public key PEM, or a private one whose public half is used.
Pkey publicKey(const std::string &pem) {
    Bio bio = readBio(pem);
    Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
    if (!key) {
        Bio again = readBio(pem);
        key.reset(PEM_read_bio_PrivateKey(again.get(), nullptr, nullptr, nullptr));
    }
    ERR_clear_error();
    if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519)
        throw Error(MO_E_INVALID, notEd25519("public key", key.get()));
    return key;
}

std::string toPem(EVP_PKEY *key, bool isPrivate) {
    Bio bio(BIO_new(BIO_s_mem()));
    int ok = bio && (isPrivate ? PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                                          nullptr, nullptr)
                               : PEM_write_bio_PUBKEY(bio.get(), key));
    if (!ok) throw Error(MO_E_INTERNAL, "cannot write an Ed25519 key as PEM");
    char *data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

std::string base64(const unsigned char *data, size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int len =
        EVP_EncodeBlock(reinterpret_cast<unsigned char *>(out.data()), data, static_cast<int>(n));
    out.resize(static_cast<size_t>(len));
    return out;
}

// The 64 bytes of a base64 signature; nullopt for anything else (EVP_DecodeBlock alone
// accepts whitespace and returns the padding as zero bytes).
std::optional<std::vector<unsigned char>> decodeSignature(const std::string &text) {
    if (text.size() != 4 * ((kSignatureSize + 2) / 3)) return std::nullopt;
    for (char c : text.substr(0, text.size() - 2))
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/')
            return std::nullopt;
    if (text.compare(text.size() - 2, 2, "==") != 0) return std::nullopt;
    std::vector<unsigned char> out(text.size() / 4 * 3);
    int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char *>(text.data()),
                            static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    out.resize(kSignatureSize);
    return out;
}

} // namespace

KeyPair generateKey() {
    Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    if (!key) {
        ERR_clear_error();
        throw Error(MO_E_INTERNAL, "cannot generate an Ed25519 key");
    }
    return {toPem(key.get(), true), toPem(key.get(), false)};
}

std::string publicKeyOf(const std::string &privatePem) {
    return toPem(privateKey(privatePem).get(), false);
}

std::string keyId(const std::string &pem) {
    Pkey key = publicKey(pem);
    unsigned char raw[kPublicKeySize];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key.get(), raw, &len) != 1 || len != sizeof raw)
        throw Error(MO_E_INTERNAL, "cannot read the raw Ed25519 public key");
    Sha256 hash;
    hash.update(raw, len);
    return "ed25519:" + toHex(hash.finish().data(), 8);
}

std::string sign(const std::string &privatePem, const std::string &message) {
    Pkey key = privateKey(privatePem);
    MdCtx ctx(EVP_MD_CTX_new());
    unsigned char sig[kSignatureSize];
    size_t len = sizeof sig;
    // Ed25519 hashes the message itself: no digest, one-shot.
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
        EVP_DigestSign(ctx.get(), sig, &len,
                       reinterpret_cast<const unsigned char *>(message.data()),
                       message.size()) != 1) {
        ERR_clear_error();
        throw Error(MO_E_INTERNAL, "Ed25519 signing failed");
    }
    return base64(sig, len);
}

bool verifySignature(const std::string &publicPem, const std::string &message,
                     const std::string &signature) {
    Pkey key = publicKey(publicPem);
    auto sig = decodeSignature(signature);
    if (!sig) return false;
    MdCtx ctx(EVP_MD_CTX_new());
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
              EVP_DigestVerify(ctx.get(), sig->data(), sig->size(),
                               reinterpret_cast<const unsigned char *>(message.data()),
                               message.size()) == 1;
    ERR_clear_error();
    return ok;
}

std::string readKeyFile(const std::string &path, bool requirePrivate) {
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) {
        int err = errno;
        if (err == ENOENT) throw Error(MO_E_NOT_FOUND, "key " + quote(path) + ": no such file");
        throw common::sysError("key " + quote(path), err);
    }
    struct stat st {};
    if (::fstat(fd.fd, &st) < 0) throw common::sysError("key " + quote(path), errno);
    if (!S_ISREG(st.st_mode)) throw Error(MO_E_INVALID, "key " + quote(path) + ": not a file");
    if (requirePrivate && (st.st_mode & 077)) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
        throw Error(-EACCES, "private key " + quote(path) + " is accessible by group or others " +
                                 "(mode " + quote(mode) + "): chmod 600 it");
    }
    std::string data;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("key " + quote(path), errno);
        if (n == 0) break;
        data.append(buf, static_cast<size_t>(n));
        if (data.size() > 64 * 1024)
            throw Error(MO_E_INVALID, "key " + quote(path) + ": too large");
    }
    return data;
}

namespace {

// Create `path` exclusively with `mode` and write `data`; removes it again on failure.
void writeNewFile(const std::string &path, const std::string &data, mode_t mode) {
    common::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (fd.fd < 0) {
        if (errno == EEXIST)
            throw Error(MO_E_EXISTS, quote(path) + " already exists: not overwriting a key");
        throw common::sysError("write key " + quote(path), errno);
    }
    // The umask could have taken bits away from the public key, never added any.
    bool ok = ::fchmod(fd.fd, mode) == 0 &&
              ::write(fd.fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
              ::fsync(fd.fd) == 0;
    if (!ok) {
        int err = errno;
        ::unlink(path.c_str());
        throw common::sysError("write key " + quote(path), err);
    }
}

} // namespace

void writeKeyPair(const KeyPair &keys, const std::string &path) {
    const std::string pub = path + ".pub";
    // Checked first so that an existing .pub fails before the private key is written.
    if (::access(pub.c_str(), F_OK) == 0)
        throw Error(MO_E_EXISTS, quote(pub) + " already exists: not overwriting a key");
    writeNewFile(path, keys.privatePem, 0600);
    try {
        writeNewFile(pub, keys.publicPem, 0644);
    } catch (...) {
        ::unlink(path.c_str());
        throw;
    }
}

} // namespace mobileops::integrity
