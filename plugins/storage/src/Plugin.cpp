// The plugin's C surface: the descriptor, the mo_storage_service trampolines and the JSON
// methods the image, volume, storage and assets workflows call.
#include "Images.h"
#include "Paths.h"
#include "Snapshots.h"
#include "VolumeMethods.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Host.h>
#include <mobileops/common/Json.h>
#include <mobileops/common/Loop.h>
#include <mobileops/plugin.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace mobileops::storage {
namespace {

using common::quote;

class StoragePlugin : public sdk::Plugin {
public:
    void init() override {
        _hostApi = std::make_unique<common::Host>(&host(), handle());
        std::string root = config("storage.root");
        if (root.empty()) root = config("root_dir") + "/storage";
        _paths = std::make_unique<Paths>(root);
        _images = std::make_unique<ImageStore>(*_hostApi, *_paths);

        std::memset(&_iface, 0, sizeof _iface);
        _iface.size = sizeof _iface;
        _iface.self = this;
        _iface.prepare_rootfs = &prepareRootfs;
        _iface.release_rootfs = &releaseRootfs;
        _iface.prepare_volumes = &prepareVolumes;
        _iface.release_volumes = &releaseVolumes;
        service(MO_SERVICE_STORAGE, "storage", &_iface);
        registerImageMethods();

        // --- volumes, storage classes, backups, assets (task C) ---
        VolumeHooks volumeHooks = registerVolumeMethods(*this, *_hostApi, *_paths);
        _prepareVolumes = volumeHooks.prepare;
        _releaseVolumes = volumeHooks.release;
        _gcVolumes = volumeHooks.gc;
        // --- end volumes ---

        // --- container snapshots (task D) ---
        registerSnapshotMethods(*this, *_hostApi, *_paths);
        // --- end snapshots ---
    }

    sdk::Probe probe() override {
        return {true, "image store and volumes under " + quote(_paths->root())};
    }

private:
    using json = nlohmann::json;

    template <typename Fn> static int guard(void *p, mo_error *err, Fn &&fn) noexcept {
        return Plugin::guard<StoragePlugin>(p, err, std::forward<Fn>(fn));
    }
    static void output(StoragePlugin &plugin, mo_buffer *out, const json &doc) {
        common::setResult(plugin.host(), out, doc);
    }
    static json parse(const char *text, const char *what) {
        return common::parseArgument(text, what);
    }

    static int prepareRootfs(void *p, const char *id, const char *image, const char *options,
                             mo_buffer *out, mo_error *err) {
        return guard(p, err, [&](StoragePlugin &s) {
            output(s, out,
                   s._images->prepareRootfs(id ? id : "", image ? image : "",
                                            parse(options, "rootfs options")));
        });
    }
    static int releaseRootfs(void *p, const char *id, mo_error *err) {
        return guard(p, err, [&](StoragePlugin &s) { s._images->releaseRootfs(id ? id : ""); });
    }
    static int prepareVolumes(void *p, const char *id, const char *volumes, mo_buffer *out,
                              mo_error *err) {
        return guard(p, err, [&](StoragePlugin &s) {
            json spec = parse(volumes, "volumes");
            if (!s._prepareVolumes) {
                if (!spec.empty())
                    throw sdk::Error(MO_E_UNSUPPORTED, "named volumes are not available yet");
                output(s, out, json::array());
                return;
            }
            output(s, out, s._prepareVolumes(id ? id : "", spec));
        });
    }
    static int releaseVolumes(void *p, const char *id, mo_error *err) {
        return guard(p, err, [&](StoragePlugin &s) {
            if (s._releaseVolumes) s._releaseVolumes(id ? id : "");
        });
    }

    // The image workflow's methods: JSON object in, JSON out.
    void registerImageMethods() {
        auto args = [](const std::string &text) { return parse(text.c_str(), "arguments"); };
        auto str = [](const json &a, const char *key) { return common::stringArg(a, key); };
        auto ingest = [](const json &a) {
            IngestOptions o;
            o.allowDevices = a.value("allowDevices", false);
            o.quiet = a.value("quiet", false);
            return o;
        };
        auto strings = [](const json &a, const char *key) { return common::stringsArg(a, key); };
        method(
            "image_import", "a rootfs tarball as a one-layer image",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->importTarball(str(a, "file"), str(a, "name"), ingest(a)).dump();
            },
            "{file, name, allowDevices, quiet}");
        method(
            "image_build_rootfs", "a directory as a one-layer image",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->buildRootfs(str(a, "dir"), str(a, "name"), ingest(a)).dump();
            },
            "{dir, name, allowDevices, quiet}");
        method(
            "image_load", "an OCI layout (dir or tar) or docker-archive",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->load(str(a, "path"), str(a, "name"), ingest(a)).dump();
            },
            "{path, name, allowDevices, quiet}");
        method(
            "image_save", "images to an oci-archive or docker-archive",
            [=, this](const std::string &t) {
                json a = args(t);
                std::string format = str(a, "format");
                return _images
                    ->save(strings(a, "images"), str(a, "output"),
                           format.empty() ? "docker-archive" : format, a.value("quiet", false))
                    .dump();
            },
            "{images, output, format, quiet}");
        method("image_list", "the images in the store",
               [this](const std::string &) { return _images->list().dump(); });
        method(
            "image_inspect", "one image: record, config, layers, users",
            [=, this](const std::string &t) {
                return _images->inspect(str(args(t), "ref")).dump();
            },
            "{ref}");
        method(
            "image_resolve", "an image's id, name and run config",
            [=, this](const std::string &t) {
                json image = _images->resolve(str(args(t), "ref"));
                json config = json::parse(_images->readBlob(image.value("id", "")));
                std::vector<std::string> names;
                for (const json &n : _images->list())
                    if (n.value("id", "") == image.value("id", ""))
                        names = n["names"].get<std::vector<std::string>>();
                return json{{"id", image.value("id", "")},
                            {"name", names.empty() ? "" : ImageStore::familiar(names.front())},
                            {"config", config.value("config", json::object())}}
                    .dump();
            },
            "{ref}");
        method(
            "image_record_manifests",
            "record the integrity manifests of an image's layers that have none, and the image's",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->recordManifests(str(a, "ref"), a.value("again", false)).dump();
            },
            "{ref, again}");
        method(
            "image_tag", "another name for an image",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->tag(str(a, "ref"), str(a, "name")).dump();
            },
            "{ref, name}");
        method(
            "image_rm", "untag and remove images",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->remove(strings(a, "refs"), a.value("force", false)).dump();
            },
            "{refs, force}");
        method("image_prune", "unnamed unused images, unreferenced layers and blobs",
               [this](const std::string &) { return _images->prune().dump(); });
        method(
            "image_flatten", "a flattened copy of an image (for micro-VMs)",
            [=, this](const std::string &t) {
                json a = args(t);
                return _images->flatten(str(a, "ref"), str(a, "target")).dump();
            },
            "{ref, target}");
        method(
            "create_img",
            "make an ext4 rootfs image from a directory (mkfs.ext4 -d on a sparse file)",
            [=](const std::string &t) {
                json a = args(t);
                if (!a.is_object()) throw sdk::Error(MO_E_INVALID, "arguments: expected an object");
                auto text = [&](const char *key) {
                    auto it = a.find(key);
                    if (it == a.end() || it->is_null()) return std::string();
                    if (!it->is_string())
                        throw sdk::Error(MO_E_INVALID,
                                         std::string("invalid '") + key + "': expected a string");
                    return it->get<std::string>();
                };
                common::ImageRequest request;
                request.dir = text("dir");
                request.file = text("file");
                request.size = a.contains("size") && a["size"].is_number_integer()
                                   ? std::to_string(a["size"].get<uint64_t>())
                                   : text("size");
                request.force =
                    a.contains("force") && a["force"].is_boolean() && a["force"].get<bool>();
                return common::createImage(request).dump();
            },
            "{dir, file, size (\"2G\", \"512Mi\" or bytes), force (replace an existing file)}");
        method(
            "image_pull", "pull an image from a registry",
            [this](const std::string &t) { return transfer("pull", t).dump(); },
            "{ref, platform, creds, tlsVerify, plainHttp, caFile, parallel, quiet, allowDevices}");
        method(
            "image_push", "push an image to a registry",
            [this](const std::string &t) { return transfer("push", t).dump(); },
            "{ref, destination, creds, tlsVerify, plainHttp, caFile, parallel, quiet}");
        method("gc", "container roots of deleted containers, dead work files",
               [this](const std::string &) {
                   json out = _images->gc();
                   if (_gcVolumes)
                       for (const json &item : _gcVolumes().value("released", json::array()))
                           out["released"].push_back(item);
                   return out.dump();
               });
    }

    // Pull and push run in storage-registry.so, opened here on first use: Poco's TLS
    // stack would otherwise cost every container start ~17 ms (Transfer.h). It sits in
    // <libdir>/mobileops/modules next to the plugin directory, or at storage.registry_module.
    json transfer(const char *op, const std::string &args) {
        using Entry = int (*)(void *, const char *, const char *, char **, char **);
        static Entry entry = nullptr;
        if (!entry) {
            std::string path = config("storage.registry_module");
            if (path.empty()) {
                Dl_info info{};
                if (::dladdr(reinterpret_cast<void *>(&moduleAnchor), &info) == 0 ||
                    !info.dli_fname)
                    throw sdk::Error(MO_E_INTERNAL,
                                     "cannot tell where the storage plugin was loaded from");
                std::string self = info.dli_fname;
                std::string plugins = self.substr(0, self.rfind('/'));
                path = plugins.substr(0, plugins.rfind('/')) + "/modules/storage-registry.so";
            }
            void *handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (!handle)
                throw sdk::Error(MO_E_UNSUPPORTED,
                                 "registry transfers need " + quote(path) + ": " + ::dlerror());
            entry = reinterpret_cast<Entry>(::dlsym(handle, "mobileops_storage_transfer"));
            if (!entry)
                throw sdk::Error(MO_E_ABI, quote(path) + " has no `mobileops_storage_transfer`");
        }
        char *result = nullptr, *error = nullptr;
        int rc = entry(_images.get(), op, args.c_str(), &result, &error);
        std::string text = rc == 0 ? (result ? result : "{}") : (error ? error : "transfer failed");
        std::free(result);
        std::free(error);
        if (rc != 0) throw sdk::Error(rc, text);
        return json::parse(text);
    }
    static void moduleAnchor() {}

    std::unique_ptr<common::Host> _hostApi;
    std::unique_ptr<Paths> _paths;
    std::unique_ptr<ImageStore> _images;
    mo_storage_service _iface{};
    // Set by the volume engine's registration (task C).
    std::function<json(const std::string &, const json &)> _prepareVolumes;
    std::function<void(const std::string &)> _releaseVolumes;
    std::function<json()> _gcVolumes;
};

} // namespace
} // namespace mobileops::storage

MOBILEOPS_PLUGIN(mobileops::storage::StoragePlugin, "storage", "0.1.0",
                 "images, layers, volumes, storage classes, snapshots and backups",
                 "storage:storage")
