// Seccomp profiles in the OCI/Docker JSON form (defaultAction, defaultErrnoRet,
// architectures/archMap, syscalls[{names, action, errnoRet, args, includes, excludes}]),
// validated and compiled with libseccomp in the caller's process, then loaded in the
// container's child from the exported BPF so no libseccomp work happens there.
#pragma once

#include "Syscalls.h"

#include <nlohmann/json.hpp>

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mobileops::nsruntime {

// The default profile, seccomp/default.json (docs/runtime-spec.md, "security"): an
// allowlist in docker's form. Syscalls it does not name fail with ENOSYS, so libc falls
// back from syscalls newer than the profile; the ones it names and denies (keyctl, mount
// without CAP_SYS_ADMIN, clone of new namespaces, ...) fail with EPERM; clone3 fails with
// ENOSYS so glibc falls back to clone, whose flags the filter can see.
// Capability-conditional entries (`includes.caps`) open syscalls to processes holding
// the capability. The text as embedded, and parsed once.
std::string_view defaultSeccompProfileText();
const nlohmann::json &defaultSeccompProfile();

// A compiled filter: classic BPF for seccomp(SECCOMP_SET_MODE_FILTER) and its flags.
struct SeccompProgram {
    std::vector<sock_filter> code;
    unsigned int flags = 0; // SECCOMP_FILTER_FLAG_*
};

// Validate `profile` without compiling: throws Error(MO_E_INVALID) naming the field and
// value ("<what>: syscalls[2].names[0]: unknown system call `keyctll`").
void checkSeccompProfile(const nlohmann::json &profile, const std::string &what);

// Validate and compile `profile` for a process whose bounding set is `capabilities`
// (what `includes.caps`/`excludes.caps` are checked against). Throws as above.
SeccompProgram compileSeccomp(const nlohmann::json &profile, uint64_t capabilities,
                              const std::string &what);

// `profile` as it applies to a process with bounding set `capabilities` on this machine,
// in the OCI runtime-spec form (linux.seccomp) that crun and runc read: `includes` and
// `excludes` resolved, `archMap` turned into `architectures`. Throws as above.
nlohmann::json resolveSeccompProfile(const nlohmann::json &profile, uint64_t capabilities,
                                     const std::string &what);

// Install `program` in the calling process (needs no_new_privs or CAP_SYS_ADMIN).
// 0 or -errno; makes no allocation.
int loadSeccomp(Syscalls &sys, const SeccompProgram &program) noexcept;

} // namespace mobileops::nsruntime
