// `image pull` and `image push`: the registry client (Registry.h) moves the bytes; the
// store decides what it lacks, verifies what arrived and records the image only once
// every layer extracted whole.
//
// This code and Poco::Net live in a module of their own (storage-registry.so, see
// RegistryModule.cpp) that the storage plugin opens on the first pull or push: loading
// Poco's TLS stack costs ~17 ms, which every `container run IMAGE` would pay otherwise.
#pragma once

#include "Images.h"
#include "Registry.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::storage {

struct TransferOptions {
    RegistryOptions registry;
    Platform platform;
    IngestOptions ingest;
};

// From the workflow's JSON: {creds "USER:PASSWORD", tlsVerify, plainHttp, caFile,
// parallel, platform "OS/ARCH[/VARIANT]", quiet, allowDevices}.
TransferOptions transferOptions(const nlohmann::json &args);

// Pull: the manifest (an index picks `platform`), the config, the layers the store lacks
// (in parallel, resumed from what an interrupted pull left), each verified, then
// extracted once.
nlohmann::json pull(ImageStore &store, const std::string &ref, const TransferOptions &options);
// Push an image's blobs (those the registry lacks) and its manifest to `destination`
// (default: the image's name).
nlohmann::json push(ImageStore &store, const std::string &ref, const std::string &destination,
                    const TransferOptions &options);

} // namespace mobileops::storage
