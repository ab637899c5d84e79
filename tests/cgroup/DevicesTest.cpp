// Device rules without root: parsing, the last-match-wins reference, the v1 write
// sequence, and the cgroup2 BPF program run through a small interpreter of the
// instructions it uses, checked against the reference for every kind of access.
#include "Devices.h"
#include "DeviceBpf.h"
#include "ErrorCode.h"
#include "Errors.h"

#include <gtest/gtest.h>

#include <linux/bpf.h>

#include <functional>

namespace mobileops::cgroup {
namespace {

using nlohmann::json;

using testing::codeOf;

std::vector<DeviceRule> rules(const char *text) { return parseDeviceRules(json::parse(text)); }

// What the kernel would answer: runs `program` on one bpf_cgroup_dev_ctx. Only the
// instructions deviceProgram emits are known; anything else fails the test.
int run(const std::vector<BpfInsn> &program, char type, std::uint32_t major, std::uint32_t minor,
        unsigned access) {
    std::uint32_t ctx[3] = {
        (access << 16) | (type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR), major, minor};
    std::uint64_t r[11] = {};
    for (size_t pc = 0; pc < program.size(); ++pc) {
        const BpfInsn &i = program[pc];
        std::uint64_t &dst = r[i.dst()];
        std::uint64_t src = r[i.src()];
        switch (i.code) {
        case BPF_LDX | BPF_MEM | BPF_W:
            EXPECT_EQ(i.src(), 1);
            dst = ctx[i.off / 4];
            break;
        case BPF_ALU | BPF_AND | BPF_K:
            dst = static_cast<std::uint32_t>(dst & static_cast<std::uint32_t>(i.imm));
            break;
        case BPF_ALU | BPF_RSH | BPF_K:
            dst = static_cast<std::uint32_t>(dst) >> i.imm;
            break;
        case BPF_ALU64 | BPF_MOV | BPF_X:
            dst = src;
            break;
        case BPF_ALU64 | BPF_MOV | BPF_K:
            dst = static_cast<std::uint64_t>(static_cast<std::int64_t>(i.imm));
            break;
        case BPF_JMP | BPF_JNE | BPF_K:
            if (dst != static_cast<std::uint64_t>(static_cast<std::int64_t>(i.imm))) pc += i.off;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            if (dst == static_cast<std::uint64_t>(static_cast<std::int64_t>(i.imm))) pc += i.off;
            break;
        case BPF_JMP | BPF_EXIT:
            return static_cast<int>(r[0]);
        default:
            ADD_FAILURE() << "unexpected opcode " << int(i.code) << " at " << pc;
            return -1;
        }
    }
    ADD_FAILURE() << "the program runs off its end";
    return -1;
}

// Every access to a few devices, the program against the reference.
void expectProgramFollowsTheRules(const std::vector<DeviceRule> &list) {
    std::vector<BpfInsn> program = deviceProgram(list);
    ASSERT_FALSE(program.empty());
    EXPECT_EQ(program.back().code, BPF_JMP | BPF_EXIT);
    for (char type : {'c', 'b'})
        for (std::uint32_t major : {1u, 5u, 8u, 10u, 136u, 254u})
            for (std::uint32_t minor : {0u, 1u, 3u, 200u, 237u})
                for (unsigned access = 1; access <= kDevAll; ++access)
                    EXPECT_EQ(run(program, type, major, minor, access) == 1,
                              deviceAllowed(list, type, major, minor, access))
                        << type << " " << major << ":" << minor << " access " << access;
}

TEST(Devices, ParseNormalizesAndNamesBadFields) {
    auto list = rules(R"([{"allow": false}, {"allow": true, "type": "c", "major": 1,
                          "minor": null, "access": "rw"}, {"allow": true, "minor": -1}])");
    ASSERT_EQ(list.size(), 3u);
    EXPECT_TRUE(list[0].all());
    EXPECT_EQ(list[1].text(), "c 1:* rw");
    EXPECT_EQ(list[2].text(), "a *:* rwm");
    EXPECT_EQ(deviceRulesJson(list)[1],
              json({{"allow", true}, {"type", "c"}, {"major", 1}, {"access", "rw"}}));
    std::string m;
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "type": "x"}])"); }, &m), MO_E_INVALID);
    EXPECT_EQ(m, "invalid `devices[0].type`: expected `a` (all), `c` or `b`");
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true}, {"allow": 1}])"); }, &m), MO_E_INVALID);
    EXPECT_EQ(m, "invalid `devices[1].allow`: expected true or false");
    EXPECT_EQ(codeOf([] { rules(R"([{"type": "c"}])"); }, &m), MO_E_INVALID);
    EXPECT_EQ(m, "invalid `devices[0].allow`: required field is missing");
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "access": "rwx"}])"); }, &m), MO_E_INVALID);
    EXPECT_NE(m.find("devices[0].access"), std::string::npos) << m;
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "access": ""}])"); }), MO_E_INVALID);
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "major": 1048576}])"); }, &m), MO_E_INVALID);
    EXPECT_NE(m.find("devices[0].major"), std::string::npos) << m;
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "major": -2}])"); }), MO_E_INVALID);
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "major": "8"}])"); }), MO_E_INVALID);
    EXPECT_EQ(codeOf([] { rules(R"([{"allow": true, "path": "/dev/sda"}])"); }, &m), MO_E_INVALID);
    EXPECT_EQ(m, "unknown resources field `devices[0].path`");
    EXPECT_EQ(codeOf([] { rules(R"({"allow": true})"); }), MO_E_INVALID);
    EXPECT_EQ(codeOf([] { rules(R"([7])"); }), MO_E_INVALID);
    json many = json::array();
    for (int i = 0; i < 513; ++i) many.push_back({{"allow", true}});
    EXPECT_EQ(codeOf([&] { parseDeviceRules(many); }), MO_E_INVALID);
}

TEST(Devices, LastMatchingRuleDecides) {
    auto list = rules(R"([{"allow": false}, {"allow": true, "type": "c", "major": 1, "minor": 3},
                          {"allow": true, "type": "c", "major": 136, "access": "rw"},
                          {"allow": true, "type": "b", "access": "m"},
                          {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}])");
    EXPECT_TRUE(deviceAllowed(list, 'c', 1, 3, kDevRead));
    EXPECT_FALSE(deviceAllowed(list, 'c', 1, 3, kDevWrite));
    EXPECT_FALSE(deviceAllowed(list, 'c', 1, 3, kDevRead | kDevWrite)) << "needs both";
    EXPECT_TRUE(deviceAllowed(list, 'c', 136, 4, kDevRead | kDevWrite));
    EXPECT_FALSE(deviceAllowed(list, 'c', 136, 4, kDevMknod));
    EXPECT_TRUE(deviceAllowed(list, 'b', 254, 0, kDevMknod));
    EXPECT_FALSE(deviceAllowed(list, 'b', 254, 0, kDevRead));
    EXPECT_FALSE(deviceAllowed(list, 'c', 1, 5, kDevRead));
    EXPECT_FALSE(deviceAllowed({}, 'c', 1, 3, kDevRead)) << "no rule: denied";
    // Bit by bit: read from one rule and write from another make read-write.
    auto split = rules(R"([{"allow": false}, {"allow": true, "type": "c", "access": "r"},
                           {"allow": true, "type": "c", "major": 1, "access": "w"}])");
    EXPECT_TRUE(deviceAllowed(split, 'c', 1, 3, kDevRead | kDevWrite));
    EXPECT_FALSE(deviceAllowed(split, 'c', 2, 3, kDevRead | kDevWrite));
    EXPECT_TRUE(deviceAllowed(split, 'c', 2, 3, kDevRead));
}

TEST(Devices, V1DenyAllThenAllows) {
    auto list = rules(R"([{"allow": true}, {"allow": false, "access": "rwm"},
                          {"allow": true, "type": "c", "major": 1, "minor": 3},
                          {"allow": true, "type": "a", "access": "m"},
                          {"allow": true, "type": "a", "major": 7, "access": "r"},
                          {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}])");
    auto writes = v1DeviceWrites(list);
    std::vector<std::pair<std::string, std::string>> expected = {
        {"devices.deny", "a"},        {"devices.allow", "c 1:3 rwm"}, {"devices.allow", "c *:* m"},
        {"devices.allow", "b *:* m"}, {"devices.allow", "c 7:* r"},   {"devices.allow", "b 7:* r"},
        {"devices.deny", "c 1:3 w"}};
    EXPECT_EQ(writes, expected);
    // Nothing at all: deny everything.
    EXPECT_EQ(v1DeviceWrites({}),
              (std::vector<std::pair<std::string, std::string>>{{"devices.deny", "a"}}));
}

TEST(Devices, V1AllowAllThenDenies) {
    auto writes = v1DeviceWrites(rules(R"([{"allow": true, "type": "a", "access": "rwm"},
        {"allow": false, "type": "b", "major": 254}, {"allow": true, "type": "b", "major": 254,
        "minor": 0, "access": "r"}])"));
    std::vector<std::pair<std::string, std::string>> expected = {
        {"devices.allow", "a"}, {"devices.deny", "b 254:* rwm"}, {"devices.allow", "b 254:0 r"}};
    EXPECT_EQ(writes, expected); // the last one stays denied on v1: stricter, never looser
}

TEST(Devices, V1RefusesADenyInsideAWiderAllow) {
    std::string m;
    EXPECT_EQ(codeOf(
                  [] {
                      v1DeviceWrites(rules(R"([{"allow": false}, {"allow": true, "type": "c"},
                          {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}])"));
                  },
                  &m),
              MO_E_UNSUPPORTED);
    EXPECT_EQ(m, "devices[2]: deny `c 1:3 w` inside the earlier allow `c *:* rwm` cannot be "
                 "held by the v1 devices controller (it removes only exceptions with the same "
                 "numbers)");
    // A deny of exactly what was allowed is fine, and so is one overlapping nothing.
    EXPECT_NO_THROW(v1DeviceWrites(rules(R"([{"allow": false},
        {"allow": true, "type": "c", "major": 1, "minor": 3},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"},
        {"allow": false, "type": "b", "major": 8}])")));
}

TEST(Devices, ProgramFollowsTheRules) {
    expectProgramFollowsTheRules({});
    expectProgramFollowsTheRules(rules(R"([{"allow": false}])"));
    expectProgramFollowsTheRules(rules(R"([{"allow": true}])"));
    expectProgramFollowsTheRules(rules(R"([{"allow": false},
        {"allow": true, "type": "c", "access": "m"}, {"allow": true, "type": "b", "access": "m"},
        {"allow": true, "type": "c", "major": 1, "minor": 3},
        {"allow": true, "type": "c", "major": 136, "access": "rw"},
        {"allow": true, "type": "c", "major": 10, "minor": 200},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}])"));
    expectProgramFollowsTheRules(rules(R"([{"allow": false},
        {"allow": true, "type": "c", "access": "r"},
        {"allow": true, "type": "c", "major": 1, "access": "w"},
        {"allow": false, "type": "a", "major": 1, "minor": 5, "access": "rm"},
        {"allow": true, "type": "c", "major": 136, "access": "mw"}])"));
    // Allow all, then deny one disk and let it be read again.
    expectProgramFollowsTheRules(rules(R"([{"allow": true},
        {"allow": false, "type": "b", "major": 254},
        {"allow": true, "type": "b", "major": 254, "minor": 0, "access": "r"}])"));
    // Rules before an all-matching one are unreachable: the program ends there.
    auto program = deviceProgram(rules(R"([{"allow": true, "type": "c", "major": 1},
        {"allow": false}])"));
    EXPECT_EQ(program.size(), 6u + 2u) << "prologue, then r0 = 0; exit";
}

} // namespace
} // namespace mobileops::cgroup
