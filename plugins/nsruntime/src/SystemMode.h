// System-container modes (docs/runtime-spec.md): an init system (systemd, OpenRC) as
// PID 1 with what it expects of a container, and hardware access (the host's devices).
// The spec side lives here; the mounts are Mounts::mountInitSystem and the hardware
// branches of Mounts::mountDev / mountSys.
#pragma once

#include "Spec.h"

#include <string>
#include <vector>

namespace mobileops::nsruntime {

// The command an init-system container runs when the spec gives none.
inline constexpr const char *kInitSystemCommand = "/sbin/init";
// `container=` in PID 1's environment and /run/systemd/container: the container manager
// as systemd-detect-virt reports it.
inline constexpr const char *kContainerManager = "mobileops";

// SIGRTMIN+3, systemd's "halt" (OpenRC's openrc-init takes it as well). Computed at run
// time: the C library reserves the first real-time signals (glibc's SIGRTMIN is 34).
int initStopSignal();

// The spec as an init system needs it: `container=mobileops` in the environment (unless
// set), SIGRTMIN+3 as the stop signal unless the spec gave one, and no `process.init`
// shim. Throws MO_E_INVALID naming the field.
void applyInitSystem(ContainerSpec &spec, bool stopSignalGiven);

// Hardware access needs the host's root: devtmpfs cannot be mounted in a user namespace.
void checkHardwareAccess(const ContainerSpec &spec);

// The sysfs directories bound read-write under the read-only /sys of a hardware-access
// container: the device tree and the views onto it. /sys itself stays read-only, as do
// /sys/fs, /sys/kernel, /sys/module and /sys/power (host-wide knobs), so systemd still
// sees a container (ConditionPathIsReadWrite=/sys keeps udev off) and /sys/firmware stays
// masked.
const std::vector<std::string> &hardwareSysPaths();

// Where a host may mount its cgroup2 hierarchy: alone (unified) or beside v1 (hybrid).
const std::vector<std::string> &hostCgroup2Paths();

} // namespace mobileops::nsruntime
