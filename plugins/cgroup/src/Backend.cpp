#include "Backend.h"

#include "Errors.h"

#include <sstream>

namespace mobileops::cgroup {

namespace {

std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    size_t start = s.find_first_not_of(" \t\n");
    return start == std::string::npos ? std::string() : s.substr(start);
}

} // namespace

void Backend::write(const std::string &dir, const std::string &file, const std::string &value) {
    int rc = _fs.write(dir + "/" + file, value);
    if (rc < 0) throw sysError("write " + quote(file) + " = " + quote(value), -rc);
}

std::optional<std::string> Backend::read(const std::string &dir, const std::string &file) {
    std::string text;
    if (_fs.read(dir + "/" + file, text) < 0) return std::nullopt;
    return trim(text);
}

std::optional<std::uint64_t> Backend::readNumber(const std::string &dir, const std::string &file) {
    auto text = read(dir, file);
    if (!text || text->empty() || *text == "max") return std::nullopt;
    try {
        size_t used = 0;
        std::uint64_t n = std::stoull(*text, &used);
        if (used != text->size() && (*text)[used] != ' ') return std::nullopt;
        if (n >= kV1Unlimited) return std::nullopt;
        return n;
    } catch (const std::exception &) {
        return std::nullopt;
    }
}

std::optional<std::uint64_t> Backend::readKey(const std::string &dir, const std::string &file,
                                              const std::string &key) {
    auto text = read(dir, file);
    if (!text) return std::nullopt;
    std::istringstream in(*text);
    std::string k;
    std::uint64_t v;
    while (in >> k >> v)
        if (k == key) return v;
    return std::nullopt;
}

void Backend::setPids(const std::string &dir, const Settings &s) {
    if (s.pidsLimit)
        write(dir, "pids.max", *s.pidsLimit ? std::to_string(**s.pidsLimit) : std::string("max"));
}

const char *Backend::weightFile(const std::string &dir) const {
    WeightFiles w = weightFiles();
    for (const char *file : {w.plain, w.bfq})
        if (_fs.exists(dir + "/" + file)) return file;
    return nullptr;
}

std::string Backend::noWeightFile() const {
    WeightFiles w = weightFiles();
    return std::string("neither `") + w.plain + "` nor `" + w.bfq + "` exists (" + w.needs + ")";
}

void Backend::pidsStats(const std::string &dir, nlohmann::json &out) {
    nlohmann::json p = nlohmann::json::object();
    if (auto v = readNumber(dir, "pids.current")) p["current"] = *v;
    p["limit"] = nlohmann::json();
    if (auto v = readNumber(dir, "pids.max")) p["limit"] = *v;
    if (auto v = readKey(dir, "pids.events", "max")) p["limit_hits"] = *v;
    out["pids"] = p;
}

nlohmann::json Backend::appliedEntry(const std::string &field, const std::string &dir,
                                     const std::string &file, const nlohmann::json &applied) {
    auto text = read(dir, file);
    return {{"field", field},
            {"file", dir + "/" + file},
            {"value", text ? nlohmann::json(*text) : nlohmann::json()},
            {"applied", applied}};
}

std::optional<std::uint64_t> Backend::readWeight(const std::string &dir, const std::string &file) {
    auto text = read(dir, file);
    if (!text) return std::nullopt;
    std::istringstream in(*text);
    std::string first;
    if (!(in >> first)) return std::nullopt;
    if (first == "default" && !(in >> first)) return std::nullopt;
    try {
        return std::stoull(first);
    } catch (const std::exception &) {
        return std::nullopt;
    }
}

} // namespace mobileops::cgroup
