// The security posture of a container, read from its record (what `container inspect`
// prints: {id, name, status, spec: {security, namespaces, network, mounts, process,
// readonly, ...}}; docs/runtime-spec.md describes the spec). Each finding names what is
// weak, how bad it is and how to fix it; the score starts at 100 and loses points per
// finding by severity.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace mobileops::integrity {

enum class Severity { Info, Low, Medium, High, Critical };
const char *severityName(Severity s); // "info", "low", "medium", "high", "critical"

struct Finding {
    std::string id; // stable: "privileged", "host-network", "host-pid", "host-ipc",
                    // "host-uts", "cap-added", "seccomp-unconfined",
                    // "writable-rootfs", "no-new-privs-off", "sensitive-mount",
                    // "root-user", "hardware-access", "no-user-namespace",
                    // "no-memory-limit", "no-pids-limit", ...
    Severity severity = Severity::Info;
    std::string message; // what is wrong, with the specifics ("CAP_SYS_ADMIN added",
                         // "/etc mounted read-write at /hostetc")
    std::string fix;     // the flag or spec field that fixes it
};

struct AuditReport {
    std::string id, name;
    std::vector<Finding> findings; // most severe first, then by id
    int score = 100;               // 0..100
    std::string grade;             // "A" (>= 90) .. "F" (< 50)
    // {id, name, score, grade, findings: [{id, severity, message, fix}]}
    nlohmann::json toJson() const;
};

// Throws std::invalid_argument when `container` has no spec.
AuditReport audit(const nlohmann::json &container);

} // namespace mobileops::integrity
