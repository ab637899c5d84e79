// The plugin's C surface: the runtime service "krun" and the JSON methods of the vm
// workflow (prepare, status, a foreground run).
//
// A VM container is a namespace-runtime container whose process is our VMM launcher
// (libexec/mobileops/mobileops-vmm) rather than the spec's program: create and run add
// the spec's `vm` object (backend, guest assets, accelerator, size, launcher) and hand
// the spec to the "namespace" provider, which gives the launcher the container's cgroup,
// namespaces, monitor, state record and log, and the guest the root and volumes the
// storage service prepared. Every other call goes straight to the namespace provider:
// stop, kill, delete, list and inspect work on VM containers as on any other.
#include "Assets.h"
#include "Job.h"
#include "Libkrun.h"
#include "Qemu.h"
#include "Supervise.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Json.h>
#include <mobileops/plugin.hpp>

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <tuple>

namespace mobileops::krun {
namespace {

using common::quote;
using nlohmann::json;

std::string str(const json &a, const char *key) { return common::stringArg(a, key); }

constexpr unsigned kDefaultVcpus = 2;
constexpr uint64_t kDefaultMemory = 512ull << 20;
// What qemu itself takes on the host beside the guest's memory (measured: ~270 MiB RSS
// for an idle TCG microvm with 512 MiB); a memory limit below the sum risks an OOM kill.
constexpr uint64_t kVmmOverhead = 256ull << 20;

class KrunPlugin : public sdk::Plugin {
public:
    void init() override {
        _hostApi = std::make_unique<common::Host>(&host(), handle());
        _vmDir = config("krun.dir");
        if (_vmDir.empty()) _vmDir = config("root_dir") + "/vm";
        registerMethods();
        registerRuntime();
        for (const char *f : {"krun.qemu", "krun.libkrun", "krun.volumes"}) feature(f);
    }

    // Usable when a backend can run a VM here: libkrun, or qemu with a kernel to boot
    // (prepared already, or a linux-image to prepare from at the first create). The
    // reason names each backend's state (`system doctor`, `--isolation auto`).
    sdk::Probe probe() override {
        auto [libkrun, libkrunWhy] = Libkrun::probe();
        std::string libkrunText = libkrun ? "libkrun: libkrun.so.1" : libkrunWhy;
        std::string why;
        auto qemu = findQemu(&why);
        std::optional<GuestAssets> assets;
        if (qemu) {
            try {
                assets = findAssets(assetOptions(true));
            } catch (const std::exception &e) {
                why = std::string("no guest kernel: ") + e.what();
                qemu.reset();
            }
        }
        std::string qemuText = "qemu micro-VM: " + why;
        if (qemu) {
            qemuText = "qemu micro-VM, ";
            qemuText += assets ? "guest " + assets->kernelVersion
                               : std::string("guest made at the first VM (`mobileops vm prepare`)");
            if (auto accel = cachedAccel()) {
                // The verdict's first clause: "tcg (/dev/kvm cannot boot a stock kernel)".
                std::string brief = accel->why.substr(0, accel->why.find(": "));
                qemuText += ", " + accel->name + " (" + brief + ")";
            }
        }
        if (libkrun) return {true, libkrunText + "; also " + qemuText};
        return {qemu.has_value(), qemuText + "; " + libkrunText};
    }

private:
    // The accelerator verdict of an earlier probe (prepare or a VM's create), if any.
    std::optional<Accel> cachedAccel() const {
        std::ifstream in(_vmDir + "/accel.json");
        json j = json::parse(in, nullptr, false);
        if (!j.is_object() || !j.contains("accel")) return {};
        return Accel{j.value("accel", ""), j.value("why", "")};
    }

    AssetOptions assetOptions(bool quiet) const {
        AssetOptions o;
        o.cacheDir = _vmDir + "/assets";
        o.guestInit = config("libexec_dir") + "/mobileops-guest-init";
        o.kernelImage = config("krun.kernel");
        o.quiet = quiet;
        return o;
    }

    json prepare(const json &a) const {
        GuestAssets assets = prepareAssets(assetOptions(a.value("quiet", true)));
        Accel accel = probeAccel(assets, _vmDir + "/accel.json");
        json out = assets.toJson();
        out["accel"] = {{"name", accel.name}, {"why", accel.why}};
        return out;
    }

    json status() const {
        std::string why;
        auto qemu = findQemu(&why);
        auto assets = findAssets(assetOptions(true));
        auto [libkrun, libkrunWhy] = Libkrun::probe();
        return {{"qemu", qemu ? json{{"available", true}, {"path", *qemu}}
                              : json{{"available", false}, {"why", why}}},
                {"assets", assets ? assets->toJson() : json(nullptr)},
                {"libkrun", {{"available", libkrun}, {"why", libkrunWhy}}}};
    }

    static VmConfig vmConfig(const json &a) {
        VmConfig c;
        c.rootfs = str(a, "rootfs");
        if (c.rootfs.empty()) throw sdk::Error(MO_E_INVALID, "no root filesystem given");
        c.args = common::stringsArg(a, "args");
        if (c.args.empty()) throw sdk::Error(MO_E_INVALID, "no command given");
        c.env = common::stringsArg(a, "env");
        if (!str(a, "cwd").empty()) c.cwd = str(a, "cwd");
        c.rootReadOnly = a.value("readOnly", false);
        c.vcpus = a.value("vcpus", 2u);
        c.memory = a.value("memory", c.memory);
        c.timeout = std::chrono::seconds(a.value("timeout", 3600));
        c.hostname = str(a, "hostname");
        for (const json &v : a.value("volumes", json::array()))
            c.mounts.push_back(
                {v.value("source", ""), v.value("target", ""), v.value("readOnly", false)});
        return c;
    }

    // The qemu command line run() would start, with its job written into `workDir`, for
    // running the same VM by hand (tools/bench/vm-bench.sh): fd 3 and 4 take the guest's
    // stdout and stderr, fd 5 must be one end of a unix stream socket pair (control)
    // whose other end answers the guest's drain line (guest/protocol.h).
    json command(const json &a) const {
        VmConfig config = vmConfig(a);
        config.workDir = str(a, "workDir");
        if (config.workDir.empty() || config.workDir[0] != '/')
            throw sdk::Error(MO_E_INVALID, "workDir: expected an absolute directory");
        GuestAssets assets = prepareAssets(assetOptions(true));
        Accel accel = probeAccel(assets, _vmDir + "/accel.json");
        std::filesystem::create_directories(config.workDir + "/job");
        writeJob(config, config.workDir + "/job");
        return {{"argv", qemuCommand(config, assets, accel)}, {"accel", accel.name}};
    }

    // A VM in the foreground: its output on ours, its exit status back.
    json run(const json &a) const {
        VmConfig config = vmConfig(a);
        GuestAssets assets = prepareAssets(assetOptions(true));
        Accel accel = probeAccel(assets, _vmDir + "/accel.json");
        std::filesystem::create_directories(_vmDir + "/run");
        char tmpl[PATH_MAX];
        std::snprintf(tmpl, sizeof tmpl, "%s/run/vm-XXXXXX", _vmDir.c_str());
        if (!::mkdtemp(tmpl)) throw common::sysError("make the VM's directory", errno);
        config.workDir = tmpl;
        // A ^C at the terminal (or a SIGTERM to this command) goes to the program in the
        // guest, which then ends the VM the usual way: its exit status comes back and
        // nothing is left behind. Taken from a signalfd while the VM runs; qemu sits in
        // its own process group and keeps these signals blocked.
        sigset_t forwarded = forwardedSignals(), before;
        ::pthread_sigmask(SIG_BLOCK, &forwarded, &before);
        common::Fd signals(::signalfd(-1, &forwarded, SFD_CLOEXEC));
        int code = 0;
        try {
            if (signals.fd < 0) throw common::sysError("vm: signalfd", errno);
            QemuVm vm = QemuVm::launch(config, assets, accel);
            code = superviseVm(vm, STDOUT_FILENO, STDERR_FILENO, signals.fd);
        } catch (...) {
            ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
            std::filesystem::remove_all(config.workDir);
            throw;
        }
        ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
        std::filesystem::remove_all(config.workDir);
        return {{"exitCode", code}, {"accel", accel.name}};
    }

    // --- the runtime service ---------------------------------------------------------

    const mo_runtime_service &namespaceRuntime() {
        if (!_ns) {
            _ns = lookup<mo_runtime_service>(MO_SERVICE_RUNTIME, "namespace");
            if (_ns->size < sizeof(mo_runtime_service))
                throw sdk::Error(MO_E_UNSUPPORTED, "the namespace runtime is older than krun");
        }
        return *_ns;
    }

    // The spec's `vm` object as the namespace runtime and mobileops-vmm take it: the
    // user's size and timeout, the backend this host has, the guest and the accelerator.
    json vmSettings(const json &spec) const {
        json user = spec.contains("vm") && spec["vm"].is_object() ? spec["vm"] : json::object();
        json vm = {{"launcher", json::array({config("libexec_dir") + "/mobileops-vmm"})},
                   {"vcpus", user.value("vcpus", kDefaultVcpus)},
                   {"memory", user.value("memory", kDefaultMemory)}};
        if (user.contains("timeout")) vm["timeout"] = user["timeout"];
        auto [libkrun, libkrunWhy] = Libkrun::probe();
        if (libkrun) {
            vm["backend"] = "libkrun";
            return vm;
        }
        std::string why;
        if (!findQemu(&why))
            throw sdk::Error(MO_E_UNSUPPORTED,
                             "no micro-VM backend: " + why + "; " + libkrunWhy +
                                 " (install qemu-system-x86, see `mobileops system doctor`)");
        GuestAssets assets = prepareAssets(assetOptions(false));
        Accel accel = probeAccel(assets, _vmDir + "/accel.json");
        vm["backend"] = "qemu";
        vm["kernelVersion"] = assets.kernelVersion;
        vm["kernel"] = assets.kernel;
        vm["initramfs"] = assets.initramfs;
        vm["assetsDir"] = assets.dir;
        vm["accel"] = accel.name;
        vm["accelWhy"] = accel.why;
        return vm;
    }

    // The spec the namespace provider gets for a VM container.
    std::string vmSpec(const char *text) const {
        if (!text) throw sdk::Error(MO_E_INVALID, "no spec given");
        json spec = common::parseArgument(text, "spec", false);
        if (!spec.is_object()) throw sdk::Error(MO_E_INVALID, "spec: expected a JSON object");
        spec["runtime"] = "krun";
        spec.erase("isolation");
        spec["vm"] = vmSettings(spec);
        uint64_t memory = spec["vm"]["memory"];
        if (auto res = spec.find("resources"); res != spec.end() && res->is_object())
            if (auto lim = res->find("limits"); lim != res->end() && lim->is_object())
                if (auto m = lim->find("memory"); m != lim->end() && m->is_number_unsigned() &&
                                                  m->get<uint64_t>() < memory + kVmmOverhead)
                    _hostApi->log(MO_LOG_WARNING,
                                  "the memory limit (" + std::to_string(m->get<uint64_t>() >> 20) +
                                      " MiB) applies to the VMM on the host, which needs the "
                                      "VM's " +
                                      std::to_string(memory >> 20) + " MiB plus about " +
                                      std::to_string(kVmmOverhead >> 20) +
                                      " MiB of its own: it may be OOM-killed");
        return spec.dump();
    }

    static KrunPlugin &self(void *p) { return *static_cast<KrunPlugin *>(p); }

    // Run fn(plugin) for a C entry point; what it throws becomes `err`.
    template <typename Fn> static int guarded(void *p, mo_error *err, Fn &&fn) noexcept {
        try {
            return fn(self(p));
        } catch (...) {
            return fail(self(p).host(), err);
        }
    }

    static int create(void *p, const char *spec, mo_buffer *out, mo_error *err) {
        return guarded(p, err, [&](KrunPlugin &k) {
            const mo_runtime_service &ns = k.namespaceRuntime();
            return ns.create(ns.self, k.vmSpec(spec).c_str(), out, err);
        });
    }

    static int run(void *p, const char *spec, const mo_stdio *stdio, uint32_t flags, int *status,
                   mo_error *err) {
        if (status) *status = 125;
        return guarded(p, err, [&](KrunPlugin &k) {
            const mo_runtime_service &ns = k.namespaceRuntime();
            return ns.run(ns.self, k.vmSpec(spec).c_str(), stdio, flags, status, err);
        });
    }

    // The rest is the namespace provider's: a VM container is one of its containers.
    template <auto Member, typename... Args> static int forward(void *p, Args... args) noexcept {
        mo_error *err = std::get<sizeof...(Args) - 1>(std::tuple<Args...>(args...));
        return guarded(p, err, [&](KrunPlugin &k) {
            const mo_runtime_service &ns = k.namespaceRuntime();
            return (ns.*Member)(ns.self, args...);
        });
    }

    void registerRuntime() {
        std::memset(&_runtime, 0, sizeof _runtime);
        using S = mo_runtime_service;
        _runtime.size = sizeof _runtime;
        _runtime.self = this;
        _runtime.create = &create;
        _runtime.run = &run;
        _runtime.start = &forward<&S::start, const char *, mo_error *>;
        _runtime.kill = &forward<&S::kill, const char *, int, uint32_t, mo_error *>;
        _runtime.stop = &forward<&S::stop, const char *, uint32_t, mo_error *>;
        _runtime.remove = &forward<&S::remove, const char *, uint32_t, mo_error *>;
        _runtime.state = &forward<&S::state, const char *, mo_buffer *, mo_error *>;
        _runtime.list = &forward<&S::list, uint32_t, mo_buffer *, mo_error *>;
        _runtime.exec =
            &forward<&S::exec, const char *, const char *, const mo_stdio *, int *, mo_error *>;
        _runtime.attach = &forward<&S::attach, const char *, const mo_stdio *, mo_error *>;
        _runtime.top = &forward<&S::top, const char *, mo_buffer *, mo_error *>;
        _runtime.pause = &forward<&S::pause, const char *, mo_error *>;
        _runtime.resume = &forward<&S::resume, const char *, mo_error *>;
        _runtime.update = &forward<&S::update, const char *, const char *, mo_error *>;
        _runtime.wait = &forward<&S::wait, const char *, int *, mo_error *>;
        _runtime.gc = &forward<&S::gc, mo_buffer *, mo_error *>;
        _runtime.stats = &forward<&S::stats, const char *, mo_buffer *, mo_error *>;
        service(MO_SERVICE_RUNTIME, "krun", &_runtime);
    }

    void registerMethods() {
        method(
            "prepare", "build and cache the guest kernel and initramfs; probe KVM",
            [this](const std::string &t) {
                return prepare(common::parseArgument(t.c_str(), "arguments", true)).dump();
            },
            "{quiet}");
        method("status", "the backends, the prepared guest",
               [this](const std::string &) { return status().dump(); });
        method(
            "run", "run a program in a micro-VM in the foreground; its exit status",
            [this](const std::string &t) {
                return run(common::parseArgument(t.c_str(), "arguments", true)).dump();
            },
            "{rootfs, args, env, cwd, readOnly, volumes, vcpus, memory, timeout}");
        method(
            "command", "the qemu command line of a VM, its job written into workDir",
            [this](const std::string &t) {
                return command(common::parseArgument(t.c_str(), "arguments", true)).dump();
            },
            "{rootfs, args, env, cwd, readOnly, volumes, vcpus, memory, workDir}");
    }

    std::unique_ptr<common::Host> _hostApi;
    std::string _vmDir;
    mo_runtime_service _runtime{};
    const mo_runtime_service *_ns = nullptr;
};

} // namespace
} // namespace mobileops::krun

MOBILEOPS_PLUGIN(mobileops::krun::KrunPlugin, "krun", "0.1.0",
                 "micro-VMs: qemu microvm with our guest init, or libkrun", "runtime:krun")
