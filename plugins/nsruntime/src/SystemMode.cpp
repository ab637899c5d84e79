#include "SystemMode.h"

#include "Errors.h"

#include <signal.h>

namespace mobileops::nsruntime {

int initStopSignal() { return SIGRTMIN + 3; }

void applyInitSystem(ContainerSpec &spec, bool stopSignalGiven) {
    if (spec.process.init)
        throw Error(MO_E_INVALID, "process.init: the init system is PID 1 (initSystem); "
                                  "it cannot run under the built-in init (--init)");
    bool hasContainer = false;
    for (const auto &e : spec.process.env)
        hasContainer = hasContainer || e.rfind("container=", 0) == 0;
    if (!hasContainer) spec.process.env.push_back(std::string("container=") + kContainerManager);
    if (!stopSignalGiven) spec.stopSignal = initStopSignal();
}

void checkHardwareAccess(const ContainerSpec &spec) {
    if (spec.userns())
        throw Error(MO_E_UNSUPPORTED,
                    "hardwareAccess: the host's devices cannot be given to a container with a "
                    "user namespace (devtmpfs needs the host's root)");
}

const std::vector<std::string> &hardwareSysPaths() {
    static const std::vector<std::string> paths = {"/sys/devices", "/sys/bus", "/sys/class",
                                                   "/sys/block", "/sys/dev"};
    return paths;
}

const std::vector<std::string> &hostCgroup2Paths() {
    static const std::vector<std::string> paths = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    return paths;
}

} // namespace mobileops::nsruntime
