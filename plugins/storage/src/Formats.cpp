// Image archives: `image load` reads an OCI image layout (a directory, or a tar of one:
// podman's oci-archive) and the docker-archive that `docker save` and `podman save` write;
// `image save` writes either. Archives are untrusted: a tar is extracted with the same
// rules as a layer (nothing outside the work directory, no device nodes), every blob is
// checked against its digest, and nothing is recorded until every layer extracted whole.
#include "Digest.h"
#include "Images.h"
#include "Reference.h"

#include <mobileops/common/Errors.h>

#include <archive.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

namespace mobileops::storage {

using common::quote;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

sdk::Error invalid(const std::string &message) { return sdk::Error(MO_E_INVALID, message); }

std::string readFile(const std::string &path, const std::string &what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw invalid(what + ": " + quote(path) + " is missing");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

json parseJson(const std::string &bytes, const std::string &what) {
    try {
        return json::parse(bytes);
    } catch (const json::exception &e) {
        throw invalid(what + " is not valid JSON: " + e.what());
    }
}

// A path inside the archive's tree as a manifest names it: relative, no `..`.
std::string inside(const std::string &root, const std::string &name, const std::string &what) {
    if (name.empty() || name[0] == '/' || ("/" + name + "/").find("/../") != std::string::npos)
        throw invalid(what + " names " + quote(name) + ", which is not a path inside the archive");
    return root + "/" + name;
}

bool compressed(const std::string &mediaType) {
    return mediaType.find("gzip") != std::string::npos ||
           mediaType.find("zstd") != std::string::npos;
}

} // namespace

void decompressBlob(const std::string &input, const std::string &output) {
    std::unique_ptr<archive, decltype(&archive_read_free)> a(archive_read_new(),
                                                             &archive_read_free);
    archive_read_support_filter_all(a.get());
    archive_read_support_format_raw(a.get());
    if (archive_read_open_filename(a.get(), input.c_str(), 1 << 20) != ARCHIVE_OK)
        throw invalid("read " + quote(input) + ": " + archive_error_string(a.get()));
    archive_entry *entry = nullptr;
    if (archive_read_next_header(a.get(), &entry) != ARCHIVE_OK)
        throw invalid("read " + quote(input) + ": " + archive_error_string(a.get()));
    int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) throw common::sysError("create " + quote(output), errno);
    std::vector<char> buf(1 << 20);
    for (;;) {
        la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
        if (n == 0) break;
        if (n < 0) {
            ::close(fd);
            throw invalid("decompress " + quote(input) + ": " + archive_error_string(a.get()));
        }
        for (la_ssize_t off = 0; off < n;) {
            ssize_t w = ::write(fd, buf.data() + off, static_cast<size_t>(n - off));
            if (w < 0) {
                int err = errno;
                ::close(fd);
                throw common::sysError("write " + quote(output), err);
            }
            off += w;
        }
    }
    if (::close(fd) < 0) throw common::sysError("write " + quote(output), errno);
}

namespace {

// The manifest of an index entry for linux/amd64 (or the only one there is).
json pickPlatform(const json &index, const std::string &what) {
    const json &manifests = index.value("manifests", json::array());
    std::string seen;
    for (const json &m : manifests) {
        const json &p = m.value("platform", json::object());
        if (p.empty() || (p.value("os", "") == "linux" && p.value("architecture", "") == "amd64"))
            return m;
        seen +=
            (seen.empty() ? "" : ", ") + p.value("os", "?") + "/" + p.value("architecture", "?");
    }
    throw invalid(what + " has no linux/amd64 image (it has: " + (seen.empty() ? "none" : seen) +
                  ")");
}

// Check a blob file against its descriptor before use.
void checkSize(const std::string &file, const json &descriptor) {
    struct stat st;
    if (::stat(file.c_str(), &st) < 0)
        throw invalid("blob " + quote(descriptor.value("digest", "")) +
                      " is missing from the archive");
    if (descriptor.contains("size") && descriptor["size"].is_number_unsigned() &&
        descriptor["size"].get<uint64_t>() != static_cast<uint64_t>(st.st_size))
        throw invalid("blob " + quote(descriptor.value("digest", "")) + " is " +
                      std::to_string(st.st_size) + " bytes, the manifest says " +
                      std::to_string(descriptor["size"].get<uint64_t>()));
}

} // namespace

json ImageStore::load(const std::string &path, const std::string &name,
                      const IngestOptions &options) {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) throw common::sysError("load " + quote(path), errno);
    if (!name.empty()) qualify(name);
    Progress progress = Progress::forTerminal(options.quiet);

    std::string root = path;
    std::string work;
    bool owned = false; // blobs below root may be moved rather than copied
    auto cleanup = [&] {
        if (!work.empty()) {
            std::error_code ec;
            fs::remove_all(work, ec);
        }
    };
    try {
        if (S_ISREG(st.st_mode)) {
            work = tempPath("load");
            ExtractOptions eo;
            eo.whiteouts = Whiteouts::Refuse;
            eo.allowDevices = false;
            progress.start(path, "read " + fs::path(path).filename().string(),
                           static_cast<uint64_t>(st.st_size));
            if (progress.enabled())
                eo.progress = [&](uint64_t done, uint64_t) { progress.update(path, done); };
            try {
                extract(path, work, eo);
            } catch (const sdk::Error &e) {
                throw sdk::Error(e.code(), "image archive " + quote(path) + ": " + e.what());
            }
            progress.finish(path, "read");
            root = work;
            owned = true;
        } else if (!S_ISDIR(st.st_mode)) {
            throw invalid(quote(path) + " is neither a file nor a directory");
        }

        struct Pending {
            std::string manifestBytes, configBytes;
            std::vector<LayerRef> layers;
            std::vector<std::string> names;
        };
        std::vector<Pending> images;

        const bool oci = ::access((root + "/index.json").c_str(), F_OK) == 0;
        const bool docker = ::access((root + "/manifest.json").c_str(), F_OK) == 0;
        if (oci && !docker) {
            json index = parseJson(readFile(root + "/index.json", "OCI layout"), "index.json");
            for (const json &entry : index.value("manifests", json::array())) {
                json desc = entry;
                std::string mt = desc.value("mediaType", "");
                if (mt == media::kOciIndex || mt == media::kDockerList) {
                    std::string file = inside(
                        root, "blobs/sha256/" + digestHex(desc.value("digest", "")), "index.json");
                    json nested = parseJson(readFile(file, "nested index"), "nested index");
                    desc = pickPlatform(nested, "index " + quote(desc.value("digest", "")));
                }
                std::string mfile = inside(
                    root, "blobs/sha256/" + digestHex(desc.value("digest", "")), "index.json");
                checkSize(mfile, desc);
                Pending p;
                p.manifestBytes = readFile(mfile, "manifest");
                if (sha256Of(p.manifestBytes) != desc.value("digest", ""))
                    throw invalid("manifest " + quote(desc.value("digest", "")) +
                                  " does not match its digest");
                json manifest = parseJson(p.manifestBytes, "manifest");
                json config = manifest.value("config", json::object());
                std::string cfile = inside(
                    root, "blobs/sha256/" + digestHex(config.value("digest", "")), "manifest");
                checkSize(cfile, config);
                p.configBytes = readFile(cfile, "image config");
                if (sha256Of(p.configBytes) != config.value("digest", ""))
                    throw invalid("image config " + quote(config.value("digest", "")) +
                                  " does not match its digest");
                json cfg = parseJson(p.configBytes, "image config");
                json diffIds = cfg["rootfs"].value("diff_ids", json::array());
                const json &layers = manifest.value("layers", json::array());
                if (diffIds.size() != layers.size())
                    throw invalid("manifest " + quote(desc.value("digest", "")) + " lists " +
                                  std::to_string(layers.size()) + " layers, its config " +
                                  std::to_string(diffIds.size()));
                for (size_t i = 0; i < layers.size(); ++i) {
                    LayerRef l;
                    l.digest = layers[i].value("digest", "");
                    l.diffId = diffIds[i].get<std::string>();
                    l.mediaType = layers[i].value("mediaType", media::kOciLayer);
                    l.size = layers[i].value("size", 0ull);
                    std::string lfile =
                        inside(root, "blobs/sha256/" + digestHex(l.digest), "manifest");
                    checkSize(lfile, layers[i]);
                    putBlobFile(lfile, l.digest, owned);
                    p.layers.push_back(l);
                }
                const json &ann = entry.value("annotations", json::object());
                std::string ref = ann.value("io.containers.image.ref.name",
                                            ann.value("org.opencontainers.image.ref.name", ""));
                if (!name.empty()) {
                    p.names.push_back(name);
                } else if (ref.find('/') != std::string::npos ||
                           ref.find(':') != std::string::npos) {
                    // a bare tag ("latest") names nothing without a repository
                    p.names.push_back(Reference::parse(ref).str());
                }
                images.push_back(std::move(p));
            }
        } else if (docker) {
            json manifests =
                parseJson(readFile(root + "/manifest.json", "docker archive"), "manifest.json");
            if (!manifests.is_array() || manifests.empty())
                throw invalid("manifest.json of " + quote(path) + " lists no image");
            for (const json &m : manifests) {
                Pending p;
                std::string cfile = inside(root, m.value("Config", ""), "manifest.json");
                p.configBytes = readFile(cfile, "image config");
                json cfg = parseJson(p.configBytes, "image config");
                std::string configDigest = putBlobBytes(p.configBytes);
                json diffIds = cfg["rootfs"].value("diff_ids", json::array());
                const json &files = m.value("Layers", json::array());
                if (diffIds.size() != files.size())
                    throw invalid("manifest.json lists " + std::to_string(files.size()) +
                                  " layers, the image config " + std::to_string(diffIds.size()));
                json layerDescs = json::array();
                for (size_t i = 0; i < files.size(); ++i) {
                    std::string lfile = inside(root, files[i].get<std::string>(), "manifest.json");
                    struct stat lst;
                    if (::stat(lfile.c_str(), &lst) < 0)
                        throw invalid("layer " + quote(files[i].get<std::string>()) +
                                      " is missing from the archive");
                    LayerRef l;
                    l.diffId = diffIds[i].get<std::string>();
                    unsigned char b[4] = {};
                    std::ifstream(lfile, std::ios::binary).read(reinterpret_cast<char *>(b), 4);
                    bool gz = b[0] == 0x1f && b[1] == 0x8b;
                    bool zst = b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd;
                    l.mediaType = gz    ? media::kDockerLayerGzip
                                  : zst ? media::kOciLayerZstd
                                        : media::kDockerLayer;
                    l.size = static_cast<uint64_t>(lst.st_size);
                    // an uncompressed layer's digest is its diffID: checked as it lands
                    l.digest = putBlobFile(lfile, (gz || zst) ? std::string() : l.diffId, owned);
                    layerDescs.push_back(
                        {{"mediaType", l.mediaType}, {"digest", l.digest}, {"size", l.size}});
                    p.layers.push_back(l);
                }
                json manifest = {{"schemaVersion", 2},
                                 {"mediaType", media::kDockerManifest},
                                 {"config",
                                  {{"mediaType", media::kDockerConfig},
                                   {"digest", configDigest},
                                   {"size", p.configBytes.size()}}},
                                 {"layers", layerDescs}};
                p.manifestBytes = manifest.dump();
                if (!name.empty()) {
                    p.names.push_back(name);
                } else {
                    for (const json &t : m.value("RepoTags", json::array()))
                        if (t.is_string()) p.names.push_back(t.get<std::string>());
                }
                images.push_back(std::move(p));
            }
        } else {
            throw invalid(quote(path) + " is neither an OCI image layout (oci-layout, index.json) "
                                        "nor a docker archive (manifest.json)");
        }
        if (!name.empty() && images.size() > 1)
            throw invalid(quote(path) + " holds " + std::to_string(images.size()) +
                          " images; a name can be given to one only");

        json out = json::array();
        for (Pending &p : images) {
            for (LayerRef &l : p.layers) ensureLayer(l, options, &progress);
            out.push_back(
                commit(p.manifestBytes, p.configBytes, p.layers, p.names, "load " + path));
        }
        cleanup();
        return out;
    } catch (...) {
        cleanup();
        throw;
    }
}

json ImageStore::save(const std::vector<std::string> &refs, const std::string &output,
                      const std::string &format, bool quiet) {
    if (refs.empty()) throw invalid("save: no image given");
    if (format != "docker-archive" && format != "oci-archive")
        throw invalid("format " + quote(format) + " is not `docker-archive` or `oci-archive`");
    std::vector<json> images;
    for (const auto &ref : refs) {
        json image = resolve(ref);
        image["names"] = json::array();
        // the name the user gave, else every name of the image
        try {
            if (auto byName = _host.get("image-name", qualify(ref)))
                image["names"].push_back(qualify(ref));
        } catch (const sdk::Error &) {
        }
        if (image["names"].empty())
            for (const auto &n : namesOf(image.value("id", ""))) image["names"].push_back(n);
        images.push_back(image);
    }
    Progress progress = Progress::forTerminal(quiet);
    std::vector<std::string> temporaries;
    auto cleanup = [&] {
        for (const auto &t : temporaries) ::unlink(t.c_str());
    };
    try {
        ArchiveWriter writer(output, Compression::None);
        std::set<std::string> written;
        auto addBlob = [&](const std::string &digest) {
            if (!written.insert(digest).second) return;
            writer.addFile("blobs/sha256/" + digestHex(digest), _paths.blob(digest));
        };
        uint64_t total = 0;
        if (format == "oci-archive") {
            writer.addBytes("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
            json index = {{"schemaVersion", 2},
                          {"mediaType", media::kOciIndex},
                          {"manifests", json::array()}};
            writer.addDirectory("blobs");
            writer.addDirectory("blobs/sha256");
            for (const json &image : images) {
                std::string manifest = image.value("digest", "");
                for (const json &l : image["layers"]) {
                    progress.start(l.value("digest", ""), "layer " + shortId(l.value("digest", "")),
                                   l.value("size", 0ull));
                    addBlob(l.value("digest", ""));
                    total += l.value("size", 0ull);
                    progress.finish(l.value("digest", ""), "written");
                }
                addBlob(image.value("id", ""));
                addBlob(manifest);
                std::string bytes = readBlob(manifest);
                json entry = {{"mediaType", image.value("manifestMediaType", media::kOciManifest)},
                              {"digest", manifest},
                              {"size", bytes.size()}};
                for (const auto &n : image["names"]) {
                    json e = entry;
                    e["annotations"] = {
                        {"org.opencontainers.image.ref.name", n.get<std::string>()}};
                    index["manifests"].push_back(e);
                }
                if (image["names"].empty()) index["manifests"].push_back(entry);
            }
            writer.addBytes("index.json", index.dump());
        } else {
            json manifests = json::array();
            for (const json &image : images) {
                json m = {{"Config", digestHex(image.value("id", "")) + ".json"},
                          {"RepoTags", json::array()},
                          {"Layers", json::array()}};
                if (written.insert(image.value("id", "")).second)
                    writer.addFile(m["Config"].get<std::string>(),
                                   _paths.blob(image.value("id", "")));
                for (const auto &n : image["names"])
                    m["RepoTags"].push_back(familiar(n.get<std::string>()));
                for (const json &l : image["layers"]) {
                    std::string diffHex = digestHex(l.value("diffId", ""));
                    std::string name = diffHex + "/layer.tar";
                    m["Layers"].push_back(name);
                    if (!written.insert(name).second) continue;
                    progress.start(l.value("digest", ""), "layer " + shortId(l.value("digest", "")),
                                   l.value("size", 0ull));
                    std::string file = _paths.blob(l.value("digest", ""));
                    if (compressed(l.value("mediaType", ""))) {
                        // docker archives carry plain tars
                        std::string tmp = tempPath("layer.tar");
                        temporaries.push_back(tmp);
                        decompressBlob(file, tmp);
                        file = tmp;
                    }
                    writer.addDirectory(diffHex);
                    writer.addFile(name, file);
                    struct stat st;
                    if (::stat(file.c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
                    if (file != _paths.blob(l.value("digest", ""))) {
                        ::unlink(file.c_str());
                        temporaries.pop_back();
                    }
                    progress.finish(l.value("digest", ""), "written");
                }
                manifests.push_back(m);
            }
            writer.addBytes("manifest.json", manifests.dump());
        }
        writer.commit();
        cleanup();
        json ids = json::array();
        for (const json &image : images) ids.push_back(image.value("id", ""));
        return {{"output", output}, {"format", format}, {"images", ids}, {"bytes", total}};
    } catch (...) {
        cleanup();
        throw;
    }
}

} // namespace mobileops::storage
