// The runtime service's operations (mo_runtime_service) over the engine: container
// records in the state store through the host table, detached containers under a
// monitor, foreground run and exec in the caller's process.
#pragma once

#include "Errors.h"
#include "Exec.h"
#include "Launcher.h"
#include "Spec.h"
#include "Syscalls.h"

#include <nlohmann/json.hpp>

#include <string>

namespace mobileops::nsruntime {

class Runtime {
public:
    explicit Runtime(Host host, Syscalls &sys = RealSyscalls::instance());

    nlohmann::json create(const nlohmann::json &spec);
    void start(const std::string &ref);
    // Throws LaunchError when the process could not start (its exitStatus() is what the
    // CLI should exit with).
    int run(const nlohmann::json &spec, const Stdio &stdio, bool autoremove);
    void kill(const std::string &ref, int signal, bool all);
    void stop(const std::string &ref, uint32_t timeoutSeconds);
    void remove(const std::string &ref, bool force);
    nlohmann::json state(const std::string &ref);
    nlohmann::json list(bool all);
    int exec(const std::string &ref, const nlohmann::json &process, const Stdio &stdio);
    void attach(const std::string &ref, const Stdio &stdio);
    nlohmann::json top(const std::string &ref);
    int wait(const std::string &ref);
    nlohmann::json gc();
    // Need the cgroup service; MO_E_UNSUPPORTED without it.
    void pause(const std::string &ref);
    void resume(const std::string &ref);
    // Applies `resources` (spec.resources form, merged as a JSON merge patch) to the live
    // cgroup and keeps the result in the record's spec.resources.
    void update(const std::string &ref, const nlohmann::json &resources);
    // The cgroup service's usage JSON plus {id, name}.
    nlohmann::json stats(const std::string &ref);

    std::string containerDir(const std::string &id) const;

private:
    struct Found {
        std::string id;
        nlohmann::json record;
    };
    // By full id, name, or unique id prefix; reconciled (and written back when needed).
    Found find(const std::string &ref) const;
    Found findRunning(const std::string &ref) const;
    // Running or paused, or an OCI container waiting at its gate ("created").
    Found findLive(const std::string &ref) const;
    // spec.oci: launch the init up to its gate with the caller's stdio or a pty sent to
    // the console socket, write the pid file, record "created" with the pid.
    void createOci(ContainerSpec &spec, const std::string &id, nlohmann::json &record) const;
    // Open the gate of an OCI container, record "running".
    void startOci(const Found &f);
    // exec's `detach`: start the process, write its pid file, return its pid unwaited.
    int execDetached(const Found &f, const ProcessSpec &process, const OciSpec &oci,
                     const std::function<void(pid_t)> &join) const;
    nlohmann::json reconciled(const std::string &id, nlohmann::json record) const;
    ContainerSpec specOf(const nlohmann::json &record) const;
    // Insert a "creating" record; MO_E_EXISTS becomes the name-in-use message.
    void insert(const ContainerSpec &spec, const std::string &id, const std::string &name,
                nlohmann::json &record) const;
    // Wait until the monitor (or foreground CLI) recorded the exit of `pid`.
    nlohmann::json awaitRecordedExit(const std::string &id, int timeoutMs) const;
    // True when the container's init has exited but its monitor, still alive, has not yet
    // recorded the exit (Reconciled::transient): find() already shows such a record as
    // "stopped", without exit_code or finished.
    bool exitPending(const std::string &id) const;
    void release(const std::string &id) const;
    // The network service, or null.
    const struct mo_network_service *networkService() const;
    // A private network namespace attached to a network (spec network.attach): the
    // hosts and resolv.conf bind mounts, and the service's attach before the container
    // starts, its detach after it exits.
    void prepareNetwork(ContainerSpec &spec, const std::string &id, const nlohmann::json &record,
                        LaunchOptions &options) const;
    void detachNetwork(const std::string &id) const;
    // The log service, or null (output is then not kept).
    const struct mo_log_service *logService() const;
    // mo_log_service.open's options for the container: name, cgroup, retention.
    nlohmann::json logOptions(const ContainerSpec &spec, const nlohmann::json &record) const;
    // The storage service, or nullptr (the reason in *why).
    const struct mo_storage_service *storageService(std::string *why = nullptr) const;
    // An image root and volumes from the storage service (usesStorage): spec.rootfs (and
    // the record's rootfs) becomes the root prepare_rootfs made for the container, each
    // volume from prepare_volumes a bind mount. Called at create, run and every start:
    // the service's calls are idempotent and mount again what a reboot took away.
    void prepareStorage(ContainerSpec &spec, const std::string &id, nlohmann::json &record) const;
    // release_volumes and release_rootfs for a record whose spec used them; throws when the
    // service fails, so the caller keeps the record for another try.
    void releaseStorage(const std::string &id, const nlohmann::json &record) const;
    // The cgroup service, or MO_E_UNSUPPORTED "<what> needs the cgroup service".
    const struct mo_cgroup_service *cgroup(const char *what) const;
    // The cgroup service when one is installed and can create and attach, else nullptr.
    const struct mo_cgroup_service *cgroupService() const;
    // The hooks for the cgroup service: when one exists, create the container's cgroup
    // `mobileops/<id>` with the spec's resources, attach the child before it makes its
    // cgroup namespace, and after the exit note an OOM kill and release the cgroup.
    // Records the cgroup path in `record`. Without the service, no hooks.
    void placeAtClone(const mo_cgroup_service *svc, const std::string &path,
                      LaunchOptions &options) const;
    LaunchOptions launchOptions(const ContainerSpec &spec, const std::string &id,
                                nlohmann::json &record) const;
    // Signal every process in the container's cgroup (SIGKILL: returns once all are gone).
    // False when the container has no cgroup (or it is gone): the caller signals the
    // processes it knows.
    bool killCgroup(const nlohmann::json &record, int signal) const;
    // Kill what is left in the record's cgroup and remove it.
    void releaseCgroup(const nlohmann::json &record) const;
    // Record the status (paused / running) of a container whose init is still `pid`.
    void setStatus(const std::string &id, pid_t pid, const char *status) const;

    Host _host;
    Syscalls &_sys;
    std::string _rootDir;
};

// Validate a container name: [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}.
void checkName(const std::string &name);

} // namespace mobileops::nsruntime
