// The qemu backend: a container's program in a `qemu-system-x86_64 -machine microvm`
// guest booted from GuestAssets, its root and volumes shared over virtio-9p, the job and
// the result through the job share and the serial console (guest/protocol.h).
#pragma once

#include "Assets.h"
#include "Vm.h"

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mobileops::krun {

struct Accel {
    std::string name; // "kvm" or "tcg"
    std::string why;  // one line: why this one ("KVM booted a probe guest in 0.4 s",
                      // "/dev/kvm cannot boot a stock kernel (PVM): probe guest did not
                      // start within 10 s", "no /dev/kvm")
};

// The qemu binary, or nullopt with the reason.
std::optional<std::string> findQemu(std::string *why = nullptr);

// KVM only when a real boot of a probe guest (the same assets, /bin/true-like job)
// succeeds; else TCG. The answer is cached in `cacheFile` (keyed by the kernel, qemu and
// /dev/kvm's identity) because the probe costs a boot.
Accel probeAccel(const GuestAssets &assets, const std::string &cacheFile);

// The host TSC frequency in kHz for the guest's tsc_early_khz= under TCG (a TCG guest
// can hang calibrating its TSC without it); 0 when unknown.
unsigned long hostTscKhz();

// The full qemu command line for `config` (what the benchmark runs by hand).
std::vector<std::string> qemuCommand(const VmConfig &config, const GuestAssets &assets,
                                     const Accel &accel);

// Threads: one owner launches, waits for, moves and destroys a QemuVm. signal() and
// kill() may be called from any other thread meanwhile, also while the owner is blocked
// in wait() (a supervisor forwarding the signals it receives); they never block. Not
// after or during destruction.
//
// qemu dies with the thread that launched it (PR_SET_PDEATHSIG, which follows the
// launching thread, not the process): launch from a thread that outlives the VM.
class QemuVm {
public:
    // Write the job into config.workDir and start qemu. The program's stdout and stderr
    // come out of stdoutFd() / stderrFd(), pipes the caller reads until EOF (after qemu
    // exits): the guest waits while they are full, so a caller that stops reading
    // stalls the program (and the VM ends at its timeout).
    static QemuVm launch(const VmConfig &config, const GuestAssets &assets, const Accel &accel);
    ~QemuVm(); // kills qemu if it still runs, closes the fds
    QemuVm(QemuVm &&) noexcept;
    QemuVm &operator=(QemuVm &&) = delete;
    QemuVm(const QemuVm &) = delete;

    pid_t pid() const { return _pid; }
    int stdoutFd() const { return _out; }
    int stderrFd() const { return _err; }

    // Forward a signal to the program (one line on the control port); false when the
    // guest is gone or does not take control lines.
    bool signal(int sig);
    // Kill qemu itself (SIGKILL): the end of a stop whose program ignored its signal.
    void kill();
    // Wait for qemu to exit (killing it at config.timeout) and return the program's exit
    // status (see guest/protocol.h). Throws common::Error with the serial console's last
    // lines when the guest failed before reporting one (MO_E_STATE), or the timeout hit.
    int wait();
    // After wait(): the signal that ended the program (the guest's report; SIGKILL when
    // kill() ended the VM), 0 when it exited.
    int exitSignal() const { return _signal; }

private:
    struct Relay; // moves qemu's output into the caller's pipes, answers drain requests
    QemuVm() = default;
    pid_t _pid = -1;
    int _pidfd = -1; // signals reach this qemu even after its pid is reused
    int _out = -1, _err = -1;
    std::unique_ptr<Relay> _relay; // owns the control socket
    std::string _workDir;
    std::chrono::steady_clock::time_point _deadline;
    std::chrono::seconds _timeout{0};
    bool _reaped = false;
    std::atomic<bool> _killed{false}; // kill() was called: no report then means 128+SIGKILL
    int _status = -1;                 // what wait() returned
    int _signal = 0;                  // exitSignal()
};

} // namespace mobileops::krun
