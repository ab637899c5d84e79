// The plugin's C surface: the descriptor, the mo_integrity_service trampolines and the JSON
// methods the integrity workflow and the container workflow's --verify call.
#include "Audit.h"
#include "CheckImg.h"
#include "Service.h"
#include "Sign.h"
#include "Toolbox.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Json.h>
#include <mobileops/plugin.hpp>

#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>

extern char **environ;

namespace mobileops::integrity {
namespace {

using common::quote;
using nlohmann::json;

std::string str(const json &a, const char *key) { return common::stringArg(a, key); }

// What this kernel offers for files that verify themselves on every read.
json fsVerityStatus() {
    struct stat st;
    bool ext4 = ::stat("/sys/fs/ext4/features/verity", &st) == 0;
    return {{"supported", ext4},
            {"detail", ext4 ? "ext4 supports fs-verity (tune2fs -O verity on the store's "
                              "filesystem enables it)"
                            : "this kernel's ext4 has no fs-verity (no "
                              "/sys/fs/ext4/features/verity): manifests are checked by "
                              "re-hashing"}};
}

class IntegrityPlugin : public sdk::Plugin {
public:
    void init() override {
        _hostApi = std::make_unique<common::Host>(&host(), handle());
        _service = std::make_unique<IntegrityService>(*_hostApi);

        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.verify = &verifyTarget;
        _iface.record = &recordTarget;
        service(MO_SERVICE_INTEGRITY, "integrity", &_iface);
        registerMethods();
    }

    sdk::Probe probe() override {
        return {true,
                "manifests in the state store; " + fsVerityStatus()["detail"].get<std::string>()};
    }

private:
    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        return Plugin::guard<IntegrityPlugin>(p, err, std::forward<Fn>(fn));
    }
    static json parse(const char *text, const char *what) {
        return common::parseArgument(text, what, true);
    }

    VerifyOptions verifyOptions(const json &a) const {
        VerifyOptions o;
        o.keys = common::stringsArg(a, "keys");
        o.requireSignature =
            a.value("requireSignature", false) || config("integrity.require_signature") == "true";
        o.first = a.value("first", 10u);
        o.quiet = a.value("quiet", true);
        return o;
    }

    // --- the service

    static int verifyTarget(void *p, const char *target, const char *options, mo_buffer *out,
                            mo_error *err) {
        bool clean = true;
        std::string summary;
        int rc = guard(p, err, [&](IntegrityPlugin &s) {
            json report = s._service->verify(target ? target : "",
                                             s.verifyOptions(parse(options, "options")));
            common::setResult(s.host(), out, report);
            clean = report.value("clean", false);
            summary = report.value("target", std::string()) + " differs from its manifest";
        });
        if (rc < 0 || clean) return rc;
        static_cast<IntegrityPlugin *>(p)->host().error_set(err, MO_E_STATE, summary.c_str());
        return MO_E_STATE;
    }

    static int recordTarget(void *p, const char *target, const char *path, mo_buffer *out,
                            mo_error *err) {
        return guard(p, err, [&](IntegrityPlugin &s) {
            common::setResult(s.host(), out,
                              s._service->record(target ? target : "", path ? path : ""));
        });
    }

    // --- methods

    json args(const std::string &text) const { return parse(text.c_str(), "arguments"); }

    std::string target(const json &a) const {
        std::string t = str(a, "target");
        if (t.empty()) throw sdk::Error(MO_E_INVALID, "no target given");
        return t;
    }

    // A verification for a container that started without waiting for it (--verify=lazy):
    // the result goes to the event log (and to the terminal when there is one).
    json verifyFor(const json &a) {
        json report = _service->verify(target(a), verifyOptions(a));
        std::string container = str(a, "container");
        if (!container.empty()) {
            bool clean = report.value("clean", false);
            _hostApi->event(clean ? "integrity.verified" : "integrity.drift",
                            {{"id", container},
                             {"name", str(a, "name").empty() ? container : str(a, "name")},
                             {"target", report.value("target", "")},
                             {"mode", str(a, "mode")},
                             {"problems", report.value("problems", 0)},
                             {"first", report.value("first", json::array())}});
        }
        return report;
    }

    // Start `mobileops integrity verify ... --for-container ID` on its own, so the
    // container starts without waiting; a fresh process rather than a fork, because this
    // one holds the state store open and may be about to clone the container.
    json verifyInBackground(const json &a) {
        std::string exe = config("prefix") + "/bin/mobileops";
        if (::access(exe.c_str(), X_OK) != 0) exe = "/proc/self/exe";
        // `run` verifies before the container exists: its name stands for it then
        std::string container = str(a, "container");
        if (container.empty()) container = str(a, "name");
        if (container.empty()) throw sdk::Error(MO_E_INVALID, "no container named to report for");
        std::vector<std::string> argv = {"mobileops",       "integrity", "verify", target(a),
                                         "--for-container", container,   "--mode", "lazy"};
        for (const std::string &k : common::stringsArg(a, "keys")) {
            argv.push_back("--key");
            argv.push_back(k);
        }
        std::vector<char *> cargv;
        for (std::string &s : argv) cargv.push_back(s.data());
        cargv.push_back(nullptr);

        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        posix_spawn_file_actions_init(&actions);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        // A terminal sees the warning; a pipe must not be held open by the verifier, or
        // whoever reads this command's output waits for it too.
        if (!::isatty(2)) posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
        // SCHED_IDLE: the hashing takes only CPU time the container's start leaves over
        sched_param idle{};
        posix_spawnattr_setschedpolicy(&attr, SCHED_IDLE);
        posix_spawnattr_setschedparam(&attr, &idle);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSCHEDULER);
        pid_t pid = 0;
        int rc = ::posix_spawn(&pid, exe.c_str(), &actions, &attr, cargv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
        if (rc != 0) throw common::sysError("start the background verification", rc);
        return {{"pid", pid}};
    }

    json keygen(const json &a) const {
        std::string path = str(a, "path");
        if (path.empty()) throw sdk::Error(MO_E_INVALID, "no key path given");
        KeyPair keys = generateKey();
        writeKeyPair(keys, path);
        return {{"private", path}, {"public", path + ".pub"}, {"keyId", keyId(keys.publicPem)}};
    }

    json toolbox(const json &a) const {
        std::string prefix = str(a, "prefix");
        if (prefix.empty()) prefix = config("prefix");
        std::string manifest = str(a, "manifest");
        if (manifest.empty()) manifest = config("plugins.manifest");
        if (manifest.empty()) manifest = prefix + "/lib/mobileops/toolbox.json";
        return checkToolbox(prefix, manifest);
    }

    json status() const {
        return {
            {"verify", config("integrity.verify").empty() ? "off" : config("integrity.verify")},
            {"requireSignature", config("integrity.require_signature") == "true"},
            {"trustedKeys", config("integrity.trusted_keys")},
            {"pluginVerify", config("plugins.verify").empty() ? "off" : config("plugins.verify")},
            {"fsVerity", fsVerityStatus()},
            {"manifests", _service->list().size()}};
    }

    void registerMethods() {
        method(
            "record", "record the manifest of a target (an image layer, image, asset or path)",
            [this](const std::string &t) {
                json a = args(t);
                return _service->record(target(a), str(a, "path")).dump();
            },
            "{target, path}");
        method(
            "verify", "verify a target against its manifest (and its signature)",
            [this](const std::string &t) { return verifyFor(args(t)).dump(); },
            "{target, keys, requireSignature, first, quiet, container, name, mode}");
        method(
            "verify_background", "verify a target in a process of its own; the result is an event",
            [this](const std::string &t) { return verifyInBackground(args(t)).dump(); },
            "{target, container, keys}");
        method(
            "show", "a recorded manifest with its entries",
            [this](const std::string &t) { return _service->show(target(args(t))).dump(); },
            "{target}");
        method("list", "every recorded manifest",
               [this](const std::string &) { return _service->list().dump(); });
        method(
            "forget", "drop a recorded manifest and its signatures",
            [this](const std::string &t) {
                return json{{"removed", _service->forget(target(args(t)))}}.dump();
            },
            "{target}");
        method(
            "sign", "sign a target's manifest with an Ed25519 private key",
            [this](const std::string &t) {
                json a = args(t);
                return _service->sign(target(a), str(a, "key")).dump();
            },
            "{target, key}");
        method(
            "keygen", "make an Ed25519 key pair (PATH and PATH.pub)",
            [this](const std::string &t) { return keygen(args(t)).dump(); }, "{path}");
        method(
            "check_img", "e2fsck -n of an ext2/3/4 image",
            [this](const std::string &t) {
                return checkImage(str(args(t), "file")).toJson().dump();
            },
            "{file}");
        method(
            "toolbox_check", "the installed mobileops files against the toolbox manifest",
            [this](const std::string &t) { return toolbox(args(t)).dump(); }, "{prefix, manifest}");
        method(
            "audit", "the security posture of a container (its inspect record)",
            [this](const std::string &t) {
                json a = args(t);
                try {
                    return audit(a.at("container")).toJson().dump();
                } catch (const std::invalid_argument &e) {
                    throw sdk::Error(MO_E_INVALID, e.what());
                } catch (const json::exception &) {
                    throw sdk::Error(MO_E_INVALID, "audit needs {container = <inspect record>}");
                }
            },
            "{container}");
        method("status", "configuration, fs-verity support and how many manifests are kept",
               [this](const std::string &) { return status().dump(); });
        method("gc", "drop manifests of layers, images and assets that are gone",
               [this](const std::string &) { return _service->gc().dump(); });
    }

    std::unique_ptr<common::Host> _hostApi;
    std::unique_ptr<IntegrityService> _service;
    mo_integrity_service _iface{};
};

} // namespace
} // namespace mobileops::integrity

MOBILEOPS_PLUGIN(mobileops::integrity::IntegrityPlugin, "integrity", "0.1.0",
                 "manifests, verification, signatures, toolbox self-check and audits",
                 "integrity:integrity")
