// The api plugin: one named method, `serve`, that runs the REST API server until SIGTERM
// or SIGINT (scripts/serve.lua calls it). Everything else is in Server.cpp and Routes.cpp.
#include "Server.h"

#include <mobileops/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using mobileops::sdk::Error;
using nlohmann::json;

std::string selfExe() {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        throw Error(MO_E_INTERNAL, std::string("readlink /proc/self/exe: ") + std::strerror(errno));
    return std::string(buf, static_cast<size_t>(n));
}

class Api : public mobileops::sdk::Plugin {
public:
    void init() override {
        method(
            "serve", "serve the REST API until SIGTERM or SIGINT (docs/api.md)",
            [](const std::string &args) {
                json a = json::parse(args, nullptr, false);
                if (a.is_discarded() || !a.is_object())
                    throw Error(MO_E_INVALID, "serve: expected an object");
                mobileops::api::ServerConfig c;
                auto str = [&](const char *k) {
                    if (!a.contains(k) || a[k].is_null()) return std::string();
                    if (!a[k].is_string())
                        throw Error(MO_E_INVALID,
                                    std::string("serve: invalid '") + k + "': expected a string");
                    return a[k].get<std::string>();
                };
                auto num = [&](const char *k, int fallback, int lo, int hi) {
                    if (!a.contains(k) || a[k].is_null()) return fallback;
                    if (!a[k].is_number_integer() || a[k].get<long long>() < lo ||
                        a[k].get<long long>() > hi)
                        throw Error(MO_E_INVALID, std::string("--") + k + ": expected " +
                                                      std::to_string(lo) + ".." +
                                                      std::to_string(hi));
                    return static_cast<int>(a[k].get<long long>());
                };
                c.exe = selfExe();
                c.socketPath = str("socket");
                c.listen = str("listen");
                c.tokenFile = str("token_file");
                c.tlsCert = str("tls_cert");
                c.tlsKey = str("tls_key");
                c.version = str("version");
                c.maxBody = static_cast<size_t>(num("max_body", 1 << 20, 1024, 64 << 20));
                c.readTimeoutMs = num("read_timeout", 10, 1, 3600) * 1000;
                c.maxRequests = num("max_requests", 32, 1, 1024);
                c.maxStreams = num("max_streams", 16, 0, 1024);
                c.childTimeoutMs = num("command_timeout", 120, 1, 86400) * 1000;
                if (!c.listen.empty() && !c.socketPath.empty())
                    throw Error(MO_E_INVALID, "--socket and --listen: give one");
                if (c.listen.empty() && c.socketPath.empty()) {
                    // the configured run directory (MOBILEOPS_RUN, default /run/mobileops)
                    std::string dir = str("run_dir");
                    if (dir.empty()) {
                        const char *run = std::getenv("MOBILEOPS_RUN");
                        dir = run && *run ? run : "/run/mobileops";
                    }
                    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
                        throw Error(MO_E_INVALID,
                                    "run directory `" + dir + "`: " + std::strerror(errno));
                    c.socketPath = dir + "/api.sock";
                }
                try {
                    mobileops::api::serve(c);
                } catch (const std::runtime_error &e) {
                    throw Error(MO_E_INVALID, e.what());
                }
                return std::string("{}");
            },
            "{\"socket\": string?, \"listen\": string?, \"token_file\": string?, \"tls_cert\": "
            "string?, "
            "\"tls_key\": string?, \"version\": string?, \"run_dir\": string?, \"max_body\": int?, "
            "\"read_timeout\": "
            "int?, "
            "\"max_requests\": int?, \"max_streams\": int?, \"command_timeout\": int?}");
        feature("api.serve");
    }

    mobileops::sdk::Probe probe() override { return {true, "needs nothing from the host"}; }
};

} // namespace

MOBILEOPS_PLUGIN(Api, "api", "0.1.0", "the REST API server of `mobileops serve`")
