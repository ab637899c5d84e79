// Servers on 127.0.0.1 for the registry client tests: Debian's `docker-registry` (the
// reference implementation of the distribution API) with storage in a temp dir, optionally
// behind htpasswd, token auth or TLS; and a tiny Poco HTTP server for the token issuer and
// for behaviour the real registry never shows (ignoring Range, redirects, lying digests).
// Both are stopped and their files removed when the object goes away, also when a test
// fails; the registry dies with the test process (PR_SET_PDEATHSIG) if that crashes.
#pragma once

#include "TestUtil.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace mobileops::test {

inline constexpr const char *registryBinary = "/usr/bin/docker-registry";

// A port nothing listens on right now (the kernel's pick for an ephemeral bind).
inline uint16_t freePort() {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr *>(&a), sizeof a) < 0 ||
        ::getsockname(s, reinterpret_cast<sockaddr *>(&a), &len) < 0) {
        if (s >= 0) ::close(s);
        throw std::runtime_error("no free port on 127.0.0.1");
    }
    ::close(s);
    return ntohs(a.sin_port);
}

inline bool acceptsConnections(uint16_t port) {
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    bool ok = s >= 0 && ::connect(s, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
    if (s >= 0) ::close(s);
    return ok;
}

inline std::string readFile(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

struct RegistryConfig {
    std::string htpasswd; // a file of user:bcrypt lines: Basic auth
    struct {
        std::string realm, service, issuer, rootCertBundle;
    } token;                     // realm set: Bearer tokens from that issuer
    std::string tlsCert, tlsKey; // both set: HTTPS
};

class RegistryServer {
public:
    explicit RegistryServer(const RegistryConfig &config = {}) : _port(freePort()) {
        std::ostringstream yml;
        yml << "version: 0.1\n"
            << "log:\n  level: error\n  accesslog:\n    disabled: false\n"
            << "storage:\n  filesystem:\n    rootdirectory: " << _dir.path() << "/data\n"
            << "  delete:\n    enabled: true\n"
            << "http:\n  addr: 127.0.0.1:" << _port << "\n";
        if (!config.tlsCert.empty())
            yml << "  tls:\n    certificate: " << config.tlsCert << "\n    key: " << config.tlsKey
                << "\n";
        if (!config.htpasswd.empty())
            yml << "auth:\n  htpasswd:\n    realm: mobileops-test\n    path: " << config.htpasswd
                << "\n";
        else if (!config.token.realm.empty())
            yml << "auth:\n  token:\n    realm: " << config.token.realm
                << "\n    service: " << config.token.service
                << "\n    issuer: " << config.token.issuer
                << "\n    rootcertbundle: " << config.token.rootCertBundle << "\n";
        std::string cfg = _dir.file("config.yml", yml.str());
        _log = _dir.path() + "/registry.log";

        pid_t parent = ::getpid();
        _pid = ::fork();
        if (_pid < 0) throw std::runtime_error("fork failed");
        if (_pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127); // the test died before the prctl
            int null = ::open("/dev/null", O_RDONLY);
            int log = ::open(_log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
            ::dup2(null, 0);
            ::dup2(log, 1);
            ::dup2(log, 2);
            ::execl(registryBinary, registryBinary, "serve", cfg.c_str(), nullptr);
            ::_exit(127);
        }
        // Ready when it accepts connections; a registry that exits (bad config) fails fast.
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (!acceptsConnections(_port)) {
            int status;
            if (::waitpid(_pid, &status, WNOHANG) == _pid) {
                _pid = -1;
                throw std::runtime_error("docker-registry exited: " + readFile(_log));
            }
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                throw std::runtime_error("docker-registry did not listen on port " +
                                         std::to_string(_port) + ": " + readFile(_log));
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    ~RegistryServer() { stop(); }
    RegistryServer(const RegistryServer &) = delete;
    RegistryServer &operator=(const RegistryServer &) = delete;

    uint16_t port() const { return _port; }
    std::string host() const { return "127.0.0.1:" + std::to_string(_port); }
    // Its access log (combined format: `"GET /v2/... HTTP/1.1" 206 ...`) and errors.
    std::string log() const { return readFile(_log); }
    const std::string &dir() const { return _dir.path(); }

    static bool available() { return ::access(registryBinary, X_OK) == 0; }

private:
    void stop() {
        if (_pid <= 0) return;
        ::kill(_pid, SIGKILL);
        ::waitpid(_pid, nullptr, 0);
        _pid = -1;
    }

    TempDir _dir;
    uint16_t _port;
    std::string _log;
    pid_t _pid = -1;
};

// A Poco HTTP server on 127.0.0.1 (an ephemeral port) answering every request with `handler`,
// called from its worker threads.
class LoopbackHttpServer {
public:
    using Handler =
        std::function<void(Poco::Net::HTTPServerRequest &, Poco::Net::HTTPServerResponse &)>;

    explicit LoopbackHttpServer(Handler handler)
        : _socket(Poco::Net::SocketAddress("127.0.0.1", 0)),
          _server(new Factory(std::move(handler)), _socket, new Poco::Net::HTTPServerParams) {
        _server.start();
    }
    ~LoopbackHttpServer() { _server.stopAll(true); }

    uint16_t port() const { return _socket.address().port(); }
    std::string origin() const { return "http://127.0.0.1:" + std::to_string(port()); }

private:
    struct Call : Poco::Net::HTTPRequestHandler {
        explicit Call(const Handler &h) : handler(h) {}
        void handleRequest(Poco::Net::HTTPServerRequest &req,
                           Poco::Net::HTTPServerResponse &res) override {
            handler(req, res);
        }
        const Handler &handler;
    };
    struct Factory : Poco::Net::HTTPRequestHandlerFactory {
        explicit Factory(Handler h) : handler(std::move(h)) {}
        Poco::Net::HTTPRequestHandler *
        createRequestHandler(const Poco::Net::HTTPServerRequest &) override {
            return new Call(handler);
        }
        Handler handler;
    };

    Poco::Net::ServerSocket _socket;
    Poco::Net::HTTPServer _server;
};

} // namespace mobileops::test
