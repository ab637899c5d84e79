#include "Transfer.h"

#include <mobileops/common/Errors.h>

#include <algorithm>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;

TransferOptions transferOptions(const json &a) {
    auto str = [&](const char *key) {
        return a.contains(key) && a[key].is_string() ? a[key].get<std::string>() : std::string();
    };
    TransferOptions o;
    o.ingest.allowDevices = a.value("allowDevices", false);
    o.ingest.quiet = a.value("quiet", false);
    if (a.contains("tlsVerify") && a["tlsVerify"].is_boolean())
        o.registry.tlsVerify = a["tlsVerify"].get<bool>();
    o.registry.plainHttp = a.value("plainHttp", false);
    o.registry.caFile = str("caFile");
    std::string creds = str("creds");
    if (!creds.empty()) {
        auto colon = creds.find(':');
        o.registry.credentials.username = creds.substr(0, colon);
        if (colon != std::string::npos) o.registry.credentials.password = creds.substr(colon + 1);
    }
    if (a.contains("parallel") && a["parallel"].is_number_unsigned())
        o.registry.parallel = std::max(1u, a["parallel"].get<unsigned>());
    std::string platform = str("platform");
    if (!platform.empty()) {
        auto first = platform.find('/');
        if (first == std::string::npos)
            throw sdk::Error(MO_E_INVALID,
                             "platform " + quote(platform) + " is not OS/ARCH[/VARIANT]");
        o.platform.os = platform.substr(0, first);
        std::string rest = platform.substr(first + 1);
        auto second = rest.find('/');
        o.platform.architecture = rest.substr(0, second);
        if (second != std::string::npos) o.platform.variant = rest.substr(second + 1);
    }
    return o;
}

json pull(ImageStore &store, const std::string &ref, const TransferOptions &options) {
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
        store.protect(d.digest);
        if (store.hasBlob(d.digest)) continue;
        missing.push_back(d);
        progress.start(d.digest, "layer " + shortId(d.digest), d.size);
    }
    client.fetchBlobs(
        missing, [&store](const Descriptor &d) { return store.paths().blob(d.digest); },
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
        store.ensureLayer(l, options.ingest, &progress);
        layers.push_back(l);
    }
    std::vector<std::string> names;
    if (reference.digest.empty()) names.push_back(reference.str());
    json out =
        store.commit(resolved.manifestBytes, configBytes, layers, names, "pull " + reference.str());
    out["pulled"] = missing.size();
    return out;
}

json push(ImageStore &store, const std::string &ref, const std::string &destination,
          const TransferOptions &options) {
    json image = store.resolve(ref);
    Reference dest = Reference::parse(destination.empty() ? ref : destination);
    std::string manifestBytes = store.readBlob(image.value("digest", ""));
    json manifest = json::parse(manifestBytes);
    std::vector<std::pair<Descriptor, std::string>> blobs;
    Progress progress = Progress::forTerminal(options.ingest.quiet);
    for (const json &l : manifest.value("layers", json::array())) {
        Descriptor d;
        d.mediaType = l.value("mediaType", "");
        d.digest = l.value("digest", "");
        d.size = l.value("size", 0ull);
        blobs.emplace_back(d, store.paths().blob(d.digest));
        progress.start(d.digest, "layer " + shortId(d.digest), d.size);
    }
    Descriptor config;
    config.mediaType = manifest["config"].value("mediaType", "");
    config.digest = manifest["config"].value("digest", "");
    config.size = manifest["config"].value("size", 0ull);
    blobs.emplace_back(config, store.paths().blob(config.digest));
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
