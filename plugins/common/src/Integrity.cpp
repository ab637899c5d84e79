#include <mobileops/common/Integrity.h>

#include <mobileops/services.h>

namespace mobileops::common {

std::optional<nlohmann::json> recordManifest(const Host &host, const std::string &target,
                                             const std::string &path) {
    auto svc = static_cast<const mo_integrity_service *>(host.lookup(MO_SERVICE_INTEGRITY));
    if (!svc || !svc->record) return std::nullopt;
    mo_buffer out = MO_BUFFER_INIT;
    mo_error err = MO_ERROR_INIT;
    int rc = svc->record(svc->self, target.c_str(), path.c_str(), &out, &err);
    std::optional<nlohmann::json> result;
    if (rc < 0) {
        host.log(MO_LOG_WARNING, "no manifest recorded for " + quote(target) + ": " +
                                     (err.message[0] ? err.message : "unknown error") +
                                     " (record it with `mobileops integrity record`)");
    } else if (out.data) {
        result = nlohmann::json::parse(out.data, out.data + out.len, nullptr, false);
    }
    host.api()->buffer_free(&out);
    return result;
}

bool hasManifest(const Host &host, const std::string &target) {
    return host.get("manifest", target).has_value();
}

} // namespace mobileops::common
