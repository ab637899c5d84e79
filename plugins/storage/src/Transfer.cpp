// `image pull` and `image push`: the registry client (Registry.h) moves the bytes; the
// store decides what it lacks, verifies what arrived and records the image only once
// every layer extracted whole.
#include "Images.h"
#include "Registry.h"

#include <mobileops/common/Errors.h>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

json ImageStore::pull(const std::string &ref, const TransferOptions &options) {
    Reference reference = Reference::parse(ref);
    RegistryClient client(reference, options.registry);
    ResolvedImage resolved = client.resolve(options.platform);
    std::string configBytes = client.fetchBlob(resolved.config);
    json config;
    try {
        config = json::parse(configBytes);
    } catch (const json::exception &e) {
        throw sdk::Error(MO_E_INVALID, "pull " + quote(reference.str()) +
                                           ": the image config is not JSON: " + e.what());
    }
    json diffIds = config.contains("rootfs") ? config["rootfs"].value("diff_ids", json::array())
                                             : json::array();
    if (diffIds.size() != resolved.layers.size())
        throw sdk::Error(MO_E_INVALID, "pull " + quote(reference.str()) + ": the manifest lists " +
                                           std::to_string(resolved.layers.size()) +
                                           " layers, the config " + std::to_string(diffIds.size()));

    Progress progress = Progress::forTerminal(options.ingest.quiet);
    std::vector<Descriptor> missing;
    for (const Descriptor &d : resolved.layers) {
        if (hasBlob(d.digest)) continue;
        missing.push_back(d);
        progress.start(d.digest, "layer " + shortId(d.digest), d.size);
    }
    client.fetchBlobs(
        missing, [this](const Descriptor &d) { return _paths.blob(d.digest); },
        [&progress](const std::string &digest, uint64_t done, uint64_t) {
            progress.update(digest, done);
        });
    std::vector<LayerRef> layers;
    for (size_t i = 0; i < resolved.layers.size(); ++i) {
        LayerRef l;
        l.digest = resolved.layers[i].digest;
        l.diffId = diffIds[i].get<std::string>();
        l.mediaType = resolved.layers[i].mediaType;
        l.size = resolved.layers[i].size;
        ensureLayer(l, options.ingest, &progress);
        layers.push_back(l);
    }
    std::vector<std::string> names;
    if (reference.digest.empty()) names.push_back(reference.str());
    json out =
        commit(resolved.manifestBytes, configBytes, layers, names, "pull " + reference.str());
    out["pulled"] = missing.size();
    return out;
}

json ImageStore::push(const std::string &ref, const std::string &destination,
                      const TransferOptions &options) {
    json image = resolve(ref);
    Reference dest = Reference::parse(destination.empty() ? ref : destination);
    std::string manifestBytes = readBlob(image.value("digest", ""));
    json manifest = json::parse(manifestBytes);
    std::vector<std::pair<Descriptor, std::string>> blobs;
    Progress progress = Progress::forTerminal(options.ingest.quiet);
    for (const json &l : manifest.value("layers", json::array())) {
        Descriptor d;
        d.mediaType = l.value("mediaType", "");
        d.digest = l.value("digest", "");
        d.size = l.value("size", 0ull);
        blobs.emplace_back(d, _paths.blob(d.digest));
        progress.start(d.digest, "layer " + shortId(d.digest), d.size);
    }
    Descriptor config;
    config.mediaType = manifest["config"].value("mediaType", "");
    config.digest = manifest["config"].value("digest", "");
    config.size = manifest["config"].value("size", 0ull);
    blobs.emplace_back(config, _paths.blob(config.digest));
    RegistryClient client(dest, options.registry);
    client.pushBlobs(blobs, [&progress](const std::string &digest, uint64_t done, uint64_t) {
        progress.update(digest, done);
    });
    for (const auto &b : blobs) progress.finish(b.first.digest, "pushed");
    std::string digest = client.pushManifest(
        dest.tagOrDigest(), image.value("manifestMediaType", manifest.value("mediaType", "")),
        manifestBytes);
    return {{"id", image.value("id", "")},
            {"destination", dest.str()},
            {"digest", digest.empty() ? image.value("digest", "") : digest}};
}

} // namespace mobileops::storage
