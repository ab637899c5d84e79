// Linux capabilities as 64-bit masks (bit N = capability N): names, the default set a
// container's root keeps, and docker's --cap-add/--cap-drop rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::nsruntime {

// "CAP_NET_ADMIN", "net_admin" or "NET_ADMIN" -> 12; -1 when unknown.
int capabilityNumber(const std::string &name);
// 12 -> "CAP_NET_ADMIN"; "CAP_<N>" for numbers this build has no name for.
std::string capabilityName(int cap);
// "CAP_CHOWN,CAP_KILL" (empty for none).
std::string capabilityList(uint64_t mask);

// The capabilities a container's root keeps (podman's default set).
uint64_t defaultCapabilities();
// Every capability the running kernel knows (/proc/sys/kernel/cap_last_cap) that this
// process's bounding set still holds: what a privileged container gets.
uint64_t allCapabilities();

// The set `base` with `add` and `drop` applied, as docker and podman do: `add` holding
// ALL gives every capability but the dropped ones; else `drop` holding ALL starts from
// nothing and takes `add`; else `base` minus `drop` plus `add`. Names as for
// capabilityNumber; an unknown one, or one added that allCapabilities() lacks, throws
// Error(MO_E_INVALID) naming `path`add or `path`drop.
uint64_t applyCapabilityChanges(uint64_t base, const std::vector<std::string> &add,
                                const std::vector<std::string> &drop, const std::string &path);

} // namespace mobileops::nsruntime
