// The host side of guest/protocol.h: the job file the guest init reads from the job share,
// and the exit code it writes back.
#pragma once

#include "Vm.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mobileops::krun {

// The job file's bytes for `config`, in protocol.h's record order. Throws
// common::Error(MO_E_INVALID) naming the field and value the guest could not honour (no
// program, a NUL byte, an environment entry without `=`, a relative path, an unknown
// rlimit, ...).
std::string encodeJob(const VmConfig &config);

// encodeJob(config) written to `dir`/MO_JOB_FILE (replacing what is there).
void writeJob(const VmConfig &config, const std::string &dir);

// The 9p tag of volume `index`: "mo-vol<index>".
std::string volumeTag(size_t index);

// The program's end as the guest reports it (protocol.h): its exit status as a shell
// shows it, and the signal that killed it (0 when it exited).
struct ExitReport {
    int code = 0;
    int signal = 0;
    bool operator==(const ExitReport &) const = default;
};

// The report in an exit file or after an exit marker: decimal 0-255, optionally
// " signal <N>" (1-64, and then the code must be 128+N), followed by a newline (or the
// end of the text); nullopt for anything else.
std::optional<ExitReport> parseExitReport(std::string_view text);
// Its code alone.
std::optional<int> parseExitCode(std::string_view text);

} // namespace mobileops::krun
