// storage-registry.so: pull and push behind one C entry point, opened by the storage
// plugin on first use (see Transfer.h for why). The plugin passes its ImageStore; this
// module runs its own copy of the same engine code on it, and no exception crosses the
// boundary: errors come back as a code and a message.
#include "Transfer.h"

#include <mobileops/plugin.hpp>

#include <cstdlib>
#include <cstring>

namespace {

char *copy(const std::string &s) {
    char *p = static_cast<char *>(std::malloc(s.size() + 1));
    if (p) std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
}

} // namespace

// op "pull" {ref, ...} or "push" {ref, destination, ...}; on success *result holds JSON,
// on failure *error the message; both malloc'd, for the caller to free.
extern "C" MO_EXPORT int mobileops_storage_transfer(void *store, const char *op, const char *args,
                                                    char **result, char **error) {
    using namespace mobileops::storage;
    using nlohmann::json;
    *result = nullptr;
    *error = nullptr;
    try {
        ImageStore &images = *static_cast<ImageStore *>(store);
        json a = json::parse(args && *args ? args : "{}");
        std::string ref = a.value("ref", "");
        json out;
        if (std::strcmp(op, "pull") == 0)
            out = pull(images, ref, transferOptions(a));
        else if (std::strcmp(op, "push") == 0)
            out = push(images, ref, a.value("destination", ""), transferOptions(a));
        else
            throw mobileops::sdk::Error(MO_E_INVALID, std::string("no transfer `") + op + "`");
        *result = copy(out.dump());
        return 0;
    } catch (const mobileops::sdk::Error &e) {
        *error = copy(e.what());
        return e.code();
    } catch (const std::exception &e) {
        *error = copy(e.what());
        return MO_E_INTERNAL;
    } catch (...) {
        *error = copy("unknown error");
        return MO_E_INTERNAL;
    }
}
