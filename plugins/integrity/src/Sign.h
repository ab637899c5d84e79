// Ed25519 signatures over manifests, with OpenSSL's libcrypto (EVP_PKEY_ED25519). Keys are
// PEM files as `openssl genpkey -algorithm ed25519` writes them: PKCS#8 private keys,
// SubjectPublicKeyInfo public keys, so operators can make and inspect them with the
// openssl tool as well as with `mobileops integrity keygen`.
#pragma once

#include <string>

namespace mobileops::integrity {

struct KeyPair {
    std::string privatePem;
    std::string publicPem;
};

// A fresh key pair.
KeyPair generateKey();

// The public key of a private one. Throws common::Error(MO_E_INVALID) when the PEM is not
// an Ed25519 private key.
std::string publicKeyOf(const std::string &privatePem);

// "ed25519:" + the first 16 hex digits of sha256 of the raw 32-byte public key: how
// messages and records name a key. Accepts a public or a private PEM.
std::string keyId(const std::string &pem);

// The signature of `message` (base64, 88 characters). Throws MO_E_INVALID for a key that
// is not an Ed25519 private key.
std::string sign(const std::string &privatePem, const std::string &message);

// True when `signature` (base64) is `publicPem`'s signature of `message`; false for any
// mismatch, including a malformed signature. Throws MO_E_INVALID only for a key that is
// not an Ed25519 public key (a private key is accepted: its public half is used).
bool verifySignature(const std::string &publicPem, const std::string &message,
                     const std::string &signature);

// Read a key file; throws naming the file (MO_E_NOT_FOUND, MO_E_PERMISSION) and, for
// `requirePrivate`, refuses a private key file readable by group or others
// (MO_E_PERMISSION, like ssh does).
std::string readKeyFile(const std::string &path, bool requirePrivate);

// Write a private key (mode 0600) and its public key (0644) to `path` and `path`.pub,
// refusing to overwrite either (MO_E_EXISTS) and leaving neither on failure.
void writeKeyPair(const KeyPair &keys, const std::string &path);

} // namespace mobileops::integrity
