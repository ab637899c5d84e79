// Ed25519 keys and signatures (Sign.h), with keys from generateKey() and from the openssl
// tool, key files on a temporary directory.
#include "Sign.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>

using namespace mobileops::integrity;
using mobileops::common::Error;
using mobileops::test::run;
using mobileops::test::TempDir;

namespace {

const std::string kMessage = R"({"target":"image:abc","root":"0123"})";

std::string slurp(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

mode_t modeOf(const std::string &path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
}

// The code and message of what `fn` throws.
template <typename Fn> std::pair<int, std::string> thrown(Fn &&fn) {
    try {
        fn();
    } catch (const Error &e) {
        return {e.code(), e.what()};
    }
    ADD_FAILURE() << "nothing thrown";
    return {0, ""};
}

std::string openssl() {
    for (const char *p : {"/usr/bin/openssl", "/bin/openssl"})
        if (::access(p, X_OK) == 0) return p;
    return {};
}

TEST(Sign, RoundTrip) {
    KeyPair keys = generateKey();
    EXPECT_NE(keys.privatePem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);
    EXPECT_NE(keys.publicPem.find("-----BEGIN PUBLIC KEY-----"), std::string::npos);
    std::string sig = sign(keys.privatePem, kMessage);
    EXPECT_EQ(sig.size(), 88u);
    EXPECT_TRUE(verifySignature(keys.publicPem, kMessage, sig));
    // The private key stands for its public half.
    EXPECT_TRUE(verifySignature(keys.privatePem, kMessage, sig));
    EXPECT_EQ(publicKeyOf(keys.privatePem), keys.publicPem);
    // Ed25519 is deterministic.
    EXPECT_EQ(sign(keys.privatePem, kMessage), sig);
}

TEST(Sign, WrongKeyAndTamperedMessageFail) {
    KeyPair keys = generateKey(), other = generateKey();
    std::string sig = sign(keys.privatePem, kMessage);
    EXPECT_FALSE(verifySignature(other.publicPem, kMessage, sig));
    std::string tampered = kMessage;
    tampered[tampered.size() - 3] ^= 1;
    EXPECT_FALSE(verifySignature(keys.publicPem, tampered, sig));
    EXPECT_FALSE(verifySignature(keys.publicPem, kMessage + " ", sig));
}

TEST(Sign, TamperedOrGarbledSignatureIsFalseNotAnError) {
    KeyPair keys = generateKey();
    std::string sig = sign(keys.privatePem, kMessage);
    std::string flipped = sig;
    flipped[10] = flipped[10] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(verifySignature(keys.publicPem, kMessage, flipped));
    for (const std::string &bad :
         {std::string(), std::string("not base64 at all"), sig.substr(0, 86), sig + "AAAA",
          std::string(88, '='), sig.substr(0, 40) + "\n" + sig.substr(41)})
        EXPECT_FALSE(verifySignature(keys.publicPem, kMessage, bad)) << bad;
}

TEST(Sign, RsaAndGarbagePemAreInvalid) {
    TempDir tmp;
    auto r = run({openssl(), "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024",
                  "-out", tmp.path() + "/rsa.pem"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::string rsa = slurp(tmp.path() + "/rsa.pem");
    auto [code, msg] = thrown([&] { sign(rsa, kMessage); });
    EXPECT_EQ(code, MO_E_INVALID);
    EXPECT_EQ(msg, "not an Ed25519 private key: found `RSA` key");
    EXPECT_EQ(thrown([&] { keyId(rsa); }).first, MO_E_INVALID);
    EXPECT_EQ(thrown([&] { publicKeyOf(rsa); }).first, MO_E_INVALID);
    EXPECT_EQ(thrown([&] { verifySignature(rsa, kMessage, std::string(86, 'A') + "=="); }).first,
              MO_E_INVALID);

    for (const std::string &garbage :
         {std::string("hello"), std::string("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END "
                                            "PRIVATE KEY-----\n")}) {
        auto [c, m] = thrown([&] { sign(garbage, kMessage); });
        EXPECT_EQ(c, MO_E_INVALID);
        EXPECT_EQ(m, "not an Ed25519 private key: no PEM private key found");
        EXPECT_EQ(thrown([&] { verifySignature(garbage, kMessage, ""); }).second,
                  "not an Ed25519 public key: no PEM public key found");
    }
    // A public key cannot sign.
    EXPECT_EQ(thrown([&] { sign(generateKey().publicPem, kMessage); }).first, MO_E_INVALID);
}

TEST(Sign, KeyIdIsStableAndTheSameForBothHalves) {
    KeyPair keys = generateKey();
    std::string id = keyId(keys.privatePem);
    EXPECT_EQ(id.size(), 8u + 16u);
    EXPECT_EQ(id.rfind("ed25519:", 0), 0u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 8), std::string::npos) << id;
    EXPECT_EQ(keyId(keys.publicPem), id);
    EXPECT_EQ(keyId(keys.privatePem), id);
    EXPECT_NE(keyId(generateKey().publicPem), id);
}

TEST(Sign, KeyPairFilesHaveTheirModesAndAreNotOverwritten) {
    TempDir tmp;
    const std::string path = tmp.path() + "/signing.pem";
    KeyPair keys = generateKey();
    ::umask(022);
    writeKeyPair(keys, path);
    EXPECT_EQ(modeOf(path), 0600u);
    EXPECT_EQ(modeOf(path + ".pub"), 0644u);
    EXPECT_EQ(readKeyFile(path, true), keys.privatePem);
    EXPECT_EQ(readKeyFile(path + ".pub", false), keys.publicPem);

    KeyPair other = generateKey();
    auto [code, msg] = thrown([&] { writeKeyPair(other, path); });
    EXPECT_EQ(code, MO_E_EXISTS);
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_EQ(slurp(path), keys.privatePem);

    // Only the .pub exists: refused, and no private key is left behind.
    const std::string second = tmp.path() + "/second.pem";
    tmp.file("second.pem.pub", "x");
    EXPECT_EQ(thrown([&] { writeKeyPair(other, second); }).first, MO_E_EXISTS);
    EXPECT_NE(::access(second.c_str(), F_OK), 0);
}

TEST(Sign, PrivateKeyReadableByOthersIsRefused) {
    TempDir tmp;
    const std::string path = tmp.path() + "/k.pem";
    writeKeyPair(generateKey(), path);
    ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
    auto [code, msg] = thrown([&] { readKeyFile(path, true); });
    EXPECT_EQ(code, -EACCES);
    EXPECT_EQ(msg, "private key `" + path +
                       "` is accessible by group or others (mode `0644`): " + "chmod 600 it");
    EXPECT_NO_THROW(readKeyFile(path, false)); // verifying with it needs no secrecy
    ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
    EXPECT_EQ(thrown([&] { readKeyFile(path, true); }).first, -EACCES);
}

TEST(Sign, MissingKeyFileIsNotFound) {
    TempDir tmp;
    auto [code, msg] = thrown([&] { readKeyFile(tmp.path() + "/nope.pem", false); });
    EXPECT_EQ(code, MO_E_NOT_FOUND);
    EXPECT_EQ(msg, "key `" + tmp.path() + "/nope.pem`: no such file");
    EXPECT_EQ(thrown([&] { readKeyFile(tmp.path(), false); }).first, MO_E_INVALID);
}

TEST(Sign, KeyFromTheOpensslToolWorks) {
    if (openssl().empty()) GTEST_SKIP() << "no openssl tool on this host";
    TempDir tmp;
    const std::string key = tmp.path() + "/tool.pem", pub = tmp.path() + "/tool.pub";
    auto r = run({openssl(), "genpkey", "-algorithm", "ed25519", "-out", key});
    ASSERT_EQ(r.status, 0) << r.err;
    r = run({openssl(), "pkey", "-in", key, "-pubout", "-out", pub});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
    std::string privatePem = readKeyFile(key, true);
    std::string publicPem = readKeyFile(pub, false);
    EXPECT_EQ(publicKeyOf(privatePem), publicPem);
    EXPECT_EQ(keyId(publicPem), keyId(privatePem));
    std::string sig = sign(privatePem, kMessage);
    EXPECT_TRUE(verifySignature(publicPem, kMessage, sig));

    // And the other way: the openssl tool verifies our signature.
    tmp.file("msg", kMessage);
    std::ofstream(tmp.path() + "/sig.b64") << sig;
    r = run({"/usr/bin/base64", "-d", tmp.path() + "/sig.b64"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::ofstream(tmp.path() + "/sig.bin", std::ios::binary) << r.out;
    r = run({openssl(), "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in",
             tmp.path() + "/msg", "-sigfile", tmp.path() + "/sig.bin"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
}

} // namespace
