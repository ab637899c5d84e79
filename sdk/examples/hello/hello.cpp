// The hello plugin: one JSON method, one feature and a probe, written with the C++ helper.
// It builds against the installed SDK alone (see CMakeLists.txt next to it).
//
//   mo.plugins.hello.greet{ name = "world" }  -->  { greeting = "hello, world" }
//
// The SDK ships no JSON library, so this file carries just enough JSON to read one string
// member and to quote one string. A real plugin would use a JSON library instead.
#include <mobileops/plugin.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace {

using mobileops::sdk::Error;

// Reads a JSON document far enough to pull one string member out of an object.
class JsonReader {
public:
    explicit JsonReader(std::string_view text) : _s(text) {}

    // The string value of top-level member `key`; nullopt when it is missing or not a
    // string. Throws Error(MO_E_INVALID) when the text is not a JSON object.
    std::optional<std::string> stringMember(std::string_view key) {
        std::optional<std::string> found;
        expect('{');
        if (eat('}')) return end(found);
        do {
            std::string member = string();
            expect(':');
            space();
            if (member == key && peek() == '"')
                found = string();
            else
                skipValue();
        } while (eat(','));
        expect('}');
        return end(found);
    }

private:
    [[noreturn]] static void invalid() {
        throw Error(MO_E_INVALID, "invalid arguments: expected a JSON object");
    }
    char peek() const { return _i < _s.size() ? _s[_i] : '\0'; }
    void space() {
        while (_i < _s.size() &&
               (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r'))
            ++_i;
    }
    bool eat(char c) {
        space();
        if (peek() != c) return false;
        ++_i;
        return true;
    }
    void expect(char c) {
        if (!eat(c)) invalid();
    }
    std::optional<std::string> end(std::optional<std::string> &found) {
        space();
        if (_i != _s.size()) invalid();
        return found;
    }

    uint32_t hex4() {
        if (_s.size() - _i < 4) invalid();
        uint32_t v = 0;
        for (int n = 0; n < 4; ++n) {
            char c = _s[_i++];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                v |= uint32_t(c - 'A' + 10);
            else
                invalid();
        }
        return v;
    }

    static void appendUtf8(std::string &out, uint32_t cp) {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        } else {
            out += char(0xf0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3f));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        }
    }

    std::string string() {
        expect('"');
        std::string out;
        while (_i < _s.size()) {
            char c = _s[_i++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) invalid();
            if (c != '\\') {
                out += c;
                continue;
            }
            switch (_i < _s.size() ? _s[_i++] : '\0') {
            case '"':
                out += '"';
                break;
            case '\\':
                out += '\\';
                break;
            case '/':
                out += '/';
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                uint32_t cp = hex4();
                if (cp >= 0xd800 && cp < 0xdc00) { // high surrogate: a low one must follow
                    if (_s.substr(_i, 2) != "\\u") invalid();
                    _i += 2;
                    uint32_t low = hex4();
                    if (low < 0xdc00 || low > 0xdfff) invalid();
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    invalid();
                }
                appendUtf8(out, cp);
                break;
            }
            default:
                invalid();
            }
        }
        invalid();
    }

    void skipValue() {
        space();
        char c = peek();
        if (c == '"') {
            string();
        } else if (c == '{' || c == '[') {
            char close = c == '{' ? '}' : ']';
            ++_i;
            if (eat(close)) return;
            do {
                if (close == '}') {
                    string();
                    expect(':');
                }
                skipValue();
            } while (eat(','));
            expect(close);
        } else {
            size_t start = _i;
            while (_i < _s.size() && std::string_view("truefalsn0123456789+-.eE").find(_s[_i]) !=
                                         std::string_view::npos)
                ++_i;
            if (_i == start) invalid();
        }
    }

    std::string_view _s;
    size_t _i = 0;
};

// `s` as a JSON string literal.
std::string jsonQuote(std::string_view s) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char c : s) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20) {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        } else {
            out += c;
        }
    }
    return out + '"';
}

class Hello : public mobileops::sdk::Plugin {
public:
    void init() override {
        method(
            "greet", "return a greeting for `name`",
            [](const std::string &args) {
                std::optional<std::string> name = JsonReader(args).stringMember("name");
                if (!name || name->empty())
                    throw Error(MO_E_INVALID, "invalid 'name': expected a non-empty string");
                return "{\"greeting\":" + jsonQuote("hello, " + *name) + "}";
            },
            "{\"name\": string, who to greet}");
        feature("hello.greet");
    }

    mobileops::sdk::Probe probe() override { return {true, "needs nothing from the host"}; }
};

} // namespace

MOBILEOPS_PLUGIN(Hello, "hello", "1.0.0", "example plugin: greets by name")
