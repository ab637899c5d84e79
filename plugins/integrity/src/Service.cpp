#include "Service.h"

#include "Hash.h"
#include "Sign.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Progress.h>
#include <mobileops/common/Time.h>

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <map>

namespace mobileops::integrity {

using common::quote;
using nlohmann::json;

namespace {

constexpr const char *kManifest = "manifest";
// The entries apart from the summary, so listing manifests never parses them.
constexpr const char *kEntries = "manifest-entries";
constexpr const char *kSignature = "signature";

std::string kindOf(const std::string &target) {
    auto colon = target.find(':');
    return colon == std::string::npos ? "" : target.substr(0, colon);
}

std::string subjectOf(const std::string &target) { return target.substr(target.find(':') + 1); }

bool exists(const std::string &path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

double secondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// An image's root: its layers' roots in order, so that a signature over it covers every
// byte of every layer.
std::string imageRoot(const json &layers) {
    std::string text = "mobileops-image-v1\n";
    for (const json &l : layers)
        text += l.at("diffId").get<std::string>() + " " + l.at("root").get<std::string>() + "\n";
    return sha256Hex(text);
}

ScanOptions scanOptions(const common::Host &host, common::Progress &progress,
                        const std::string &label, uint64_t total) {
    ScanOptions options;
    std::string threads = host.config("integrity.threads");
    if (!threads.empty()) {
        char *end = nullptr;
        unsigned long n = std::strtoul(threads.c_str(), &end, 10);
        if (!end || *end || n == 0 || n > 256)
            throw sdk::Error(MO_E_INVALID, "integrity.threads " + quote(threads) +
                                               ": expected a number from 1 to 256");
        options.threads = static_cast<unsigned>(n);
    }
    if (!progress.enabled()) return options;
    progress.start(label, label, total);
    options.progress = [&progress, label](uint64_t bytes, uint64_t) {
        progress.update(label, bytes);
    };
    return options;
}

void addProblems(json &report, const Diff &diff, size_t first) {
    report["problems"] = report.value("problems", 0) + static_cast<int>(diff.count());
    for (const std::string &line : diff.first(first)) {
        if (report["first"].size() >= first) break;
        report["first"].push_back(line);
    }
    if (!diff.clean()) report["clean"] = false;
}

void addProblem(json &report, const std::string &line) {
    report["problems"] = report.value("problems", 0) + 1;
    report["first"].insert(report["first"].begin(), line);
    report["clean"] = false;
}

json emptyReport(const std::string &target, const std::string &kind) {
    return {{"target", target},
            {"kind", kind},
            {"clean", true},
            {"problems", 0},
            {"first", json::array()}};
}

} // namespace

IntegrityService::IntegrityService(const common::Host &host) : _host(host) {}

std::string IntegrityService::normalize(const std::string &target) {
    std::string kind = kindOf(target);
    std::string path;
    if (kind == "layer" || kind == "image" || kind == "container" || kind == "asset") {
        if (subjectOf(target).empty())
            throw sdk::Error(MO_E_INVALID, "target " + quote(target) + " names nothing");
        return target;
    }
    if (kind == "path") {
        path = subjectOf(target);
    } else if (!target.empty() && (target[0] == '/' || target[0] == '.')) {
        path = target;
    } else {
        throw sdk::Error(MO_E_INVALID,
                         "target " + quote(target) +
                             ": expected an image, a container, `asset:NAME` or a path");
    }
    char buf[PATH_MAX];
    if (!::realpath(path.c_str(), buf)) throw common::sysError(quote(path), errno);
    return "path:" + std::string(buf);
}

json IntegrityService::mustRecord(const std::string &target) const {
    auto rec = _host.get(kManifest, target);
    if (!rec) {
        std::string hint =
            kindOf(target) == "image" || kindOf(target) == "layer"
                ? "record one with `mobileops integrity record IMAGE`"
                : "record one with `mobileops integrity record " + subjectOf(target) + "`";
        throw sdk::Error(MO_E_NOT_FOUND, "no manifest recorded for " + quote(target) + "; " + hint);
    }
    return *rec;
}

Manifest IntegrityService::manifestOf(const json &record) const {
    std::string target = record.value("target", "");
    auto entries = _host.get(kEntries, target);
    if (!entries)
        throw sdk::Error(MO_E_STATE, "the recorded manifest of " + quote(target) +
                                         " has lost its entries; record it again");
    try {
        return Manifest::fromJson(*entries);
    } catch (const sdk::Error &) {
        throw;
    } catch (const std::exception &e) {
        throw sdk::Error(MO_E_STATE, "the recorded manifest of " +
                                         quote(record.value("target", std::string("?"))) +
                                         " is damaged: " + e.what());
    }
}

// --- record ---

json IntegrityService::record(const std::string &rawTarget, const std::string &givenPath) {
    std::string target = normalize(rawTarget);
    std::string kind = kindOf(target);
    if (kind == "image") return recordImage(target);
    if (kind == "container")
        throw sdk::Error(MO_E_INVALID, "a container's manifest is its image's: record the image");
    std::string path = kind == "path" ? subjectOf(target) : givenPath;
    if (path.empty())
        throw sdk::Error(MO_E_INVALID, "recording " + quote(target) + " needs a path");
    auto started = std::chrono::steady_clock::now();
    auto progress = common::Progress::forTerminal(true);
    Manifest m = scan(path, scanOptions(_host, progress, "record " + target, 0));
    json doc = {{"target", target}, {"path", path},     {"recorded", common::nowRfc3339()},
                {"root", m.root},   {"files", m.files}, {"bytes", m.bytes}};
    common::Host::Transaction tx(_host);
    _host.put(kEntries, target, target, m.toJson());
    _host.put(kManifest, target, target, doc);
    tx.commit();
    return {{"target", target}, {"path", path},     {"root", m.root},
            {"files", m.files}, {"bytes", m.bytes}, {"seconds", secondsSince(started)}};
}

json IntegrityService::recordImage(const std::string &target) {
    std::string id = subjectOf(target);
    auto image = _host.get("image", id);
    if (!image) throw sdk::Error(MO_E_NOT_FOUND, "image " + quote(id) + " not found");
    json layers = json::array();
    uint64_t files = 0, bytes = 0;
    for (const json &l : image->value("layers", json::array())) {
        std::string diffId = l.at("diffId");
        json rec = mustRecord("layer:" + diffId);
        files += rec.value("files", 0ull);
        bytes += rec.value("bytes", 0ull);
        layers.push_back({{"diffId", diffId}, {"root", rec.at("root")}, {"path", rec.at("path")}});
    }
    std::string root = imageRoot(layers);
    json doc = {{"target", target},
                {"image", id},
                {"layers", layers},
                {"root", root},
                {"files", files},
                {"bytes", bytes},
                {"recorded", common::nowRfc3339()}};
    _host.put(kManifest, target, target, doc);
    return {{"target", target}, {"root", root}, {"files", files}, {"bytes", bytes}};
}

// --- verify ---

json IntegrityService::verify(const std::string &rawTarget, const VerifyOptions &options) {
    std::string target = normalize(rawTarget);
    std::string kind = kindOf(target);
    auto started = std::chrono::steady_clock::now();
    json report;
    std::string root;
    if (kind == "image") {
        report = verifyImage(subjectOf(target), options, nullptr);
    } else if (kind == "container") {
        report = verifyContainer(subjectOf(target), options);
    } else {
        json rec = mustRecord(target);
        report = verifyTree(rec, options, nullptr);
    }
    report["target"] = target;
    report["checked"]["seconds"] = secondsSince(started);
    std::string signedTarget = kind == "container" ? report.value("image", "") : target;
    if (!signedTarget.empty()) {
        json sig = checkSignature(signedTarget, report.value("root", ""), options);
        if (sig.value("required", false) && !sig.value("valid", false))
            addProblem(report, "signature: " + sig.value("message", std::string("not valid")));
        report["signature"] = sig;
    }
    return report;
}

json IntegrityService::verifyTree(const json &rec, const VerifyOptions &options, Manifest *live) {
    std::string target = rec.at("target");
    std::string path = rec.at("path");
    json report = emptyReport(target, kindOf(target));
    report["path"] = path;
    Manifest recorded = manifestOf(rec);
    report["root"] = recorded.root;
    if (!exists(path)) {
        addProblem(report, path + " (missing: the whole tree is gone)");
        report["checked"] = {{"files", 0}, {"bytes", 0}};
        return report;
    }
    auto progress = common::Progress::forTerminal(options.quiet);
    Manifest now = scan(path, scanOptions(_host, progress, "verify " + target, recorded.bytes));
    if (progress.enabled()) progress.finish("verify " + target);
    Diff diff = compare(recorded, now);
    report["diff"] = diff.toJson();
    report["actualRoot"] = now.root;
    report["checked"] = {{"files", now.files}, {"bytes", now.bytes}};
    addProblems(report, diff, options.first);
    if (live) *live = std::move(now);
    return report;
}

json IntegrityService::verifyImage(const std::string &imageId, const VerifyOptions &options,
                                   std::vector<Manifest> *layers) {
    std::string target = "image:" + imageId;
    json rec = mustRecord(target);
    json report = emptyReport(target, "image");
    report["image"] = target;
    report["root"] = rec.at("root");
    report["layers"] = json::array();
    uint64_t files = 0, bytes = 0;
    if (imageRoot(rec.at("layers")) != rec.at("root").get<std::string>())
        addProblem(report, "image manifest: its root does not match its layers (the record "
                           "was changed)");
    for (const json &l : rec.at("layers")) {
        std::string diffId = l.at("diffId");
        json layerRec = mustRecord("layer:" + diffId);
        json lr = verifyTree(layerRec, options, nullptr);
        if (lr.at("root") != l.at("root"))
            addProblem(report, "layer " + diffId.substr(0, 19) +
                                   ": its manifest was recorded again since the image was "
                                   "recorded (run `integrity record` on the image if that was "
                                   "you)");
        files += lr["checked"].value("files", 0ull);
        bytes += lr["checked"].value("bytes", 0ull);
        report["problems"] = report["problems"].get<int>() + lr["problems"].get<int>();
        for (const json &line : lr["first"])
            if (report["first"].size() < options.first) report["first"].push_back(line);
        if (!lr["clean"].get<bool>()) report["clean"] = false;
        report["layers"].push_back({{"diffId", diffId},
                                    {"path", lr["path"]},
                                    {"clean", lr["clean"]},
                                    {"diff", lr.value("diff", json::object())}});
        if (layers) layers->push_back(manifestOf(layerRec));
    }
    report["checked"] = {{"files", files}, {"bytes", bytes}};
    return report;
}

json IntegrityService::verifyContainer(const std::string &containerId,
                                       const VerifyOptions &options) {
    auto rootfs = _host.get("rootfs", containerId);
    if (!rootfs)
        throw sdk::Error(MO_E_NOT_FOUND,
                         "container " + quote(containerId) +
                             " has no image root; verify the directory it runs from instead");
    std::string imageId = rootfs->value("image", "");
    std::vector<Manifest> layers;
    json report = verifyImage(imageId, options, &layers);
    report["kind"] = "container";
    report["container"] = containerId;
    std::string upper = rootfs->value("upper", "");
    if (!upper.empty() && exists(upper)) {
        Manifest image = merge(layers);
        auto quiet = common::Progress::forTerminal(true);
        Manifest writes = scan(upper, scanOptions(_host, quiet, "", 0));
        report["changes"] = overlayDrift(image, writes).toJson();
    }
    return report;
}

// --- signatures ---

std::string IntegrityService::statement(const std::string &target, const std::string &root) {
    return json{{"format", "mobileops-manifest-v1"}, {"root", root}, {"target", target}}.dump();
}

std::vector<std::string> IntegrityService::trustedKeys() const {
    std::vector<std::string> keys;
    std::string list = _host.config("integrity.trusted_keys");
    size_t start = 0;
    while (start < list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        std::string item = list.substr(start, end - start);
        item.erase(0, item.find_first_not_of(" \t"));
        item.erase(item.find_last_not_of(" \t") + 1);
        start = end + 1;
        if (item.empty()) continue;
        struct stat st;
        if (::stat(item.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
            if (DIR *d = ::opendir(item.c_str())) {
                std::vector<std::string> found;
                while (dirent *e = ::readdir(d)) {
                    std::string n = e->d_name;
                    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".pub") == 0)
                        found.push_back(item + "/" + n);
                }
                ::closedir(d);
                std::sort(found.begin(), found.end());
                keys.insert(keys.end(), found.begin(), found.end());
            }
        } else {
            keys.push_back(item);
        }
    }
    return keys;
}

json IntegrityService::checkSignature(const std::string &target, const std::string &root,
                                      const VerifyOptions &options) const {
    std::vector<std::string> keys = options.keys;
    bool required = options.requireSignature || !keys.empty();
    if (keys.empty() && options.requireSignature) keys = trustedKeys();
    json result = {{"required", required}, {"valid", false}};
    if (!required) {
        json signers = json::array();
        for (const json &s : _host.list(kSignature))
            if (s.value("target", "") == target) signers.push_back(s.value("keyId", ""));
        result["signedBy"] = signers;
        result["message"] =
            signers.empty() ? "not signed" : "signatures not checked (no key given)";
        return result;
    }
    if (keys.empty()) {
        result["message"] =
            "a signature is required but no key is trusted (integrity.trusted_keys)";
        return result;
    }
    std::string why = "no signature by " + (keys.size() == 1 ? quote(keys[0]) : "a trusted key");
    for (const std::string &file : keys) {
        std::string pem = readKeyFile(file, false);
        std::string id = keyId(pem);
        auto sig = _host.get(kSignature, target + " " + id);
        if (!sig) continue;
        if (verifySignature(pem, statement(target, root), sig->value("signature", ""))) {
            result["valid"] = true;
            result["keyId"] = id;
            result["message"] = "signed by " + id;
            return result;
        }
        why = "the signature by " + id + " does not match the recorded manifest";
    }
    result["message"] = why;
    return result;
}

json IntegrityService::sign(const std::string &rawTarget, const std::string &keyFile) {
    std::string target = normalize(rawTarget);
    if (kindOf(target) == "container")
        throw sdk::Error(MO_E_INVALID, "sign the container's image, not the container");
    std::string pem = readKeyFile(keyFile, true);
    VerifyOptions options;
    json report = verify(target, options);
    if (!report.value("clean", false))
        throw sdk::Error(MO_E_STATE, quote(target) + " differs from its manifest (" +
                                         std::to_string(report.value("problems", 0)) +
                                         " paths); refusing to sign it");
    std::string root = report.at("root");
    std::string id = keyId(pem);
    std::string signature = integrity::sign(pem, statement(target, root));
    json doc = {{"target", target},       {"keyId", id},
                {"root", root},           {"statement", statement(target, root)},
                {"signature", signature}, {"signed", common::nowRfc3339()}};
    _host.put(kSignature, target + " " + id, target + " " + id, doc);
    return {{"target", target}, {"keyId", id}, {"root", root}, {"signature", signature}};
}

// --- listing and upkeep ---

json IntegrityService::show(const std::string &rawTarget) const {
    std::string target = normalize(rawTarget);
    json rec = mustRecord(target);
    json out = {{"target", target}, {"recorded", rec.value("recorded", "")}};
    if (kindOf(target) == "image") {
        out["root"] = rec.at("root");
        out["layers"] = rec.at("layers");
        out["files"] = rec.value("files", 0ull);
        out["bytes"] = rec.value("bytes", 0ull);
        return out;
    }
    Manifest m = manifestOf(rec);
    out["path"] = rec.at("path");
    out["root"] = m.root;
    out["files"] = m.files;
    out["bytes"] = m.bytes;
    json entries = json::array();
    for (const Entry &e : m.entries) {
        json j = {{"path", e.path},
                  {"type", typeName(e.type)},
                  {"mode", e.mode},
                  {"uid", e.uid},
                  {"gid", e.gid}};
        if (e.type == EntryType::File) {
            j["size"] = e.size;
            j["sha256"] = e.digest;
        }
        if (e.type == EntryType::Symlink) j["target"] = e.target;
        if (e.rdev) j["rdev"] = e.rdev;
        entries.push_back(std::move(j));
    }
    out["entries"] = std::move(entries);
    return out;
}

json IntegrityService::list() const {
    std::map<std::string, json> signers;
    for (const json &s : _host.list(kSignature))
        signers[s.value("target", "")].push_back(s.value("keyId", ""));
    json out = json::array();
    for (const json &rec : _host.list(kManifest)) {
        std::string target = rec.value("target", "");
        out.push_back({{"target", target},
                       {"path", rec.value("path", "")},
                       {"root", rec.value("root", "")},
                       {"files", rec.value("files", 0ull)},
                       {"bytes", rec.value("bytes", 0ull)},
                       {"recorded", rec.value("recorded", "")},
                       {"signatures", signers.count(target) ? signers[target] : json::array()}});
    }
    return out;
}

bool IntegrityService::forget(const std::string &rawTarget) {
    std::string target = normalize(rawTarget);
    common::Host::Transaction tx(_host);
    bool removed = _host.remove(kManifest, target);
    _host.remove(kEntries, target);
    for (const json &s : _host.list(kSignature))
        if (s.value("target", "") == target)
            _host.remove(kSignature, target + " " + s.value("keyId", ""));
    tx.commit();
    return removed;
}

json IntegrityService::gc() {
    json removed = json::array();
    for (const json &rec : _host.list(kManifest)) {
        std::string target = rec.value("target", "");
        std::string kind = kindOf(target);
        bool gone = (kind == "layer" && !exists(rec.value("path", ""))) ||
                    (kind == "image" && !_host.get("image", subjectOf(target))) ||
                    (kind == "asset" && !_host.get("asset", subjectOf(target)));
        if (gone && forget(target)) removed.push_back(target);
    }
    for (const json &s : _host.list(kSignature)) {
        std::string target = s.value("target", "");
        if (!_host.get(kManifest, target)) {
            _host.remove(kSignature, target + " " + s.value("keyId", ""));
            removed.push_back("signature " + target);
        }
    }
    return {{"removed", removed}};
}

} // namespace mobileops::integrity
