// The libkrun backend: libkrun.so.1 opened with dlopen (it is not packaged for Debian 12),
// each symbol looked up on its own so a library without a newer call still works. The
// context is created before anything enters a namespace; a forked child configures it
// and calls krun_start_enter, which does not return on success: the child's exit status
// is the container's.
#pragma once

#include "Vm.h"

#include <sys/types.h>

#include <string>

namespace mobileops::krun {

class Libkrun {
public:
    // Open `library` (default "libkrun.so.1"). Throws common::Error(MO_E_UNSUPPORTED)
    // "libkrun support not available: libkrun.so.1 not found" or naming the first
    // missing required symbol (krun_create_ctx, krun_free_ctx, krun_set_vm_config,
    // krun_set_root, krun_set_workdir, krun_set_exec, krun_start_enter). Optional:
    // krun_set_env, krun_add_virtiofs, krun_set_port_map, krun_set_rlimits,
    // krun_set_log_level.
    explicit Libkrun(const std::string &library = "libkrun.so.1");
    ~Libkrun();
    Libkrun(const Libkrun &) = delete;
    Libkrun &operator=(const Libkrun &) = delete;

    // The probe: {available, why} without throwing.
    static std::pair<bool, std::string> probe(const std::string &library = "libkrun.so.1");

    // Fork a child that builds the VM from `config` and enters it; returns its pid (the
    // caller waits for it: its exit status is the program's). Errors from the krun_*
    // calls make the child exit 125 after writing "libkrun: krun_set_root: <strerror>" to
    // stderr. Volumes become virtiofs shares (krun_add_virtiofs, tag "mo-vol<N>"); when
    // that symbol is missing and the config has volumes: MO_E_UNSUPPORTED before forking.
    pid_t start(const VmConfig &config);

private:
    void *_handle = nullptr;
    struct Api;
    Api *_api = nullptr;
};

} // namespace mobileops::krun
