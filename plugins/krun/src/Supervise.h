// A launched VM seen through to its end by whoever owns it (the `vm run` method, the VMM
// launcher of a VM container): its output copied out as it comes, the signals its owner
// receives forwarded to the program in the guest, and its exit status.
#pragma once

#include "Qemu.h"

#include <signal.h>

namespace mobileops::krun {

// The signals a VM's owner forwards into the guest (SIGTERM, SIGINT, SIGHUP, SIGQUIT,
// SIGUSR1, SIGUSR2, SIGWINCH, SIGCONT and SIGALRM).
sigset_t forwardedSignals();

// Copy the VM's stdout to `outFd` and its stderr to `errFd` until qemu closes them,
// forwarding each signal read from `signalFd` (a signalfd over forwardedSignals(), or -1
// for none), then return vm.wait(). A reader of ours that went away (EPIPE) does not
// stop the VM: its output is then drained and dropped.
int superviseVm(QemuVm &vm, int outFd, int errFd, int signalFd = -1);

} // namespace mobileops::krun
