// JSON across the C ABI, as every plugin's entry points need it: arguments in (NULL or
// empty means {}), results out through the host's buffers.
#pragma once

#include <mobileops/common/Errors.h>
#include <mobileops/host.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

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

// A string member of a method's arguments; "" when absent or not a string.
inline std::string stringArg(const nlohmann::json &args, const char *key) {
    auto it = args.find(key);
    return it != args.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// A member given as one string or a list of them (Lua's `x = "a"` or `x = {"a", "b"}`);
// empty strings and other types are left out.
inline std::vector<std::string> stringsArg(const nlohmann::json &args, const char *key) {
    std::vector<std::string> out;
    auto it = args.find(key);
    if (it == args.end()) return out;
    if (it->is_string() && !it->get<std::string>().empty()) out.push_back(it->get<std::string>());
    if (it->is_array())
        for (const auto &v : *it)
            if (v.is_string() && !v.get<std::string>().empty()) out.push_back(v.get<std::string>());
    return out;
}

} // namespace mobileops::common
