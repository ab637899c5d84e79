// Storage classes: where volumes and assets of a kind live and how their size is held.
// The operator describes them in a YAML (or JSON) file, `storage.classes` in the
// configuration (default /etc/mobileops/storage-classes.yaml); the built-in classes
// `high-performance`, `standard` (the default) and `cold` exist unless the file redefines
// them. The file format is documented in docs/volumes.md.
#pragma once

#include <mobileops/common/Names.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::storage {

class Paths;

// How a class enforces a volume's size.
enum class QuotaMechanism {
    Loop,    // an ext4 image per volume, loop-mounted: ENOSPC past the size, any host fs
    Project, // ext4/XFS project quota on a plain directory: EDQUOT past the size
    None,    // a plain directory; a size is refused
};

std::string toString(QuotaMechanism mechanism);
// "loop", "project", "none"; nullopt otherwise.
std::optional<QuotaMechanism> parseQuotaMechanism(const std::string &text);

struct StorageClass {
    std::string name;
    std::string description;
    std::string directory;                 // absolute; volumes/<name>, assets/<name>
    std::vector<std::string> mountOptions; // for the loop mount of a limited volume
    std::optional<uint64_t> defaultSize;   // nullopt: unlimited
    std::string defaultSizeText;           // as written ("10Gi"), "none" when unlimited
    QuotaMechanism quota = QuotaMechanism::Loop;
    std::string source; // "built-in" or the file that defines it

    nlohmann::json toJson() const;
};

class StorageClasses {
public:
    // The built-in classes with their directories under `paths`.
    explicit StorageClasses(const Paths &paths);

    // The classes of `file` over the built-in ones. A missing file gives the built-in
    // classes, unless `required` (an explicitly configured path). Errors name the file,
    // the line, the class and the field.
    static StorageClasses load(const Paths &paths, const std::string &file, bool required);
    // The same from text; `source` names it in errors.
    static StorageClasses parse(const Paths &paths, const std::string &text,
                                const std::string &source);

    const std::vector<StorageClass> &all() const { return _classes; }
    const std::string &defaultName() const { return _default; }
    const std::string &file() const { return _file; }
    // Throws MO_E_NOT_FOUND naming the class and the known ones.
    const StorageClass &get(const std::string &name) const;
    const StorageClass &defaultClass() const { return get(_default); }

private:
    StorageClass &put(StorageClass c);

    std::vector<StorageClass> _classes;
    std::string _default = "standard";
    std::string _file; // where they came from; empty for the built-in set only
};

// Mount flags (MS_*) and the filesystem data string for `options` ("noatime",
// "commit=30"). Throws MO_E_INVALID naming an option it does not know.
struct MountOptions {
    unsigned long flags = 0;
    std::string data;
};
MountOptions parseMountOptions(const std::vector<std::string> &options);

using common::checkName; // "invalid WHAT `NAME`: expected ..."

} // namespace mobileops::storage
