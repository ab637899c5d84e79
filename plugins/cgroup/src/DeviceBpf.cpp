#include "DeviceBpf.h"

#include "Errors.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace mobileops::cgroup {

namespace {

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr int kDstShift = 0, kSrcShift = 4;
#else
constexpr int kDstShift = 4, kSrcShift = 0;
#endif

BpfInsn insn(std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off,
             std::int32_t imm) {
    return {code, static_cast<std::uint8_t>((dst & 0xf) << kDstShift | (src & 0xf) << kSrcShift),
            off, imm};
}

// The few instructions the program needs (linux/bpf_common.h, linux/bpf.h).
BpfInsn loadWord(std::uint8_t dst, std::uint8_t src, std::int16_t off) {
    return insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0);
}
BpfInsn and32(std::uint8_t dst, std::int32_t imm) {
    return insn(BPF_ALU | BPF_AND | BPF_K, dst, 0, 0, imm);
}
BpfInsn rsh32(std::uint8_t dst, std::int32_t imm) {
    return insn(BPF_ALU | BPF_RSH | BPF_K, dst, 0, 0, imm);
}
BpfInsn movReg(std::uint8_t dst, std::uint8_t src) {
    return insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}
BpfInsn movImm(std::uint8_t dst, std::int32_t imm) {
    return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
}
BpfInsn jneImm(std::uint8_t dst, std::int32_t imm, std::int16_t off) {
    return insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm);
}
BpfInsn jeqImm(std::uint8_t dst, std::int32_t imm, std::int16_t off) {
    return insn(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, off, imm);
}
BpfInsn exitInsn() { return insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

long bpf(int cmd, bpf_attr &attr) { return ::syscall(SYS_bpf, cmd, &attr, sizeof attr); }

struct Fd {
    int fd = -1;
    explicit Fd(int f) : fd(f) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

} // namespace

std::uint8_t BpfInsn::dst() const { return (regs >> kDstShift) & 0xf; }
std::uint8_t BpfInsn::src() const { return (regs >> kSrcShift) & 0xf; }

std::vector<BpfInsn> deviceProgram(const std::vector<DeviceRule> &rules) {
    std::vector<BpfInsn> p = {
        loadWord(2, 1, offsetof(bpf_cgroup_dev_ctx, access_type)),
        and32(2, 0xffff), // type
        loadWord(3, 1, offsetof(bpf_cgroup_dev_ctx, access_type)),
        rsh32(3, 16), // access
        loadWord(4, 1, offsetof(bpf_cgroup_dev_ctx, major)),
        loadWord(5, 1, offsetof(bpf_cgroup_dev_ctx, minor)),
    };
    for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
        const DeviceRule &r = *it;
        // The conditions, each jumping past the block's end when it does not hold; the
        // offsets are filled once the block's length is known.
        std::vector<BpfInsn> block;
        std::vector<size_t> jumps;
        if (r.type != 'a') {
            jumps.push_back(block.size());
            block.push_back(jneImm(2, r.type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR, 0));
        }
        if (r.major >= 0) {
            jumps.push_back(block.size());
            block.push_back(jneImm(4, static_cast<std::int32_t>(r.major), 0));
        }
        if (r.minor >= 0) {
            jumps.push_back(block.size());
            block.push_back(jneImm(5, static_cast<std::int32_t>(r.minor), 0));
        }
        const std::int32_t access = static_cast<std::int32_t>(r.access & kDevAll);
        if (access != kDevAll && r.allow) {
            // Grant the rule's bits; done once nothing is left to decide.
            block.push_back(and32(3, ~access & kDevAll));
            jumps.push_back(block.size());
            block.push_back(jneImm(3, 0, 0));
        } else if (access != kDevAll) {
            // Denied when an undecided bit is among the rule's.
            block.push_back(movReg(1, 3));
            block.push_back(and32(1, access));
            jumps.push_back(block.size());
            block.push_back(jeqImm(1, 0, 0));
        }
        block.push_back(movImm(0, r.allow ? 1 : 0));
        block.push_back(exitInsn());
        for (size_t j : jumps) block[j].off = static_cast<std::int16_t>(block.size() - j - 1);
        p.insert(p.end(), block.begin(), block.end());
        if (jumps.empty()) return p; // matches everything: what follows is unreachable
    }
    p.push_back(movImm(0, 0));
    p.push_back(exitInsn());
    return p;
}

int attachedDevicePrograms(const std::string &dir, std::vector<std::uint32_t> &ids) {
    Fd cg(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cg.fd < 0) return -errno;
    std::vector<std::uint32_t> buf(64);
    for (;;) {
        bpf_attr attr;
        std::memset(&attr, 0, sizeof attr);
        attr.query.target_fd = static_cast<std::uint32_t>(cg.fd);
        attr.query.attach_type = BPF_CGROUP_DEVICE;
        attr.query.prog_ids = reinterpret_cast<std::uintptr_t>(buf.data());
        attr.query.prog_cnt = static_cast<std::uint32_t>(buf.size());
        if (bpf(BPF_PROG_QUERY, attr) == 0) {
            ids.assign(buf.begin(), buf.begin() + attr.query.prog_cnt);
            return 0;
        }
        if (errno != ENOSPC || buf.size() > 4096) return -errno;
        buf.resize(buf.size() * 4);
    }
}

int setDeviceProgram(const std::string &dir, const std::vector<DeviceRule> &rules,
                     std::string &detail) {
    auto failed = [&](const std::string &step) {
        int err = errno;
        detail = step;
        return -err;
    };
    std::vector<std::uint32_t> before;
    if (int rc = attachedDevicePrograms(dir, before); rc < 0) {
        errno = -rc;
        return failed("query the device programs of " + quote(dir));
    }

    std::vector<BpfInsn> program = deviceProgram(rules);
    static const char license[] = "GPL";
    bpf_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = reinterpret_cast<std::uintptr_t>(program.data());
    attr.insn_cnt = static_cast<std::uint32_t>(program.size());
    attr.license = reinterpret_cast<std::uintptr_t>(license);
    std::memcpy(attr.prog_name, "mo_devices", sizeof "mo_devices");
    Fd prog(static_cast<int>(bpf(BPF_PROG_LOAD, attr)));
    if (prog.fd < 0) {
        int err = errno;
        // Again with the verifier's log, for the message.
        std::string log(65536, '\0');
        attr.log_level = 1;
        attr.log_buf = reinterpret_cast<std::uintptr_t>(log.data());
        attr.log_size = static_cast<std::uint32_t>(log.size());
        Fd again(static_cast<int>(bpf(BPF_PROG_LOAD, attr)));
        log.resize(std::strlen(log.c_str()));
        while (!log.empty() && log.back() == '\n') log.pop_back();
        if (log.size() > 400) log = "..." + log.substr(log.size() - 400);
        errno = err;
        return failed("load the device program (" + std::to_string(program.size()) +
                      " instructions)" + (log.empty() ? "" : ": " + log));
    }

    Fd cg(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (cg.fd < 0) return failed("open " + quote(dir));
    std::memset(&attr, 0, sizeof attr);
    attr.target_fd = static_cast<std::uint32_t>(cg.fd);
    attr.attach_bpf_fd = static_cast<std::uint32_t>(prog.fd);
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    if (bpf(BPF_PROG_ATTACH, attr) < 0) return failed("attach the device program to " + quote(dir));

    for (std::uint32_t id : before) {
        std::memset(&attr, 0, sizeof attr);
        attr.prog_id = id;
        Fd old(static_cast<int>(bpf(BPF_PROG_GET_FD_BY_ID, attr)));
        if (old.fd < 0) {
            if (errno == ENOENT) continue; // gone meanwhile
            return failed("find the previous device program " + quote(std::to_string(id)));
        }
        std::memset(&attr, 0, sizeof attr);
        attr.target_fd = static_cast<std::uint32_t>(cg.fd);
        attr.attach_bpf_fd = static_cast<std::uint32_t>(old.fd);
        attr.attach_type = BPF_CGROUP_DEVICE;
        if (bpf(BPF_PROG_DETACH, attr) < 0 && errno != ENOENT)
            return failed("detach the previous device program " + quote(std::to_string(id)));
    }
    return 0;
}

} // namespace mobileops::cgroup
