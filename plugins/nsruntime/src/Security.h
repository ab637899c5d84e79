// The runtime spec's `security` object (docs/runtime-spec.md): privileged mode,
// no_new_privs, capability changes and the seccomp profile, parsed from the spec and
// resolved (capability sets computed, filter compiled) in the caller's process before
// anything is cloned, so a bad setting fails `create` with a clear error.
#pragma once

#include "Capabilities.h"
#include "Seccomp.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::nsruntime {

enum class SeccompMode { Default, Unconfined, Profile };

// OCI's explicit capability sets (security.capabilities.{bounding, effective, permitted,
// inheritable, ambient}): when any is given they are the process's sets, exactly; one
// not given is empty.
struct CapabilitySets {
    uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
};

struct SecuritySpec {
    bool privileged = false;
    std::optional<bool> noNewPrivileges;      // unset: on, unless privileged
    std::vector<std::string> capAdd, capDrop; // capability names or ALL
    std::optional<SeccompMode> seccomp;       // unset: Default, Unconfined when privileged
    nlohmann::json seccompProfile;            // with SeccompMode::Profile
    std::string seccompSource;                // the profile's file, for messages
    std::optional<CapabilitySets> sets;       // explicit OCI sets instead of add/drop

    // Filled by resolveSecurity. The bounding set, which is also root's effective and
    // permitted set; a non-root user gets `added` (the capabilities named in --cap-add)
    // as effective, permitted, inheritable and ambient set, as podman does.
    uint64_t bounding = defaultCapabilities();
    uint64_t added = 0;
    std::shared_ptr<const SeccompProgram> filter; // null: no filter
    bool resolved = false;
};

// Parse a `security` object (`path` prefixes field names: "security."). Fields given
// apply on top of `base`: capability lists are appended, flags replaced. `exec` uses
// this with the container's settings as `base`. Throws Error(MO_E_INVALID).
SecuritySpec parseSecurity(const nlohmann::json &doc, const std::string &path,
                           SecuritySpec base = {});

// exec's `process.security` on top of the container's settings: the container's seccomp
// mode stays whatever privileges the exec asks for; `privileged` gives every capability
// (the container's --cap-add/--cap-drop no longer apply, the exec's own do).
SecuritySpec parseExecSecurity(const nlohmann::json &doc, const std::string &path,
                               SecuritySpec container);

// Whether the process gets no_new_privs: as asked, else unless privileged.
inline bool noNewPrivileges(const SecuritySpec &s) {
    return s.noNewPrivileges.value_or(!s.privileged);
}

// Compute the capability sets, no_new_privs and the compiled filter, once (later calls
// change nothing). Throws Error(MO_E_INVALID) naming the bad capability or profile field.
void resolveSecurity(SecuritySpec &security, bool &noNewPrivileges);

// The capability sets a process of user `uid` ends with under resolved `security`: the
// explicit OCI sets when given; else podman's rule, root gets the bounding set as its
// effective and permitted set (inheritable stays empty, CVE-2022-27651), another user
// only what --cap-add named, in every set including ambient so it survives the exec.
CapabilitySets processCapabilities(const SecuritySpec &security, uint32_t uid);

// Where compiled filters are kept across processes (the runtime's run directory): a
// directory only this user may write. Empty (the default): kept in memory only.
void setSeccompCacheDir(const std::string &dir);

} // namespace mobileops::nsruntime
