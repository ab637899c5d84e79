// The value parsers shared by VirtualRoot documents and CLI flags.
#include "mobileops/core/Spec.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace mobileops::core;
using namespace mobileops::core::spec;
using nlohmann::json;

namespace {

// The message of the Error `fn` throws (checking its code), or a test failure.
template <typename Fn> std::string errorOf(Fn fn, int code = MO_E_INVALID) {
    try {
        fn();
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), code) << e.what();
        return e.what();
    }
    ADD_FAILURE() << "no error thrown";
    return {};
}

TEST(SpecQuantityTest, PlainBytesAndSuffixes) {
    EXPECT_EQ(parseQuantity("0"), 0u);
    EXPECT_EQ(parseQuantity("1024"), 1024u);
    EXPECT_EQ(parseQuantity("+5"), 5u);
    EXPECT_EQ(parseQuantity("-0"), 0u);
    EXPECT_EQ(parseQuantity("1Ki"), 1024u);
    EXPECT_EQ(parseQuantity("1Mi"), 1ull << 20);
    EXPECT_EQ(parseQuantity("4Gi"), 4ull << 30);
    EXPECT_EQ(parseQuantity("1Ti"), 1ull << 40);
    EXPECT_EQ(parseQuantity("1Pi"), 1ull << 50);
    EXPECT_EQ(parseQuantity("1Ei"), 1ull << 60);
    EXPECT_EQ(parseQuantity("1k"), 1000u);
    EXPECT_EQ(parseQuantity("1M"), 1000000u);
    EXPECT_EQ(parseQuantity("1G"), 1000000000u);
    EXPECT_EQ(parseQuantity("1T"), 1000000000000u);
    EXPECT_EQ(parseQuantity("1P"), 1000000000000000u);
    EXPECT_EQ(parseQuantity("1E"), 1000000000000000000u);
    EXPECT_EQ(parseQuantity("15Ei"), 15ull << 60);
    EXPECT_EQ(parseQuantity("18446744073709551615"), 18446744073709551615ull);
}

TEST(SpecQuantityTest, FractionsAndExponents) {
    EXPECT_EQ(parseQuantity("1.5Gi"), 1610612736u);
    EXPECT_EQ(parseQuantity("0.5Ki"), 512u);
    EXPECT_EQ(parseQuantity(".5Ki"), 512u);
    EXPECT_EQ(parseQuantity("2."), 2u);
    EXPECT_EQ(parseQuantity("1.000000000000000000000"), 1u);
    // fractional bytes round up, as Kubernetes does
    EXPECT_EQ(parseQuantity("0.1"), 1u);
    EXPECT_EQ(parseQuantity("1.0000000000000000000001"), 2u);
    EXPECT_EQ(parseQuantity("1e3"), 1000u);
    EXPECT_EQ(parseQuantity("1E3"), 1000u);
    EXPECT_EQ(parseQuantity("5e-1"), 1u);
    EXPECT_EQ(parseQuantity("1000000000.0"), 1000000000u);
    EXPECT_EQ(parseQuantity("1e+18"), 1000000000000000000u);
}

TEST(SpecQuantityTest, RefusesMalformed) {
    EXPECT_EQ(errorOf([] { parseQuantity("4Gx"); }), "`4Gx` is not a quantity");
    for (const char *bad : {"Gi", "1 Gi", " 1Mi", "1Mi ", "1.2.3", "1gi", "1KiB", "0x10", "1e",
                            "1e+", "abc", ".", "+", "1..", "1Mi1", "--1", "1e3Mi"})
        EXPECT_EQ(errorOf([&] { parseQuantity(bad); }), quote(bad) + " is not a quantity") << bad;
    EXPECT_EQ(errorOf([] { parseQuantity(""); }), "an empty value is not a quantity");
}

TEST(SpecQuantityTest, RefusesMilliBytesWithAHint) {
    EXPECT_EQ(errorOf([] { parseQuantity("512m"); }),
              "`512m` is not a quantity of bytes (`m` means milli; did you mean `512Mi`?)");
}

TEST(SpecQuantityTest, RefusesNegativeAndOverflow) {
    EXPECT_EQ(errorOf([] { parseQuantity("-1Gi"); }), "`-1Gi` is negative");
    EXPECT_EQ(errorOf([] { parseQuantity("16Ei"); }), "`16Ei` is out of range");
    EXPECT_EQ(errorOf([] { parseQuantity("18446744073709551616"); }),
              "`18446744073709551616` is out of range");
    EXPECT_EQ(errorOf([] { parseQuantity("1e20"); }), "`1e20` is out of range");
    EXPECT_EQ(errorOf([] { parseQuantity("123456789012345678901234567890"); }),
              "`123456789012345678901234567890` is out of range");
    EXPECT_EQ(errorOf([] { parseQuantity("1e999999"); }), "`1e999999` is out of range");
}

TEST(SpecCpuTest, CoresAndMillicores) {
    EXPECT_EQ(parseCpu("0.5"), 500);
    EXPECT_EQ(parseCpu("2"), 2000);
    EXPECT_EQ(parseCpu("1.5"), 1500);
    EXPECT_EQ(parseCpu("500m"), 500);
    EXPECT_EQ(parseCpu("0.001"), 1);
    EXPECT_EQ(parseCpu("1m"), 1);
    EXPECT_EQ(parseCpu("0"), 0);
    EXPECT_EQ(parseCpu("2.0"), 2000);
    EXPECT_EQ(parseCpu("1e-3"), 1);
    EXPECT_EQ(parseCpu(".25"), 250);
}

TEST(SpecCpuTest, RefusesBadCpu) {
    EXPECT_EQ(errorOf([] { parseCpu("-1"); }), "`-1` is negative");
    EXPECT_EQ(errorOf([] { parseCpu("0.0005"); }),
              "`0.0005` is finer than `1m` (a thousandth of a CPU)");
    EXPECT_EQ(errorOf([] { parseCpu("1.5m"); }),
              "`1.5m` is finer than `1m` (a thousandth of a CPU)");
    for (const char *bad : {"1Gi", "m", "", "abc", "1 ", "1k", "0x1"})
        EXPECT_NE(errorOf([&] { parseCpu(bad); }).find("is not a CPU quantity"), std::string::npos)
            << bad;
    EXPECT_EQ(errorOf([] { parseCpu("99999999999999999999"); }),
              "`99999999999999999999` is out of range");
}

TEST(SpecRlimitTest, NamesLikeDocker) {
    const std::pair<const char *, const char *> names[] = {
        {"as", "RLIMIT_AS"},
        {"core", "RLIMIT_CORE"},
        {"cpu", "RLIMIT_CPU"},
        {"data", "RLIMIT_DATA"},
        {"fsize", "RLIMIT_FSIZE"},
        {"locks", "RLIMIT_LOCKS"},
        {"memlock", "RLIMIT_MEMLOCK"},
        {"msgqueue", "RLIMIT_MSGQUEUE"},
        {"nice", "RLIMIT_NICE"},
        {"nofile", "RLIMIT_NOFILE"},
        {"nproc", "RLIMIT_NPROC"},
        {"rss", "RLIMIT_RSS"},
        {"rtprio", "RLIMIT_RTPRIO"},
        {"rttime", "RLIMIT_RTTIME"},
        {"sigpending", "RLIMIT_SIGPENDING"},
        {"stack", "RLIMIT_STACK"},
    };
    for (const auto &[name, type] : names) EXPECT_EQ(rlimitType(name), type);
    EXPECT_EQ(rlimitType("RLIMIT_NOFILE"), "RLIMIT_NOFILE");
    EXPECT_EQ(rlimitType("NoFile"), "RLIMIT_NOFILE");
    EXPECT_NE(errorOf([] {
                  rlimitType("nofle");
              }).find("`nofle` is not a resource limit (one of as core"),
              std::string::npos);
    errorOf([] { rlimitType(""); });
    errorOf([] { rlimitType("RLIMIT_"); });
}

TEST(SpecRlimitTest, Values) {
    EXPECT_EQ(parseRlimitValue("0"), 0);
    EXPECT_EQ(parseRlimitValue("1024"), 1024);
    EXPECT_EQ(parseRlimitValue("unlimited"), -1);
    EXPECT_EQ(parseRlimitValue("-1"), -1);
    EXPECT_EQ(errorOf([] { parseRlimitValue("-2"); }), "`-2` is not a number or `unlimited`");
    EXPECT_EQ(errorOf([] { parseRlimitValue("abc"); }), "`abc` is not a number or `unlimited`");
    EXPECT_EQ(errorOf([] { parseRlimitValue("99999999999999999999"); }),
              "`99999999999999999999` is out of range");
}

TEST(SpecRlimitTest, Ulimit) {
    Rlimit l = parseUlimit("nofile=1024:2048");
    EXPECT_EQ(l.type, "RLIMIT_NOFILE");
    EXPECT_EQ(l.soft, 1024);
    EXPECT_EQ(l.hard, 2048);
    l = parseUlimit("nproc=512");
    EXPECT_EQ(l.soft, 512);
    EXPECT_EQ(l.hard, 512);
    l = parseUlimit("core=-1");
    EXPECT_EQ(l.soft, -1);
    EXPECT_EQ(l.hard, -1);
    l = parseUlimit("stack=8388608:unlimited");
    EXPECT_EQ(l.soft, 8388608);
    EXPECT_EQ(l.hard, -1);
    EXPECT_EQ(toJson(parseUlimit("nofile=10:20")),
              json::parse(R"({"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20})"));
}

TEST(SpecRlimitTest, RefusesBadUlimit) {
    EXPECT_EQ(errorOf([] { parseUlimit("nofile=abc"); }),
              "`nofile=abc`: expected NAME=SOFT[:HARD]");
    for (const char *bad : {"nofile", "=1", "nofile=", "nofile=1:2:3", "nofile=1:", "nofile=:1"})
        EXPECT_EQ(errorOf([&] { parseUlimit(bad); }), quote(bad) + ": expected NAME=SOFT[:HARD]")
            << bad;
    EXPECT_NE(
        errorOf([] { parseUlimit("nofle=1"); }).find("`nofle=1`: unknown resource `nofle` (one of"),
        std::string::npos);
    EXPECT_EQ(errorOf([] { parseUlimit("nofile=2048:1024"); }),
              "`nofile=2048:1024`: the soft limit is above the hard limit");
    EXPECT_EQ(errorOf([] { parseUlimit("nofile=unlimited:1024"); }),
              "`nofile=unlimited:1024`: the soft limit is above the hard limit");
    try {
        parseUlimit("nofile=abc");
    } catch (const InvalidValue &e) {
        EXPECT_EQ(e.value(), "nofile=abc");
        EXPECT_EQ(e.brief(), "expected NAME=SOFT[:HARD]");
    }
}

TEST(SpecUserTest, Forms) {
    EXPECT_EQ(parseUser("1000:1000"), json::parse(R"({"uid": 1000, "gid": 1000})"));
    EXPECT_EQ(parseUser("0:0"), json::parse(R"({"uid": 0, "gid": 0})"));
    // a lone uid takes its group from the rootfs's /etc/passwd: resolved by the runtime
    EXPECT_EQ(parseUser("1000"), json::parse(R"({"name": "1000"})"));
    EXPECT_EQ(parseUser("www"), json::parse(R"({"name": "www"})"));
    EXPECT_EQ(parseUser("www:staff"), json::parse(R"({"name": "www:staff"})"));
    EXPECT_EQ(parseUser("1000:staff"), json::parse(R"({"name": "1000:staff"})"));
    EXPECT_EQ(parseUser("www-data:100"), json::parse(R"({"name": "www-data:100"})"));
    EXPECT_EQ(parseUser("4294967294:4294967294"),
              json::parse(R"({"uid": 4294967294, "gid": 4294967294})"));
}

TEST(SpecUserTest, RefusesBadUsers) {
    EXPECT_EQ(errorOf([] { parseUser("x:y:z"); }), "`x:y:z`: expected UID[:GID] or NAME[:GROUP]");
    for (const char *bad : {"", ":", ":1", "1:", "a b", "-1", "-x", "a/b", "1000::1"})
        EXPECT_EQ(errorOf([&] { parseUser(bad); }),
                  (*bad ? quote(bad) : std::string("an empty value")) +
                      ": expected UID[:GID] or NAME[:GROUP]")
            << bad;
    EXPECT_EQ(errorOf([] { parseUser("4294967295"); }),
              "`4294967295`: `4294967295` is out of range (0 to 4294967294)");
    EXPECT_EQ(errorOf([] { parseUser("0:99999999999"); }),
              "`0:99999999999`: `99999999999` is out of range (0 to 4294967294)");
}

TEST(SpecUserTest, Ids) {
    EXPECT_EQ(parseId("0"), 0u);
    EXPECT_EQ(parseId("4294967294"), 4294967294u);
    EXPECT_EQ(errorOf([] { parseId("4294967295"); }),
              "`4294967295` is out of range (0 to 4294967294)");
    EXPECT_EQ(errorOf([] { parseId("-1"); }), "`-1` is not a uid or gid");
    EXPECT_EQ(errorOf([] { parseId("x"); }), "`x` is not a uid or gid");
    EXPECT_TRUE(isValidUserName("www-data"));
    EXPECT_TRUE(isValidUserName("_apt"));
    EXPECT_TRUE(isValidUserName("machine$"));
    EXPECT_FALSE(isValidUserName("1000"));
    EXPECT_FALSE(isValidUserName("-x"));
    EXPECT_FALSE(isValidUserName("a$b"));
    EXPECT_FALSE(isValidUserName(""));
}

TEST(SpecUsernsTest, ShortForms) {
    json expected = json::parse(R"({
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})");
    EXPECT_EQ(parseUserns("100000:65536"), expected);
    EXPECT_EQ(parseUserns("0:100000:65536"), expected);
    EXPECT_EQ(parseUserns("1000:200000:10")["uidMappings"][0],
              json::parse(R"({"containerID": 1000, "hostID": 200000, "size": 10})"));
    EXPECT_EQ(parseUserns("4294967294:1")["uidMappings"][0]["hostID"], 4294967294u);
}

TEST(SpecUsernsTest, RefusesBadForms) {
    for (const char *bad : {"abc", "1", "1:2:3:4", "a:1", ":1", "1:", "-1:5", "100000:65536 "})
        EXPECT_EQ(errorOf([&] { parseUserns(bad); }),
                  quote(bad) + ": expected HOSTID:SIZE or CONTAINERID:HOSTID:SIZE")
            << bad;
    EXPECT_EQ(errorOf([] { parseUserns("100000:0"); }), "`100000:0`: the size must be at least 1");
    EXPECT_EQ(errorOf([] { parseUserns("4294967295:1"); }),
              "`4294967295:1`: the range goes past id 4294967294");
    EXPECT_EQ(errorOf([] { parseUserns("4294967290:10"); }),
              "`4294967290:10`: the range goes past id 4294967294");
    EXPECT_EQ(errorOf([] { parseUserns("99999999999:1"); }),
              "`99999999999:1`: expected HOSTID:SIZE or CONTAINERID:HOSTID:SIZE");
}

TEST(SpecEnvTest, Forms) {
    auto kv = parseEnv("K=V");
    EXPECT_EQ(kv.first, "K");
    EXPECT_EQ(kv.second, "V");
    EXPECT_EQ(parseEnv("K=").second, "");
    EXPECT_EQ(parseEnv("K=a=b").second, "a=b");
    EXPECT_EQ(parseEnv("K= spaced value ").second, " spaced value ");
    EXPECT_EQ(parseEnv("K").second, std::nullopt);
    EXPECT_EQ(errorOf([] { parseEnv("=V"); }), "`=V`: the variable name is empty");
    EXPECT_EQ(errorOf([] { parseEnv(""); }), "an empty value: the variable name is empty");
    EXPECT_EQ(errorOf([] { parseEnv("A B=1"); }), "`A B=1`: the variable name contains whitespace");
    EXPECT_EQ(errorOf([] { parseEnv(std::string("A=x\0y", 5)); }),
              "`A=x\\x00y` contains a NUL byte");
    EXPECT_EQ(errorOf([] { parseEnv("A\nB=1"); }),
              "`A\\nB=1`: the variable name contains whitespace");
    EXPECT_EQ(errorOf([] { parseQuantity(std::string(300, '9') + "x"); }),
              quote(std::string(200, '9') + "...") + " is not a quantity");
}

class SpecEnvFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/mobileops-spec-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        _dir = dir;
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }
    std::string write(const std::string &name, const std::string &content) {
        std::string path = _dir + "/" + name;
        std::ofstream(path) << content;
        return path;
    }
    std::string _dir;
};

TEST_F(SpecEnvFileTest, ReadsLikeDocker) {
    ::setenv("MO_SPEC_TEST_FROM_CALLER", "caller value", 1);
    ::unsetenv("MO_SPEC_TEST_UNSET");
    std::string path = write("env", "# a comment\n"
                                    "\n"
                                    "A=1\n"
                                    "   B=two words  \n"
                                    "C=with=equals\r\n"
                                    "\t# indented comment\n"
                                    "EMPTY=\n"
                                    "MO_SPEC_TEST_FROM_CALLER\n"
                                    "MO_SPEC_TEST_UNSET\n"
                                    "QUOTED=\"kept as is\"");
    EXPECT_EQ(readEnvFile(path),
              (std::vector<std::string>{"A=1", "B=two words  ", "C=with=equals",
                                        "EMPTY=", "MO_SPEC_TEST_FROM_CALLER=caller value",
                                        "QUOTED=\"kept as is\""}));
    EXPECT_TRUE(readEnvFile(write("empty", "")).empty());
}

TEST_F(SpecEnvFileTest, ErrorsNameFileAndLine) {
    std::string path = write("bad", "A=1\n# ok\nA B=1\n");
    EXPECT_EQ(errorOf([&] { readEnvFile(path); }),
              path + ":3: `A B=1`: the variable name contains whitespace");
    path = write("bad2", "=x\n");
    EXPECT_EQ(errorOf([&] { readEnvFile(path); }), path + ":1: `=x`: the variable name is empty");
    EXPECT_EQ(errorOf([&] { readEnvFile(_dir + "/missing"); }),
              quote(_dir + "/missing") + ": No such file or directory");
    EXPECT_EQ(errorOf([&] { readEnvFile(_dir); }), quote(_dir) + ": Is a directory");
}

TEST(SpecSignalTest, NamesAndNumbers) {
    EXPECT_EQ(parseSignal("TERM"), SIGTERM);
    EXPECT_EQ(parseSignal("SIGTERM"), SIGTERM);
    EXPECT_EQ(parseSignal("sigkill"), SIGKILL);
    EXPECT_EQ(parseSignal("hup"), SIGHUP);
    EXPECT_EQ(parseSignal("9"), 9);
    EXPECT_EQ(parseSignal("64"), 64);
    EXPECT_EQ(parseSignal("WINCH"), SIGWINCH);
    EXPECT_EQ(parseSignal("RTMIN"), SIGRTMIN);
    EXPECT_EQ(parseSignal("RTMIN+2"), SIGRTMIN + 2);
    EXPECT_EQ(parseSignal("SIGRTMAX-1"), SIGRTMAX - 1);
    EXPECT_EQ(errorOf([] { parseSignal("0"); }), "`0` is not a signal number (1 to 64)");
    EXPECT_EQ(errorOf([] { parseSignal("65"); }), "`65` is not a signal number (1 to 64)");
    EXPECT_EQ(errorOf([] { parseSignal("FOO"); }), "`FOO` is not a signal");
    EXPECT_EQ(errorOf([] { parseSignal("RTMIN+99"); }), "`RTMIN+99` is not a signal");
    EXPECT_EQ(errorOf([] { parseSignal(""); }), "an empty value is not a signal");
    EXPECT_EQ(errorOf([] { parseSignal("-9"); }), "`-9` is not a signal");
}

TEST(SpecCapabilityTest, Names) {
    EXPECT_EQ(capabilityName("net_admin"), "CAP_NET_ADMIN");
    EXPECT_EQ(capabilityName("CAP_SYS_ADMIN"), "CAP_SYS_ADMIN");
    EXPECT_EQ(capabilityName("cap_chown"), "CAP_CHOWN");
    EXPECT_EQ(capabilityName("CHECKPOINT_RESTORE"), "CAP_CHECKPOINT_RESTORE");
    EXPECT_EQ(capabilityName("all"), "ALL");
    EXPECT_EQ(errorOf([] { capabilityName("CAP_FOO"); }), "`CAP_FOO` is not a capability");
    EXPECT_EQ(errorOf([] { capabilityName("CAP_"); }), "`CAP_` is not a capability");
}

TEST(SpecNameTest, ContainerNames) {
    EXPECT_TRUE(isValidName("a"));
    EXPECT_TRUE(isValidName("web-1"));
    EXPECT_TRUE(isValidName("A.b_c-9"));
    EXPECT_TRUE(isValidName("0abc"));
    EXPECT_TRUE(isValidName(std::string(128, 'x')));
    EXPECT_FALSE(isValidName(std::string(129, 'x')));
    for (const char *bad : {"", "a/b", "-a", "_a", ".a", "a b", "a:b", "ä"})
        EXPECT_FALSE(isValidName(bad)) << bad;
}

TEST(SpecNameTest, Hostnames) {
    EXPECT_TRUE(isValidHostname("web"));
    EXPECT_TRUE(isValidHostname("web-1.example.com"));
    EXPECT_TRUE(isValidHostname(std::string(64, 'h')));
    EXPECT_FALSE(isValidHostname(std::string(65, 'h')));
    for (const char *bad : {"", "-web", ".web", "a b", "a/b"})
        EXPECT_FALSE(isValidHostname(bad)) << bad;
}

TEST(SpecNameTest, Utf8) {
    EXPECT_TRUE(isValidUtf8(""));
    EXPECT_TRUE(isValidUtf8("plain"));
    EXPECT_TRUE(isValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    EXPECT_FALSE(isValidUtf8("\xff"));
    EXPECT_FALSE(isValidUtf8("\xc3"));             // truncated
    EXPECT_FALSE(isValidUtf8("\xe2\x82"));         // truncated
    EXPECT_FALSE(isValidUtf8("\xc0\xaf"));         // overlong
    EXPECT_FALSE(isValidUtf8("\xed\xa0\x80"));     // surrogate
    EXPECT_FALSE(isValidUtf8("\xf4\x90\x80\x80")); // above U+10FFFF
    EXPECT_EQ(errorOf([] { parseEnv("A=\xff"); }), "`A=\xff` is not valid UTF-8");
}

TEST(SpecEditTest, SetEnvReplaces) {
    json spec = json::object();
    setEnv(spec, "A", "1");
    setEnv(spec, "AB", "2");
    setEnv(spec, "A", "3");
    EXPECT_EQ(spec["process"]["env"], json::parse(R"(["A=3", "AB=2"])"));
}

TEST(SpecEditTest, Unapplied) {
    json spec = json::object();
    addUnapplied(spec, "spec.resources.limits.cpu");
    addUnapplied(spec, "spec.resources.limits.cpu");
    addUnapplied(spec, "spec.resources.limitsx");
    addUnapplied(spec, "spec.networking.mode=bridge");
    addUnapplied(spec, "spec.volumes[1].configMap");
    addUnapplied(spec, "--memory");
    EXPECT_EQ(spec["unapplied"].size(), 5u);
    removeUnapplied(spec, "spec.resources.limits");
    removeUnapplied(spec, "spec.networking.mode");
    removeUnapplied(spec, "spec.volumes");
    EXPECT_EQ(spec["unapplied"], json::parse(R"(["spec.resources.limitsx", "--memory"])"));
    removeUnapplied(spec, "--mem");
    EXPECT_EQ(spec["unapplied"].size(), 2u);
    json none = json::object();
    removeUnapplied(none, "x");
    EXPECT_FALSE(none.contains("unapplied"));
}

} // namespace
