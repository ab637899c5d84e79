#include "Server.h"

#include "Child.h"
#include "Routes.h"

#include <Poco/Exception.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>
#include <Poco/URI.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <poll.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

extern char **environ;

namespace mobileops::api {

using nlohmann::json;

bool secretEquals(const std::string &a, const std::string &b) {
    // Every byte of the longer one is looked at; the lengths differing is folded in.
    size_t n = std::max(a.size(), b.size());
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < n; ++i) {
        unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
        unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
        diff |= static_cast<unsigned char>(x ^ y);
    }
    return diff == 0;
}

namespace {

using Clock = std::chrono::steady_clock;

// The open connections, each with the time it began waiting for a request. A watchdog
// shuts down one that takes longer than the read timeout to deliver a whole request head
// (a client trickling a byte now and then, which no per-read timeout catches) or that sits
// idle between requests; a connection whose request is being handled is left alone.
class Connections {
public:
    void add(const Poco::Net::StreamSocket &s) {
        std::lock_guard<std::mutex> lock(_m);
        _open[s.impl()->sockfd()] = {s, false, Clock::now()};
    }
    void remove(const Poco::Net::StreamSocket &s) {
        std::lock_guard<std::mutex> lock(_m);
        _open.erase(s.impl()->sockfd());
    }
    void busy(int fd, bool busy) {
        std::lock_guard<std::mutex> lock(_m);
        auto it = _open.find(fd);
        if (it == _open.end()) return;
        it->second.busy = busy;
        it->second.since = Clock::now();
    }
    // Shut down the connections waiting longer than `limit` (all idle ones with 0).
    void cut(Clock::duration limit) {
        std::lock_guard<std::mutex> lock(_m);
        auto now = Clock::now();
        for (auto &[fd, c] : _open) {
            if (c.busy || c.cut || now - c.since < limit) continue;
            c.cut = true;
            ::shutdown(fd, SHUT_RDWR);
        }
    }

private:
    struct Entry {
        Poco::Net::StreamSocket socket; // keeps the fd from being reused while listed
        bool busy = false;
        Clock::time_point since;
        bool cut = false;
    };
    std::mutex _m;
    std::map<int, Entry> _open;
};

struct State {
    ServerConfig config;
    std::string token; // empty: no authentication (the unix socket)
    std::vector<std::string> env;
    std::atomic<int> requests{0}, streams{0};
    std::atomic<bool> stopping{false};
    Connections connections;
};

// Counts a request (or stream) under way for as long as it lives.
class Slot {
public:
    Slot(std::atomic<int> &counter) : _c(counter) { _n = ++_c; }
    ~Slot() { --_c; }
    int count() const { return _n; }

private:
    std::atomic<int> &_c;
    int _n;
};

void sendJson(Poco::Net::HTTPServerResponse &res, int status, const json &body) {
    std::string text = body.dump();
    res.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
    res.setContentType("application/json");
    res.setContentLength(static_cast<std::streamsize>(text.size() + 1));
    res.send() << text << "\n";
}

void sendError(Poco::Net::HTTPServerResponse &res, const ApiError &e) {
    if (e.status == 503) res.set("Retry-After", "1");
    sendJson(res, e.status, {{"code", e.code}, {"message", e.message}});
}

// The rest of the body, at most `limit` bytes (413 beyond).
std::string readBody(Poco::Net::HTTPServerRequest &req, size_t limit, int timeoutMs) {
    const std::string tooLarge = "the body is larger than " + std::to_string(limit) + " bytes";
    if (req.hasContentLength() && req.getContentLength64() > static_cast<Poco::Int64>(limit))
        throw ApiError{413, "too_large", tooLarge};
    std::string body;
    // A request without a length or chunks has no body (RFC 9112 6.3), whatever the method.
    if (!req.hasContentLength() && !req.getChunkedTransferEncoding()) return body;
    std::istream &in = req.stream();
    char buf[16384];
    auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
    const ApiError slow{408, "timeout",
                        "the body did not come within " + std::to_string(timeoutMs / 1000) + " s"};
    try {
        // One socket read at a time (peek), so that a trickling client meets the deadline.
        while (in.peek() != std::char_traits<char>::eof()) {
            if (Clock::now() > deadline) throw slow;
            std::streamsize n = in.readsome(buf, sizeof buf);
            body.append(buf, static_cast<size_t>(n));
            if (body.size() > limit) throw ApiError{413, "too_large", tooLarge};
        }
    } catch (const Poco::TimeoutException &) {
        throw slow;
    } catch (const Poco::Exception &e) {
        throw ApiError{400, "invalid", "body: " + e.displayText()};
    }
    return body;
}

std::map<std::string, std::string> parseQuery(const Poco::URI &uri) {
    std::map<std::string, std::string> out;
    for (auto &[k, v] : uri.getQueryParameters()) {
        if (out.count(k)) throw ApiError{400, "invalid", "query parameter `" + k + "` given twice"};
        out[k] = v;
    }
    return out;
}

class Handler : public Poco::Net::HTTPRequestHandler {
public:
    explicit Handler(State &state) : _s(state) {}

    void handleRequest(Poco::Net::HTTPServerRequest &req,
                       Poco::Net::HTTPServerResponse &res) override {
        Slot slot(_s.requests);
        int fd = static_cast<Poco::Net::HTTPServerRequestImpl &>(req).socket().impl()->sockfd();
        _s.connections.busy(fd, true);
        struct Idle {
            Connections &c;
            int fd;
            ~Idle() { c.busy(fd, false); }
        } idle{_s.connections, fd};
        try {
            handle(req, res, slot.count());
        } catch (const ApiError &e) {
            // An unread body would be taken for the next request: read it (within the
            // limits, so that the client is not cut off mid-send), else close.
            if (e.status == 413 || e.status == 408) {
                res.setKeepAlive(false);
            } else if (!_bodyRead) {
                try {
                    readBody(req, _s.config.maxBody, _s.config.readTimeoutMs);
                } catch (...) {
                    res.setKeepAlive(false);
                }
            }
            if (!res.sent()) sendError(res, e);
        } catch (const std::exception &e) {
            if (!res.sent()) sendError(res, {500, "internal", e.what()});
        }
    }

private:
    State &_s;
    bool _bodyRead = false;

    std::vector<std::string> argv(const std::vector<std::string> &args) const {
        std::vector<std::string> a = {"mobileops"};
        a.insert(a.end(), args.begin(), args.end());
        return a;
    }

    void authenticate(Poco::Net::HTTPServerRequest &req) {
        if (_s.token.empty()) return;
        if (!req.has("Authorization"))
            throw ApiError{401, "unauthorized",
                           "an `Authorization: Bearer TOKEN` header is required"};
        if (!secretEquals(req.get("Authorization"), "Bearer " + _s.token))
            throw ApiError{403, "forbidden", "the token is not the server's"};
    }

    void handle(Poco::Net::HTTPServerRequest &req, Poco::Net::HTTPServerResponse &res, int under) {
        if (_s.stopping) throw ApiError{503, "busy", "the server is stopping"};
        authenticate(req);
        if (under > _s.config.maxRequests)
            throw ApiError{503, "busy",
                           "too many requests under way (" + std::to_string(_s.config.maxRequests) +
                               "); retry"};
        Poco::URI uri;
        try {
            uri = Poco::URI(req.getURI());
        } catch (const Poco::Exception &e) {
            throw ApiError{400, "invalid", "bad request target: " + e.displayText()};
        }
        Match m;
        std::string allow;
        const Route *route = nullptr;
        try {
            route = &findRoute(req.getMethod(), uri.getPath(), m, allow);
        } catch (const ApiError &e) {
            if (e.status == 405) res.set("Allow", allow);
            throw;
        }
        m.query = parseQuery(uri);
        checkQuery(*route, m.query);
        m.body = readBody(req, _s.config.maxBody, _s.config.readTimeoutMs);
        _bodyRead = true;
        if (route->body.empty() && !m.body.empty())
            throw ApiError{400, "invalid",
                           "body: " + req.getMethod() + " " + route->pattern + " takes no body"};
        if (!route->plan) {
            if (route->pattern.ends_with("/version"))
                return sendJson(res, 200, {{"version", _s.config.version}, {"api", "v1"}});
            return sendJson(res, 200, openapi(_s.config.version));
        }
        Plan plan = route->plan(m);
        if (plan.stream) return stream(req, res, plan);
        ChildResult r = runCommand(plan.args, plan.withStdin, plan.input);
        if (plan.okStatus == 204) {
            res.setStatus(Poco::Net::HTTPResponse::HTTP_NO_CONTENT);
            res.setContentLength(0);
            res.send();
            return;
        }
        if (plan.contentType != "application/json") {
            res.setStatus(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(plan.okStatus));
            res.setContentType(plan.contentType);
            res.setContentLength(static_cast<std::streamsize>(r.out.size()));
            res.send() << r.out;
            return;
        }
        json body;
        if (plan.shape) {
            body = plan.shape(r.out);
        } else {
            body = json::parse(r.out, nullptr, false);
            if (body.is_discarded()) throw ApiError{500, "internal", "the command printed no JSON"};
        }
        sendJson(res, plan.okStatus, body);
    }

    // Run a command to its end; its failure becomes the ApiError it names.
    ChildResult runCommand(const std::vector<std::string> &args, bool withStdin,
                           const std::string &input) {
        Child child(_s.config.exe, argv(args), _s.env, withStdin);
        ChildResult r = child.run(input, _s.config.childTimeoutMs, 64u << 20);
        if (r.timedOut)
            throw ApiError{504, "timeout",
                           "the command ran longer than " +
                               std::to_string(_s.config.childTimeoutMs / 1000) +
                               " s and was killed"};
        if (r.tooLarge) throw ApiError{500, "internal", "the command's output is too large"};
        if (r.exitStatus != 0) throw commandError(r.exitStatus, r.err);
        return r;
    }

    // Chunked: the command's stdout as it comes, until it ends, the client goes or the
    // server stops.
    void stream(Poco::Net::HTTPServerRequest &req, Poco::Net::HTTPServerResponse &res,
                const Plan &plan) {
        Slot slot(_s.streams);
        if (slot.count() > _s.config.maxStreams)
            throw ApiError{503, "busy",
                           "too many open streams (" + std::to_string(_s.config.maxStreams) +
                               "); retry"};
        if (!plan.check.empty()) runCommand(plan.check, false, {});
        Child child(_s.config.exe, argv(plan.args), _s.env, false);
        int clientFd =
            static_cast<Poco::Net::HTTPServerRequestImpl &>(req).socket().impl()->sockfd();
        // A command that fails at once (a bad filter) is an error status, not a stream.
        std::string first;
        char buf[16384];
        bool ended = false;
        // The command's stderr is drained (so that warnings cannot fill its pipe and stop
        // it), its tail kept for the error. The client is watched only for hanging up:
        // bytes it sends are not read, and do not wake the loop.
        std::string errTail;
        int errFd = child.stderrFd();
        auto readSome = [&](int timeoutMs) -> int {
            pollfd fds[3] = {{child.stdoutFd(), POLLIN, 0},
                             {clientFd, POLLRDHUP, 0},
                             {errFd, static_cast<short>(errFd >= 0 ? POLLIN : 0), 0}};
            int pr = ::poll(fds, 3, timeoutMs);
            if (pr < 0) return errno == EINTR ? 0 : -1;
            if (fds[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) return -2;
            if (errFd >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) {
                char eb[4096];
                ssize_t got = ::read(errFd, eb, sizeof eb);
                if (got > 0) {
                    errTail.append(eb, static_cast<size_t>(got));
                    if (errTail.size() > 8192) errTail.erase(0, errTail.size() - 8192);
                } else {
                    errFd = -1;
                }
            }
            if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                ssize_t got = ::read(child.stdoutFd(), buf, sizeof buf);
                if (got <= 0) return -1;
                return static_cast<int>(got);
            }
            return 0;
        };
        auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(300)) {
            int n = readSome(50);
            if (n > 0) {
                first.append(buf, static_cast<size_t>(n));
                break;
            }
            if (n == -2) return; // the client went
            if (n == -1) {
                ended = true;
                break;
            }
        }
        if (ended) {
            char eb[4096];
            for (ssize_t got; errFd >= 0 && (got = ::read(errFd, eb, sizeof eb)) > 0;)
                errTail.append(eb, static_cast<size_t>(got));
            int status = child.wait();
            if (status != 0) throw commandError(status, errTail);
        }
        res.setStatus(Poco::Net::HTTPResponse::HTTP_OK);
        res.setContentType(plan.contentType);
        res.setChunkedTransferEncoding(true);
        res.setKeepAlive(false);
        std::ostream &out = res.send();
        out << first;
        out.flush();
        while (!ended && !_s.stopping && out.good()) {
            int n = readSome(200);
            if (n > 0) {
                out.write(buf, n);
                out.flush();
            } else if (n < 0) {
                break;
            }
        }
        child.stop(SIGTERM, 2000);
    }
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
public:
    explicit Factory(State &state) : _s(state) {}
    Poco::Net::HTTPRequestHandler *
    createRequestHandler(const Poco::Net::HTTPServerRequest &) override {
        return new Handler(_s);
    }

private:
    State &_s;
};

class Connection : public Poco::Net::HTTPServerConnection {
public:
    Connection(const Poco::Net::StreamSocket &socket, Poco::Net::HTTPServerParams::Ptr params,
               Poco::Net::HTTPRequestHandlerFactory::Ptr factory, Connections &connections)
        : HTTPServerConnection(socket, params, factory), _connections(connections) {}
    void run() override {
        _connections.add(socket());
        try {
            HTTPServerConnection::run();
        } catch (...) {
            _connections.remove(socket());
            throw;
        }
        _connections.remove(socket());
    }

private:
    Connections &_connections;
};

class ConnectionFactory : public Poco::Net::TCPServerConnectionFactory {
public:
    ConnectionFactory(State &s, Poco::Net::HTTPServerParams::Ptr params)
        : _s(s), _params(params), _handlers(new Factory(s)) {}
    Poco::Net::TCPServerConnection *
    createConnection(const Poco::Net::StreamSocket &socket) override {
        return new Connection(socket, _params, _handlers, _s.connections);
    }

private:
    State &_s;
    Poco::Net::HTTPServerParams::Ptr _params;
    Poco::Net::HTTPRequestHandlerFactory::Ptr _handlers;
};

std::string readToken(const std::string &path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw std::runtime_error("token file `" + path + "`: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw std::runtime_error("token file `" + path + "`: not a regular file");
    if (st.st_mode & S_IROTH)
        throw std::runtime_error("token file `" + path + "` is readable by everyone (mode " + [&] {
            char b[8];
            std::snprintf(b, sizeof b, "%04o", st.st_mode & 07777);
            return std::string(b);
        }() + "); chmod o-r it");
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string t = ss.str();
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.erase(0, 1);
    if (t.size() < 16)
        throw std::runtime_error("token file `" + path +
                                 "`: the token must be at least 16 characters");
    for (unsigned char c : t)
        if (c < 0x21 || c > 0x7e)
            throw std::runtime_error("token file `" + path +
                                     "`: the token must be printable ASCII without spaces");
    return t;
}

// A unix socket at path: a stale one (nobody listening) is replaced, a live one refused,
// anything else at the path refused. Mode 0600 from the start.
Poco::Net::ServerSocket unixSocket(const std::string &path) {
    if (path.size() >= sizeof(sockaddr_un{}.sun_path))
        throw std::runtime_error("socket path `" + path + "` is too long");
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw std::runtime_error("`" + path + "` exists and is not a socket; not replacing it");
        int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
        int rc = ::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
        ::close(fd);
        if (rc == 0) throw std::runtime_error("another server is listening on `" + path + "`");
        ::unlink(path.c_str());
    }
    mode_t old = ::umask(0177);
    try {
        Poco::Net::ServerSocket s(
            Poco::Net::SocketAddress(Poco::Net::SocketAddress::UNIX_LOCAL, path), 128);
        ::umask(old);
        ::chmod(path.c_str(), 0600);
        return s;
    } catch (const Poco::Exception &e) {
        ::umask(old);
        throw std::runtime_error("listen on `" + path + "`: " + e.displayText());
    }
}

} // namespace

void serve(const ServerConfig &config) {
    State s;
    s.config = config;
    for (char **e = environ; *e; ++e)
        if (std::strncmp(*e, "MOBILEOPS_ERROR_FORMAT=", 23) != 0) s.env.push_back(*e);
    s.env.push_back("MOBILEOPS_ERROR_FORMAT=json");
    if (!config.tlsCert.empty() != !config.tlsKey.empty())
        throw std::runtime_error("--tls-cert and --tls-key go together");
    if (config.listen.empty() && !config.tlsCert.empty())
        throw std::runtime_error("TLS is for --listen (TCP); the unix socket needs none");
    if (!config.listen.empty()) {
        if (config.tokenFile.empty())
            throw std::runtime_error(
                "--listen needs --token-file: TCP is served only with a bearer token");
        s.token = readToken(config.tokenFile);
    }

    // SIGTERM and SIGINT are taken by sigwait below; every thread inherits the mask.
    sigset_t stopSignals, oldMask;
    sigemptyset(&stopSignals);
    sigaddset(&stopSignals, SIGTERM);
    sigaddset(&stopSignals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stopSignals, &oldMask);
    ::signal(SIGPIPE, SIG_IGN);

    std::string where;
    Poco::Net::ServerSocket socket;
    try {
        if (config.listen.empty()) {
            socket = unixSocket(config.socketPath);
            where = "unix:" + config.socketPath;
        } else {
            Poco::Net::SocketAddress addr;
            try {
                addr = Poco::Net::SocketAddress(config.listen);
            } catch (const Poco::Exception &e) {
                throw std::runtime_error("--listen `" + config.listen + "`: " + e.displayText() +
                                         " (expected HOST:PORT)");
            }
            try {
                if (!config.tlsCert.empty()) {
                    Poco::Net::Context::Ptr ctx =
                        new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, config.tlsKey,
                                               config.tlsCert, "", Poco::Net::Context::VERIFY_NONE);
                    ctx->disableProtocols(
                        Poco::Net::Context::PROTO_SSLV2 | Poco::Net::Context::PROTO_SSLV3 |
                        Poco::Net::Context::PROTO_TLSV1 | Poco::Net::Context::PROTO_TLSV1_1);
                    Poco::Net::SecureServerSocket ss(ctx);
                    ss.bind(addr, true);
                    ss.listen(128);
                    socket = ss;
                } else {
                    socket = Poco::Net::ServerSocket(addr, 128);
                }
            } catch (const Poco::Exception &e) {
                throw std::runtime_error("listen on `" + config.listen + "`: " + e.displayText());
            }
            where = (config.tlsCert.empty() ? "http://" : "https://") + socket.address().toString();
        }
    } catch (...) {
        pthread_sigmask(SIG_SETMASK, &oldMask, nullptr);
        throw;
    }

    auto *params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(config.maxRequests + config.maxStreams + 4);
    params->setMaxQueued(256);
    params->setTimeout(Poco::Timespan(static_cast<long>(config.readTimeoutMs) * 1000));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(static_cast<long>(config.readTimeoutMs) * 1000));
    params->setMaxKeepAliveRequests(1000);
    params->setServerName("mobileops");
    params->setSoftwareVersion("mobileops/" + config.version);
    {
        // A pool of our own: Poco's default one stops at 16 threads, whatever maxThreads says.
        Poco::ThreadPool pool(2, params->getMaxThreads(), 60);
        Poco::Net::TCPServer server(new ConnectionFactory(s, params), pool, socket, params);
        server.start();
        std::fprintf(stderr, "mobileops: serving the API on %s\n", where.c_str());
        std::fflush(stderr);
        std::atomic<bool> watching{true};
        std::thread watchdog([&] {
            while (watching) {
                s.connections.cut(std::chrono::milliseconds(config.readTimeoutMs));
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
        int sig = 0;
        sigwait(&stopSignals, &sig);
        std::fprintf(stderr, "mobileops: %s: stopping the API server\n", strsignal(sig));
        s.stopping = true;
        server.stop(); // no more connections; the requests under way finish
        // Commands under way run to their end (each is bounded by the command timeout);
        // streams end within 200 ms of `stopping`.
        auto deadline = Clock::now() + std::chrono::milliseconds(config.childTimeoutMs + 5000);
        while ((s.requests > 0 || s.streams > 0) && Clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        watching = false;
        watchdog.join();
        // idle keep-alive connections, then wait for their threads
        auto until = Clock::now() + std::chrono::seconds(5);
        while (server.currentConnections() > 0 && Clock::now() < until) {
            s.connections.cut(std::chrono::milliseconds(0));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    socket.close();
    if (config.listen.empty()) ::unlink(config.socketPath.c_str());
    pthread_sigmask(SIG_SETMASK, &oldMask, nullptr);
}

} // namespace mobileops::api
