// Container records in the state store (kind "container", key = the 64-hex id, name
// unique) and their reconciliation with reality: a recorded pid is trusted only together
// with its start time, so a dead or reused pid reads as a stopped container.
#pragma once

#include "Spec.h"

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

namespace mobileops::nsruntime {

inline constexpr const char *kContainerKind = "container";

// Status values; "creating" is internal (a create in progress or interrupted) and shows
// as "created".
namespace status {
inline constexpr const char *creating = "creating";
inline constexpr const char *created = "created";
inline constexpr const char *running = "running";
inline constexpr const char *paused = "paused";
inline constexpr const char *stopped = "stopped";
} // namespace status

std::string newContainerId();
// RFC 3339 UTC with milliseconds: 2026-11-22T20:00:00.123Z
std::string nowTimestamp();
// A process identity as recorded: {pid, start}. Start 0 when the pid is gone.
nlohmann::json processIdentity(pid_t pid);

// A new record in status "creating", owned by the calling process.
nlohmann::json newRecord(const ContainerSpec &spec, const std::string &id, const std::string &name);

// True for a container created in runc's model (spec `oci`): no monitor, the init's
// parent is whoever called create; its exit status is not ours to know.
bool isOci(const nlohmann::json &record);

using AliveFn = std::function<bool(pid_t pid, uint64_t startTime)>;
bool realAlive(pid_t pid, uint64_t startTime);

enum class Reconciled {
    unchanged, // the record matches reality
    transient, // the process is gone but its monitor lives and will record the exit
    changed    // the record was corrected and should be written back
};
// Bring `record` in line with the processes it names. An OCI container (isOci) is
// "created" with a live init waiting at its gate, and becomes "stopped" without an exit
// code when the init is gone.
Reconciled reconcile(nlohmann::json &record, const AliveFn &alive = realAlive);

// True when a "creating" record's creator is gone (an interrupted create).
bool abandonedCreate(const nlohmann::json &record, const AliveFn &alive = realAlive);

// What callers see: internal fields dropped, "creating" shown as "created".
nlohmann::json publicView(const nlohmann::json &record);

// Mark a record stopped with the given exit; clears the pid.
void markStopped(nlohmann::json &record, int exitCode, int signal);

} // namespace mobileops::nsruntime
