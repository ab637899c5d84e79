// Parsers for the values that appear both in VirtualRoot documents and in CLI flags.
#include "mobileops/core/Spec.h"

#include <mobileops/capabilities.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace mobileops::core::spec {

using json = nlohmann::json;

namespace {

using U128 = unsigned __int128;

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isSpace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
bool allDigits(const std::string &s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), isDigit);
}

std::string upper(std::string s) {
    for (auto &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
}

std::vector<std::string> split(const std::string &s, char sep) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (;;) {
        std::size_t pos = s.find(sep, start);
        out.push_back(s.substr(start, pos - start));
        if (pos == std::string::npos) return out;
        start = pos + 1;
    }
}

U128 pow10(int n) {
    U128 r = 1;
    for (int i = 0; i < n; ++i) r *= 10;
    return r;
}

// A decimal number "[+-]digits[.digits]" read from text[i...]: mantissa and the count of
// fractional digits kept (at most 18; further non-zero digits set `sticky`).
struct Decimal {
    bool negative = false;
    bool huge = false;   // more than 20 integer digits: out of any range we accept
    bool sticky = false; // non-zero digits beyond the 18 fractional ones kept
    U128 mantissa = 0;
    int fraction = 0;
};

bool readDecimal(const std::string &text, std::size_t &i, Decimal &d) {
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) d.negative = text[i++] == '-';
    bool digits = false;
    int intDigits = 0;
    while (i < text.size() && isDigit(text[i])) {
        digits = true;
        if (d.mantissa != 0 || text[i] != '0') ++intDigits;
        if (intDigits > 20)
            d.huge = true;
        else
            d.mantissa = d.mantissa * 10 + static_cast<unsigned>(text[i] - '0');
        ++i;
    }
    if (i < text.size() && text[i] == '.') {
        ++i;
        while (i < text.size() && isDigit(text[i])) {
            digits = true;
            if (d.fraction < 18 && !d.huge) {
                d.mantissa = d.mantissa * 10 + static_cast<unsigned>(text[i] - '0');
                ++d.fraction;
            } else if (text[i] != '0') {
                d.sticky = true;
            }
            ++i;
        }
    }
    return digits;
}

// An exponent "e[+-]digits" for the whole rest of text; false when it is not one.
bool readExponent(const std::string &text, std::size_t i, int &exponent) {
    if (i >= text.size() || (text[i] != 'e' && text[i] != 'E')) return false;
    ++i;
    bool negative = false;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) negative = text[i++] == '-';
    if (i >= text.size()) return false;
    int value = 0;
    for (; i < text.size(); ++i) {
        if (!isDigit(text[i])) return false;
        value = std::min(value * 10 + (text[i] - '0'), 1000);
    }
    exponent = negative ? -value : value;
    return true;
}

// mantissa * multiplier * 10^exponent / 10^fraction, rounded up; false on overflow.
bool scale(const Decimal &d, U128 multiplier, int exponent, bool &inexact, U128 &out) {
    int shift = exponent - d.fraction;
    if (shift < -40 || shift > 40) return false;
    U128 value;
    if (__builtin_mul_overflow(d.mantissa, multiplier, &value)) return false;
    if (shift > 0) {
        if (__builtin_mul_overflow(value, pow10(shift), &value)) return false;
        inexact = d.sticky;
    } else if (shift < 0) {
        if (-shift > 38) {
            inexact = value != 0 || d.sticky;
            out = 0;
            return true;
        }
        U128 divisor = pow10(-shift);
        inexact = value % divisor != 0 || d.sticky;
        value /= divisor;
    } else {
        inexact = d.sticky;
    }
    out = value;
    return true;
}

struct Suffix {
    const char *name;
    U128 multiplier;
};

const Suffix kByteSuffixes[] = {
    {"Ki", U128(1) << 10}, {"Mi", U128(1) << 20}, {"Gi", U128(1) << 30}, {"Ti", U128(1) << 40},
    {"Pi", U128(1) << 50}, {"Ei", U128(1) << 60}, {"k", pow10(3)},       {"M", pow10(6)},
    {"G", pow10(9)},       {"T", pow10(12)},      {"P", pow10(15)},      {"E", pow10(18)},
};

struct NamedRlimit {
    const char *name;
    const char *type;
};

const NamedRlimit kRlimits[] = {
    {"as", "RLIMIT_AS"},
    {"core", "RLIMIT_CORE"},
    {"cpu", "RLIMIT_CPU"},
    {"data", "RLIMIT_DATA"},
    {"fsize", "RLIMIT_FSIZE"},
    {"locks", "RLIMIT_LOCKS"},
    {"memlock", "RLIMIT_MEMLOCK"},
    {"msgqueue", "RLIMIT_MSGQUEUE"},
    {"nice", "RLIMIT_NICE"},
    {"nofile", "RLIMIT_NOFILE"},
    {"nproc", "RLIMIT_NPROC"},
    {"rss", "RLIMIT_RSS"},
    {"rtprio", "RLIMIT_RTPRIO"},
    {"rttime", "RLIMIT_RTTIME"},
    {"sigpending", "RLIMIT_SIGPENDING"},
    {"stack", "RLIMIT_STACK"},
};

struct NamedSignal {
    const char *name;
    int number;
};

const NamedSignal kSignals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},   {"IOT", SIGIOT},   {"BUS", SIGBUS},
    {"FPE", SIGFPE},       {"KILL", SIGKILL},   {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE},   {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD},   {"CLD", SIGCHLD},  {"CONT", SIGCONT},
    {"STOP", SIGSTOP},     {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},
    {"URG", SIGURG},       {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF},     {"WINCH", SIGWINCH}, {"IO", SIGIO},     {"POLL", SIGPOLL},
    {"PWR", SIGPWR},       {"SYS", SIGSYS},
};


bool rlimitBelow(std::int64_t a, std::int64_t b) { // a <= b with -1 as infinity
    if (b < 0) return true;
    if (a < 0) return false;
    return a <= b;
}

// "`x` is not ...", "`x` contains ..." read on from the value; other reasons follow a colon.
bool isPredicate(const std::string &reason) {
    for (const char *verb : {"is ", "contains ", "conflicts "})
        if (reason.rfind(verb, 0) == 0) return true;
    return false;
}

// A value as messages show it: control characters escaped, very long values cut.
std::string printable(const std::string &value) {
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : value.substr(0, 200)) {
        if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else if (c < 0x20 || c == 0x7f)
            out += std::string("\\x") + kHex[c >> 4] + kHex[c & 15];
        else
            out += static_cast<char>(c);
    }
    if (value.size() > 200) out += "...";
    return out;
}

} // namespace

InvalidValue::InvalidValue(const std::string &value, const std::string &reason)
    : Error(MO_E_INVALID,
            (value.empty() ? std::string("an empty value") : quote(printable(value))) +
                (isPredicate(reason) ? " " : ": ") + reason),
      _value(value), _reason(reason) {}

std::string InvalidValue::brief() const {
    return _reason.rfind("is ", 0) == 0 ? _reason.substr(3) : _reason;
}

std::uint64_t parseQuantity(const std::string &text) {
    Decimal d;
    std::size_t i = 0;
    if (!readDecimal(text, i, d)) throw InvalidValue(text, "is not a quantity");
    std::string suffix = text.substr(i);
    U128 multiplier = 1;
    int exponent = 0;
    if (!suffix.empty() && !readExponent(text, i, exponent)) {
        auto it = std::find_if(std::begin(kByteSuffixes), std::end(kByteSuffixes),
                               [&](const Suffix &s) { return suffix == s.name; });
        if (it != std::end(kByteSuffixes)) {
            multiplier = it->multiplier;
        } else if (suffix == "m") {
            throw InvalidValue(text, "is not a quantity of bytes (`m` means milli; did you mean " +
                                         quote(text.substr(0, i) + "Mi") + "?)");
        } else {
            throw InvalidValue(text, "is not a quantity");
        }
    }
    bool inexact = false;
    U128 value = 0;
    if (d.huge || !scale(d, multiplier, exponent, inexact, value))
        throw InvalidValue(text, "is out of range");
    if (inexact) ++value; // Kubernetes rounds fractional bytes up
    if (d.negative && value != 0) throw InvalidValue(text, "is negative");
    if (value > std::numeric_limits<std::uint64_t>::max())
        throw InvalidValue(text, "is out of range");
    return static_cast<std::uint64_t>(value);
}

std::int64_t parseCpu(const std::string &text) {
    static const std::string kExpected =
        "is not a CPU quantity (cores such as `1.5` or millicores such as `500m`)";
    Decimal d;
    std::size_t i = 0;
    if (!readDecimal(text, i, d)) throw InvalidValue(text, kExpected);
    U128 multiplier = 1000;
    int exponent = 0;
    if (text.substr(i) == "m")
        multiplier = 1;
    else if (i < text.size() && !readExponent(text, i, exponent))
        throw InvalidValue(text, kExpected);
    bool inexact = false;
    U128 value = 0;
    if (d.huge || !scale(d, multiplier, exponent, inexact, value) ||
        value > U128(std::numeric_limits<std::int64_t>::max()))
        throw InvalidValue(text, "is out of range");
    if (d.negative && (value != 0 || inexact)) throw InvalidValue(text, "is negative");
    if (inexact) throw InvalidValue(text, "is finer than `1m` (a thousandth of a CPU)");
    return static_cast<std::int64_t>(value);
}

std::string rlimitType(const std::string &name) {
    std::string key = upper(name);
    if (key.rfind("RLIMIT_", 0) == 0) key = key.substr(7);
    for (const auto &r : kRlimits)
        if (upper(r.name) == key) return r.type;
    std::string names;
    for (const auto &r : kRlimits) names += std::string(names.empty() ? "" : " ") + r.name;
    throw InvalidValue(name, "is not a resource limit (one of " + names + ")");
}

std::int64_t parseRlimitValue(const std::string &text) {
    if (text == "unlimited" || text == "-1") return -1;
    std::int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (!allDigits(text)) throw InvalidValue(text, "is not a number or `unlimited`");
    if (ec != std::errc() || end != text.data() + text.size())
        throw InvalidValue(text, "is out of range");
    return value;
}

Rlimit parseUlimit(const std::string &text) {
    static const std::string kExpected = "expected NAME=SOFT[:HARD]";
    auto eq = text.find('=');
    if (eq == std::string::npos || eq == 0) throw InvalidValue(text, kExpected);
    Rlimit limit;
    try {
        limit.type = rlimitType(text.substr(0, eq));
    } catch (const InvalidValue &e) {
        throw InvalidValue(text, "unknown resource " + quote(text.substr(0, eq)) + " " +
                                     e.reason().substr(std::strlen("is not a resource limit ")));
    }
    auto values = split(text.substr(eq + 1), ':');
    if (values.size() > 2) throw InvalidValue(text, kExpected);
    try {
        limit.soft = parseRlimitValue(values[0]);
        limit.hard = values.size() == 2 ? parseRlimitValue(values[1]) : limit.soft;
    } catch (const InvalidValue &e) {
        throw InvalidValue(text,
                           e.reason() == "is out of range" ? "value out of range" : kExpected);
    }
    if (!rlimitBelow(limit.soft, limit.hard))
        throw InvalidValue(text, "the soft limit is above the hard limit");
    return limit;
}

json toJson(const Rlimit &limit) {
    return {{"type", limit.type}, {"soft", limit.soft}, {"hard", limit.hard}};
}

std::uint32_t parseId(const std::string &text) {
    if (!allDigits(text)) throw InvalidValue(text, "is not a uid or gid");
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || value > kMaxId)
        throw InvalidValue(text, "is out of range (0 to 4294967294)");
    return static_cast<std::uint32_t>(value);
}

bool isValidUserName(const std::string &name) {
    if (name.empty() || name.size() > 256 || name[0] == '-' || allDigits(name)) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-' ||
                  (c == '$' && i + 1 == name.size());
        if (!ok) return false;
    }
    return true;
}

json parseUser(const std::string &text) {
    static const std::string kExpected = "expected UID[:GID] or NAME[:GROUP]";
    auto parts = split(text, ':');
    if (parts.size() > 2) throw InvalidValue(text, kExpected);
    for (const auto &part : parts) {
        if (allDigits(part)) {
            try {
                parseId(part);
            } catch (const InvalidValue &) {
                throw InvalidValue(text, quote(part) + " is out of range (0 to 4294967294)");
            }
        } else if (!isValidUserName(part)) {
            throw InvalidValue(text, kExpected);
        }
    }
    if (parts.size() == 2 && allDigits(parts[0]) && allDigits(parts[1]))
        return {{"uid", parseId(parts[0])}, {"gid", parseId(parts[1])}};
    return {{"name", text}};
}

json parseUserns(const std::string &text) {
    static const std::string kExpected = "expected HOSTID:SIZE or CONTAINERID:HOSTID:SIZE";
    auto parts = split(text, ':');
    if (parts.size() < 2 || parts.size() > 3) throw InvalidValue(text, kExpected);
    std::uint64_t ids[3] = {0, 0, 0};
    std::size_t first = 3 - parts.size();
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (!allDigits(parts[i]) || parts[i].size() > 10) throw InvalidValue(text, kExpected);
        ids[first + i] = std::stoull(parts[i]);
    }
    auto [container, host, size] = std::tuple(ids[0], ids[1], ids[2]);
    if (size == 0) throw InvalidValue(text, "the size must be at least 1");
    if (container > kMaxId || host > kMaxId || container + size > kMaxId + 1ull ||
        host + size > kMaxId + 1ull)
        throw InvalidValue(text, "the range goes past id 4294967294");
    json mapping = json::array({{{"containerID", container}, {"hostID", host}, {"size", size}}});
    return {{"uidMappings", mapping}, {"gidMappings", mapping}};
}

std::pair<std::string, std::optional<std::string>> parseEnv(const std::string &text) {
    auto eq = text.find('=');
    std::string name = text.substr(0, eq);
    if (name.empty()) throw InvalidValue(text, "the variable name is empty");
    if (std::any_of(name.begin(), name.end(), isSpace))
        throw InvalidValue(text, "the variable name contains whitespace");
    if (text.find('\0') != std::string::npos) throw InvalidValue(text, "contains a NUL byte");
    if (!isValidUtf8(text)) throw InvalidValue(text, "is not valid UTF-8");
    if (eq == std::string::npos) return {name, std::nullopt};
    return {name, text.substr(eq + 1)};
}

std::vector<std::string> readEnvFile(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw Error(MO_E_INVALID, quote(path) + ": " + std::strerror(errno));
    std::string data;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            throw Error(MO_E_INVALID, quote(path) + ": " + std::strerror(err));
        }
        if (n == 0) break;
        data.append(buf, static_cast<std::size_t>(n));
        if (data.size() > (16u << 20)) {
            ::close(fd);
            throw Error(MO_E_INVALID, quote(path) + ": larger than 16 MiB");
        }
    }
    ::close(fd);

    std::vector<std::string> out;
    auto lines = split(data, '\n');
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::string line = lines[i];
        if (!line.empty() && line.back() == '\r') line.pop_back();
        line.erase(0, line.find_first_not_of(" \t"));
        if (line.empty() || line[0] == '#') continue;
        try {
            auto [name, value] = parseEnv(line);
            if (value) {
                out.push_back(name + "=" + *value);
            } else if (const char *env = std::getenv(name.c_str())) {
                if (!isValidUtf8(env))
                    throw InvalidValue(name,
                                       "has a value in the environment that is not valid UTF-8");
                out.push_back(name + "=" + env);
            }
        } catch (const InvalidValue &e) {
            throw Error(MO_E_INVALID, path + ":" + std::to_string(i + 1) + ": " + e.what());
        }
    }
    return out;
}

int parseSignal(const std::string &text) {
    if (allDigits(text)) {
        if (text.size() <= 2) {
            int n = std::stoi(text);
            if (n >= 1 && n <= SIGRTMAX) return n;
        }
        throw InvalidValue(text, "is not a signal number (1 to " + std::to_string(SIGRTMAX) + ")");
    }
    std::string name = upper(text);
    if (name.rfind("SIG", 0) == 0) name = name.substr(3);
    for (const auto &s : kSignals)
        if (name == s.name) return s.number;
    auto offset = [&](std::size_t at, int &out) {
        std::string rest = name.substr(at);
        if (!allDigits(rest) || rest.size() > 2) return false;
        out = std::stoi(rest);
        return out <= SIGRTMAX - SIGRTMIN;
    };
    int n = 0;
    if (name == "RTMIN") return SIGRTMIN;
    if (name == "RTMAX") return SIGRTMAX;
    if (name.rfind("RTMIN+", 0) == 0 && offset(6, n)) return SIGRTMIN + n;
    if (name.rfind("RTMAX-", 0) == 0 && offset(6, n)) return SIGRTMAX - n;
    throw InvalidValue(text, "is not a signal");
}

std::string capabilityName(const std::string &text) {
    std::string name = upper(text);
    if (name == "ALL") return name;
    if (name.rfind("CAP_", 0) == 0) name = name.substr(4);
    for (const char *cap : mo_capability_names)
        if (name == cap) return "CAP_" + name;
    throw InvalidValue(text, "is not a capability");
}

bool isValidName(const std::string &name) {
    if (name.empty() || name.size() > 128) return false;
    if (!std::isalnum(static_cast<unsigned char>(name[0]))) return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
}

bool isValidUtf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        auto c = static_cast<unsigned char>(text[i]);
        std::size_t n;
        std::uint32_t cp;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n >= text.size()) return false; // truncated sequence
        for (std::size_t k = 1; k <= n; ++k) {
            auto cc = static_cast<unsigned char>(text[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static const std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
        if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += n + 1;
    }
    return true;
}

bool isValidCpuList(const std::string &set) {
    auto number = [](const std::string &n) {
        return !n.empty() && n.size() < 6 &&
               std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (set.empty()) return false;
    std::size_t start = 0;
    while (start <= set.size()) {
        std::size_t end = std::min(set.find(',', start), set.size());
        std::string item = set.substr(start, end - start);
        auto dash = item.find('-');
        std::string lo = item.substr(0, dash);
        std::string hi = dash == std::string::npos ? lo : item.substr(dash + 1);
        if (!number(lo) || !number(hi) || std::stoi(lo) > std::stoi(hi)) return false;
        start = end + 1;
    }
    return true;
}

bool isValidHostname(const std::string &name) {
    if (name.empty() || name.size() > 64 || name[0] == '-' || name[0] == '.') return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
    });
}

void setEnv(json &spec, const std::string &name, const std::string &value) {
    json &env = spec["process"]["env"];
    if (!env.is_array()) env = json::array();
    std::string prefix = name + "=";
    for (auto &entry : env) {
        if (entry.is_string() && entry.get_ref<const std::string &>().rfind(prefix, 0) == 0) {
            entry = prefix + value;
            return;
        }
    }
    env.push_back(prefix + value);
}

void addUnapplied(json &spec, const std::string &field) {
    json &list = spec["unapplied"];
    if (!list.is_array()) list = json::array();
    if (std::find(list.begin(), list.end(), field) == list.end()) list.push_back(field);
}

void removeUnapplied(json &spec, const std::string &field) {
    auto it = spec.find("unapplied");
    if (it == spec.end() || !it->is_array()) return;
    json kept = json::array();
    for (const auto &entry : *it) {
        if (entry.is_string()) {
            const auto &s = entry.get_ref<const std::string &>();
            if (s.rfind(field, 0) == 0 &&
                (s.size() == field.size() ||
                 std::string_view(".[=").find(s[field.size()]) != std::string_view::npos))
                continue;
        }
        kept.push_back(entry);
    }
    *it = std::move(kept);
}

} // namespace mobileops::core::spec
