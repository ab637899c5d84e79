// `mobileops <workflow> <verb> [args]`: find the workflow script, parse the verb's
// arguments from its declaration, run it, map the outcome to an exit status.
#pragma once

#include <string>
#include <vector>

namespace mobileops {

struct GlobalFlags {
    bool json = false;
    bool debug = false;
};

// Returns the process exit status: 0 ok, 1 failure, 2 usage error. Prints exactly one
// `mobileops: <message>` line on stderr for any failure.
int dispatch(const std::vector<std::string> &argv, GlobalFlags flags);

} // namespace mobileops
