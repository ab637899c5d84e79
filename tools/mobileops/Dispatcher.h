// `mobileops <workflow> <verb> [args]`: find the workflow script, parse the verb's
// arguments from its declaration, run it, map the outcome to an exit status.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mobileops {

struct GlobalFlags {
    bool json = false;
    bool debug = false;
    // Called with the message of a failure, after it went to stderr (`oci --log`).
    std::function<void(const std::string &)> onError;
};

// `s` as a JSON string literal, quotes included (bytes above 0x7f pass through as they are).
std::string jsonString(const std::string &s);

// Returns the process exit status: 0 ok, 1 failure, 2 usage error. Prints exactly one
// `mobileops: <message>` line on stderr for any failure.
int dispatch(const std::vector<std::string> &argv, GlobalFlags flags);

// `mobileops oci ...` and `mobileops-runc ...`: runc's global options (--root, --log,
// --log-format, ...) before the command, then the `oci` workflow. See docs/oci.md.
int ociMain(const std::vector<std::string> &argv, GlobalFlags flags);

} // namespace mobileops
