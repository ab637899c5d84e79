#include <mobileops/common/Errors.h>
#include <mobileops/common/Names.h>

namespace mobileops::common {

bool isValidName(const std::string &name) {
    auto ok = [](char c, bool first) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (!first && (c == '_' || c == '.' || c == '-'));
    };
    bool valid = !name.empty() && name.size() <= 128;
    for (size_t i = 0; valid && i < name.size(); ++i) valid = ok(name[i], i == 0);
    return valid;
}

void checkName(const std::string &what, const std::string &name) {
    if (!isValidName(name))
        throw sdk::Error(MO_E_INVALID, "invalid " + what + " " + quote(name) +
                                           ": expected 1 to 128 letters, digits, `_`, `.`, `-`, "
                                           "starting with a letter or digit");
}

} // namespace mobileops::common
