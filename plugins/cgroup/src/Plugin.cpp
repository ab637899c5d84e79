// The plugin's C surface: the descriptor and the mo_cgroup_service trampolines. Each
// converts exceptions into the caller's mo_error; nothing escapes.
#include "Cgroups.h"
#include "Errors.h"

#include <mobileops/plugin.hpp>

#include <cstring>
#include <memory>

namespace mobileops::cgroup {

using nlohmann::json;

namespace {

class CgroupPlugin : public sdk::Plugin {
public:
    void init() override {
        Options options;
        options.parent = config("cgroup.parent", "/");
        if (options.parent.empty()) options.parent = "/";
        _cgroups = std::make_unique<Cgroups>(Layout::detect(), realFs(), options);

        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.create = &create;
        _iface.attach = &attach;
        _iface.update = &update;
        _iface.stats = &stats;
        _iface.freeze = &freeze;
        _iface.thaw = &thaw;
        _iface.kill = &kill;
        _iface.pids = &pids;
        _iface.destroy = &destroy;
        _iface.report = &report;
        _iface.placement = &placement;
        service(MO_SERVICE_CGROUP, "cgroup", &_iface);
        for (const std::string &f : _cgroups->features()) feature(f.c_str());
        method(
            "layout", "the cgroup layout found on this host and where container cgroups go",
            [this](const std::string &) {
                json out = _cgroups->layout().describe();
                out["summary"] = _cgroups->layout().summary();
                out["parent"] = _cgroups->options().parent;
                out["features"] = _cgroups->features();
                return out.dump();
            },
            "none");
    }

    sdk::Probe probe() override {
        const Layout &layout = _cgroups->layout();
        if (layout.mode() == Mode::None) return {false, "no cgroup hierarchy is mounted"};
        std::string why;
        if (!_cgroups->canCreate(why)) return {false, layout.summary() + "; " + why};
        return {true, layout.summary() + "; container cgroups under " +
                          quote(_cgroups->options().parent)};
    }

private:
    static CgroupPlugin &self(void *p) { return *static_cast<CgroupPlugin *>(p); }

    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        CgroupPlugin &plugin = self(p);
        try {
            fn(*plugin._cgroups);
            return 0;
        } catch (...) {
            return fail(plugin.host(), err);
        }
    }

    static void output(CgroupPlugin &plugin, mo_buffer *out, const json &doc) {
        if (!out) return;
        std::string text = doc.dump();
        int rc = plugin.host().buffer_set(out, text.data(), text.size());
        if (rc < 0) throw sdk::Error(rc, "out of memory");
    }

    static std::string path(const char *p) {
        if (!p || !*p) throw sdk::Error(MO_E_INVALID, "no cgroup path given");
        return p;
    }

    static Settings resources(const char *text) {
        if (!text || !*text) return {};
        json doc;
        try {
            doc = json::parse(text);
        } catch (const json::exception &e) {
            throw sdk::Error(MO_E_INVALID, std::string("resources: invalid JSON: ") + e.what());
        }
        return parseResources(doc);
    }

    // A field left out under ignoreUnsupported is said once, as a warning.
    static void warnSkipped(CgroupPlugin &plugin, const std::string &cg,
                            const std::vector<Unsupported> &skipped) {
        for (const Unsupported &u : skipped)
            plugin.log(MO_LOG_WARNING, "cgroup " + quote(cg) + ": resources." + u.field +
                                           " not applied: " + u.reason);
    }

    static int create(void *p, const char *cg, const char *res, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) {
            std::vector<Unsupported> skipped;
            c.create(path(cg), resources(res), &skipped);
            warnSkipped(self(p), cg, skipped);
        });
    }
    static int attach(void *p, const char *cg, int pid, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { c.attach(path(cg), pid); });
    }
    static int update(void *p, const char *cg, const char *res, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) {
            std::vector<Unsupported> skipped;
            c.update(path(cg), resources(res), &skipped);
            warnSkipped(self(p), cg, skipped);
        });
    }
    static int report(void *p, const char *cg, const char *res, mo_buffer *out, mo_error *err) {
        return guard(p, err,
                     [&](Cgroups &c) { output(self(p), out, c.report(path(cg), resources(res))); });
    }
    static int placement(void *p, const char *cg, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) {
            Cgroups::Placement where = c.placement(path(cg));
            output(self(p), out,
                   {{"unified", where.unifiedDir.empty() ? json() : json(where.unifiedDir)},
                    {"complete", where.complete}});
        });
    }
    static int stats(void *p, const char *cg, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { output(self(p), out, c.stats(path(cg))); });
    }
    static int freeze(void *p, const char *cg, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { c.freeze(path(cg)); });
    }
    static int thaw(void *p, const char *cg, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { c.thaw(path(cg)); });
    }
    static int kill(void *p, const char *cg, int signal, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { c.kill(path(cg), signal); });
    }
    static int pids(void *p, const char *cg, mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { output(self(p), out, json(c.pids(path(cg)))); });
    }
    static int destroy(void *p, const char *cg, mo_error *err) {
        return guard(p, err, [&](Cgroups &c) { c.destroy(path(cg)); });
    }

    std::unique_ptr<Cgroups> _cgroups;
    mo_cgroup_service _iface;
};

} // namespace

} // namespace mobileops::cgroup

MOBILEOPS_PLUGIN(mobileops::cgroup::CgroupPlugin, "cgroup", "0.1.0",
                 "cgroup service: limits, stats, freeze and kill on v1, v2 and hybrid hosts",
                 "cgroup:cgroup")
