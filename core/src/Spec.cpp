// VirtualRoot documents (YAML or JSON) to the runtime spec. The document is read with
// yaml-cpp into JSON, keeping the line of every field for messages, then checked field by
// field: unknown fields and bad values are refused with the field's path.
#include "mobileops/core/Spec.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <arpa/inet.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

namespace mobileops::core::spec {

using json = nlohmann::json;
using Doc = nlohmann::ordered_json; // keeps the document's order, so the first error is reported

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxNodes = 10000; // ordered_json lookups are linear: keep maps small
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxVolumes = 64; // per container, as finalize() counts bind mounts

// A `..` component ("/a/../b"; not "/a..b").
bool hasDotDot(const std::string &path) {
    for (std::size_t at = 0; at <= path.size();) {
        std::size_t end = std::min(path.find('/', at), path.size());
        if (path.compare(at, end - at, "..") == 0) return true;
        at = end + 1;
    }
    return false;
}

// ---------------------------------------------------------------------------------------
// Reading: YAML (or JSON) text to a document with the line of each field.

struct Document {
    Doc root;
    std::map<std::string, int> lines;         // field path -> line (1-based)
    std::map<std::string, std::string> plain; // field path -> source text of a plain scalar
                                              // read as a number or boolean
};

std::string childPath(const std::string &path, const std::string &key) {
    return path.empty() ? key : path + "." + key;
}

std::string indexPath(const std::string &path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

bool isDigits(std::string_view s, bool (*digit)(char)) {
    return !s.empty() && std::all_of(s.begin(), s.end(), digit);
}

// A plain (unquoted) scalar resolved by the YAML 1.2 core schema.
Doc resolvePlain(const std::string &s) {
    if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;

    std::string_view v = s;
    bool negative = false;
    if (v[0] == '+' || v[0] == '-') {
        negative = v[0] == '-';
        v.remove_prefix(1);
    }
    auto isHex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
    auto isOctal = [](char c) { return c >= '0' && c <= '7'; };
    int base = 0;
    std::string_view digits;
    if (isDigits(v, isDigit)) {
        base = 10;
        digits = v;
    } else if (s[0] != '+' && s[0] != '-' && v.size() > 2 && v[0] == '0' && v[1] == 'x' &&
               isDigits(v.substr(2), isHex)) {
        base = 16;
        digits = v.substr(2);
    } else if (s[0] != '+' && s[0] != '-' && v.size() > 2 && v[0] == '0' && v[1] == 'o' &&
               isDigits(v.substr(2), isOctal)) {
        base = 8;
        digits = v.substr(2);
    }
    if (base != 0) {
        std::string d(digits);
        errno = 0;
        char *end = nullptr;
        unsigned long long u = std::strtoull(d.c_str(), &end, base);
        if (errno == 0) {
            if (!negative) return static_cast<std::uint64_t>(u);
            if (u <= static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max()) + 1)
                return static_cast<std::int64_t>(0 - u);
        }
        return std::strtod(s.c_str(), nullptr); // too large for an integer
    }

    if (v == ".inf" || v == ".Inf" || v == ".INF")
        return negative ? -std::numeric_limits<double>::infinity()
                        : std::numeric_limits<double>::infinity();
    if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    std::size_t i = 0;
    std::size_t intDigits = 0, fracDigits = 0;
    while (i < v.size() && isDigit(v[i])) ++i, ++intDigits;
    if (i < v.size() && v[i] == '.') {
        ++i;
        while (i < v.size() && isDigit(v[i])) ++i, ++fracDigits;
    }
    if (intDigits + fracDigits == 0) return s;
    if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
        ++i;
        if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
        std::size_t expDigits = 0;
        while (i < v.size() && isDigit(v[i])) ++i, ++expDigits;
        if (expDigits == 0) return s;
    }
    if (i != v.size()) return s;
    return std::strtod(s.c_str(), nullptr);
}

class YamlReader {
public:
    YamlReader(const std::string &source, Document &doc) : _source(source), _doc(doc) {}

    Doc convert(const YAML::Node &node, const std::string &path, int depth) {
        if (++_nodes > kMaxNodes)
            throw Error(MO_E_INVALID, _source + ": the document is too large (more than " +
                                          std::to_string(kMaxNodes) + " values)");
        if (depth > kMaxDepth) fail(node.Mark(), path, "nested too deeply");
        switch (node.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return nullptr;
        case YAML::NodeType::Scalar:
            return scalar(node, path);
        case YAML::NodeType::Sequence: {
            checkTag(node, path, {"?", "!", "tag:yaml.org,2002:seq"});
            Doc out = Doc::array();
            std::size_t i = 0;
            for (const auto &item : node) {
                std::string itemPath = indexPath(path, i++);
                remember(itemPath, item.Mark());
                out.push_back(convert(item, itemPath, depth + 1));
            }
            return out;
        }
        case YAML::NodeType::Map: {
            checkTag(node, path, {"?", "!", "tag:yaml.org,2002:map"});
            Doc out = Doc::object();
            for (auto it = node.begin(); it != node.end(); ++it) {
                if (!it->first.IsScalar()) fail(it->first.Mark(), path, "keys must be strings");
                const std::string key = it->first.Scalar();
                if (!isValidUtf8(key)) fail(it->first.Mark(), path, "a key is not valid UTF-8");
                std::string keyPath = childPath(path, key);
                if (out.contains(key)) fail(it->first.Mark(), keyPath, "duplicate key");
                remember(keyPath, it->first.Mark());
                out[key] = convert(it->second, keyPath, depth + 1);
            }
            return out;
        }
        }
        return nullptr;
    }

private:
    Doc scalar(const YAML::Node &node, const std::string &path) {
        const std::string &tag = node.Tag();
        const std::string &text = node.Scalar();
        if (!isValidUtf8(text)) fail(node.Mark(), path, "not valid UTF-8");
        if (tag == "!" || tag == "tag:yaml.org,2002:str") return text; // quoted or block
        if (tag != "?" && tag.rfind("tag:yaml.org,2002:", 0) != 0)
            fail(node.Mark(), path, "unsupported tag " + quote(tag));
        Doc value = resolvePlain(text);
        auto want = [&](bool ok, const char *what) {
            if (!ok) fail(node.Mark(), path, quote(text) + " is not " + what);
        };
        if (tag == "tag:yaml.org,2002:int")
            want(value.is_number_integer(), "an integer");
        else if (tag == "tag:yaml.org,2002:float") {
            want(value.is_number(), "a number");
            value = value.get<double>();
        } else if (tag == "tag:yaml.org,2002:bool")
            want(value.is_boolean(), "a boolean");
        else if (tag == "tag:yaml.org,2002:null")
            want(value.is_null(), "null");
        else if (tag != "?")
            fail(node.Mark(), path, "unsupported tag " + quote(tag));
        if (!value.is_string()) _doc.plain[path] = text;
        return value;
    }

    void checkTag(const YAML::Node &node, const std::string &path,
                  std::initializer_list<const char *> allowed) {
        for (const char *t : allowed)
            if (node.Tag() == t) return;
        fail(node.Mark(), path, "unsupported tag " + quote(node.Tag()));
    }

    void remember(const std::string &path, const YAML::Mark &mark) {
        if (!mark.is_null()) _doc.lines.emplace(path, mark.line + 1);
    }

    [[noreturn]] void fail(const YAML::Mark &mark, const std::string &path,
                           const std::string &message) {
        std::string where = _source;
        if (!mark.is_null()) where += ":" + std::to_string(mark.line + 1);
        if (!path.empty()) where += ": " + path;
        throw Error(MO_E_INVALID, where + ": " + message);
    }

    const std::string &_source;
    Document &_doc;
    std::size_t _nodes = 0;
};

bool looksLikeJson(const std::string &text) {
    auto pos = text.find_first_not_of(" \t\r\n");
    return pos != std::string::npos && (text[pos] == '{' || text[pos] == '[');
}

// yaml-cpp could not read the text at all.
struct SyntaxError {
    std::string message;
};

// Counts the documents of a stream. YAML::LoadAll is not used: yaml-cpp 0.7 reads a stray
// `,` at the top level as an endless series of empty documents and allocates until it
// dies; here a document that starts where the previous one did is a syntax error.
class DocumentCounter : public YAML::EventHandler {
public:
    void OnDocumentStart(const YAML::Mark &mark) override {
        if (_count > 0 && mark.pos == _last.pos)
            throw YAML::ParserException(mark, "unexpected character");
        _last = mark;
        ++_count;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark &, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark &, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark &, const std::string &, YAML::anchor_t,
                  const std::string &) override {}
    void OnSequenceStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}

    int count() const { return _count; }

private:
    int _count = 0;
    YAML::Mark _last;
};

Document readYaml(const std::string &text, const std::string &source) {
    Document doc;
    YAML::Node root;
    try {
        std::istringstream in(text);
        YAML::Parser parser(in);
        DocumentCounter counter;
        while (counter.count() < 2 && parser.HandleNextDocument(counter)) {
        }
        if (counter.count() == 0) throw Error(MO_E_INVALID, source + ": empty document");
        if (counter.count() > 1)
            throw Error(MO_E_INVALID,
                        source + ": more than one document; expected one VirtualRoot");
        root = YAML::Load(text);
    } catch (const YAML::Exception &e) {
        std::string where = source;
        if (!e.mark.is_null())
            where +=
                ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
        std::string at;
        if (e.msg == "unexpected character" && e.mark.pos >= 0 &&
            static_cast<std::size_t>(e.mark.pos) < text.size())
            at = " " + quote(text.substr(static_cast<std::size_t>(e.mark.pos), 1));
        throw SyntaxError{where + ": invalid YAML: " + e.msg + at};
    }
    try {
        YamlReader reader(source, doc);
        doc.root = reader.convert(root, "", 0);
    } catch (const YAML::Exception &e) {
        throw SyntaxError{source + ": invalid YAML: " + e.msg};
    }
    return doc;
}

Document readDocument(const std::string &text, const std::string &source) {
    if (!looksLikeJson(text)) {
        try {
            return readYaml(text, source);
        } catch (const SyntaxError &e) {
            throw Error(MO_E_INVALID, e.message);
        }
    }
    // JSON is read as YAML too, for the line numbers. When the text is not valid JSON and
    // YAML makes nothing sensible of it either, JSON's parser says what is wrong.
    Document parsed;
    std::optional<std::string> jsonError;
    try {
        parsed.root = Doc::parse(text);
    } catch (const Doc::exception &e) {
        // "[json.exception.parse_error.101] parse error at line 2, column 22: syntax error ..."
        std::string what = e.what();
        unsigned line = 0, column = 0;
        int used = 0;
        auto at = what.find("parse error at line ");
        if (at != std::string::npos &&
            std::sscanf(what.c_str() + at, "parse error at line %u, column %u: %n", &line, &column,
                        &used) == 2 &&
            used > 0)
            jsonError = source + ":" + std::to_string(line) + ":" + std::to_string(column) +
                        ": invalid JSON: " + what.substr(at + static_cast<std::size_t>(used));
        else
            jsonError = source + ": invalid JSON: " + what.substr(what.find(']') + 2);
    }
    try {
        return readYaml(text, source);
    } catch (const SyntaxError &) {
        if (jsonError) throw Error(MO_E_INVALID, *jsonError);
        return parsed; // valid JSON that yaml-cpp cannot read: no line numbers
    } catch (const Error &) {
        if (jsonError) throw Error(MO_E_INVALID, *jsonError);
        throw;
    }
}

// ---------------------------------------------------------------------------------------
// Checking: the document to the runtime spec.

std::size_t editDistance(const std::string &a, const std::string &b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diagonal = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t up = row[j];
            bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                        std::tolower(static_cast<unsigned char>(b[j - 1]));
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
            diagonal = up;
        }
    }
    return row[b.size()];
}

bool isIpAddress(const std::string &text) {
    unsigned char buf[16];
    return ::inet_pton(AF_INET, text.c_str(), buf) == 1 ||
           ::inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

bool isDomain(const std::string &name) {
    if (name.empty() || name.size() > 253 || name[0] == '-' || name[0] == '.') return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
    });
}

bool isAbsolutePath(const std::string &path) { return !path.empty() && path[0] == '/'; }

bool rangesOverlap(std::uint64_t a, std::uint64_t aSize, std::uint64_t b, std::uint64_t bSize) {
    return a < b + bSize && b < a + aSize;
}

class Checker {
public:
    Checker(std::string source, Document doc, fs::path base)
        : _source(std::move(source)), _doc(std::move(doc)), _base(std::move(base)) {}

    json run();

private:
    using Handler = std::function<void(const Doc &, const std::string &)>;

    // Messages: "<source>:<line>: <path>: <message>".
    [[noreturn]] void fail(const std::string &path, const std::string &message) const;
    [[noreturn]] void invalid(const std::string &path, const Doc &value,
                              const std::string &reason) const;
    [[noreturn]] void invalid(const std::string &path, const InvalidValue &e) const {
        fail(path, e.what());
    }
    int lineOf(std::string path) const;

    // Walk the fields of a mapping, refusing unknown ones; null values count as absent.
    void fields(const Doc &value, const std::string &path,
                const std::vector<std::pair<std::string, Handler>> &handlers);
    const Doc &mapping(const Doc &value, const std::string &path) const;
    const Doc &list(const Doc &value, const std::string &path) const;
    std::string display(const Doc &value, const std::string &path) const;
    std::string string(const Doc &value, const std::string &path) const;
    std::string nonEmpty(const Doc &value, const std::string &path) const;
    std::vector<std::string> strings(const Doc &value, const std::string &path) const;
    bool boolean(const Doc &value, const std::string &path) const;
    std::int64_t integer(const Doc &value, const std::string &path, std::int64_t min,
                         std::int64_t max) const;
    std::string absolutePath(const Doc &value, const std::string &path) const;
    std::string hostPath(const Doc &value, const std::string &path) const;
    std::uint64_t bytes(const Doc &value, const std::string &path, std::uint64_t min,
                        std::uint64_t max) const;
    std::int64_t cpu(const Doc &value, const std::string &path) const;
    std::uint32_t id(const Doc &value, const std::string &path) const;

    void metadata(const Doc &value, const std::string &path);
    void stringMap(const Doc &value, const std::string &path, const char *target);
    void specFields(const Doc &value, const std::string &path);
    void resources(const Doc &value, const std::string &path);
    void security(const Doc &value, const std::string &path);
    void networking(const Doc &value, const std::string &path);
    void volumes(const Doc &value, const std::string &path);
    void environment(const Doc &value, const std::string &path);
    void ulimits(const Doc &value, const std::string &path);
    void userns(const Doc &value, const std::string &path);
    json mappings(const Doc &value, const std::string &path);
    void restartPolicy(const Doc &value, const std::string &path);
    void logging(const Doc &value, const std::string &path);

    std::string _source;
    Document _doc;
    fs::path _base;
    json _out = json::object();
    std::optional<std::vector<std::string>> _command, _args;
    std::optional<std::string> _hostname; // and where it was set
    std::string _hostnamePath;
};

int Checker::lineOf(std::string path) const {
    while (!path.empty()) {
        auto it = _doc.lines.find(path);
        if (it != _doc.lines.end()) return it->second;
        auto cut = path.find_last_of(".[");
        if (cut == std::string::npos) break;
        path.erase(cut);
    }
    return 0;
}

void Checker::fail(const std::string &path, const std::string &message) const {
    std::string where = _source;
    if (int line = lineOf(path)) where += ":" + std::to_string(line);
    if (!path.empty()) where += ": " + path;
    throw Error(MO_E_INVALID, where + ": " + message);
}

void Checker::invalid(const std::string &path, const Doc &value, const std::string &reason) const {
    fail(path, InvalidValue(display(value, path), reason).what());
}

std::string Checker::display(const Doc &value, const std::string &path) const {
    if (value.is_string()) return value.get<std::string>();
    auto it = _doc.plain.find(path);
    if (it != _doc.plain.end()) return it->second;
    return value.dump();
}

void Checker::fields(const Doc &value, const std::string &path,
                     const std::vector<std::pair<std::string, Handler>> &handlers) {
    mapping(value, path);
    for (const auto &[key, child] : value.items()) {
        std::string p = childPath(path, key);
        auto it = std::find_if(handlers.begin(), handlers.end(),
                               [&](const auto &h) { return h.first == key; });
        if (it == handlers.end()) {
            std::string best;
            std::size_t bestDistance = 3;
            for (const auto &h : handlers) {
                std::size_t d = editDistance(key, h.first);
                if (d < bestDistance) bestDistance = d, best = h.first;
            }
            fail(p, "unknown field" + (best.empty() ? "" : " (did you mean " + quote(best) + "?)"));
        }
        if (!child.is_null()) it->second(child, p);
    }
}

const char *kindOf(const Doc &value) {
    switch (value.type()) {
    case Doc::value_t::object:
        return "a mapping";
    case Doc::value_t::array:
        return "a list";
    case Doc::value_t::string:
        return "a string";
    case Doc::value_t::boolean:
        return "a boolean";
    case Doc::value_t::null:
        return "null";
    default:
        return "a number";
    }
}

const Doc &Checker::mapping(const Doc &value, const std::string &path) const {
    if (!value.is_object()) fail(path, std::string("expected a mapping, not ") + kindOf(value));
    return value;
}

const Doc &Checker::list(const Doc &value, const std::string &path) const {
    if (!value.is_array()) fail(path, std::string("expected a list, not ") + kindOf(value));
    return value;
}

// Strings; a plain number or boolean where a string is expected is taken as written
// (`value: 8080`, `version: 1.10`).
std::string Checker::string(const Doc &value, const std::string &path) const {
    if (value.is_string()) {
        const auto &s = value.get_ref<const std::string &>();
        if (s.find('\0') != std::string::npos) fail(path, "contains a NUL byte");
        return s;
    }
    if (value.is_number() || value.is_boolean()) return display(value, path);
    fail(path, std::string("expected a string, not ") + kindOf(value));
}

std::string Checker::nonEmpty(const Doc &value, const std::string &path) const {
    std::string s = string(value, path);
    if (s.empty()) fail(path, "must not be empty");
    return s;
}

std::vector<std::string> Checker::strings(const Doc &value, const std::string &path) const {
    std::vector<std::string> out;
    std::size_t i = 0;
    for (const auto &item : list(value, path)) out.push_back(string(item, indexPath(path, i++)));
    return out;
}

bool Checker::boolean(const Doc &value, const std::string &path) const {
    if (!value.is_boolean()) invalid(path, value, "is not a boolean (true or false)");
    return value.get<bool>();
}

std::int64_t Checker::integer(const Doc &value, const std::string &path, std::int64_t min,
                              std::int64_t max) const {
    std::string range = "(" + std::to_string(min) + " to " + std::to_string(max) + ")";
    std::int64_t n = 0;
    if (value.is_number_unsigned()) {
        if (value.get<std::uint64_t>() > static_cast<std::uint64_t>(max))
            invalid(path, value, "is out of range " + range);
        n = value.get<std::int64_t>();
    } else if (value.is_number_integer()) {
        n = value.get<std::int64_t>();
    } else if (value.is_number_float()) {
        double d = value.get<double>();
        if (!std::isfinite(d) || d != std::floor(d)) invalid(path, value, "is not an integer");
        if (d < static_cast<double>(min) || d > static_cast<double>(max))
            invalid(path, value, "is out of range " + range);
        n = static_cast<std::int64_t>(d);
    } else {
        invalid(path, value, "is not an integer");
    }
    if (n < min || n > max) invalid(path, value, "is out of range " + range);
    return n;
}

std::string Checker::absolutePath(const Doc &value, const std::string &path) const {
    std::string p = nonEmpty(value, path);
    if (!isAbsolutePath(p)) invalid(path, value, "is not an absolute path");
    std::string normal = fs::path(p).lexically_normal().string();
    if (normal.size() > 1 && normal.back() == '/') normal.pop_back();
    return normal;
}

// A path on the host: relative to the document's directory.
std::string Checker::hostPath(const Doc &value, const std::string &path) const {
    fs::path p = nonEmpty(value, path);
    if (p.is_relative()) p = _base / p;
    std::string s = p.lexically_normal().string();
    if (s.size() > 1 && s.back() == '/') s.pop_back();
    return s;
}

std::uint64_t Checker::bytes(const Doc &value, const std::string &path, std::uint64_t min,
                             std::uint64_t max) const {
    if (!value.is_string() && !value.is_number())
        fail(path, std::string("expected a quantity such as `512Mi`, not ") + kindOf(value));
    std::string text = display(value, path);
    std::uint64_t n = 0;
    try {
        n = parseQuantity(text);
    } catch (const InvalidValue &e) {
        invalid(path, e);
    }
    auto human = [](std::uint64_t v) {
        const char *units[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
        int u = 0;
        while (u < 6 && v >= 1024 && v % 1024 == 0) v /= 1024, ++u;
        return std::to_string(v) + units[u];
    };
    if (n < min) invalid(path, value, "is below the minimum " + quote(human(min)));
    if (n > max) invalid(path, value, "is above the maximum " + quote(human(max)));
    return n;
}

std::int64_t Checker::cpu(const Doc &value, const std::string &path) const {
    if (!value.is_string() && !value.is_number())
        fail(path,
             std::string("expected a CPU quantity such as `0.5` or `500m`, not ") + kindOf(value));
    std::int64_t m = 0;
    try {
        m = parseCpu(display(value, path));
    } catch (const InvalidValue &e) {
        invalid(path, e);
    }
    if (m < 1) invalid(path, value, "is below the minimum `1m`");
    if (m > kMaxMillicores)
        invalid(path, value,
                "is above the maximum `" + std::to_string(kMaxMillicores / 1000) + "`");
    return m;
}

std::uint32_t Checker::id(const Doc &value, const std::string &path) const {
    return static_cast<std::uint32_t>(integer(value, path, 0, kMaxId));
}

json Checker::run() {
    const Doc &root = _doc.root;
    if (root.is_null()) fail("", "empty document");
    if (!root.is_object())
        fail("", std::string("expected a VirtualRoot mapping (apiVersion, kind, metadata, "
                             "spec), not ") +
                     kindOf(root));
    for (const char *required : {"apiVersion", "kind"})
        if (!root.contains(required) || root[required].is_null())
            fail(required, "required field is missing");
    fields(root, "",
           {{"apiVersion",
             [&](const Doc &v, const std::string &p) {
                 if (string(v, p) != "v1") invalid(p, v, "is not supported (expected `v1`)");
             }},
            {"kind",
             [&](const Doc &v, const std::string &p) {
                 if (string(v, p) != "VirtualRoot")
                     invalid(p, v, "is not supported (expected `VirtualRoot`)");
             }},
            {"metadata", [&](const Doc &v, const std::string &p) { metadata(v, p); }},
            {"spec", [&](const Doc &v, const std::string &p) { specFields(v, p); }}});

    // Kept apart until finalize: `command` replaces an image's Entrypoint, `args` its Cmd.
    if (_command && !_command->empty()) _out["process"]["command"] = *_command;
    if (_args && !_args->empty()) _out["process"]["args"] = *_args;
    if (_hostname) _out["hostname"] = *_hostname;
    return _out;
}

void Checker::metadata(const Doc &value, const std::string &path) {
    fields(value, path,
           {{"name",
             [&](const Doc &v, const std::string &p) {
                 std::string name = string(v, p);
                 if (!isValidName(name))
                     invalid(p, v, "is not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})");
                 _out["name"] = name;
             }},
            {"namespace",
             [&](const Doc &v, const std::string &p) {
                 std::string ns = string(v, p);
                 if (!isValidName(ns))
                     invalid(p, v, "is not a valid namespace ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})");
                 _out["namespace"] = ns;
                 if (ns != "default") addUnapplied(_out, p);
             }},
            {"labels", [&](const Doc &v, const std::string &p) { stringMap(v, p, "labels"); }},
            {"annotations",
             [&](const Doc &v, const std::string &p) { stringMap(v, p, "annotations"); }}});
}

void Checker::stringMap(const Doc &value, const std::string &path, const char *target) {
    json &out = _out[target];
    out = json::object();
    for (const auto &[key, v] : mapping(value, path).items()) {
        std::string p = childPath(path, key);
        if (key.empty() || key.size() > 253 || std::any_of(key.begin(), key.end(), [](char c) {
                return static_cast<unsigned char>(c) <= ' ';
            }))
            fail(p, "invalid key " + quote(key) + " (1 to 253 characters, no spaces)");
        out[key] = v.is_null() ? std::string() : string(v, p);
    }
}

void Checker::specFields(const Doc &value, const std::string &path) {
    auto on = [&](auto fn) -> Handler { return fn; };
    fields(
        value, path,
        {{"image", on([&](const Doc &v, const std::string &p) {
              std::string image = nonEmpty(v, p);
              if (std::any_of(image.begin(), image.end(),
                              [](char c) { return static_cast<unsigned char>(c) <= ' '; }))
                  invalid(p, v, "is not an image reference");
              _out["image"] = image;
          })},
         {"rootfs",
          on([&](const Doc &v, const std::string &p) { _out["rootfs"] = hostPath(v, p); })},
         {"rootfsImage",
          on([&](const Doc &v, const std::string &p) { _out["rootfsImage"] = hostPath(v, p); })},
         {"volatile",
          on([&](const Doc &v, const std::string &p) { _out["volatile"] = boolean(v, p); })},
         {"softMounts",
          on([&](const Doc &v, const std::string &p) { _out["softMounts"] = boolean(v, p); })},
         {"command", on([&](const Doc &v, const std::string &p) { _command = strings(v, p); })},
         {"args", on([&](const Doc &v, const std::string &p) { _args = strings(v, p); })},
         {"workingDir", on([&](const Doc &v, const std::string &p) {
              _out["process"]["cwd"] = absolutePath(v, p);
          })},
         {"hostname", on([&](const Doc &v, const std::string &p) {
              std::string h = string(v, p);
              if (!isValidHostname(h))
                  invalid(p, v, "is not a valid hostname (1 to 64 letters, digits, `-`, `_`, `.`)");
              if (_hostname && *_hostname != h)
                  invalid(p, v, "conflicts with " + _hostnamePath + " " + quote(*_hostname));
              _hostname = h;
              _hostnamePath = p;
          })},
         {"resources", on([&](const Doc &v, const std::string &p) { resources(v, p); })},
         {"security", on([&](const Doc &v, const std::string &p) { security(v, p); })},
         {"networking", on([&](const Doc &v, const std::string &p) { networking(v, p); })},
         {"volumes", on([&](const Doc &v, const std::string &p) { volumes(v, p); })},
         {"environment", on([&](const Doc &v, const std::string &p) { environment(v, p); })},
         {"ulimits", on([&](const Doc &v, const std::string &p) { ulimits(v, p); })},
         {"userns", on([&](const Doc &v, const std::string &p) { userns(v, p); })},
         {"init",
          on([&](const Doc &v, const std::string &p) { _out["process"]["init"] = boolean(v, p); })},
         {"initSystem",
          on([&](const Doc &v, const std::string &p) { _out["initSystem"] = boolean(v, p); })},
         {"hardwareAccess",
          on([&](const Doc &v, const std::string &p) { _out["hardwareAccess"] = boolean(v, p); })},
         {"stopSignal", on([&](const Doc &v, const std::string &p) {
              if (!v.is_string() && !v.is_number_integer()) invalid(p, v, "is not a signal");
              try {
                  _out["stopSignal"] = parseSignal(display(v, p));
              } catch (const InvalidValue &e) {
                  invalid(p, e);
              }
          })},
         {"stopTimeout", on([&](const Doc &v, const std::string &p) {
              _out["stopTimeout"] = integer(v, p, 0, kMaxStopTimeout);
          })},
         {"restartPolicy", on([&](const Doc &v, const std::string &p) { restartPolicy(v, p); })},
         {"logging", on([&](const Doc &v, const std::string &p) { logging(v, p); })},
         {"verify", on([&](const Doc &v, const std::string &p) {
              std::string mode = string(v, p);
              if (mode != "off" && mode != "lazy" && mode != "strict")
                  invalid(p, v, "is not one of `off`, `lazy`, `strict`");
              _out["verify"] = mode;
              if (mode != "off") addUnapplied(_out, p);
          })},
         {"runtime", on([&](const Doc &v, const std::string &p) {
              std::string runtime = string(v, p);
              if (!isValidName(runtime) || runtime.size() > 64)
                  invalid(p, v, "is not a runtime name (such as `namespace` or `krun`)");
              // the container workflow picks the provider; an absent one is an error there
              _out["runtime"] = runtime;
          })},
         {"isolation", on([&](const Doc &v, const std::string &p) {
              std::string isolation = string(v, p);
              if (isolation == "vm")
                  _out["runtime"] = "krun";
              else if (isolation == "namespace")
                  _out["runtime"] = "namespace";
              else if (isolation == "auto")
                  _out["isolation"] = "auto";
              else
                  invalid(p, v, "is not one of `vm`, `namespace`, `auto`");
          })},
         {"vm", on([&](const Doc &v, const std::string &p) {
              json out = json::object();
              fields(v, p,
                     {{"vcpus",
                       [&](const Doc &x, const std::string &xp) {
                           out["vcpus"] = integer(x, xp, 1, kMaxVcpus);
                       }},
                      {"memory",
                       [&](const Doc &x, const std::string &xp) {
                           out["memory"] = bytes(x, xp, kMinVmMemory, kMaxVmMemory);
                       }},
                      {"timeout", [&](const Doc &x, const std::string &xp) {
                           out["timeout"] = integer(x, xp, 1, 10ll * 365 * 86400);
                       }}});
              _out["vm"] = out;
          })}});
}

void Checker::resources(const Doc &value, const std::string &path) {
    json out = json::object();
    auto quantities = [&](const Doc &v, const std::string &p, const char *which, bool limits) {
        json &q = out[which];
        q = json::object();
        std::vector<std::pair<std::string, Handler>> handlers = {
            {"cpu", [&](const Doc &x, const std::string &xp) { q["cpu"] = cpu(x, xp); }},
            {"memory",
             [&](const Doc &x, const std::string &xp) {
                 q["memory"] = bytes(x, xp, kMinMemory, kMaxMemory);
             }},
            {"storage", [&](const Doc &x, const std::string &xp) {
                 q["storage"] = bytes(x, xp, kMinStorage, kMaxStorage);
             }}};
        if (limits)
            handlers.push_back({"pids", [&](const Doc &x, const std::string &xp) {
                                    q["pids"] = integer(x, xp, 1, kMaxPids);
                                }});
        fields(v, p, handlers);
        for (const auto &[key, _] : v.items())
            if (q.contains(key)) addUnapplied(_out, childPath(p, key));
    };
    fields(
        value, path,
        {{"requests",
          [&](const Doc &v, const std::string &p) { quantities(v, p, "requests", false); }},
         {"limits", [&](const Doc &v, const std::string &p) { quantities(v, p, "limits", true); }},
         {"ignoreUnsupported",
          [&](const Doc &v, const std::string &p) {
              // what the host cannot apply is left out with a warning instead of failing
              out["ignoreUnsupported"] = boolean(v, p);
          }},
         {"memorySwap",
          [&](const Doc &v, const std::string &p) {
              // memory + swap, as docker's --memory-swap; -1 is unlimited
              if (v.is_number_integer() && v.get<std::int64_t>() == -1) {
                  out["memorySwap"] = -1;
                  return;
              }
              out["memorySwap"] = bytes(v, p, kMinMemory, kMaxMemory);
          }},
         {"memorySwappiness",
          [&](const Doc &v, const std::string &p) {
              out["memorySwappiness"] = integer(v, p, 0, 100);
          }},
         {"blkioWeight",
          [&](const Doc &v, const std::string &p) {
              out["blkioWeight"] = integer(v, p, 10, 1000);
          }},
         {"deviceThrottle",
          [&](const Doc &v, const std::string &p) {
              // [{device: /dev/vda, readBps: 1Mi, writeBps, readIops: 100, writeIops}]
              json entries = json::array();
              std::size_t i = 0;
              for (const auto &item : list(v, p)) {
                  std::string ip = indexPath(p, i++);
                  json entry = json::object();
                  auto rate = [&](const char *key, bool inBytes) {
                      return [&, key, inBytes](const Doc &x, const std::string &xp) {
                          entry[key] = inBytes
                                           ? static_cast<std::int64_t>(bytes(x, xp, 1, kMaxMemory))
                                           : integer(x, xp, 1, 1000000000000);
                      };
                  };
                  fields(item, ip,
                         {{"device",
                           [&](const Doc &x, const std::string &xp) {
                               std::string dev = absolutePath(x, xp);
                               struct stat st {};
                               if (::stat(dev.c_str(), &st) != 0)
                                   invalid(xp, x,
                                           std::string("cannot be read: ") + std::strerror(errno));
                               if (!S_ISBLK(st.st_mode)) invalid(xp, x, "is not a block device");
                               entry["device"] = dev;
                               entry["major"] = ::major(st.st_rdev);
                               entry["minor"] = ::minor(st.st_rdev);
                           }},
                          {"readBps", rate("readBps", true)},
                          {"writeBps", rate("writeBps", true)},
                          {"readIops", rate("readIops", false)},
                          {"writeIops", rate("writeIops", false)}});
                  if (!entry.contains("device"))
                      fail(childPath(ip, "device"), "required field is missing");
                  if (entry.size() == 3)
                      fail(ip, "needs at least one of `readBps`, `writeBps`, `readIops`, "
                               "`writeIops`");
                  entries.push_back(entry);
              }
              out["deviceThrottle"] = entries;
              addUnapplied(_out, p);
          }},
         {"devices",
          [&](const Doc &v, const std::string &p) {
              // the device cgroup rules, OCI linux.resources.devices' form: [{allow, type:
              // a|c|b, major, minor (absent or -1: any), access: subset of rwm}], the last
              // matching rule deciding; the runtime adds them after its "deny all" and
              // before the standard nodes
              json rules = json::array();
              std::size_t i = 0;
              for (const auto &item : list(v, p)) {
                  std::string ip = indexPath(p, i++);
                  json rule = {{"type", "a"}, {"access", "rwm"}};
                  fields(item, ip,
                         {{"allow", [&](const Doc &x,
                                        const std::string &xp) { rule["allow"] = boolean(x, xp); }},
                          {"type",
                           [&](const Doc &x, const std::string &xp) {
                               std::string t = string(x, xp);
                               if (t != "a" && t != "c" && t != "b")
                                   invalid(xp, x, "is not a device type (a, c, b)");
                               rule["type"] = t;
                           }},
                          {"major",
                           [&](const Doc &x, const std::string &xp) {
                               std::int64_t n = integer(x, xp, -1, 0xfffff);
                               if (n >= 0) rule["major"] = n;
                           }},
                          {"minor",
                           [&](const Doc &x, const std::string &xp) {
                               std::int64_t n = integer(x, xp, -1, 0xfffff);
                               if (n >= 0) rule["minor"] = n;
                           }},
                          {"access", [&](const Doc &x, const std::string &xp) {
                               std::string a = string(x, xp);
                               if (a.empty() || a.find_first_not_of("rwm") != std::string::npos)
                                   invalid(xp, x, "is not an access such as `rwm`");
                               rule["access"] = a;
                           }}});
                  if (!rule.contains("allow"))
                      fail(childPath(ip, "allow"), "required field is missing");
                  rules.push_back(rule);
              }
              out["devices"] = rules;
              addUnapplied(_out, p);
          }},
         {"cpuset", [&](const Doc &v, const std::string &p) {
              std::string set = string(v, p);
              bool ok = isValidCpuList(set);
              if (!ok) invalid(p, v, "is not a CPU list such as `0-3,6`");
              out["cpuset"] = set;
              addUnapplied(_out, p);
          }}});
    // A request above its limit can never be met.
    if (out.contains("requests") && out.contains("limits")) {
        for (const char *key : {"cpu", "memory", "storage"}) {
            const json &req = out["requests"], &lim = out["limits"];
            if (req.contains(key) && lim.contains(key) &&
                req[key].get<std::int64_t>() > lim[key].get<std::int64_t>()) {
                std::string rp = childPath(childPath(path, "requests"), key);
                std::string lp = childPath(childPath(path, "limits"), key);
                fail(rp, quote(display(value["requests"][key], rp)) + " is above the limit " +
                             quote(display(value["limits"][key], lp)));
            }
        }
    }
    _out["resources"] = out;
}

void Checker::security(const Doc &value, const std::string &path) {
    json out = json::object();
    fields(
        value, path,
        {{"runAsUser", [&](const Doc &v, const std::string &p) { out["runAsUser"] = id(v, p); }},
         {"runAsGroup", [&](const Doc &v, const std::string &p) { out["runAsGroup"] = id(v, p); }},
         {"supplementalGroups",
          [&](const Doc &v, const std::string &p) {
              json gids = json::array();
              std::size_t i = 0;
              for (const auto &g : list(v, p)) gids.push_back(id(g, indexPath(p, i++)));
              out["supplementalGroups"] = gids;
          }},
         {"readOnlyRootFilesystem",
          [&](const Doc &v, const std::string &p) {
              out["readOnlyRootFilesystem"] = boolean(v, p);
              _out["readonly"] = out["readOnlyRootFilesystem"];
          }},
         {"allowPrivilegeEscalation",
          [&](const Doc &v, const std::string &p) {
              out["allowPrivilegeEscalation"] = boolean(v, p); // no_new_privs when false
          }},
         {"privileged",
          [&](const Doc &v, const std::string &p) { out["privileged"] = boolean(v, p); }},
         {"capabilities",
          [&](const Doc &v, const std::string &p) {
              json caps = json::object();
              auto names = [&](const Doc &x, const std::string &xp) {
                  json list = json::array();
                  std::size_t i = 0;
                  for (const auto &name : strings(x, xp)) {
                      try {
                          list.push_back(capabilityName(name));
                      } catch (const InvalidValue &e) {
                          invalid(indexPath(xp, i), e);
                      }
                      ++i;
                  }
                  caps[xp.substr(xp.rfind('.') + 1)] = list;
              };
              fields(v, p, {{"add", names}, {"drop", names}});
              out["capabilities"] = caps;
          }},
         {"seccompProfile", [&](const Doc &v, const std::string &p) {
              json profile = json::object();
              fields(v, p,
                     {{"type",
                       [&](const Doc &x, const std::string &xp) {
                           std::string type = string(x, xp);
                           if (type != "RuntimeDefault" && type != "Unconfined" &&
                               type != "Localhost")
                               invalid(xp, x,
                                       "is not one of `RuntimeDefault`, `Unconfined`, `Localhost`");
                           profile["type"] = type;
                       }},
                      {"localhostProfile", [&](const Doc &x, const std::string &xp) {
                           profile["localhostProfile"] = hostPath(x, xp);
                       }}});
              if (!profile.contains("type"))
                  fail(childPath(p, "type"), "required field is missing");
              bool local = profile["type"] == "Localhost";
              if (local != profile.contains("localhostProfile"))
                  fail(childPath(p, "localhostProfile"),
                       local ? "required with type `Localhost`"
                             : "only allowed with type `Localhost`");
              out["seccompProfile"] = profile;
          }}});

    // The runtime form (docs/runtime-spec.md): a Localhost profile is read now and carried
    // in the spec, so the runtime never opens a host path on the user's behalf later.
    json security = json::object();
    if (out.contains("privileged")) security["privileged"] = out["privileged"];
    if (out.contains("allowPrivilegeEscalation"))
        security["noNewPrivileges"] = !out["allowPrivilegeEscalation"].get<bool>();
    if (out.contains("capabilities")) security["capabilities"] = out["capabilities"];
    if (out.contains("seccompProfile")) {
        const json &profile = out["seccompProfile"];
        std::string type = profile["type"];
        if (type == "Localhost") {
            std::string file = profile["localhostProfile"];
            std::string lp = childPath(childPath(path, "seccompProfile"), "localhostProfile");
            std::ifstream in(file);
            std::stringstream text;
            if (in) text << in.rdbuf();
            if (!in || in.bad()) fail(lp, quote(file) + ": " + std::strerror(errno));
            json parsed = json::parse(text.str(), nullptr, false);
            if (parsed.is_discarded() || !parsed.is_object())
                fail(lp, quote(file) + " is not a JSON seccomp profile");
            security["seccomp"] = {{"mode", "profile"}, {"profile", parsed}, {"source", file}};
        } else {
            security["seccomp"] = {{"mode", type == "Unconfined" ? "unconfined" : "default"}};
        }
    }

    // Who the process runs as. A uid alone leaves the group to the rootfs's /etc/passwd,
    // as docker does, so the runtime gets it as a name to resolve.
    if (out.contains("runAsUser") || out.contains("runAsGroup")) {
        json &user = _out["process"]["user"];
        std::string uid = out.contains("runAsUser") ? out["runAsUser"].dump() : "0";
        if (out.contains("runAsGroup")) {
            user["uid"] = std::stoul(uid);
            user["gid"] = out["runAsGroup"];
        } else {
            user["name"] = uid;
        }
    }
    if (out.contains("supplementalGroups"))
        _out["process"]["user"]["additionalGids"] = out["supplementalGroups"];
    _out["security"] = security;
}

void Checker::networking(const Doc &value, const std::string &path) {
    json &network = _out["network"];
    network = json::object();
    fields(value, path,
           {{"mode",
             [&](const Doc &v, const std::string &p) {
                 std::string mode = string(v, p);
                 if (mode == "host" || mode == "none" || mode == "private") {
                     network["mode"] = mode;
                 } else if (isValidName(mode) && mode.size() <= 64) {
                     // bridge or a named network: its own network namespace until the bridge
                     // plugin attaches it
                     network["mode"] = "private";
                     network["attach"] = mode;
                     addUnapplied(_out, p + "=" + mode);
                 } else {
                     invalid(p, v, "is not `bridge`, `host`, `none`, `private` or a network name");
                 }
             }},
            {"ports",
             [&](const Doc &v, const std::string &p) {
                 json ports = json::array();
                 std::map<std::string, std::string> published; // hostIP/port/proto -> path
                 std::size_t i = 0;
                 for (const auto &item : list(v, p)) {
                     std::string ip = indexPath(p, i++);
                     json port = json::object();
                     fields(item, ip,
                            {{"containerPort",
                              [&](const Doc &x, const std::string &xp) {
                                  port["containerPort"] = integer(x, xp, 1, 65535);
                              }},
                             {"hostPort",
                              [&](const Doc &x, const std::string &xp) {
                                  port["hostPort"] = integer(x, xp, 1, 65535);
                              }},
                             {"hostIP",
                              [&](const Doc &x, const std::string &xp) {
                                  std::string addr = string(x, xp);
                                  if (!isIpAddress(addr)) invalid(xp, x, "is not an IP address");
                                  port["hostIP"] = addr;
                              }},
                             {"protocol", [&](const Doc &x, const std::string &xp) {
                                  std::string proto = string(x, xp);
                                  for (auto &c : proto)
                                      c = static_cast<char>(
                                          std::tolower(static_cast<unsigned char>(c)));
                                  if (proto != "tcp" && proto != "udp" && proto != "sctp")
                                      invalid(xp, x, "is not `TCP`, `UDP` or `SCTP`");
                                  port["protocol"] = proto;
                              }}});
                     if (!port.contains("containerPort"))
                         fail(childPath(ip, "containerPort"), "required field is missing");
                     if (!port.contains("protocol")) port["protocol"] = "tcp";
                     if (port.contains("hostPort")) {
                         std::string key = port.value("hostIP", std::string("*")) + " " +
                                           port["hostPort"].dump() + "/" +
                                           port["protocol"].get<std::string>();
                         auto [it, fresh] = published.emplace(key, ip);
                         if (!fresh)
                             fail(childPath(ip, "hostPort"),
                                  "host port " +
                                      quote(port["hostPort"].dump() + "/" +
                                            port["protocol"].get<std::string>()) +
                                      " is already published by " + it->second);
                     }
                     ports.push_back(port);
                 }
                 network["ports"] = ports;
                 if (!ports.empty()) addUnapplied(_out, p);
             }},
            {"hostname",
             [&](const Doc &v, const std::string &p) {
                 std::string h = string(v, p);
                 if (!isValidHostname(h))
                     invalid(p, v,
                             "is not a valid hostname (1 to 64 letters, digits, `-`, `_`, `.`)");
                 if (_hostname && *_hostname != h)
                     invalid(p, v, "conflicts with " + _hostnamePath + " " + quote(*_hostname));
                 _hostname = h;
                 _hostnamePath = p;
             }},
            {"dns", [&](const Doc &v, const std::string &p) {
                 json dns = json::object();
                 fields(v, p,
                        {{"nameservers",
                          [&](const Doc &x, const std::string &xp) {
                              auto servers = strings(x, xp);
                              for (std::size_t i = 0; i < servers.size(); ++i)
                                  if (!isIpAddress(servers[i]))
                                      invalid(indexPath(xp, i), x[i], "is not an IP address");
                              dns["nameservers"] = servers;
                          }},
                         {"searches",
                          [&](const Doc &x, const std::string &xp) {
                              auto domains = strings(x, xp);
                              for (std::size_t i = 0; i < domains.size(); ++i)
                                  if (!isDomain(domains[i]))
                                      invalid(indexPath(xp, i), x[i], "is not a domain name");
                              dns["searches"] = domains;
                          }},
                         {"options", [&](const Doc &x, const std::string &xp) {
                              auto options = strings(x, xp);
                              for (std::size_t i = 0; i < options.size(); ++i)
                                  if (options[i].empty() ||
                                      options[i].find_first_of(" \t\n") != std::string::npos)
                                      invalid(indexPath(xp, i), x[i], "is not a resolver option");
                              dns["options"] = options;
                          }}});
                 network["dns"] = dns;
                 addUnapplied(_out, p);
             }}});
}

void Checker::volumes(const Doc &value, const std::string &path) {
    json mounts = json::array();
    json later = json::array();
    std::map<std::string, std::string> names, destinations; // -> path of the first one
    std::size_t i = 0;
    if (list(value, path).size() > kMaxVolumes)
        fail(path, std::to_string(value.size()) + " volumes, at most " +
                       std::to_string(kMaxVolumes) + " per container");
    for (const auto &item : list(value, path)) {
        std::string vp = indexPath(path, i++);
        json volume = json::object();
        std::vector<std::string> sources;
        auto source = [&](const char *kind) {
            sources.push_back(kind);
            volume["type"] = kind;
        };
        mapping(item, vp);
        fields(item, vp,
               {{"name",
                 [&](const Doc &x, const std::string &xp) {
                     std::string name = string(x, xp);
                     if (!isValidName(name) || name.size() > 63)
                         invalid(xp, x,
                                 "is not a valid volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,62})");
                     auto [it, fresh] = names.emplace(name, xp);
                     if (!fresh) invalid(xp, x, "is already the name of " + it->second);
                     volume["name"] = name;
                 }},
                {"hostPath",
                 [&](const Doc &x, const std::string &xp) {
                     source("hostPath");
                     volume["source"] = hostPath(x, xp);
                 }},
                {"configMap",
                 [&](const Doc &x, const std::string &xp) {
                     source("configMap");
                     std::string name;
                     if (x.is_object())
                         fields(x, xp, {{"name", [&](const Doc &y, const std::string &yp) {
                                             name = string(y, yp);
                                         }}});
                     else
                         name = string(x, xp);
                     if (!isValidName(name)) invalid(xp, x, "is not a valid configMap name");
                     volume["source"] = name;
                 }},
                {"emptyDir",
                 [&](const Doc &x, const std::string &xp) {
                     source("emptyDir");
                     json dir = json::object();
                     fields(x, xp,
                            {{"medium",
                              [&](const Doc &y, const std::string &yp) {
                                  std::string medium = string(y, yp);
                                  if (medium != "" && medium != "Memory")
                                      invalid(yp, y, "is not `Memory` or empty");
                                  if (!medium.empty()) dir["medium"] = medium;
                              }},
                             {"sizeLimit", [&](const Doc &y, const std::string &yp) {
                                  dir["sizeLimit"] = bytes(y, yp, 1, kMaxStorage);
                              }}});
                     volume.update(dir); // {medium, sizeLimit} beside the entry's other keys
                 }},
                {"volume",
                 [&](const Doc &x, const std::string &xp) {
                     source("volume");
                     std::string name = string(x, xp);
                     if (!isValidName(name)) invalid(xp, x, "is not a valid volume name");
                     volume["source"] = name;
                 }},
                {"containerPath",
                 [&](const Doc &x, const std::string &xp) {
                     if (hasDotDot(string(x, xp))) invalid(xp, x, "contains `..`");
                     std::string dest = absolutePath(x, xp);
                     if (dest == "/") invalid(xp, x, "is the container's root");
                     auto [it, fresh] = destinations.emplace(dest, xp);
                     if (!fresh) invalid(xp, x, "is already mounted by " + it->second);
                     volume["containerPath"] = dest;
                 }},
                {"readOnly", [&](const Doc &x, const std::string &xp) {
                     volume["readOnly"] = boolean(x, xp);
                 }}});
        // `emptyDir:` with nothing after it is the usual way to write an empty one
        if (item.contains("emptyDir") && item["emptyDir"].is_null()) source("emptyDir");
        if (!volume.contains("name")) fail(childPath(vp, "name"), "required field is missing");
        if (!volume.contains("containerPath"))
            fail(childPath(vp, "containerPath"), "required field is missing");
        if (sources.size() != 1)
            fail(vp, sources.empty()
                         ? "needs a source: one of `hostPath`, `configMap`, `emptyDir`, `volume`"
                         : "has more than one source (" + quote(sources[0]) + " and " +
                               quote(sources[1]) + ")");
        bool readOnly = volume.value("readOnly", false);
        if (sources[0] == "hostPath") {
            json options = json::array({"rbind"});
            if (readOnly) options.push_back("ro");
            mounts.push_back({{"destination", volume["containerPath"]},
                              {"source", volume["source"]},
                              {"type", "bind"},
                              {"options", options}});
        } else {
            volume["readOnly"] = readOnly;
            later.push_back(volume);
            addUnapplied(_out, childPath(vp, sources[0]));
        }
    }
    _out["mounts"] = mounts;
    if (!later.empty()) _out["volumes"] = later;
}

void Checker::environment(const Doc &value, const std::string &path) {
    std::size_t i = 0;
    for (const auto &item : list(value, path)) {
        std::string ep = indexPath(path, i++);
        std::optional<std::string> name;
        std::string val;
        fields(item, ep,
               {{"name",
                 [&](const Doc &x, const std::string &xp) {
                     name = nonEmpty(x, xp);
                     if (name->find_first_of("= \t\n\r\v\f") != std::string::npos)
                         invalid(xp, x, "is not a variable name (no `=` or whitespace)");
                 }},
                {"value", [&](const Doc &x, const std::string &xp) { val = string(x, xp); }}});
        if (!name) fail(childPath(ep, "name"), "required field is missing");
        setEnv(_out, *name, val);
    }
}

void Checker::ulimits(const Doc &value, const std::string &path) {
    json limits = json::array();
    std::map<std::string, std::string> seen;
    std::size_t i = 0;
    auto limitValue = [&](const Doc &x, const std::string &xp) -> std::int64_t {
        if (x.is_string()) {
            try {
                return parseRlimitValue(x.get<std::string>());
            } catch (const InvalidValue &e) {
                invalid(xp, e);
            }
        }
        return integer(x, xp, -1, std::numeric_limits<std::int64_t>::max());
    };
    for (const auto &item : list(value, path)) {
        std::string up = indexPath(path, i++);
        Rlimit limit;
        std::optional<std::int64_t> soft, hard;
        fields(item, up,
               {{"name",
                 [&](const Doc &x, const std::string &xp) {
                     try {
                         limit.type = rlimitType(string(x, xp));
                     } catch (const InvalidValue &e) {
                         invalid(xp, e);
                     }
                     auto [it, fresh] = seen.emplace(limit.type, xp);
                     if (!fresh) invalid(xp, x, "is already limited by " + it->second);
                 }},
                {"soft", [&](const Doc &x, const std::string &xp) { soft = limitValue(x, xp); }},
                {"hard", [&](const Doc &x, const std::string &xp) { hard = limitValue(x, xp); }}});
        if (limit.type.empty()) fail(childPath(up, "name"), "required field is missing");
        if (!soft) fail(childPath(up, "soft"), "required field is missing");
        limit.soft = *soft;
        limit.hard = hard.value_or(*soft);
        if (limit.hard >= 0 && (limit.soft < 0 || limit.soft > limit.hard))
            fail(childPath(up, "soft"), "the soft limit is above the hard limit");
        limits.push_back(toJson(limit));
    }
    _out["process"]["rlimits"] = limits;
}

json Checker::mappings(const Doc &value, const std::string &path) {
    json out = json::array();
    std::size_t i = 0;
    if (list(value, path).empty()) fail(path, "must not be empty");
    if (value.size() > 340) fail(path, "more than 340 mappings");
    for (const auto &item : value) {
        std::string mp = indexPath(path, i++);
        json m = json::object();
        auto field = [&](const char *key) -> Handler {
            return [&, key](const Doc &x, const std::string &xp) { m[key] = id(x, xp); };
        };
        fields(item, mp,
               {{"containerID", field("containerID")},
                {"hostID", field("hostID")},
                {"size", [&](const Doc &x, const std::string &xp) {
                     m["size"] = integer(x, xp, 1, std::int64_t(kMaxId) + 1);
                 }}});
        for (const char *key : {"containerID", "hostID", "size"})
            if (!m.contains(key)) fail(childPath(mp, key), "required field is missing");
        std::uint64_t c = m["containerID"], h = m["hostID"], n = m["size"];
        if (c + n > kMaxId + 1ull || h + n > kMaxId + 1ull)
            fail(mp, "the range goes past id 4294967294");
        for (std::size_t j = 0; j < out.size(); ++j) {
            const json &o = out[j];
            if (rangesOverlap(c, n, o["containerID"], o["size"]))
                fail(mp, "container ids overlap " + indexPath(path, j));
            if (rangesOverlap(h, n, o["hostID"], o["size"]))
                fail(mp, "host ids overlap " + indexPath(path, j));
        }
        out.push_back(m);
    }
    return out;
}

void Checker::userns(const Doc &value, const std::string &path) {
    json out;
    if (value.is_string()) {
        try {
            out = parseUserns(value.get<std::string>());
        } catch (const InvalidValue &e) {
            invalid(path, e);
        }
    } else if (value.is_object()) {
        fields(
            value, path,
            {{"uidMappings",
              [&](const Doc &x, const std::string &xp) { out["uidMappings"] = mappings(x, xp); }},
             {"gidMappings",
              [&](const Doc &x, const std::string &xp) { out["gidMappings"] = mappings(x, xp); }}});
        if (!out.contains("uidMappings"))
            fail(childPath(path, "uidMappings"), "required field is missing");
        if (!out.contains("gidMappings")) out["gidMappings"] = out["uidMappings"];
    } else {
        fail(path, std::string("expected `HOSTID:SIZE` or a mapping with uidMappings, not ") +
                       kindOf(value));
    }
    _out["userns"] = out;
}

void Checker::restartPolicy(const Doc &value, const std::string &path) {
    std::string policy = string(value, path);
    std::string name = policy.substr(0, policy.find(':'));
    std::string normal;
    if (name == "Never" || name == "no")
        normal = "no";
    else if (name == "Always" || name == "always")
        normal = "always";
    else if (name == "OnFailure" || name == "on-failure")
        normal = "on-failure";
    else if (name == "unless-stopped")
        normal = "unless-stopped";
    else
        invalid(path, value,
                "is not a restart policy (`Never`, `Always`, `OnFailure[:N]`, `unless-stopped`)");
    json out = {{"name", normal}};
    if (name.size() != policy.size()) {
        std::string count = policy.substr(name.size() + 1);
        if (normal != "on-failure" || !isDigits(count, isDigit) || count.size() > 6)
            invalid(path, value, "is not a restart policy (a retry count goes with `OnFailure:N`)");
        out["maximumRetryCount"] = std::stoi(count);
    }
    _out["restartPolicy"] = out;
    if (normal != "no") addUnapplied(_out, path);
}

// The retention of the container's captured output, applied by the log service.
void Checker::logging(const Doc &value, const std::string &path) {
    json out = json::object();
    auto checked = [&](const Doc &v, const std::string &p, const char *example, auto parse) {
        if (!v.is_string() && !v.is_number())
            fail(p, std::string("expected ") + example + ", not " + kindOf(v));
        try {
            return parse(display(v, p));
        } catch (const InvalidValue &e) {
            invalid(p, e);
        }
    };
    fields(value, path,
           {{"maxSize",
             [&](const Doc &v, const std::string &p) {
                 out["maxSize"] = checked(v, p, "a quantity such as `10Mi`", parseLogMaxSize);
             }},
            {"maxAge", [&](const Doc &v, const std::string &p) {
                 out["maxAge"] = checked(v, p, "a duration such as `7d`", parseLogMaxAge);
             }}});
    if (!out.empty()) _out["logging"] = out;
}

fs::path baseDirectory(const std::string &source) {
    std::error_code ec;
    if (!source.empty() && fs::is_regular_file(source, ec)) {
        fs::path file = fs::absolute(source, ec);
        if (!ec) return file.parent_path();
    }
    fs::path cwd = fs::current_path(ec);
    return ec ? fs::path("/") : cwd;
}

} // namespace

std::uint64_t parseLogMaxSize(const std::string &text) {
    std::uint64_t bytes = parseQuantity(text);
    if (bytes < (64ull << 10)) throw InvalidValue(text, "is below the minimum `64Ki`");
    if (bytes > (1ull << 40)) throw InvalidValue(text, "is above the maximum `1Ti`");
    return bytes;
}

// Whole numbers with units, largest first and each once, so a typo such as `1m1m` or
// `30m1h` is refused rather than guessed at.
std::int64_t parseLogMaxAge(const std::string &text) {
    static constexpr std::pair<char, std::int64_t> kUnits[] = {
        {'w', 7 * 86400}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1}};
    constexpr std::int64_t kMax = 3650ll * 86400;
    const char *form = "is not a duration such as `7d` or `1h30m` (whole numbers with units "
                       "w, d, h, m, s, largest first)";
    if (text.empty()) throw InvalidValue(text, form);
    std::int64_t total = 0;
    std::size_t at = 0, allowed = 0; // the first unit still allowed
    while (at < text.size()) {
        std::size_t start = at;
        while (at < text.size() && isDigit(text[at])) ++at;
        if (at == start || at == text.size()) throw InvalidValue(text, form);
        std::size_t unit = allowed;
        while (unit < std::size(kUnits) && kUnits[unit].first != text[at]) ++unit;
        if (unit == std::size(kUnits)) throw InvalidValue(text, form);
        // 12 digits of weeks, five times over, still fit an int64_t
        if (at - start > 12) throw InvalidValue(text, "is above the maximum `3650d`");
        total += std::stoll(text.substr(start, at - start)) * kUnits[unit].second;
        allowed = unit + 1;
        ++at;
    }
    if (total < 1) throw InvalidValue(text, "is below the minimum `1s`");
    if (total > kMax) throw InvalidValue(text, "is above the maximum `3650d`");
    return total;
}

json parseVirtualRoot(const std::string &text, const std::string &source) {
    try {
        Checker checker(source, readDocument(text, source), baseDirectory(source));
        return checker.run();
    } catch (const Error &) {
        throw;
    } catch (const std::exception &e) {
        // a bug, not bad input: say so rather than blame the document
        throw Error(MO_E_INTERNAL, source + ": reading the spec failed: " + e.what());
    }
}

} // namespace mobileops::core::spec
