// JSON across the C ABI, as every plugin's entry points need it: arguments in (NULL or
// empty means {}), results out through the host's buffers.
#pragma once

#include <mobileops/common/Errors.h>
#include <mobileops/host.h>

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::common {

// Error MO_E_INVALID "<what> is not JSON: ..." (or "... is not an object" when
// `object` and it is something else).
inline nlohmann::json parseArgument(const char *text, const char *what, bool object = false) {
    if (!text || !*text) return nlohmann::json::object();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception &e) {
        throw Error(MO_E_INVALID, std::string(what) + " is not JSON: " + e.what());
    }
    if (object && !j.is_object())
        throw Error(MO_E_INVALID, std::string(what) + " is not an object");
    return j;
}

// The document into `out` (nothing when out is NULL).
inline void setResult(const mo_host_api &host, mo_buffer *out, const nlohmann::json &doc) {
    if (!out) return;
    std::string text = doc.dump();
    if (int rc = host.buffer_set(out, text.data(), text.size()); rc < 0)
        throw Error(rc, "out of memory");
}

} // namespace mobileops::common
