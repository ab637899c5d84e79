// OCI hooks (spec `hooks`, docs/runtime-spec.md): programs run at points of a container's
// life with the OCI state JSON on stdin. Where each kind runs is the runtime's business
// (Runtime.cpp, Launcher.cpp); this file parses them and runs one list.
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace mobileops::nsruntime {

struct Hook {
    std::string path;              // absolute
    std::vector<std::string> args; // argv; empty: {path}
    std::vector<std::string> env;  // NAME=VALUE, exactly what the hook gets
    std::optional<int> timeout;    // seconds (> 0); none: no limit
};

struct Hooks {
    std::vector<Hook> prestart, createRuntime, createContainer, startContainer, poststart, poststop;
    bool empty() const {
        return prestart.empty() && createRuntime.empty() && createContainer.empty() &&
               startContainer.empty() && poststart.empty() && poststop.empty();
    }
};

// The `hooks` object. Errors are MO_E_INVALID naming the field ("hooks.prestart[0].path").
Hooks parseHooks(const nlohmann::json &doc);

// The OCI state a hook reads: {ociVersion, id, status, pid, bundle, annotations}.
std::string hookState(const std::string &id, const char *status, pid_t pid,
                      const std::string &bundle, const nlohmann::json &annotations);

// Run `hooks` in order, each with `state` on stdin and its stdout and stderr kept for the
// message; the first that fails (exits non-zero, is killed, or outlives its timeout, then
// SIGKILLed) throws Error naming `kind`, its index and path and what it wrote.
void runHooks(const std::vector<Hook> &hooks, const std::string &kind, const std::string &state);

// This process's pid in the PID namespace of the procfs at /proc (the host's, before
// pivot_root), -1 when unknown.
pid_t pidInProc();

} // namespace mobileops::nsruntime
