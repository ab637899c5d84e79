// cgroup v2 device rules: cgroup2 has no devices files; the kernel asks the
// BPF_PROG_TYPE_CGROUP_DEVICE programs attached to a task's cgroup and its ancestors, and
// an access needs every one of them to allow it. We assemble the program from the rule
// list by hand (no compiler, no libbpf), as crun and runc do, load it with
// bpf(BPF_PROG_LOAD) and attach it with BPF_F_ALLOW_MULTI, so programs of the parents
// (systemd's, an engine's) keep applying and a nested init system can attach its own.
//
// The program reads bpf_cgroup_dev_ctx {access_type = access << 16 | type, major, minor}
// and walks the rules last to first with the access bits still undecided in r3 (Devices.h:
// each bit is decided by the last rule naming it), one block each:
//
//   r2 = type, r3 = access, r4 = major, r5 = minor
//   if r2 != T goto next             (the rule's type c or b; nothing for a)
//   if r4 != MAJ goto next           (nothing for any)
//   if r5 != MIN goto next           (nothing for any)
//   allow:  r3 &= ~A; if r3 != 0 goto next; r0 = 1; exit    (A = rwm: r0 = 1; exit)
//   deny:   r1 = r3; r1 &= A; if r1 == 0 goto next; r0 = 0; exit   (A = rwm: r0 = 0; exit)
//   ...
//   r0 = 0; exit                     (bits left undecided: deny)
//
// A block without conditions ends the program: the verifier refuses unreachable code.
#pragma once

#include "Devices.h"

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mobileops::cgroup {

// One instruction as the kernel's struct bpf_insn lays it out (its register bit-fields
// trip GCC 12's -Wstringop-overflow when copied; a plain byte holds both).
struct BpfInsn {
    std::uint8_t code;
    std::uint8_t regs; // dst_reg in the low nibble, src_reg in the high one (little-endian)
    std::int16_t off;
    std::int32_t imm;

    std::uint8_t dst() const;
    std::uint8_t src() const;
};
static_assert(sizeof(BpfInsn) == sizeof(bpf_insn));

std::vector<BpfInsn> deviceProgram(const std::vector<DeviceRule> &rules);

// Load the program for `rules` and attach it to the cgroup2 directory `dir`, then detach
// the device programs attached to `dir` itself before (an update replaces, never adds;
// between the two steps both apply, which is the stricter of them). Returns 0 or -errno;
// `detail` gets the step that failed and the verifier's log, if any.
int setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                     std::string &detail);

// The ids of the device programs attached to `dir` itself; -errno on failure.
int attachedDevicePrograms(const std::string &dir, std::vector<std::uint32_t> &ids);

} // namespace mobileops::cgroup
