// A stand-in for the core's host table until mobileops::core::Host can be linked into
// tests: the store is one JSON file per document under a directory, serialised by a
// flock (so forked monitors and parallel processes see one consistent store), names are
// unique per kind, locks are flock files like the core's. Transactions serialise but do
// not roll back.
#pragma once

#include <mobileops/mobileops.h>

#include <string>

namespace mobileops::nsruntime::testing {

class FakeHost {
public:
    // Creates `dir` (store/, root/, run/ below it).
    explicit FakeHost(const std::string &dir);
    ~FakeHost();

    const mo_host_api *api() const;
    mo_plugin *plugin() const {
        return reinterpret_cast<mo_plugin *>(const_cast<FakeHost *>(this));
    }
    const std::string &dir() const { return _dir; }
    std::string rootDir() const { return _dir + "/root"; }
    // The interface a plugin registered for `kind`, or nullptr.
    const void *registered(uint32_t kind) const;

private:
    std::string _dir;
};

} // namespace mobileops::nsruntime::testing
