// The REST API server of `mobileops serve` (docs/api.md): HTTP over a unix socket, or
// over TCP with a bearer token (optionally TLS). Each request that acts runs the
// mobileops command line (Child.h) with an argv built from its route (Routes.h).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace mobileops::api {

struct ServerConfig {
    std::string exe;        // the mobileops dispatcher the requests run
    std::string socketPath; // unix socket (when listen is empty)
    std::string listen;     // HOST:PORT for TCP
    std::string tokenFile;  // required with listen
    std::string tlsCert, tlsKey;
    std::string version; // mobileops's version, for /api/v1/version
    size_t maxBody = 1 << 20;
    int readTimeoutMs = 10000;   // one read of a request (headers or body)
    int maxRequests = 32;        // requests under way at once (503 beyond)
    int maxStreams = 16;         // open log/event streams (503 beyond)
    int childTimeoutMs = 120000; // a command running longer is killed (504)
};

// Check the configuration, listen, serve until SIGTERM or SIGINT, then stop: no new
// connections, streams ended, commands under way finished, the socket removed. Throws
// std::runtime_error (message for the user) when it cannot start.
void serve(const ServerConfig &config);

// Constant-time comparison of two secrets (the time does not depend on where they differ).
bool secretEquals(const std::string &a, const std::string &b);

} // namespace mobileops::api
