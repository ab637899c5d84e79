// The plugin's C surface: the descriptor and the mo_runtime_service trampolines. Each
// converts exceptions into the caller's mo_error; nothing escapes.
#include "Errors.h"
#include "Launcher.h"
#include "Runtime.h"

#include <mobileops/plugin.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>

namespace mobileops::nsruntime {

using nlohmann::json;

namespace {

class NsRuntimePlugin : public sdk::Plugin {
public:
    void init() override {
        _runtime = std::make_unique<Runtime>(Host(&host(), handle()));
        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.create = &create;
        _iface.start = &start;
        _iface.run = &run;
        _iface.kill = &kill;
        _iface.stop = &stop;
        _iface.remove = &remove;
        _iface.state = &state;
        _iface.list = &list;
        _iface.exec = &exec;
        _iface.attach = &attach;
        _iface.top = &top;
        _iface.pause = &pause;
        _iface.resume = &resume;
        _iface.update = &update;
        _iface.wait = &wait;
        _iface.gc = &gc;
        _iface.stats = &stats;
        service(MO_SERVICE_RUNTIME, "namespace", &_iface);
        for (const char *f : {"nsruntime.userns", "nsruntime.init", "nsruntime.pidfd-exec",
                              "nsruntime.pty", "nsruntime.monitor"})
            feature(f);
        for (const char *f :
             {"nsruntime.volatile", "nsruntime.rootfs-image", "nsruntime.soft-mounts"})
            feature(f);
        // runc's process model (docs/runtime-spec.md, `oci`) and what comes with it.
        for (const char *f : {"nsruntime.oci", "nsruntime.detached-exec", "nsruntime.hooks",
                              "nsruntime.namespace-paths", "nsruntime.umask"})
            feature(f);
    }

    sdk::Probe probe() override {
        if (::geteuid() != 0)
            return {false, "needs root: rootless containers are not supported yet"};
        struct stat st;
        for (const char *ns : {"pid", "mnt", "uts", "ipc", "net", "cgroup", "user"}) {
            std::string path = std::string("/proc/self/ns/") + ns;
            if (::stat(path.c_str(), &st) < 0)
                return {false, std::string("the kernel lacks ") + ns + " namespaces"};
        }
        return {true, "namespaces: pid mnt uts ipc net cgroup user"};
    }

private:
    static NsRuntimePlugin &self(void *p) { return *static_cast<NsRuntimePlugin *>(p); }

    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        NsRuntimePlugin &plugin = self(p);
        try {
            fn(*plugin._runtime);
            return 0;
        } catch (...) {
            return fail(plugin.host(), err);
        }
    }

    static void output(NsRuntimePlugin &plugin, mo_buffer *out, const json &doc) {
        std::string text = doc.dump();
        if (!out) return;
        int rc = plugin.host().buffer_set(out, text.data(), text.size());
        if (rc < 0) throw sdk::Error(rc, "out of memory");
    }

    static json parse(const char *text, const char *what) {
        if (!text) throw sdk::Error(MO_E_INVALID, std::string("no ") + what + " given");
        try {
            return json::parse(text);
        } catch (const json::exception &e) {
            throw sdk::Error(MO_E_INVALID, std::string(what) + ": invalid JSON: " + e.what());
        }
    }

    static std::string ref(const char *r) {
        if (!r || !*r) throw sdk::Error(MO_E_INVALID, "no container given");
        return r;
    }

    static Stdio stdioOf(const mo_stdio *s) {
        Stdio out;
        if (!s) return out;
        mo_stdio copy = {};
        std::memcpy(&copy, s, std::min<size_t>(s->size, sizeof copy));
        out.in = copy.in_fd;
        out.out = copy.out_fd;
        out.err = copy.err_fd;
        out.tty = copy.flags & MO_STDIO_TTY;
        out.interactive = copy.flags & MO_STDIO_INTERACTIVE;
        return out;
    }

    // run and exec: a failed start still tells the CLI what to exit with (127, 126, 125).
    template <typename Fn>
    static int guardStatus(void *p, int *exitStatus, mo_error *err, Fn &&fn) noexcept {
        NsRuntimePlugin &plugin = self(p);
        try {
            int status = fn(*plugin._runtime);
            if (exitStatus) *exitStatus = status;
            return 0;
        } catch (const LaunchError &e) {
            if (exitStatus) *exitStatus = e.exitStatus();
            plugin.host().error_set(err, e.code(), e.what());
            return e.code();
        } catch (...) {
            if (exitStatus) *exitStatus = 125;
            return fail(plugin.host(), err);
        }
    }

    static int create(void *p, const char *spec, mo_buffer *out, mo_error *err) {
        return guard(p, err,
                     [&](Runtime &rt) { output(self(p), out, rt.create(parse(spec, "spec"))); });
    }
    static int start(void *p, const char *r, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.start(ref(r)); });
    }
    static int run(void *p, const char *spec, const mo_stdio *stdio, uint32_t flags, int *status,
                   mo_error *err) {
        return guardStatus(p, status, err, [&](Runtime &rt) {
            return rt.run(parse(spec, "spec"), stdioOf(stdio), flags & MO_RUNTIME_AUTOREMOVE);
        });
    }
    static int kill(void *p, const char *r, int sig, uint32_t flags, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.kill(ref(r), sig, flags & MO_RUNTIME_ALL); });
    }
    static int stop(void *p, const char *r, uint32_t timeout, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.stop(ref(r), timeout); });
    }
    static int remove(void *p, const char *r, uint32_t flags, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.remove(ref(r), flags & MO_RUNTIME_FORCE); });
    }
    static int state(void *p, const char *r, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { output(self(p), out, rt.state(ref(r))); });
    }
    static int list(void *p, uint32_t flags, mo_buffer *out, mo_error *err) {
        return guard(p, err,
                     [&](Runtime &rt) { output(self(p), out, rt.list(flags & MO_RUNTIME_ALL)); });
    }
    static int exec(void *p, const char *r, const char *process, const mo_stdio *stdio, int *status,
                    mo_error *err) {
        return guardStatus(p, status, err, [&](Runtime &rt) {
            return rt.exec(ref(r), parse(process, "process"), stdioOf(stdio));
        });
    }
    static int attach(void *p, const char *r, const mo_stdio *stdio, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.attach(ref(r), stdioOf(stdio)); });
    }
    static int top(void *p, const char *r, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { output(self(p), out, rt.top(ref(r))); });
    }
    static int pause(void *p, const char *r, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.pause(ref(r)); });
    }
    static int resume(void *p, const char *r, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { rt.resume(ref(r)); });
    }
    static int update(void *p, const char *r, const char *resources, mo_error *err) {
        return guard(p, err,
                     [&](Runtime &rt) { rt.update(ref(r), parse(resources, "resources")); });
    }
    static int wait(void *p, const char *r, int *status, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) {
            int s = rt.wait(ref(r));
            if (status) *status = s;
        });
    }
    static int stats(void *p, const char *r, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { output(self(p), out, rt.stats(ref(r))); });
    }
    static int gc(void *p, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Runtime &rt) { output(self(p), out, rt.gc()); });
    }

    std::unique_ptr<Runtime> _runtime;
    mo_runtime_service _iface;
};

} // namespace

} // namespace mobileops::nsruntime

MOBILEOPS_PLUGIN(mobileops::nsruntime::NsRuntimePlugin, "nsruntime", "0.1.0",
                 "namespace runtime: containers from Linux namespaces", "runtime:namespace")
