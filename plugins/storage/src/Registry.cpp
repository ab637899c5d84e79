#include "Registry.h"

#include "Digest.h"
#include "Paths.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <Poco/Base64Encoder.h>
#include <Poco/Delegate.h>
#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/VerificationErrorArgs.h>
#include <Poco/URI.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace mobileops::storage {

using common::quote;
using common::sysError;
using common::wrap;
using nlohmann::json;
using Poco::Net::HTTPRequest;
using Poco::Net::HTTPResponse;

namespace {

constexpr uint64_t chunkSize = 8 << 20;     // PATCH size for big uploads
constexpr size_t maxManifestSize = 4 << 20; // what registries accept, with room
constexpr size_t maxErrorBody = 64 << 10;
constexpr size_t maxInMemoryBlob = 64 << 20;
constexpr int maxRedirects = 10;
constexpr size_t ioBuffer = 1 << 20;

// A URL split without decoding anything: upload locations carry opaque state in their query
// that must go back to the registry byte for byte.
struct Url {
    std::string scheme, host; // host without IPv6 brackets
    uint16_t port = 0;
    std::string target; // path and query, "/" at least

    std::string origin() const { return scheme + "://" + hostPort(); }
    std::string hostPort() const {
        std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
        return h + ":" + std::to_string(port);
    }
    std::string str() const { return origin() + target; }
    bool sameOrigin(const Url &o) const {
        return scheme == o.scheme && host == o.host && port == o.port;
    }

    static Url parse(const std::string &text) {
        auto bad = [&] { return sdk::Error(MO_E_INVALID, "url " + quote(text) + " is not valid"); };
        Url u;
        size_t sep = text.find("://");
        if (sep == std::string::npos) throw bad();
        u.scheme = text.substr(0, sep);
        for (auto &c : u.scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (u.scheme != "http" && u.scheme != "https") throw bad();
        size_t start = sep + 3, end = text.find_first_of("/?#", start);
        std::string authority = text.substr(start, end - start);
        if (size_t at = authority.rfind('@'); at != std::string::npos) authority.erase(0, at + 1);
        std::string port;
        if (!authority.empty() && authority.front() == '[') {
            size_t close = authority.find(']');
            if (close == std::string::npos) throw bad();
            u.host = authority.substr(1, close - 1);
            if (close + 1 < authority.size()) {
                if (authority[close + 1] != ':') throw bad();
                port = authority.substr(close + 2);
            }
        } else {
            size_t colon = authority.find(':');
            u.host = authority.substr(0, colon);
            if (colon != std::string::npos) port = authority.substr(colon + 1);
        }
        if (u.host.empty()) throw bad();
        if (port.empty()) {
            u.port = u.scheme == "https" ? 443 : 80;
        } else {
            if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
                throw bad();
            unsigned long p = std::stoul(port);
            if (p == 0 || p > 65535) throw bad();
            u.port = static_cast<uint16_t>(p);
        }
        u.target = end == std::string::npos ? "/" : text.substr(end);
        if (size_t hash = u.target.find('#'); hash != std::string::npos) u.target.resize(hash);
        if (u.target.empty() || u.target.front() != '/') u.target.insert(0, "/");
        return u;
    }

    // A Location header against this URL.
    Url resolve(const std::string &location) const {
        if (location.find("://") != std::string::npos) return parse(location);
        if (location.compare(0, 2, "//") == 0) return parse(scheme + ":" + location);
        if (!location.empty() && location.front() == '/') return parse(origin() + location);
        Poco::URI base(str());
        base.resolve(location);
        return parse(base.toString());
    }
};

std::string lower(std::string s) {
    for (auto &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string urlEncode(const std::string &s) {
    std::string out;
    Poco::URI::encode(s, "!#$&'()*+,/:;=?@[]", out);
    return out;
}

std::string base64(const std::string &s) {
    std::ostringstream out;
    Poco::Base64Encoder enc(out);
    enc.rdbuf()->setLineLength(0);
    enc << s;
    enc.close();
    return out.str();
}

// The media type without parameters ("; charset=utf-8").
std::string bareType(const std::string &contentType) {
    std::string t = contentType.substr(0, contentType.find(';'));
    while (!t.empty() && t.back() == ' ') t.pop_back();
    return lower(t);
}

bool isIndexType(const std::string &t) { return t == media::kOciIndex || t == media::kDockerList; }
bool isManifestType(const std::string &t) {
    return t == media::kOciManifest || t == media::kDockerManifest;
}

// WWW-Authenticate: `Bearer realm="...",service="...",scope="..."`.
struct Challenge {
    std::string scheme; // lowercase
    std::map<std::string, std::string> params;
};

Challenge parseChallenge(const std::string &header) {
    Challenge c;
    size_t i = header.find_first_not_of(' ');
    if (i == std::string::npos) return c;
    size_t sp = header.find(' ', i);
    c.scheme = lower(header.substr(i, sp - i));
    i = sp;
    while (i != std::string::npos && i < header.size()) {
        i = header.find_first_not_of(" ,", i);
        if (i == std::string::npos) break;
        size_t eq = header.find('=', i);
        if (eq == std::string::npos) break;
        std::string key = lower(header.substr(i, eq - i));
        std::string value;
        i = eq + 1;
        if (i < header.size() && header[i] == '"') {
            for (++i; i < header.size() && header[i] != '"'; ++i) {
                if (header[i] == '\\' && i + 1 < header.size()) ++i;
                value += header[i];
            }
            ++i;
        } else {
            size_t end = header.find(',', i);
            value = header.substr(i, end - i);
            i = end;
        }
        c.params[key] = value;
    }
    return c;
}

struct Response {
    HTTPResponse head;
    std::istream *body = nullptr;
    Url url; // after redirects

    int status() const { return static_cast<int>(head.getStatus()); }

    std::string read(size_t limit, const std::string &what) {
        std::string out;
        if (!body) return out;
        char buf[65536];
        while (*body) {
            body->read(buf, sizeof buf);
            out.append(buf, static_cast<size_t>(body->gcount()));
            if (out.size() > limit)
                throw sdk::Error(MO_E_INVALID,
                                 what + " is larger than " + std::to_string(limit >> 10) + " KiB");
        }
        return out;
    }

    // Read what is left so the connection can carry the next request.
    void discard() {
        if (!body) return;
        char buf[65536];
        while (*body) body->read(buf, sizeof buf);
        body = nullptr;
    }
};

// The registry's own words for a failed request: {"errors":[{"code","message"}]}, then the
// status; e.g. "manifest unknown (404)".
sdk::Error statusError(Response &r, const std::string &note = "") {
    std::string body;
    try {
        body = r.read(maxErrorBody, "error body");
    } catch (...) {
    }
    std::string message;
    json j = json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
        for (auto &e : j["errors"]) {
            std::string m;
            if (e.contains("message") && e["message"].is_string()) m = e["message"];
            if (m.empty() && e.contains("code") && e["code"].is_string())
                m = lower(e["code"].get<std::string>());
            if (!m.empty()) message += (message.empty() ? "" : "; ") + m;
        }
    } else if (j.is_object() && j.contains("details") && j["details"].is_string()) {
        message = j["details"];
    }
    if (message.empty()) message = lower(r.head.getReason());
    if (message.empty()) message = "request failed";
    int status = r.status();
    int code = status == 404                    ? MO_E_NOT_FOUND
               : status == 401 || status == 403 ? -EACCES
               : status == 429                  ? MO_E_BUSY
               : status >= 500                  ? -EIO
                                                : MO_E_INVALID;
    return sdk::Error(code, message + " (" + std::to_string(status) +
                                (note.empty() ? "" : ", " + note) + ")");
}

// Poco's streams only say that a write failed; a server closing during a body has often
// refused it (too large, not authorised) without waiting for the end.
constexpr const char *bodyCut = "the server closed the connection while the body was sent";

// Why OpenSSL refused the last certificate on this thread ("self-signed certificate"):
// Poco's exception only says "certificate verify failed".
thread_local std::string verifyError;

void captureVerifyErrors() {
    struct Capture {
        void onError(const void *, Poco::Net::VerificationErrorArgs &args) {
            verifyError = args.errorMessage();
        }
    };
    static Capture capture;
    static std::once_flag once;
    std::call_once(once, [] {
        Poco::Net::initializeSSL();
        Poco::Net::SSLManager::instance().ClientVerificationError +=
            Poco::delegate(&capture, &Capture::onError);
    });
}

// OpenSSL 3 says "error:0A000086:SSL routines::certificate verify failed": keep the words.
std::string sslReason(const Poco::Exception &e) {
    std::string m = e.message().empty() ? e.displayText() : e.message();
    if (m.compare(0, 6, "error:") == 0 && m.rfind(':') != std::string::npos)
        m = m.substr(m.rfind(':') + 1);
    if (!verifyError.empty()) m += " (" + verifyError + ")";
    return m;
}

// A Poco or stream failure in flight (the current exception), as an error naming the server.
sdk::Error networkError(const Url &url, unsigned timeout) {
    std::string where = quote(url.hostPort());
    try {
        throw;
    } catch (const sdk::Error &e) {
        return e;
    } catch (const Poco::Net::ConnectionRefusedException &) {
        return sdk::Error(-ECONNREFUSED, "connect to " + where + ": connection refused");
    } catch (const Poco::TimeoutException &) {
        return sdk::Error(-ETIMEDOUT,
                          where + ": no answer within " + std::to_string(timeout) + "s");
    } catch (const Poco::Net::HostNotFoundException &) {
        return sdk::Error(-EHOSTUNREACH, "host " + quote(url.host) + " not found");
    } catch (const Poco::Net::NoAddressFoundException &) {
        return sdk::Error(-EHOSTUNREACH, "host " + quote(url.host) + " has no address");
    } catch (const Poco::Net::CertificateValidationException &e) {
        return sdk::Error(-EPROTO, "tls " + where + ": certificate not accepted: " + e.message());
    } catch (const Poco::Net::SSLException &e) {
        return sdk::Error(-EPROTO, "tls " + where + ": " + sslReason(e));
    } catch (const Poco::Net::NoMessageException &) {
        return sdk::Error(-ECONNRESET, where + ": connection closed without an answer");
    } catch (const Poco::Net::ConnectionResetException &e) {
        return sdk::Error(-ECONNRESET,
                          where + ": " + (e.message() == bodyCut ? bodyCut : "connection reset"));
    } catch (const Poco::Exception &e) {
        return sdk::Error(-EIO, where + ": " + e.displayText());
    } catch (const std::ios_base::failure &) {
        return sdk::Error(-EIO, where + ": connection lost");
    } catch (const std::exception &e) {
        return sdk::Error(MO_E_INTERNAL, where + ": " + e.what());
    }
}

bool retryable() {
    try {
        throw;
    } catch (const Poco::Net::NoMessageException &) {
        return true;
    } catch (const Poco::Net::ConnectionResetException &) {
        return true;
    } catch (...) {
        return false;
    }
}

// Poco writes to sockets without MSG_NOSIGNAL, so a registry closing the connection during
// an upload would kill the process with SIGPIPE. Blocked in this thread, the write fails with
// EPIPE instead; a SIGPIPE left pending is consumed before the mask is restored (as libpq
// does), so the caller's own signal handling is untouched.
class SigpipeGuard {
public:
    SigpipeGuard() {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        sigset_t pending;
        sigpending(&pending);
        _wasPending = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe, &_old);
    }
    ~SigpipeGuard() {
        if (!_wasPending) {
            sigset_t pipe;
            sigemptyset(&pipe);
            sigaddset(&pipe, SIGPIPE);
            timespec zero{0, 0};
            while (sigtimedwait(&pipe, nullptr, &zero) == SIGPIPE) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &_old, nullptr);
    }
    SigpipeGuard(const SigpipeGuard &) = delete;
    SigpipeGuard &operator=(const SigpipeGuard &) = delete;

private:
    sigset_t _old;
    bool _wasPending = false;
};

using common::Fd;

void writeAll(int fd, const char *data, size_t len, const std::string &path) {
    while (len > 0) {
        ssize_t n = ::write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("write " + quote(path), errno);
        data += n;
        len -= static_cast<size_t>(n);
    }
}

} // namespace

std::string Platform::str() const {
    return os + "/" + architecture + (variant.empty() ? "" : "/" + variant);
}

// What one request sends; the body is either `data` or a range of `fd`, so it can be sent
// again after an auth challenge or a dropped keep-alive connection.
struct Request {
    std::string method = HTTPRequest::HTTP_GET;
    Url url;
    std::string actions = "pull"; // token scope: repository:NAME:<actions>
    std::vector<std::pair<std::string, std::string>> headers;
    bool hasBody = false;
    std::string contentType;
    std::string data;
    int fd = -1;
    uint64_t offset = 0, length = 0;
    std::function<void(uint64_t)> sent; // body bytes sent so far
    bool followRedirects = false;
};

class RegistryClient::Impl {
public:
    Impl(Reference r, RegistryOptions o) : ref(std::move(r)), opt(std::move(o)) {
        bool plain = !opt.forceHttps && (opt.plainHttp || ref.isLocalhost());
        std::string host = ref.registry == "docker.io" ? "registry-1.docker.io" : ref.registry;
        base = Url::parse((plain ? "http://" : "https://") + host);
        if (opt.parallel == 0) opt.parallel = 1;
    }

    // The HTTP sessions of one thread, one per origin, kept alive between requests.
    class Connection {
    public:
        explicit Connection(Impl &c) : _c(c) {}

        Poco::Net::HTTPClientSession &session(const Url &u, bool fresh) {
            auto &s = _sessions[u.origin()];
            if (s && !fresh) return *s;
            if (u.scheme == "https")
                s = std::make_unique<Poco::Net::HTTPSClientSession>(u.host, u.port, _c.tls());
            else
                s = std::make_unique<Poco::Net::HTTPClientSession>(u.host, u.port);
            s->setTimeout(Poco::Timespan(static_cast<long>(_c.opt.timeoutSeconds), 0));
            s->setKeepAlive(true);
            return *s;
        }

    private:
        Impl &_c;
        std::map<std::string, std::unique_ptr<Poco::Net::HTTPClientSession>> _sessions;
    };

    Reference ref;
    RegistryOptions opt;
    Url base;

    Url endpoint(const std::string &path) const {
        Url u = base;
        u.target = "/v2/" + ref.repository + path;
        return u;
    }
    std::string scope(const std::string &actions) const {
        return "repository:" + ref.repository + ":" + actions;
    }

    Poco::Net::Context::Ptr tls() {
        std::lock_guard lock(_tlsMutex);
        if (!_tls) {
            captureVerifyErrors();
            if (!opt.caFile.empty() && ::access(opt.caFile.c_str(), R_OK) < 0)
                throw sysError("CA file " + quote(opt.caFile), errno);
            Poco::Net::Context::Params p;
            p.verificationMode = opt.tlsVerify ? Poco::Net::Context::VERIFY_RELAXED
                                               : Poco::Net::Context::VERIFY_NONE;
            p.loadDefaultCAs = true;
            p.caLocation = opt.caFile;
            p.cipherList = "HIGH:!aNULL:!eNULL:!MD5";
            try {
                _tls = new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, p);
            } catch (const Poco::Exception &e) {
                throw sdk::Error(MO_E_INVALID,
                                 "tls setup" +
                                     (opt.caFile.empty() ? std::string()
                                                         : " with CA file " + quote(opt.caFile)) +
                                     ": " + e.displayText());
            }
            _tls->enableExtendedCertificateVerification(opt.tlsVerify);
            _tls->disableProtocols(
                Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
        }
        return _tls;
    }

    // One request, answering an auth challenge once and following redirects when asked.
    Response send(Connection &conn, Request req) {
        bool challenged = false, reconnected = false;
        int redirects = 0;
        Url url = req.url;
        for (;;) {
            bool toRegistry = url.sameOrigin(base);
            std::string authorization = toRegistry ? authFor(req.actions) : "";
            Response r;
            r.url = url;
            try {
                verifyError.clear();
                auto &s = conn.session(url, reconnected);
                HTTPRequest hr(req.method, url.target, HTTPRequest::HTTP_1_1);
                hr.set("User-Agent", opt.userAgent);
                if (!authorization.empty()) hr.set("Authorization", authorization);
                for (auto &[k, v] : req.headers) hr.set(k, v);
                if (req.hasBody) {
                    hr.setContentLength64(
                        static_cast<Poco::Int64>(req.fd >= 0 ? req.length : req.data.size()));
                    if (!req.contentType.empty()) hr.setContentType(req.contentType);
                } else if (req.method != HTTPRequest::HTTP_GET &&
                           req.method != HTTPRequest::HTTP_HEAD) {
                    hr.setContentLength(0);
                }
                std::ostream &os = s.sendRequest(hr);
                if (req.hasBody) writeBody(os, req);
                r.body = &s.receiveResponse(r.head);
                r.body->exceptions(std::ios::badbit);
            } catch (...) {
                if (!reconnected && retryable()) {
                    reconnected = true;
                    continue;
                }
                throw networkError(url, opt.timeoutSeconds);
            }
            reconnected = false;
            int status = r.status();
            if (status == 401 && toRegistry && !challenged) {
                Challenge c = parseChallenge(r.head.get("WWW-Authenticate", ""));
                // Without credentials for Basic there is nothing to retry with: the caller
                // reports the 401 with the registry's message.
                if (c.scheme == "basic" && opt.credentials.username.empty()) return r;
                drain(r, url);
                if (answer(c, req.actions, authorization)) {
                    challenged = true;
                    continue;
                }
                r.body = nullptr;
                return r;
            }
            if (req.followRedirects && (status == 301 || status == 302 || status == 303 ||
                                        status == 307 || status == 308)) {
                std::string location = r.head.get("Location", "");
                drain(r, url);
                if (location.empty()) throw sdk::Error(-EPROTO, "redirect without a location");
                if (++redirects > maxRedirects)
                    throw sdk::Error(-ELOOP,
                                     "more than " + std::to_string(maxRedirects) + " redirects");
                url = url.resolve(location);
                continue;
            }
            return r;
        }
    }

    // Read a body into memory, network failures named.
    std::string read(Response &r, size_t limit, const std::string &what) {
        try {
            return r.read(limit, what);
        } catch (...) {
            throw networkError(r.url, opt.timeoutSeconds);
        }
    }

    // A failed request as an error; for an auth failure it says who we were.
    sdk::Error failure(Response &r) {
        if (r.status() != 401 && r.status() != 403) return statusError(r);
        return statusError(r, opt.credentials.username.empty()
                                  ? "no credentials given"
                                  : "user " + quote(opt.credentials.username));
    }

    void drain(Response &r, const Url &url) {
        try {
            r.discard();
        } catch (...) {
            throw networkError(url, opt.timeoutSeconds);
        }
    }

    // Run fn(conn, i) for i in [0, n) on up to opt.parallel threads, each with its own
    // connections; the first failure stops the others (they see `cancelled`) and is thrown.
    void parallel(size_t n, const std::function<void(Connection &, size_t)> &fn) {
        std::atomic<size_t> next{0};
        std::mutex m;
        std::exception_ptr first;
        auto worker = [&] {
            SigpipeGuard guard;
            Connection conn(*this);
            while (!cancelled) {
                size_t i = next++;
                if (i >= n) break;
                try {
                    fn(conn, i);
                } catch (...) {
                    std::lock_guard lock(m);
                    if (!first) first = std::current_exception();
                    cancelled = true;
                }
            }
        };
        cancelled = false;
        size_t width = std::min<size_t>(opt.parallel, n);
        std::vector<std::thread> threads;
        for (size_t t = 1; t < width; ++t) threads.emplace_back(worker);
        worker();
        for (auto &t : threads) t.join();
        cancelled = false;
        if (first) std::rethrow_exception(first);
    }

    std::atomic<bool> cancelled{false};

    // GET a manifest by tag or digest, checked against `expected` (when a digest) and the
    // Docker-Content-Digest header: bytes, media type, digest.
    struct Manifest {
        std::string bytes, mediaType, digest;
    };
    Manifest getManifest(Connection &conn, const std::string &tagOrDigest,
                         const std::string &expected) {
        Request req;
        req.url = endpoint("/manifests/" + tagOrDigest);
        req.headers.emplace_back("Accept", std::string(media::kOciManifest) + ", " +
                                               media::kOciIndex + ", " + media::kDockerManifest +
                                               ", " + media::kDockerList);
        Response r = send(conn, req);
        if (r.status() != 200) throw failure(r);
        Manifest m;
        m.bytes = read(r, maxManifestSize, "manifest " + quote(tagOrDigest));
        m.digest = sha256Of(m.bytes);
        std::string what = "manifest " + quote(tagOrDigest);
        if (!expected.empty() && m.digest != expected)
            throw sdk::Error(MO_E_INVALID,
                             what + ": digest mismatch: the registry sent " + quote(m.digest));
        std::string header = r.head.get("Docker-Content-Digest", "");
        if (!header.empty() && header != m.digest)
            throw sdk::Error(MO_E_INVALID, what + ": the content hashes to " + quote(m.digest) +
                                               " but the registry says " + quote(header));
        json j = json::parse(m.bytes, nullptr, false);
        if (!j.is_object()) throw sdk::Error(MO_E_INVALID, what + " is not a JSON object");
        if (j.contains("schemaVersion") && j["schemaVersion"] == 1)
            throw sdk::Error(MO_E_UNSUPPORTED,
                             what + " is a schema 1 manifest, which is not supported");
        std::string fromJson = j.contains("mediaType") && j["mediaType"].is_string()
                                   ? j["mediaType"].get<std::string>()
                                   : "";
        m.mediaType = bareType(r.head.getContentType());
        if (!isIndexType(m.mediaType) && !isManifestType(m.mediaType)) m.mediaType = fromJson;
        if (m.mediaType.empty())
            m.mediaType = j.contains("manifests") ? media::kOciIndex : media::kOciManifest;
        if (!isIndexType(m.mediaType) && !isManifestType(m.mediaType))
            throw sdk::Error(MO_E_UNSUPPORTED,
                             what + " has the unsupported media type " + quote(m.mediaType));
        return m;
    }

    void fetchOne(Connection &conn, const Descriptor &d, const std::string &path,
                  const TransferProgress &progress);
    void pushOne(Connection &conn, const Descriptor &d, const std::string &file,
                 const TransferProgress &progress);
    bool hasBlob(Connection &conn, const Descriptor &d) {
        Request req;
        req.method = HTTPRequest::HTTP_HEAD;
        req.url = endpoint("/blobs/" + d.digest);
        req.followRedirects = true;
        Response r = send(conn, req);
        drain(r, r.url);
        if (r.status() == 200) return true;
        if (r.status() == 404) return false;
        throw failure(r);
    }

private:
    std::mutex _tlsMutex;
    Poco::Net::Context::Ptr _tls;

    // Auth learnt from challenges, shared by all threads.
    std::mutex _authMutex;
    std::string _basic;                         // "Basic ..." once a Basic challenge came
    std::string _realm, _service;               // once a Bearer challenge came
    std::map<std::string, std::string> _tokens; // by scope

    std::string authFor(const std::string &actions) {
        std::lock_guard lock(_authMutex);
        if (!_realm.empty()) {
            auto it = _tokens.find(scope(actions));
            if (it == _tokens.end()) {
                // Fetch up front: a request with a body should not be sent twice.
                _tokens[scope(actions)] = fetchToken(scope(actions));
                it = _tokens.find(scope(actions));
            }
            return it->second.empty() ? "" : "Bearer " + it->second;
        }
        return _basic;
    }

    // Whether a retry can succeed with what the challenge asks for. `sent` is the
    // Authorization the refused request carried: when another thread has got a newer one
    // meanwhile (parallel transfers all start unauthenticated), that one is used.
    bool answer(const Challenge &c, const std::string &actions, const std::string &sent) {
        std::lock_guard lock(_authMutex);
        if (c.scheme == "basic") {
            if (opt.credentials.username.empty()) return false;
            if (!_basic.empty() && _basic != sent) return true;
            _basic = "Basic " + base64(opt.credentials.username + ":" + opt.credentials.password);
            return true;
        }
        if (c.scheme == "bearer") {
            auto realm = c.params.find("realm");
            if (realm == c.params.end() || realm->second.empty())
                throw sdk::Error(-EPROTO, "bearer challenge without a realm");
            auto cached = _tokens.find(scope(actions));
            if (_realm == realm->second && cached != _tokens.end() &&
                "Bearer " + cached->second != sent)
                return true;
            _realm = realm->second;
            auto service = c.params.find("service");
            _service = service == c.params.end() ? "" : service->second;
            _tokens[scope(actions)] = fetchToken(scope(actions)); // a new one: the old expired
            return true;
        }
        if (c.scheme.empty()) return false;
        throw sdk::Error(MO_E_UNSUPPORTED, "the registry asks for " + quote(c.scheme) +
                                               " authentication, which is not supported");
    }

    // GET realm?service=..&scope=.. (with Basic credentials when we have them) -> a token.
    std::string fetchToken(const std::string &scope) {
        Url url;
        try {
            url = Url::parse(_realm);
        } catch (const sdk::Error &) {
            throw sdk::Error(-EPROTO, "token realm " + quote(_realm) + " is not a URL");
        }
        url.target += (url.target.find('?') == std::string::npos ? "?" : "&");
        if (!_service.empty()) url.target += "service=" + urlEncode(_service) + "&";
        url.target += "scope=" + urlEncode(scope);
        std::string what = "token server " + quote(_realm);
        Connection conn(*this);
        Response r;
        r.url = url;
        try {
            auto &s = conn.session(url, false);
            HTTPRequest hr(HTTPRequest::HTTP_GET, url.target, HTTPRequest::HTTP_1_1);
            hr.set("User-Agent", opt.userAgent);
            if (!opt.credentials.username.empty())
                hr.set("Authorization", "Basic " + base64(opt.credentials.username + ":" +
                                                          opt.credentials.password));
            s.sendRequest(hr);
            r.body = &s.receiveResponse(r.head);
            r.body->exceptions(std::ios::badbit);
            if (r.status() != 200) throw wrap(failure(r), what);
            std::string body = r.read(maxErrorBody, "token response");
            json j = json::parse(body, nullptr, false);
            for (const char *key : {"token", "access_token"})
                if (j.is_object() && j.contains(key) && j[key].is_string() &&
                    !j[key].get<std::string>().empty())
                    return j[key];
            throw sdk::Error(-EPROTO, what + ": the answer has no `token`");
        } catch (const sdk::Error &) {
            throw;
        } catch (...) {
            throw wrap(networkError(url, opt.timeoutSeconds), what);
        }
    }

    void writeBody(std::ostream &os, const Request &req) {
        if (req.fd < 0) {
            os.write(req.data.data(), static_cast<std::streamsize>(req.data.size()));
            if (req.sent) req.sent(req.data.size());
        } else {
            std::vector<char> buf(ioBuffer);
            uint64_t done = 0;
            while (done < req.length) {
                if (cancelled) throw sdk::Error(MO_E_STATE, "cancelled");
                size_t want =
                    static_cast<size_t>(std::min<uint64_t>(buf.size(), req.length - done));
                ssize_t n =
                    ::pread(req.fd, buf.data(), want, static_cast<off_t>(req.offset + done));
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) throw sysError("read the blob file", errno);
                if (n == 0) throw sdk::Error(-EIO, "the blob file shrank while it was sent");
                os.write(buf.data(), n);
                done += static_cast<uint64_t>(n);
                if (req.sent) req.sent(done);
            }
        }
        os.flush();
        if (!os) throw Poco::Net::ConnectionResetException(bodyCut);
    }
};

void RegistryClient::Impl::fetchOne(Connection &conn, const Descriptor &d, const std::string &path,
                                    const TransferProgress &progress) {
    std::string partial = path + ".partial";
    // Another process may fetch the same blob: the lock makes it wait, and when it finished
    // meanwhile our fd points at the renamed file, so check before using it.
    int fd = -1;
    for (;;) {
        fd = ::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) throw sysError("open " + quote(partial), errno);
        if (::flock(fd, LOCK_EX) < 0) {
            int err = errno;
            ::close(fd);
            throw sysError("lock " + quote(partial), err);
        }
        struct stat a, b;
        if (::fstat(fd, &a) == 0 && ::stat(partial.c_str(), &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev)
            break;
        ::close(fd);
        struct stat done;
        if (::stat(path.c_str(), &done) == 0) {
            if (progress) progress(d.digest, d.size, d.size);
            return;
        }
    }
    Fd file(fd);

    Sha256 hash;
    uint64_t have = 0;
    std::vector<char> buf(ioBuffer);
    for (;;) {
        ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw sysError("read " + quote(partial), errno);
        if (n == 0) break;
        hash.update(buf.data(), static_cast<size_t>(n));
        have += static_cast<uint64_t>(n);
    }
    auto restart = [&] {
        if (::ftruncate(fd, 0) < 0) throw sysError("truncate " + quote(partial), errno);
        if (::lseek(fd, 0, SEEK_SET) < 0) throw sysError("seek " + quote(partial), errno);
        hash.finish();
        have = 0;
    };
    if (d.size > 0 && have > d.size) restart();

    auto fail = [&](const std::string &why) {
        ::unlink(partial.c_str());
        return sdk::Error(MO_E_INVALID, why + " (the download was removed)");
    };

    if (d.size == 0 || have < d.size) {
        Request req;
        req.url = endpoint("/blobs/" + d.digest);
        req.followRedirects = true;
        if (have > 0) req.headers.emplace_back("Range", "bytes=" + std::to_string(have) + "-");
        Response r = send(conn, req);
        if (r.status() == 416 && have > 0) {
            // What we have is not a prefix the server can extend: start over.
            drain(r, r.url);
            restart();
            req.headers.clear();
            r = send(conn, req);
        }
        if (r.status() == 206) {
            std::string range = r.head.get("Content-Range", "");
            if (range.compare(0, 6 + std::to_string(have).size() + 1,
                              "bytes " + std::to_string(have) + "-") != 0)
                throw sdk::Error(-EPROTO, "the registry answered a range request for bytes " +
                                              std::to_string(have) + "- with " + quote(range));
        } else if (r.status() == 200) {
            if (have > 0) restart(); // the server ignored Range
        } else {
            throw failure(r);
        }
        if (progress) progress(d.digest, have, d.size);
        try {
            while (*r.body) {
                if (cancelled) throw sdk::Error(MO_E_STATE, "cancelled");
                r.body->read(buf.data(), static_cast<std::streamsize>(buf.size()));
                size_t n = static_cast<size_t>(r.body->gcount());
                if (n == 0) continue;
                if (d.size > 0 && have + n > d.size)
                    throw fail("the registry sent more than the " + std::to_string(d.size) +
                               " bytes the manifest gives");
                writeAll(fd, buf.data(), n, partial);
                hash.update(buf.data(), n);
                have += n;
                if (progress) progress(d.digest, have, d.size);
            }
        } catch (const sdk::Error &) {
            throw;
        } catch (...) {
            throw networkError(r.url, opt.timeoutSeconds);
        }
        // A short body keeps the partial file: the next pull resumes it.
        if (d.size > 0 && have < d.size)
            throw sdk::Error(-EIO, "the download ended after " + std::to_string(have) + " of " +
                                       std::to_string(d.size) + " bytes");
    }
    std::string got = hash.finish();
    if (got != d.digest) throw fail("digest mismatch: the content hashes to " + quote(got));
    if (::fdatasync(fd) < 0) throw sysError("sync " + quote(partial), errno);
    if (::rename(partial.c_str(), path.c_str()) < 0)
        throw sysError("rename " + quote(partial), errno);
}

void RegistryClient::Impl::pushOne(Connection &conn, const Descriptor &d, const std::string &path,
                                   const TransferProgress &progress) {
    Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.fd < 0) throw sysError("open " + quote(path), errno);
    struct stat st;
    if (::fstat(file.fd, &st) < 0) throw sysError("stat " + quote(path), errno);
    uint64_t size = static_cast<uint64_t>(st.st_size);
    if (d.size > 0 && size != d.size)
        throw sdk::Error(MO_E_INVALID, "file " + quote(path) + " has " + std::to_string(size) +
                                           " bytes, the descriptor says " + std::to_string(d.size));
    if (hasBlob(conn, d)) {
        if (progress) progress(d.digest, size, size);
        return;
    }

    Request start;
    start.method = HTTPRequest::HTTP_POST;
    start.url = endpoint("/blobs/uploads/");
    start.actions = "pull,push";
    Response r = send(conn, start);
    std::string location = r.head.get("Location", "");
    if (r.status() != 202) throw failure(r);
    drain(r, r.url);
    if (location.empty()) throw sdk::Error(-EPROTO, "the upload start gave no location");
    Url at = r.url.resolve(location);

    auto withDigest = [&](Url u) {
        u.target += (u.target.find('?') == std::string::npos ? "?" : "&");
        u.target += "digest=" + urlEncode(d.digest);
        return u;
    };
    if (progress) progress(d.digest, 0, size);

    uint64_t offset = 0;
    if (size > chunkSize) {
        while (offset < size) {
            Request patch;
            patch.method = "PATCH";
            patch.url = at;
            patch.actions = "pull,push";
            patch.hasBody = true;
            patch.contentType = "application/octet-stream";
            patch.fd = file.fd;
            patch.offset = offset;
            patch.length = std::min(chunkSize, size - offset);
            patch.headers.emplace_back("Content-Range",
                                       std::to_string(offset) + "-" +
                                           std::to_string(offset + patch.length - 1));
            if (progress)
                patch.sent = [&, from = offset](uint64_t n) { progress(d.digest, from + n, size); };
            Response pr = send(conn, patch);
            std::string next = pr.head.get("Location", "");
            if (pr.status() != 202) throw failure(pr);
            drain(pr, pr.url);
            if (!next.empty()) at = pr.url.resolve(next);
            offset += patch.length;
        }
    }
    Request put;
    put.method = HTTPRequest::HTTP_PUT;
    put.url = withDigest(at);
    put.actions = "pull,push";
    if (offset < size) {
        put.hasBody = true;
        put.contentType = "application/octet-stream";
        put.fd = file.fd;
        put.length = size;
        if (progress) put.sent = [&](uint64_t n) { progress(d.digest, n, size); };
    }
    Response pr = send(conn, put);
    if (pr.status() != 201 && pr.status() != 204) throw failure(pr);
    drain(pr, pr.url);
}

RegistryClient::RegistryClient(Reference ref, RegistryOptions options)
    : _impl(std::make_unique<Impl>(std::move(ref), std::move(options))) {}

RegistryClient::~RegistryClient() = default;

const Reference &RegistryClient::reference() const { return _impl->ref; }

ResolvedImage RegistryClient::resolve(const Platform &platform) {
    auto &c = *_impl;
    SigpipeGuard guard;
    try {
        Impl::Connection conn(c);
        ResolvedImage img;
        auto m = c.getManifest(conn, c.ref.tagOrDigest(), c.ref.digest);
        if (isIndexType(m.mediaType)) {
            img.indexDigest = m.digest;
            json index = json::parse(m.bytes);
            if (!index.contains("manifests") || !index["manifests"].is_array())
                throw sdk::Error(MO_E_INVALID, "index " + quote(m.digest) + " has no manifests");
            std::string picked, seen;
            for (auto &e : index["manifests"]) {
                if (!e.is_object() || !e.contains("platform") || !e["platform"].is_object())
                    continue;
                auto field = [&](const char *k) {
                    auto &p = e["platform"];
                    return p.contains(k) && p[k].is_string() ? p[k].get<std::string>() : "";
                };
                Platform p{field("os"), field("architecture"), field("variant")};
                if (p.os == "unknown") continue; // attestations, not images
                seen += (seen.empty() ? "" : ", ") + quote(p.str());
                if (picked.empty() && p.os == platform.os &&
                    p.architecture == platform.architecture &&
                    (platform.variant.empty() || p.variant == platform.variant) &&
                    e.contains("digest") && e["digest"].is_string())
                    picked = e["digest"];
            }
            if (picked.empty())
                throw sdk::Error(
                    MO_E_NOT_FOUND,
                    "no image for " + quote(platform.str()) + " in the index" +
                        (seen.empty() ? " (it names no platforms)" : " (it has " + seen + ")"));
            digestHex(picked);
            m = c.getManifest(conn, picked, picked);
            if (!isManifestType(m.mediaType))
                throw sdk::Error(MO_E_UNSUPPORTED, "index " + quote(img.indexDigest) +
                                                       " names another index for " +
                                                       quote(platform.str()));
        }
        img.manifestDigest = m.digest;
        img.manifestMediaType = m.mediaType;
        img.manifestBytes = m.bytes;
        json j = json::parse(m.bytes);
        auto descriptor = [&](const json &e, const std::string &what) {
            if (!e.is_object() || !e.contains("digest") || !e["digest"].is_string() ||
                !e.contains("size") || !e["size"].is_number_unsigned())
                throw sdk::Error(MO_E_INVALID, "manifest " + quote(m.digest) + ": " + what +
                                                   " needs a digest and a size");
            Descriptor d;
            d.digest = e["digest"];
            d.size = e["size"];
            if (e.contains("mediaType") && e["mediaType"].is_string()) d.mediaType = e["mediaType"];
            try {
                digestHex(d.digest);
            } catch (const sdk::Error &err) {
                throw wrap(err, "manifest " + quote(m.digest) + ": " + what);
            }
            return d;
        };
        if (!j.contains("config"))
            throw sdk::Error(MO_E_INVALID, "manifest " + quote(m.digest) + " has no config");
        img.config = descriptor(j["config"], "config");
        if (j.contains("layers")) {
            if (!j["layers"].is_array())
                throw sdk::Error(MO_E_INVALID,
                                 "manifest " + quote(m.digest) + ": `layers` is not a list");
            size_t n = 0;
            for (auto &l : j["layers"])
                img.layers.push_back(descriptor(l, "layer " + std::to_string(++n)));
        }
        return img;
    } catch (const sdk::Error &e) {
        throw wrap(e, "pull " + quote(c.ref.str()));
    }
}

std::string RegistryClient::fetchBlob(const Descriptor &d) {
    auto &c = *_impl;
    SigpipeGuard guard;
    std::string what = "pull " + quote(c.ref.str()) + ": blob " + quote(d.digest);
    try {
        digestHex(d.digest);
        if (d.size > maxInMemoryBlob)
            throw sdk::Error(MO_E_INVALID, "is " + std::to_string(d.size) +
                                               " bytes, too big to read into memory");
        Impl::Connection conn(c);
        Request req;
        req.url = c.endpoint("/blobs/" + d.digest);
        req.followRedirects = true;
        Response r = c.send(conn, req);
        if (r.status() != 200) throw c.failure(r);
        std::string bytes = c.read(r, d.size > 0 ? d.size : maxInMemoryBlob, "the blob");
        if (d.size > 0 && bytes.size() != d.size)
            throw sdk::Error(MO_E_INVALID, "got " + std::to_string(bytes.size()) +
                                               " bytes, the manifest says " +
                                               std::to_string(d.size));
        std::string got = sha256Of(bytes);
        if (got != d.digest)
            throw sdk::Error(MO_E_INVALID, "digest mismatch: the content hashes to " + quote(got));
        return bytes;
    } catch (const sdk::Error &e) {
        throw wrap(e, what);
    }
}

void RegistryClient::fetchBlobs(const std::vector<Descriptor> &blobs,
                                const std::function<std::string(const Descriptor &)> &path,
                                const TransferProgress &progress) {
    auto &c = *_impl;
    std::vector<std::pair<Descriptor, std::string>> work;
    std::map<std::string, bool> seen;
    for (auto &d : blobs) {
        try {
            digestHex(d.digest);
        } catch (const sdk::Error &e) {
            throw wrap(e, "pull " + quote(c.ref.str()));
        }
        if (seen.emplace(d.digest, true).second) work.emplace_back(d, path(d));
    }
    c.parallel(work.size(), [&](Impl::Connection &conn, size_t i) {
        try {
            c.fetchOne(conn, work[i].first, work[i].second, progress);
        } catch (const sdk::Error &e) {
            throw wrap(e, "pull " + quote(c.ref.str()) + ": blob " + quote(work[i].first.digest));
        }
    });
}

bool RegistryClient::hasBlob(const Descriptor &d) {
    auto &c = *_impl;
    SigpipeGuard guard;
    try {
        digestHex(d.digest);
        Impl::Connection conn(c);
        return c.hasBlob(conn, d);
    } catch (const sdk::Error &e) {
        throw wrap(e, "registry " + quote(c.ref.name()) + ": blob " + quote(d.digest));
    }
}

void RegistryClient::pushBlobs(const std::vector<std::pair<Descriptor, std::string>> &blobs,
                               const TransferProgress &progress) {
    auto &c = *_impl;
    std::vector<std::pair<Descriptor, std::string>> work;
    std::map<std::string, bool> seen;
    for (auto &b : blobs) {
        try {
            digestHex(b.first.digest);
        } catch (const sdk::Error &e) {
            throw wrap(e, "push " + quote(c.ref.str()));
        }
        if (seen.emplace(b.first.digest, true).second) work.push_back(b);
    }
    c.parallel(work.size(), [&](Impl::Connection &conn, size_t i) {
        try {
            c.pushOne(conn, work[i].first, work[i].second, progress);
        } catch (const sdk::Error &e) {
            throw wrap(e, "push " + quote(c.ref.str()) + ": blob " + quote(work[i].first.digest));
        }
    });
}

std::string RegistryClient::pushManifest(const std::string &tagOrDigest,
                                         const std::string &mediaType, const std::string &bytes) {
    auto &c = *_impl;
    SigpipeGuard guard;
    std::string what =
        "push " +
        quote(c.ref.name() + (tagOrDigest.compare(0, 7, "sha256:") == 0 ? "@" : ":") + tagOrDigest);
    try {
        std::string digest = sha256Of(bytes);
        if (tagOrDigest.compare(0, 7, "sha256:") == 0 && tagOrDigest != digest)
            throw sdk::Error(MO_E_INVALID, "the manifest hashes to " + quote(digest));
        Impl::Connection conn(c);
        Request req;
        req.method = HTTPRequest::HTTP_PUT;
        req.url = c.endpoint("/manifests/" + tagOrDigest);
        req.actions = "pull,push";
        req.hasBody = true;
        req.contentType = mediaType;
        req.data = bytes;
        Response r = c.send(conn, req);
        if (r.status() != 201 && r.status() != 200 && r.status() != 204) throw c.failure(r);
        std::string header = r.head.get("Docker-Content-Digest", "");
        c.drain(r, r.url);
        if (!header.empty() && header != digest)
            throw sdk::Error(MO_E_INVALID, "the registry stored it as " + quote(header) + ", not " +
                                               quote(digest));
        return digest;
    } catch (const sdk::Error &e) {
        throw wrap(e, what);
    }
}

} // namespace mobileops::storage
