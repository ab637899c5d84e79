// The registry client against a real docker-registry on loopback: push and pull round trips,
// indexes and platforms, errors, resumed and corrupt partial downloads, Basic and token
// auth, TLS with a private CA, parallel and chunked transfers; and against a small Poco
// server for what a real registry does not do (ignore Range, redirect, lie about digests).
#include "Registry.h"
#include "Digest.h"
#include "RegistryServer.h"

#include <mobileops/abi.h>
#include <mobileops/plugin.hpp>

#include <Poco/Net/HTTPBasicCredentials.h>
#include <Poco/URI.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <ranges>
#include <set>

using namespace mobileops::storage;
using namespace mobileops::test;
using mobileops::sdk::Error;
using nlohmann::json;

namespace {

constexpr const char *passwordHash = // bcrypt of "pw", cost 5 to keep the tests quick
    "$2b$05$LOsuVqBGxBJ1lj.I8BoD.O/hcPXM7nyo9xYB35FU0Y7nppyFOT/UK";

std::string randomBytes(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = rng();
        for (size_t j = 0; j < 8 && i + j < n; ++j) s[i + j] = static_cast<char>(v >> (8 * j));
    }
    return s;
}

bool exists(const std::string &path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
}

size_t count(const std::string &haystack, const std::string &needle) {
    size_t n = 0;
    for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1))
        ++n;
    return n;
}

template <class F> Error errorOf(F &&f) {
    try {
        f();
    } catch (const Error &e) {
        return e;
    }
    ADD_FAILURE() << "no error was thrown";
    return Error(0, "");
}

struct Blob {
    Descriptor d;
    std::string bytes, file;
};

Blob makeBlob(const TempDir &dir, std::string bytes, const std::string &mediaType) {
    Blob b;
    b.d.mediaType = mediaType;
    b.d.digest = sha256Of(bytes);
    b.d.size = bytes.size();
    b.bytes = std::move(bytes);
    b.file = dir.file("push/" + b.d.digest.substr(7), b.bytes);
    return b;
}

json descriptorJson(const Descriptor &d) {
    return {{"mediaType", d.mediaType}, {"digest", d.digest}, {"size", d.size}};
}

struct Image {
    Blob config;
    std::vector<Blob> layers;
    std::string manifest, digest;

    std::vector<std::pair<Descriptor, std::string>> blobs() const {
        std::vector<std::pair<Descriptor, std::string>> all{{config.d, config.file}};
        for (auto &l : layers) all.emplace_back(l.d, l.file);
        return all;
    }
};

Image makeImage(const TempDir &dir, const std::string &arch, std::vector<size_t> layerSizes,
                uint64_t seed) {
    Image img;
    json config = {{"architecture", arch},
                   {"os", "linux"},
                   {"config", json::object()},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}};
    img.config = makeBlob(dir, config.dump(), media::kOciConfig);
    json layers = json::array();
    for (size_t size : layerSizes) {
        img.layers.push_back(makeBlob(dir, randomBytes(size, seed++), media::kOciLayerGzip));
        layers.push_back(descriptorJson(img.layers.back().d));
    }
    img.manifest = json{
        {"schemaVersion", 2},
        {"mediaType", media::kOciManifest},
        {"config", descriptorJson(img.config.d)},
        {"layers",
         layers}}.dump();
    img.digest = sha256Of(img.manifest);
    return img;
}

RegistryClient client(const std::string &ref, RegistryOptions options = {}) {
    return RegistryClient(Reference::parse(ref), std::move(options));
}

void push(RegistryClient &c, const Image &img, const std::string &tag) {
    c.pushBlobs(img.blobs(), {});
    c.pushManifest(tag, media::kOciManifest, img.manifest);
}

std::string base64Url(const std::string &in) {
    static const char *table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : in) {
        acc = (acc << 8) | c;
        bits += 8;
        while (bits >= 6) out += table[(acc >> (bits -= 6)) & 63];
    }
    if (bits > 0) out += table[(acc << (6 - bits)) & 63];
    return out;
}

// Issues RS256 JWTs the way docker's token servers do: the signing certificate in the
// `x5c` header, the registry trusting it through its rootcertbundle.
class TokenServer {
public:
    struct User {
        std::string password;
        std::set<std::string> actions;
    };
    static constexpr const char *service = "mobileops-test";
    static constexpr const char *issuer = "mobileops-test-issuer";

    TokenServer(const TempDir &dir, std::map<std::string, User> users)
        : _users(std::move(users)), _keyFile(dir.path() + "/token.key"),
          _certFile(dir.path() + "/token.crt") {
        auto r = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                      "-keyout", _keyFile, "-out", _certFile, "-days", "2", "-subj",
                      "/CN=mobileops test token issuer"});
        if (r.status != 0) throw std::runtime_error("openssl req: " + r.err);
        std::string pem = readFile(_certFile);
        for (std::string line; auto &&l : std::views::split(pem, '\n')) {
            line.assign(l.begin(), l.end());
            if (line.find("-----") == std::string::npos) _x5c += line;
        }
        _http = std::make_unique<LoopbackHttpServer>(
            [this](auto &req, auto &res) { handle(req, res); });
    }

    std::string realm() const { return _http->origin() + "/token"; }
    const std::string &cert() const { return _certFile; }
    std::vector<std::string> scopes() const {
        std::lock_guard lock(_mutex);
        return _scopes;
    }

private:
    void handle(Poco::Net::HTTPServerRequest &req, Poco::Net::HTTPServerResponse &res) {
        std::string scope, askedService;
        for (auto &[k, v] : Poco::URI(req.getURI()).getQueryParameters()) {
            if (k == "scope") scope = v;
            if (k == "service") askedService = v;
        }
        {
            std::lock_guard lock(_mutex);
            _scopes.push_back(scope);
        }
        auto refuse = [&](const std::string &message) {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_UNAUTHORIZED);
            res.setContentType("application/json");
            res.send()
                << json{{"errors", {{{"code", "UNAUTHORIZED"}, {"message", message}}}}}.dump();
        };
        if (!req.hasCredentials()) return refuse("anonymous access is not allowed");
        Poco::Net::HTTPBasicCredentials creds(req);
        auto user = _users.find(creds.getUsername());
        if (user == _users.end() || user->second.password != creds.getPassword())
            return refuse("wrong user name or password");

        // scope = repository:NAME:ACTIONS; grant what the user may of what was asked.
        json access = json::array();
        size_t first = scope.find(':'), last = scope.rfind(':');
        if (first != std::string::npos && last > first) {
            json granted = json::array();
            std::string actions = scope.substr(last + 1);
            for (auto &&a : std::views::split(actions, ',')) {
                std::string action(a.begin(), a.end());
                if (user->second.actions.count(action)) granted.push_back(action);
            }
            access.push_back({{"type", scope.substr(0, first)},
                              {"name", scope.substr(first + 1, last - first - 1)},
                              {"actions", granted}});
        }
        auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
        json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {_x5c}}};
        json claims = {{"iss", issuer},
                       {"sub", user->first},
                       {"aud", askedService},
                       {"exp", now + 300},
                       {"nbf", now - 10},
                       {"iat", now},
                       {"jti", std::to_string(++_issued)},
                       {"access", access}};
        std::string token = base64Url(header.dump()) + "." + base64Url(claims.dump());
        token += "." + base64Url(sign(token));
        res.setContentType("application/json");
        // Docker Hub answers "token", OAuth-style servers "access_token": serve both forms.
        res.send() << json{
            {user->first == "reader" ? "access_token" : "token", token},
            {"expires_in",
             300}}.dump();
    }

    std::string sign(const std::string &data) {
        std::string pem = readFile(_keyFile);
        BIO *bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
        EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
        BIO_free(bio);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        size_t len = 0;
        std::string sig;
        if (key && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSignUpdate(ctx, data.data(), data.size()) == 1 &&
            EVP_DigestSignFinal(ctx, nullptr, &len) == 1) {
            sig.resize(len);
            if (EVP_DigestSignFinal(ctx, reinterpret_cast<unsigned char *>(sig.data()), &len) != 1)
                sig.clear();
            sig.resize(len);
        }
        EVP_MD_CTX_free(ctx);
        EVP_PKEY_free(key);
        return sig;
    }

    std::map<std::string, User> _users;
    std::string _keyFile, _certFile, _x5c;
    mutable std::mutex _mutex;
    std::vector<std::string> _scopes;
    std::atomic<int> _issued{0};
    std::unique_ptr<LoopbackHttpServer> _http; // last: its threads use the members above
};

class RegistryTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (!RegistryServer::available())
            GTEST_SKIP() << "docker-registry is not installed (Debian package docker-registry)";
    }

    // Blobs land in `out/<hex>`.
    std::function<std::string(const Descriptor &)> outPath() {
        std::filesystem::create_directories(tmp.path() + "/out");
        return [this](const Descriptor &d) { return tmp.path() + "/out/" + d.digest.substr(7); };
    }

    void expectPulled(const std::vector<Blob> &blobs) {
        auto path = outPath();
        for (auto &b : blobs) {
            EXPECT_EQ(readFile(path(b.d)), b.bytes) << b.d.digest;
            EXPECT_FALSE(exists(path(b.d) + ".partial"));
        }
    }

    TempDir tmp;
};

TEST_F(RegistryTest, PushThenPullGivesTheSameBytes) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", {300 << 10, 1, 0}, 1);
    auto c = client(reg.host() + "/test/app:1.0");

    std::mutex m;
    std::map<std::string, std::pair<uint64_t, uint64_t>> last;
    auto record = [&](const std::string &digest, uint64_t done, uint64_t total) {
        std::lock_guard lock(m);
        last[digest] = {done, total};
    };
    c.pushBlobs(img.blobs(), record);
    for (auto &[d, file] : img.blobs()) EXPECT_EQ(last[d.digest], std::make_pair(d.size, d.size));
    EXPECT_EQ(c.pushManifest("1.0", media::kOciManifest, img.manifest), img.digest);

    ResolvedImage got = c.resolve();
    EXPECT_EQ(got.manifestDigest, img.digest);
    EXPECT_EQ(got.manifestMediaType, media::kOciManifest);
    EXPECT_EQ(got.manifestBytes, img.manifest);
    EXPECT_EQ(got.indexDigest, "");
    EXPECT_EQ(got.config.digest, img.config.d.digest);
    EXPECT_EQ(got.config.size, img.config.d.size);
    EXPECT_EQ(got.config.mediaType, media::kOciConfig);
    ASSERT_EQ(got.layers.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(got.layers[i].digest, img.layers[i].d.digest);
        EXPECT_EQ(got.layers[i].size, img.layers[i].d.size);
        EXPECT_EQ(got.layers[i].mediaType, media::kOciLayerGzip);
    }

    EXPECT_EQ(c.fetchBlob(got.config), img.config.bytes);
    last.clear();
    c.fetchBlobs(got.layers, outPath(), record);
    expectPulled(img.layers);
    for (auto &l : img.layers) EXPECT_EQ(last[l.d.digest], std::make_pair(l.d.size, l.d.size));

    EXPECT_TRUE(c.hasBlob(img.config.d));
    Descriptor absent{media::kOciLayerGzip, sha256Of("not there"), 9, {}};
    EXPECT_FALSE(c.hasBlob(absent));

    // The same image by digest, and a second push that finds every blob already there.
    auto byDigest = client(reg.host() + "/test/app@" + img.digest);
    EXPECT_EQ(byDigest.resolve().manifestBytes, img.manifest);
    size_t uploads = count(reg.log(), "\"POST /v2/test/app/blobs/uploads/");
    EXPECT_EQ(uploads, 4u);
    c.pushBlobs(img.blobs(), {});
    EXPECT_EQ(count(reg.log(), "\"POST /v2/test/app/blobs/uploads/"), uploads);
}

TEST_F(RegistryTest, IndexPicksThePlatformAndListsThemWhenNoneMatches) {
    RegistryServer reg;
    Image amd = makeImage(tmp, "amd64", {1000}, 10);
    Image arm = makeImage(tmp, "arm64", {2000}, 20);
    auto c = client(reg.host() + "/test/multi:2");
    c.pushBlobs(amd.blobs(), {});
    c.pushBlobs(arm.blobs(), {});
    c.pushManifest(amd.digest, media::kOciManifest, amd.manifest);
    c.pushManifest(arm.digest, media::kOciManifest, arm.manifest);
    json index = {{"schemaVersion", 2},
                  {"mediaType", media::kOciIndex},
                  {"manifests",
                   {{{"mediaType", media::kOciManifest},
                     {"digest", arm.digest},
                     {"size", arm.manifest.size()},
                     {"platform", {{"architecture", "arm64"}, {"os", "linux"}, {"variant", "v8"}}}},
                    {{"mediaType", media::kOciManifest},
                     {"digest", amd.digest},
                     {"size", amd.manifest.size()},
                     {"platform", {{"architecture", "amd64"}, {"os", "linux"}}}}}}};
    std::string indexBytes = index.dump();
    c.pushManifest("2", media::kOciIndex, indexBytes);

    ResolvedImage got = c.resolve();
    EXPECT_EQ(got.indexDigest, sha256Of(indexBytes));
    EXPECT_EQ(got.manifestDigest, amd.digest);
    EXPECT_EQ(got.config.digest, amd.config.d.digest);
    EXPECT_EQ(c.fetchBlob(got.config), amd.config.bytes);

    EXPECT_EQ(c.resolve({"linux", "arm64", "v8"}).manifestDigest, arm.digest);
    EXPECT_EQ(c.resolve({"linux", "arm64", ""}).manifestDigest, arm.digest);

    Error e = errorOf([&] { c.resolve({"linux", "s390x", ""}); });
    EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
    EXPECT_EQ(std::string(e.what()), "pull `" + reg.host() +
                                         "/test/multi:2`: no image for `linux/s390x` in the "
                                         "index (it has `linux/arm64/v8`, `linux/amd64`)");
    e = errorOf([&] { c.resolve({"linux", "arm64", "v7"}); });
    EXPECT_NE(std::string(e.what()).find("no image for `linux/arm64/v7`"), std::string::npos);
}

TEST_F(RegistryTest, UnknownTagAndBlobAre404sNamingTheReference) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", {100}, 30);
    auto c = client(reg.host() + "/test/app:1");
    push(c, img, "1");

    Error e = errorOf([&] { client(reg.host() + "/test/app:nope").resolve(); });
    EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + reg.host() + "/test/app:nope`: manifest unknown (404)");

    Descriptor absent{media::kOciLayerGzip, sha256Of("absent"), 6, {}};
    e = errorOf([&] { c.fetchBlob(absent); });
    EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
    EXPECT_EQ(std::string(e.what()), "pull `" + reg.host() + "/test/app:1`: blob `" +
                                         absent.digest + "`: blob unknown to registry (404)");
    e = errorOf([&] { c.fetchBlobs({absent}, outPath(), {}); });
    EXPECT_EQ(std::string(e.what()), "pull `" + reg.host() + "/test/app:1`: blob `" +
                                         absent.digest + "`: blob unknown to registry (404)");

    // A manifest naming blobs the registry does not have is refused by it.
    Image orphan = makeImage(tmp, "amd64", {50}, 31);
    e = errorOf([&] { c.pushManifest("orphan", media::kOciManifest, orphan.manifest); });
    EXPECT_EQ(std::string(e.what()).rfind("push `" + reg.host() + "/test/app:orphan`: ", 0), 0u)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("(400)"), std::string::npos) << e.what();
}

TEST_F(RegistryTest, ConnectionRefusedNamesHostAndPort) {
    uint16_t port = freePort();
    std::string host = "127.0.0.1:" + std::to_string(port);
    Error e = errorOf([&] { client(host + "/x/y:1").resolve(); });
    EXPECT_EQ(e.code(), -ECONNREFUSED);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + host + "/x/y:1`: connect to `" + host + "`: connection refused");
}

// A server that takes the connection and never answers (nobody calls accept()).
TEST_F(RegistryTest, SilentServerTimesOutNamingHostAndPort) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    ASSERT_EQ(::listen(s, 8), 0);
    ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr *>(&a), &len), 0);
    std::string host = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    RegistryOptions opts;
    opts.timeoutSeconds = 1;
    Error e = errorOf([&] { client(host + "/x/y:1", opts).resolve(); });
    ::close(s);
    EXPECT_EQ(e.code(), -ETIMEDOUT);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + host + "/x/y:1`: `" + host + "`: no answer within 1s");
}

TEST_F(RegistryTest, CorruptPartialDownloadIsDetectedAndRemoved) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", {4 << 20}, 40);
    auto c = client(reg.host() + "/test/app:1");
    push(c, img, "1");
    auto path = outPath();
    const Blob &layer = img.layers[0];
    std::string partial = path(layer.d) + ".partial";
    { std::ofstream(partial, std::ios::binary) << randomBytes(1 << 20, 999); }
    Error e = errorOf([&] { c.fetchBlobs({layer.d}, path, {}); });
    EXPECT_EQ(e.code(), MO_E_INVALID);
    EXPECT_EQ(std::string(e.what()).rfind("pull `" + reg.host() + "/test/app:1`: blob `" +
                                              layer.d.digest + "`: digest mismatch: ",
                                          0),
              0u)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("(the download was removed)"), std::string::npos);
    EXPECT_FALSE(exists(partial));
    EXPECT_FALSE(exists(path(layer.d)));

    c.fetchBlobs({layer.d}, path, {});
    expectPulled(img.layers);
}

TEST_F(RegistryTest, PartialDownloadIsResumedWithARangeRequest) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", {4 << 20}, 50);
    auto c = client(reg.host() + "/test/app:1");
    push(c, img, "1");
    auto path = outPath();
    const Blob &layer = img.layers[0];
    const size_t have = 3 << 19; // 1.5 MiB
    { std::ofstream(path(layer.d) + ".partial", std::ios::binary) << layer.bytes.substr(0, have); }
    uint64_t firstDone = UINT64_MAX;
    c.fetchBlobs({layer.d}, path, [&](const std::string &, uint64_t done, uint64_t) {
        if (firstDone == UINT64_MAX) firstDone = done;
    });
    expectPulled(img.layers);
    EXPECT_EQ(firstDone, have);
    // Combined log format: "GET /v2/test/app/blobs/sha256:... HTTP/1.1" 206 <bytes sent>
    std::string sent = std::to_string(layer.bytes.size() - have);
    EXPECT_EQ(count(reg.log(),
                    "\"GET /v2/test/app/blobs/" + layer.d.digest + " HTTP/1.1\" 206 " + sent + " "),
              1u)
        << reg.log();

    // A partial download that is already complete needs no request at all.
    std::filesystem::rename(path(layer.d), path(layer.d) + ".partial");
    size_t gets = count(reg.log(), "\"GET /v2/test/app/blobs/");
    c.fetchBlobs({layer.d}, path, {});
    expectPulled(img.layers);
    EXPECT_EQ(count(reg.log(), "\"GET /v2/test/app/blobs/"), gets);
}

// What the real registry never does: answer 200 to a Range request, redirect blobs to
// another host, send content that does not match its digest.
class OddRegistry {
public:
    OddRegistry()
        : _storage([this](auto &req, auto &res) {
              std::lock_guard lock(_mutex);
              storageAuth += req.has("Authorization") ? "y" : "n";
              sendBody(res, blobs.at("sha256:" + req.getURI().substr(9)));
          }),
          _api([this](auto &req, auto &res) { handle(req, res); }) {}

    std::string host() const { return "127.0.0.1:" + std::to_string(_api.port()); }

    std::map<std::string, std::string> blobs, lies, redirected; // by digest
    std::string manifestBody, manifestDigestHeader;
    std::vector<std::string> ranges;  // Range headers seen
    std::string apiAuth, storageAuth; // one letter per request: Authorization sent or not

private:
    static void sendBody(Poco::Net::HTTPServerResponse &res, const std::string &body) {
        res.setContentType("application/octet-stream");
        res.setContentLength64(static_cast<Poco::Int64>(body.size()));
        res.send().write(body.data(), static_cast<std::streamsize>(body.size()));
    }

    void handle(Poco::Net::HTTPServerRequest &req, Poco::Net::HTTPServerResponse &res) {
        std::lock_guard lock(_mutex);
        if (!req.has("Authorization")) {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_UNAUTHORIZED);
            res.set("WWW-Authenticate", "Basic realm=\"odd\"");
            res.setContentLength(0);
            res.send();
            return;
        }
        apiAuth += "y";
        std::string uri = req.getURI();
        const std::string blobPrefix = "/v2/test/app/blobs/";
        if (uri.rfind(blobPrefix, 0) == 0) {
            std::string digest = uri.substr(blobPrefix.size());
            ranges.push_back(req.get("Range", ""));
            if (redirected.count(digest)) {
                res.setStatus(Poco::Net::HTTPResponse::HTTP_TEMPORARY_REDIRECT);
                res.set("Location", _storage.origin() + "/storage/" + digest.substr(7));
                res.setContentLength(0);
                res.send();
            } else if (lies.count(digest)) {
                sendBody(res, lies[digest]);
            } else {
                sendBody(res, blobs.at(digest));
            }
            return;
        }
        res.setContentType(media::kOciManifest);
        res.set("Docker-Content-Digest", manifestDigestHeader);
        res.setContentLength64(static_cast<Poco::Int64>(manifestBody.size()));
        res.send() << manifestBody;
    }

    std::mutex _mutex;
    LoopbackHttpServer _storage, _api;
};

TEST_F(RegistryTest, ServerIgnoringRangeIsDownloadedAgainFromTheStart) {
    OddRegistry odd;
    Blob blob = makeBlob(tmp, randomBytes(3 << 20, 60), media::kOciLayerGzip);
    odd.blobs[blob.d.digest] = blob.bytes;
    auto path = outPath();
    { std::ofstream(path(blob.d) + ".partial", std::ios::binary) << blob.bytes.substr(0, 1000); }
    RegistryOptions opts;
    opts.credentials = {"u", "p"};
    client(odd.host() + "/test/app:1", opts).fetchBlobs({blob.d}, path, {});
    expectPulled({blob});
    EXPECT_EQ(odd.ranges, std::vector<std::string>{"bytes=1000-"});
}

TEST_F(RegistryTest, RedirectedBlobsAreFetchedWithoutTheRegistryCredentials) {
    OddRegistry odd;
    Blob blob = makeBlob(tmp, randomBytes(100 << 10, 61), media::kOciLayerGzip);
    odd.blobs[blob.d.digest] = blob.bytes;
    odd.redirected[blob.d.digest] = "";
    RegistryOptions opts;
    opts.credentials = {"u", "p"};
    auto c = client(odd.host() + "/test/app:1", opts);
    c.fetchBlobs({blob.d}, outPath(), {});
    expectPulled({blob});
    EXPECT_EQ(c.fetchBlob(blob.d), blob.bytes);
    EXPECT_EQ(odd.apiAuth, "yy");
    EXPECT_EQ(odd.storageAuth, "nn");
}

TEST_F(RegistryTest, ContentNotMatchingItsDigestIsRefused) {
    OddRegistry odd;
    Blob blob = makeBlob(tmp, randomBytes(10000, 62), media::kOciLayerGzip);
    odd.blobs[blob.d.digest] = blob.bytes;
    odd.lies[blob.d.digest] = randomBytes(10000, 63);
    RegistryOptions opts;
    opts.credentials = {"u", "p"};
    auto c = client(odd.host() + "/test/app:1", opts);
    auto path = outPath();

    Error e = errorOf([&] { c.fetchBlobs({blob.d}, path, {}); });
    EXPECT_EQ(e.code(), MO_E_INVALID);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + odd.host() + "/test/app:1`: blob `" + blob.d.digest +
                  "`: digest mismatch: the content hashes "
                  "to `" +
                  sha256Of(odd.lies[blob.d.digest]) + "` (the download was removed)");
    EXPECT_FALSE(exists(path(blob.d) + ".partial"));
    EXPECT_FALSE(exists(path(blob.d)));
    e = errorOf([&] { c.fetchBlob(blob.d); });
    EXPECT_NE(std::string(e.what()).find("digest mismatch"), std::string::npos) << e.what();

    // A blob longer than its descriptor says is cut off, not stored.
    odd.lies[blob.d.digest] = blob.bytes + "tail";
    e = errorOf([&] { c.fetchBlobs({blob.d}, path, {}); });
    EXPECT_NE(std::string(e.what()).find("sent more than the 10000 bytes"), std::string::npos)
        << e.what();
    EXPECT_FALSE(exists(path(blob.d) + ".partial"));

    Image img = makeImage(tmp, "amd64", {10}, 64);
    odd.manifestBody = img.manifest;
    odd.manifestDigestHeader = sha256Of("something else");
    e = errorOf([&] { c.resolve(); });
    EXPECT_EQ(std::string(e.what()),
              "pull `" + odd.host() + "/test/app:1`: manifest `1`: the content hashes to `" +
                  img.digest + "` but the registry says `" + odd.manifestDigestHeader + "`");
    odd.manifestDigestHeader = "";
    EXPECT_EQ(c.resolve().manifestDigest, img.digest);
    e = errorOf([&] { client(odd.host() + "/test/app@" + sha256Of("x"), opts).resolve(); });
    EXPECT_NE(std::string(e.what()).find("digest mismatch: the registry sent `" + img.digest),
              std::string::npos)
        << e.what();
}

// A server that refuses an upload without reading it closes on a client still writing:
// an error naming the server, not a SIGPIPE that kills the process.
TEST_F(RegistryTest, ServerDroppingAnUploadIsAnErrorNotASignal) {
    LoopbackHttpServer server([](auto &req, auto &res) {
        if (req.getMethod() == "HEAD") {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_NOT_FOUND);
        } else if (req.getMethod() == "POST") {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_ACCEPTED);
            res.set("Location", "/v2/test/app/blobs/uploads/1");
        } else {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_REQUESTENTITYTOOLARGE);
            res.setKeepAlive(false);
        }
        res.setContentLength(0);
        res.send();
    });
    Blob blob = makeBlob(tmp, randomBytes(6 << 20, 65), media::kOciLayerGzip);
    auto c = client("127.0.0.1:" + std::to_string(server.port()) + "/test/app:1");
    Error e = errorOf([&] { c.pushBlobs({{blob.d, blob.file}}, {}); });
    EXPECT_EQ(e.code(), -ECONNRESET);
    EXPECT_NE(std::string(e.what()).find("blob `" + blob.d.digest +
                                         "`: `127.0.0.1:" + std::to_string(server.port()) +
                                         "`: the server closed the connection while the body "
                                         "was sent"),
              std::string::npos)
        << e.what();
}

TEST_F(RegistryTest, BasicAuthRefusesWithoutCredentialsAndWorksWithThem) {
    std::string htpasswd = tmp.file("htpasswd", std::string("tester:") + passwordHash + "\n");
    RegistryConfig config;
    config.htpasswd = htpasswd;
    RegistryServer reg(config);
    Image img = makeImage(tmp, "amd64", {5000}, 70);
    std::string ref = reg.host() + "/test/app:1";

    auto anonymous = client(ref);
    Error e = errorOf([&] { push(anonymous, img, "1"); });
    EXPECT_EQ(e.code(), -EACCES);
    std::string message = e.what();
    EXPECT_EQ(message.rfind("push `" + ref + "`: blob `sha256:", 0), 0u) << message;
    // The HEAD that looks for the blob is refused first; a HEAD answer has no body, so the
    // message is the status line's.
    EXPECT_NE(message.find("`: unauthorized (401, no credentials given)"), std::string::npos)
        << message;

    RegistryOptions wrong;
    wrong.credentials = {"tester", "nope"};
    e = errorOf([&] { client(ref, wrong).resolve(); });
    EXPECT_EQ(e.code(), -EACCES);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + ref + "`: authentication required (401, user `tester`)");

    RegistryOptions right;
    right.credentials = {"tester", "pw"};
    auto c = client(ref, right);
    push(c, img, "1");
    ResolvedImage got = c.resolve();
    EXPECT_EQ(got.manifestDigest, img.digest);
    c.fetchBlobs(got.layers, outPath(), {});
    expectPulled(img.layers);
}

TEST_F(RegistryTest, TokenAuthGetsScopedTokensFromTheRealm) {
    TokenServer tokens(tmp, {{"tester", {"pw", {"pull", "push"}}}, {"reader", {"pw2", {"pull"}}}});
    RegistryConfig config;
    config.token = {tokens.realm(), TokenServer::service, TokenServer::issuer, tokens.cert()};
    RegistryServer reg(config);
    Image img = makeImage(tmp, "amd64", {5000, 6000}, 80);
    std::string ref = reg.host() + "/test/app:1";

    RegistryOptions tester;
    tester.credentials = {"tester", "pw"};
    auto c = client(ref, tester);
    push(c, img, "1");
    ResolvedImage got = c.resolve();
    EXPECT_EQ(got.manifestDigest, img.digest);
    c.fetchBlobs(got.layers, outPath(), {});
    expectPulled(img.layers);
    auto scopes = tokens.scopes();
    EXPECT_EQ(std::set<std::string>(scopes.begin(), scopes.end()),
              (std::set<std::string>{"repository:test/app:pull,push", "repository:test/app:pull"}));
    EXPECT_LE(scopes.size(), 2u) << "tokens are cached per scope";

    // Read-only: pulls with an `access_token`, and the registry refuses its pushes.
    RegistryOptions reader;
    reader.credentials = {"reader", "pw2"};
    auto r = client(reg.host() + "/test/app:1", reader);
    EXPECT_EQ(r.resolve().manifestDigest, img.digest);
    Image other = makeImage(tmp, "amd64", {10}, 81);
    Error e = errorOf([&] { r.pushBlobs(other.blobs(), {}); });
    EXPECT_EQ(e.code(), -EACCES);
    EXPECT_NE(std::string(e.what()).find("(401, user `reader`)"), std::string::npos) << e.what();

    e = errorOf([&] { client(ref).resolve(); });
    EXPECT_EQ(std::string(e.what()), "pull `" + ref + "`: token server `" + tokens.realm() +
                                         "`: anonymous access is not allowed (401, no "
                                         "credentials given)");
}

TEST_F(RegistryTest, TlsWithAPrivateCaWorksOnlyWhenTheClientTrustsIt) {
    std::string key = tmp.path() + "/tls.key", cert = tmp.path() + "/tls.crt";
    auto gen = run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost"});
    ASSERT_EQ(gen.status, 0) << gen.err;
    RegistryConfig config;
    config.tlsCert = cert;
    config.tlsKey = key;
    RegistryServer reg(config);
    Image img = makeImage(tmp, "amd64", {7000}, 90);
    std::string ref = reg.host() + "/test/app:1";

    RegistryOptions trusted;
    trusted.forceHttps = true;
    trusted.caFile = cert;
    auto c = client(ref, trusted);
    push(c, img, "1");
    EXPECT_EQ(c.resolve().manifestDigest, img.digest);
    c.fetchBlobs({img.layers[0].d}, outPath(), {});
    expectPulled(img.layers);

    RegistryOptions untrusted;
    untrusted.forceHttps = true;
    Error e = errorOf([&] { client(ref, untrusted).resolve(); });
    EXPECT_EQ(e.code(), -EPROTO);
    EXPECT_EQ(std::string(e.what()).rfind("pull `" + ref + "`: tls `" + reg.host() + "`: ", 0), 0u)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("certificate verify failed (self-signed certificate)"),
              std::string::npos)
        << e.what();

    RegistryOptions insecure;
    insecure.forceHttps = true;
    insecure.tlsVerify = false;
    EXPECT_EQ(client(ref, insecure).resolve().manifestDigest, img.digest);

    // A missing CA file is a setup error naming it.
    RegistryOptions missing;
    missing.forceHttps = true;
    missing.caFile = tmp.path() + "/nope.pem";
    e = errorOf([&] { client(ref, missing).resolve(); });
    EXPECT_EQ(e.code(), -ENOENT);
    EXPECT_EQ(std::string(e.what()),
              "pull `" + ref + "`: CA file `" + missing.caFile + "`: No such file or directory");
}

TEST_F(RegistryTest, SixBlobsMoveThreeAtATime) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", std::vector<size_t>(6, 4 << 20), 100);
    RegistryOptions opts;
    opts.parallel = 3;
    auto c = client(reg.host() + "/test/app:1", opts);

    // Each transfer waits at its start until three have started: only three concurrent
    // transfers get past it (with a generous limit so a broken client fails, not hangs).
    auto barrier = [](std::mutex &m, std::condition_variable &cv, std::set<std::string> &started,
                      std::atomic<int> &together, std::atomic<size_t> &maxLive,
                      std::set<std::string> &finished) {
        return [&](const std::string &digest, uint64_t done, uint64_t total) {
            std::unique_lock lock(m);
            if (started.insert(digest).second) {
                cv.notify_all();
                if (cv.wait_for(lock, std::chrono::seconds(60),
                                [&] { return started.size() >= 3; }))
                    ++together;
            }
            if (done == total) finished.insert(digest);
            maxLive = std::max<size_t>(maxLive, started.size() - finished.size());
        };
    };
    for (bool pushing : {true, false}) {
        std::mutex m;
        std::condition_variable cv;
        std::set<std::string> started, finished;
        std::atomic<int> together{0};
        std::atomic<size_t> maxLive{0};
        auto progress = barrier(m, cv, started, together, maxLive, finished);
        auto t0 = std::chrono::steady_clock::now();
        if (pushing)
            c.pushBlobs(img.blobs(), progress);
        else
            c.fetchBlobs(std::vector<Descriptor>{img.layers[0].d, img.layers[1].d, img.layers[2].d,
                                                 img.layers[3].d, img.layers[4].d, img.layers[5].d},
                         outPath(), progress);
        double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::cout << (pushing ? "push" : "pull") << " 6 x 4 MiB, parallel 3: " << seconds << " s, "
                  << 24 / seconds << " MiB/s\n";
        EXPECT_EQ(together, pushing ? 7 : 6) << (pushing ? "push" : "pull");
        EXPECT_LE(maxLive, 3u) << (pushing ? "push" : "pull");
        EXPECT_EQ(finished.size(), pushing ? 7u : 6u);
    }
    expectPulled(img.layers);
}

TEST_F(RegistryTest, BigBlobsAreUploadedInEightMiBChunks) {
    RegistryServer reg;
    Image img = makeImage(tmp, "amd64", {20 << 20}, 110);
    auto c = client(reg.host() + "/test/app:big");
    uint64_t lastDone = 0;
    c.pushBlobs({{img.layers[0].d, img.layers[0].file}},
                [&](const std::string &, uint64_t done, uint64_t) {
                    EXPECT_GE(done, lastDone);
                    lastDone = done;
                });
    EXPECT_EQ(lastDone, 20u << 20);
    EXPECT_EQ(count(reg.log(), "\"PATCH /v2/test/app/blobs/uploads/"), 3u) << reg.log();
    c.pushBlobs({{img.config.d, img.config.file}}, {});
    c.pushManifest("big", media::kOciManifest, img.manifest);
    c.fetchBlobs(c.resolve().layers, outPath(), {});
    expectPulled(img.layers);
}

TEST_F(RegistryTest, PushRefusesAFileThatDoesNotMatchItsDescriptor) {
    RegistryServer reg;
    Blob blob = makeBlob(tmp, "abc", media::kOciLayerGzip);
    auto c = client(reg.host() + "/test/app:1");
    Descriptor wrongSize = blob.d;
    wrongSize.size = 4;
    Error e = errorOf([&] { c.pushBlobs({{wrongSize, blob.file}}, {}); });
    EXPECT_EQ(std::string(e.what()), "push `" + reg.host() + "/test/app:1`: blob `" +
                                         blob.d.digest + "`: file `" + blob.file +
                                         "` has 3 bytes, the descriptor says 4");
    Descriptor wrongDigest = blob.d;
    wrongDigest.digest = sha256Of("abd");
    e = errorOf([&] { c.pushBlobs({{wrongDigest, blob.file}}, {}); });
    EXPECT_NE(std::string(e.what()).find("(400)"), std::string::npos) << e.what();
    EXPECT_FALSE(c.hasBlob(wrongDigest));
}

} // namespace
