#include "Devices.h"

#include "Errors.h"

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

// More than any engine sends (runc's default list is a dozen); keeps the BPF program small.
constexpr std::size_t kMaxRules = 512;

[[noreturn]] void invalid(const std::string &field, const std::string &why) {
    throw Error(MO_E_INVALID, "invalid " + quote(field) + ": " + why);
}

std::string number(std::int64_t n) { return n < 0 ? std::string("*") : std::to_string(n); }

std::string accessText(unsigned access) {
    std::string out;
    if (access & kDevRead) out += 'r';
    if (access & kDevWrite) out += 'w';
    if (access & kDevMknod) out += 'm';
    return out;
}

// Whether `a` and `b` can match one access: same device type (or either `a`), numbers
// equal or either any, access bits shared.
bool overlap(const DeviceRule &a, const DeviceRule &b) {
    return (a.type == 'a' || b.type == 'a' || a.type == b.type) &&
           (a.major < 0 || b.major < 0 || a.major == b.major) &&
           (a.minor < 0 || b.minor < 0 || a.minor == b.minor) && (a.access & b.access) != 0;
}

} // namespace

std::string DeviceRule::text() const {
    return std::string(1, type) + " " + number(major) + ":" + number(minor) + " " +
           accessText(access);
}

std::vector<DeviceRule> parseDeviceRules(const json &value) {
    std::vector<DeviceRule> out;
    if (value.is_null()) return out;
    if (!value.is_array()) invalid("devices", "expected an array of rules");
    if (value.size() > kMaxRules)
        invalid("devices",
                std::to_string(value.size()) + " rules, at most " + std::to_string(kMaxRules));
    for (size_t i = 0; i < value.size(); ++i) {
        const json &item = value[i];
        std::string at = "devices[" + std::to_string(i) + "]";
        if (!item.is_object())
            invalid(at, "expected an object {allow, type, major, minor, access}");
        DeviceRule r;
        bool allowGiven = false;
        for (const auto &[name, v] : item.items()) {
            std::string field = at + "." + name;
            if (name == "allow") {
                if (!v.is_boolean()) invalid(field, "expected true or false");
                r.allow = v.get<bool>();
                allowGiven = true;
            } else if (name == "type") {
                std::string t = v.is_string() ? v.get<std::string>() : std::string();
                if (t != "a" && t != "c" && t != "b")
                    invalid(field, "expected `a` (all), `c` or `b`");
                r.type = t[0];
            } else if (name == "major" || name == "minor") {
                std::int64_t n = -1;
                if (!v.is_null()) {
                    if (!v.is_number_integer())
                        invalid(field, "expected a device number, -1 or null (any)");
                    n = v.get<std::int64_t>();
                    if (n < -1 || n > 0xfffff)
                        invalid(field, quote(v.dump()) + " is not a device number (0..1048575)");
                }
                (name == "major" ? r.major : r.minor) = n;
            } else if (name == "access") {
                std::string a = v.is_string() ? v.get<std::string>() : std::string();
                if (a.empty() || a.find_first_not_of("rwm") != std::string::npos)
                    invalid(field, "expected a non-empty subset of `rwm`");
                r.access = 0;
                for (char c : a) r.access |= c == 'r' ? kDevRead : c == 'w' ? kDevWrite : kDevMknod;
            } else {
                throw Error(MO_E_INVALID, "unknown resources field " + quote(field));
            }
        }
        if (!allowGiven) invalid(at + ".allow", "required field is missing");
        out.push_back(r);
    }
    return out;
}

json deviceRulesJson(const std::vector<DeviceRule> &rules) {
    json out = json::array();
    for (const DeviceRule &r : rules) {
        json j = {
            {"allow", r.allow}, {"type", std::string(1, r.type)}, {"access", accessText(r.access)}};
        if (r.major >= 0) j["major"] = r.major;
        if (r.minor >= 0) j["minor"] = r.minor;
        out.push_back(j);
    }
    return out;
}

bool deviceAllowed(const std::vector<DeviceRule> &rules, char type, std::uint32_t major,
                   std::uint32_t minor, unsigned access) {
    // Each access bit is decided by the last rule naming it for this device: walk back,
    // taking the bits an allow grants off what is still to decide; a deny naming any bit
    // still undecided decides it (and so the whole access) as denied.
    unsigned pending = access & kDevAll;
    if (!pending) return false;
    for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
        const DeviceRule &r = *it;
        if (r.type != 'a' && r.type != type) continue;
        if (r.major >= 0 && r.major != major) continue;
        if (r.minor >= 0 && r.minor != minor) continue;
        if (!r.allow && (pending & r.access)) return false;
        if (r.allow) pending &= ~r.access;
        if (!pending) return true;
    }
    return false;
}

std::vector<std::pair<std::string, std::string>>
v1DeviceWrites(const std::vector<DeviceRule> &rules) {
    // The last "every device, every access" rule sets the default; nothing before it counts.
    size_t from = 0;
    bool allowAll = false;
    for (size_t i = 0; i < rules.size(); ++i)
        if (rules[i].all()) {
            from = i + 1;
            allowAll = rules[i].allow;
        }
    std::vector<std::pair<std::string, std::string>> out;
    out.emplace_back(allowAll ? "devices.allow" : "devices.deny", "a");
    std::vector<DeviceRule> exceptions; // the rules written after the default, as c and b
    for (size_t i = from; i < rules.size(); ++i) {
        std::vector<DeviceRule> expanded;
        if (rules[i].type == 'a') {
            // Written once as c and once as b: the kernel reads any rule starting with `a`
            // ("a *:* m", "a 1:3 r") as "a", every device with every access.
            for (char t : {'c', 'b'}) {
                DeviceRule r = rules[i];
                r.type = t;
                expanded.push_back(r);
            }
        } else {
            expanded.push_back(rules[i]);
        }
        for (const DeviceRule &r : expanded) {
            if (!allowAll && !r.allow) {
                // The kernel only takes bits away from an exception with the same numbers.
                for (const DeviceRule &e : exceptions)
                    if (e.allow && overlap(e, r) &&
                        (e.type != r.type || e.major != r.major || e.minor != r.minor))
                        throw Error(MO_E_UNSUPPORTED,
                                    "devices[" + std::to_string(i) + "]: deny " + quote(r.text()) +
                                        " inside the earlier allow " + quote(e.text()) +
                                        " cannot be held by the v1 devices controller "
                                        "(it removes only exceptions with the same numbers)");
            }
            out.emplace_back(r.allow ? "devices.allow" : "devices.deny", r.text());
            exceptions.push_back(r);
        }
    }
    return out;
}

} // namespace mobileops::cgroup
