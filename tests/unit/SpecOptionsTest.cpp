// CLI flags on top of a runtime spec.
#include "mobileops/core/Spec.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

using namespace mobileops::core;
using namespace mobileops::core::spec;
using nlohmann::json;

namespace {

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

json applied(const std::string &opts, json spec = json::object()) {
    applyOptions(spec, json::parse(opts));
    return spec;
}

std::string optionError(const std::string &opts, json spec = json::object()) {
    return errorOf([&] { applyOptions(spec, json::parse(opts)); });
}

TEST(SpecOptionsTest, EveryFlagOnAnEmptySpec) {
    ::setenv("MO_SPEC_OPT_CALLER", "from caller", 1);
    json s = applied(R"({
        "name": "web", "hostname": "web-host", "rootfs": "/srv/rootfs/",
        "command": ["/bin/sh", "-c", "echo hi"],
        "env": ["A=1", "MO_SPEC_OPT_CALLER", "MO_SPEC_OPT_UNSET_VARIABLE"],
        "workdir": "/app/", "user": "1000:1000", "group_add": ["10", "audio"],
        "read_only": true, "network": "none", "init": true,
        "ulimit": ["nofile=1024:2048", "core=-1"], "userns": "100000:65536",
        "interactive": true, "tty": true, "memory": "512Mi", "cpus": "1.5", "pids_limit": 100,
        "stop_timeout": 30, "runtime": "namespace"})");
    EXPECT_EQ(s, json::parse(R"({
        "name": "web", "hostname": "web-host", "rootfs": "/srv/rootfs", "readonly": true,
        "process": {
            "args": ["/bin/sh", "-c", "echo hi"],
            "env": ["A=1", "MO_SPEC_OPT_CALLER=from caller"],
            "cwd": "/app",
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [10], "additionalGroups": ["audio"]},
            "init": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                        {"type": "RLIMIT_CORE", "soft": -1, "hard": -1}],
            "stdin": true, "terminal": true
        },
        "network": {"mode": "none"},
        "userns": {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                   "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
        "resources": {"limits": {"memory": 536870912, "cpu": 1500, "pids": 100}},
        "unapplied": ["--memory", "--cpus", "--pids-limit"],
        "stopTimeout": 30, "runtime": "namespace"})"));
}

TEST(SpecOptionsTest, NothingToApply) {
    json s = applied("{}");
    EXPECT_EQ(s, json::object());
    json spec = json(nullptr);
    applyOptions(spec, json(nullptr));
    EXPECT_EQ(spec, json::object());
    // keys that are not spec flags (--rm, --json, -f) belong to the dispatcher
    EXPECT_EQ(applied(R"({"rm": true, "json": true, "file": "x.yaml", "name": null})"),
              json::object());
    // empty Lua tables arrive as {} or []
    EXPECT_EQ(applied(R"({"env": {}, "ulimit": [], "command": {}, "group_add": {}})"),
              json::object());
}

TEST(SpecOptionsTest, RelativeRootfsIsMadeAbsolute) {
    EXPECT_EQ(applied(R"({"rootfs": "rootfs/../rootfs"})")["rootfs"],
              std::filesystem::current_path().string() + "/rootfs");
}

TEST(SpecOptionsTest, FlagsWinOverTheSpecFile) {
    json spec = parseVirtualRoot(R"(apiVersion: v1
kind: VirtualRoot
metadata: { name: from-file }
spec:
  hostname: file-host
  command: [/bin/server]
  args: [--flag]
  environment: [{ name: A, value: file }, { name: B, value: file }]
  security: { runAsUser: 5, runAsGroup: 5, supplementalGroups: [7], readOnlyRootFilesystem: true }
  networking: { mode: bridge }
  resources: { limits: { memory: 1Gi, cpu: 2 }, requests: { memory: 256Mi } }
  ulimits: [{ name: nofile, soft: 10 }]
  stopTimeout: 5
)",
                                 "t.yaml");
    applyOptions(spec, json::parse(R"({
        "name": "from-flag", "hostname": "flag-host", "command": ["/bin/sh"],
        "env": ["A=flag"], "user": "www", "read_only": false, "network": "host",
        "ulimit": ["nofile=20:30"], "memory": "512Mi", "stop_timeout": 1})"));
    EXPECT_EQ(spec["name"], "from-flag");
    EXPECT_EQ(spec["hostname"], "flag-host");
    EXPECT_EQ(spec["process"]["args"], json::parse(R"(["/bin/sh"])"));
    EXPECT_EQ(spec["process"]["env"], json::parse(R"(["A=flag", "B=file"])"));
    // --user replaces who the process runs as and keeps the extra groups
    EXPECT_EQ(spec["process"]["user"], json::parse(R"({"name": "www", "additionalGids": [7]})"));
    EXPECT_EQ(spec["readonly"], false);
    EXPECT_EQ(spec["network"], json::parse(R"({"mode": "host"})"));
    EXPECT_EQ(spec["process"]["rlimits"],
              json::parse(R"([{"type": "RLIMIT_NOFILE", "soft": 20, "hard": 30}])"));
    EXPECT_EQ(spec["resources"]["limits"], json::parse(R"({"memory": 536870912, "cpu": 2000})"));
    EXPECT_EQ(spec["stopTimeout"], 1);
    // the file's memory limit and bridge mode gave way to the flags
    EXPECT_EQ(spec["unapplied"], json::parse(R"(["spec.resources.limits.cpu",
        "spec.resources.requests.memory", "--memory"])"));
}

TEST(SpecOptionsTest, NetworkModes) {
    EXPECT_EQ(applied(R"({"network": "private"})")["network"],
              json::parse(R"({"mode": "private"})"));
    json s = applied(R"({"network": "bridge"})");
    EXPECT_EQ(s["network"], json::parse(R"({"mode": "private", "attach": "bridge"})"));
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--network=bridge"])"));
    applyOptions(s, json::parse(R"({"network": "custom-net"})"));
    EXPECT_EQ(s["network"], json::parse(R"({"mode": "private", "attach": "custom-net"})"));
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--network=custom-net"])"));
    applyOptions(s, json::parse(R"({"network": "host"})"));
    EXPECT_EQ(s["network"], json::parse(R"({"mode": "host"})"));
    EXPECT_EQ(s["unapplied"], json::array());
}

TEST(SpecOptionsTest, UserForms) {
    EXPECT_EQ(applied(R"({"user": "1000"})")["process"]["user"],
              json::parse(R"({"name": "1000"})"));
    EXPECT_EQ(applied(R"({"user": "www:staff"})")["process"]["user"],
              json::parse(R"({"name": "www:staff"})"));
    EXPECT_EQ(applied(R"({"group_add": ["5", "5", "wheel"]})")["process"]["user"],
              json::parse(R"({"additionalGids": [5], "additionalGroups": ["wheel"]})"));
    // a single string works for repeatable flags too
    EXPECT_EQ(applied(R"({"group_add": "7"})")["process"]["user"]["additionalGids"],
              json::parse("[7]"));
}

TEST(SpecOptionsTest, UsernsHostRemovesIt) {
    json s = applied(R"({"userns": "0:100000:65536"})");
    EXPECT_TRUE(s.contains("userns"));
    applyOptions(s, json::parse(R"({"userns": "host"})"));
    EXPECT_FALSE(s.contains("userns"));
}

TEST(SpecOptionsTest, RuntimeFlagOverridesTheFile) {
    // The container workflow picks the provider by this name (an absent one is an error).
    json s = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec: { runtime: krun }\n", "t");
    EXPECT_EQ(s["runtime"], "krun");
    EXPECT_FALSE(s.contains("unapplied"));
    applyOptions(s, json::parse(R"({"runtime": "namespace"})"));
    EXPECT_EQ(s["runtime"], "namespace");
}

TEST(SpecOptionsTest, VerifyFlagOverridesTheFile) {
    json s = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec: { verify: lazy }\n", "t");
    EXPECT_EQ(s["verify"], "lazy");
    applyOptions(s, json::parse(R"({"verify": "strict"})"));
    EXPECT_EQ(s["verify"], "strict");
    try {
        applyOptions(s, json::parse(R"({"verify": "sometimes"})"));
        FAIL() << "a bad mode was accepted";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "invalid --verify `sometimes`: expected `off`, `lazy` or `strict`");
    }
}

TEST(SpecOptionsTest, LimitsAcceptNumbers) {
    json s =
        applied(R"({"memory": 67108864, "cpus": 0.5, "pids_limit": "20", "stop_timeout": "0"})");
    EXPECT_EQ(s["resources"]["limits"],
              json::parse(R"({"memory": 67108864, "cpu": 500, "pids": 20})"));
    EXPECT_EQ(s["stopTimeout"], 0);
    applyOptions(s, json::parse(R"({"pids_limit": -1})"));
    EXPECT_EQ(s["resources"]["limits"], json::parse(R"({"memory": 67108864, "cpu": 500})"));
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--memory", "--cpus"])"));
}

class SpecEnvFileOptionTest : public ::testing::Test {
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

TEST_F(SpecEnvFileOptionTest, EnvFilesThenEnv) {
    std::string one = write("one", "A=1\nB=1\n");
    std::string two = write("two", "B=2\nC=2\n");
    json opts = {{"env_file", {one, two}}, {"env", {"C=3"}}};
    json spec = json::object();
    setEnv(spec, "A", "spec");
    applyOptions(spec, opts);
    EXPECT_EQ(spec["process"]["env"], json::parse(R"(["A=1", "B=2", "C=3"])"));
}

TEST_F(SpecEnvFileOptionTest, EnvFileErrors) {
    std::string bad = write("bad", "OK=1\nNOT OK=2\n");
    EXPECT_EQ(optionError(json({{"env_file", bad}}).dump()),
              "invalid --env-file " + bad +
                  ":2: `NOT OK=2`: the variable name contains whitespace");
    EXPECT_EQ(optionError(json({{"env_file", _dir + "/missing"}}).dump()),
              "invalid --env-file `" + _dir + "/missing`: No such file or directory");
}

TEST(SpecOptionsTest, RefusesBadFlags) {
    EXPECT_EQ(optionError(R"({"ulimit": ["nofile=abc"]})"),
              "invalid --ulimit `nofile=abc`: expected NAME=SOFT[:HARD]");
    EXPECT_EQ(optionError(R"({"ulimit": "nofile=2:1"})"),
              "invalid --ulimit `nofile=2:1`: the soft limit is above the hard limit");
    EXPECT_NE(optionError(R"({"ulimit": "nofle=1"})")
                  .find("invalid --ulimit `nofle=1`: unknown resource `nofle`"),
              std::string::npos);
    EXPECT_EQ(optionError(R"({"user": "x:y:z"})"),
              "invalid --user `x:y:z`: expected UID[:GID] or NAME[:GROUP]");
    EXPECT_EQ(optionError(R"({"user": "4294967295"})"),
              "invalid --user `4294967295`: `4294967295` is out of range (0 to 4294967294)");
    EXPECT_EQ(optionError(R"({"group_add": ["a b"]})"),
              "invalid --group-add `a b`: expected a GID or a group name");
    EXPECT_EQ(optionError(R"({"group_add": ["4294967295"]})"),
              "invalid --group-add `4294967295`: out of range (0 to 4294967294)");
    EXPECT_EQ(optionError(R"({"memory": "4Gx"})"), "invalid --memory `4Gx`: not a quantity");
    EXPECT_EQ(optionError(R"({"memory": "512m"})"),
              "invalid --memory `512m`: not a quantity of bytes (`m` means milli; did you mean "
              "`512Mi`?)");
    EXPECT_EQ(optionError(R"({"memory": "1Mi"})"),
              "invalid --memory `1Mi`: below the minimum `4Mi`");
    EXPECT_EQ(optionError(R"({"memory": "2Pi"})"),
              "invalid --memory `2Pi`: above the maximum `1Pi`");
    EXPECT_EQ(optionError(R"({"cpus": "-1"})"), "invalid --cpus `-1`: negative");
    EXPECT_EQ(optionError(R"({"cpus": "0"})"), "invalid --cpus `0`: below the minimum `1m`");
    EXPECT_EQ(
        optionError(R"({"cpus": "lots"})"),
        "invalid --cpus `lots`: not a CPU quantity (cores such as `1.5` or millicores such as "
        "`500m`)");
    EXPECT_EQ(optionError(R"({"cpus": "10000"})"),
              "invalid --cpus `10000`: above the maximum 4096");
    EXPECT_EQ(optionError(R"({"pids_limit": 0})"),
              "invalid --pids-limit `0`: expected 1 to 4194304, or -1 for no limit");
    EXPECT_EQ(optionError(R"({"pids_limit": "ten"})"),
              "invalid --pids-limit `ten`: expected 1 to 4194304, or -1 for no limit");
    EXPECT_EQ(optionError(R"({"pids_limit": 1.5})"),
              "invalid --pids-limit `1.5`: expected 1 to 4194304, or -1 for no limit");
    EXPECT_EQ(optionError(R"({"stop_timeout": -1})"),
              "invalid --stop-timeout `-1`: expected seconds from 0 to 86400");
    EXPECT_EQ(optionError(R"({"network": "a b"})"),
              "invalid --network `a b`: expected host, none, private, bridge or a network name");
    EXPECT_EQ(optionError(R"({"userns": "1:2:3:4"})"),
              "invalid --userns `1:2:3:4`: expected HOSTID:SIZE or CONTAINERID:HOSTID:SIZE");
    EXPECT_EQ(optionError(R"({"userns": "100000:0"})"),
              "invalid --userns `100000:0`: the size must be at least 1");
    EXPECT_EQ(optionError(R"({"workdir": "app"})"),
              "invalid --workdir `app`: not an absolute path");
    EXPECT_EQ(
        optionError(R"({"name": "a/b"})"),
        "invalid --name `a/b`: expected 1 to 128 letters, digits, `_`, `.`, `-`, starting with a "
        "letter or digit");
    EXPECT_EQ(optionError(R"({"hostname": "-h"})"),
              "invalid --hostname `-h`: expected 1 to 64 letters, digits, `-`, `_`, `.`");
    EXPECT_EQ(optionError(R"({"env": ["=x"]})"), "invalid --env `=x`: the variable name is empty");
    EXPECT_EQ(optionError(R"({"runtime": "a b"})"),
              "invalid --runtime `a b`: expected a runtime name such as `namespace` or `krun`");
}

TEST(SpecOptionsTest, RefusesWrongTypes) {
    EXPECT_EQ(optionError(R"({"env": 5})"),
              "invalid --env: expected a string or a list of strings");
    EXPECT_EQ(optionError(R"({"env": [5]})"),
              "invalid --env: expected a string or a list of strings");
    EXPECT_EQ(optionError(R"({"name": 5})"), "invalid --name: expected a string");
    EXPECT_EQ(optionError(R"({"tty": "yes"})"), "invalid --tty: expected true or false");
    EXPECT_EQ(optionError(R"({"memory": true})"), "invalid --memory: expected a number");
    EXPECT_EQ(optionError(R"({"command": "/bin/sh"})"),
              "invalid --command: expected a list of strings");
    EXPECT_EQ(optionError(R"({"rootfs": ""})"), "invalid --rootfs: expected a directory");
    EXPECT_EQ(errorOf([] {
                  json spec = json::array();
                  applyOptions(spec, json::object());
              }),
              "spec: expected an object");
    EXPECT_EQ(errorOf([] {
                  json spec = json::object();
                  applyOptions(spec, json::array());
              }),
              "options: expected an object");
}

TEST(SpecOptionsTest, RefusesInvalidUtf8) {
    json opts = {{"hostname", "a\xff"}};
    EXPECT_EQ(errorOf([&] {
                  json spec = json::object();
                  applyOptions(spec, opts);
              }),
              "invalid --hostname: expected UTF-8 text");
    ::setenv("MO_SPEC_OPT_BINARY", "\xff", 1);
    EXPECT_EQ(
        optionError(R"({"env": ["MO_SPEC_OPT_BINARY"]})"),
        "invalid --env `MO_SPEC_OPT_BINARY`: the value in the environment is not valid UTF-8");
}

TEST(SpecOptionsTest, MemoryBelowTheRequest) {
    json spec = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\n"
                                 "spec: { resources: { requests: { memory: 1Gi } } }\n",
                                 "t.yaml");
    EXPECT_EQ(optionError(R"({"memory": "512Mi"})", spec),
              "invalid --memory `512Mi`: below the request spec.resources.requests.memory "
              "(1073741824)");
}

} // namespace

TEST(SpecOptionsTest, CgroupRequestFlags) {
    json s = applied(R"({"memory": "64Mi", "memory_reservation": "16Mi", "cpu_shares": 512,
                         "cpuset_cpus": "0-1,3"})");
    EXPECT_EQ(s["resources"]["requests"]["memory"], 16 * 1024 * 1024);
    EXPECT_EQ(s["resources"]["requests"]["cpu"], 500); // 512 of 1024 shares: half a CPU
    EXPECT_EQ(s["resources"]["cpuset"], "0-1,3");
    auto refused = [](const char *opts) {
        try {
            applied(opts);
        } catch (const mobileops::core::Error &e) {
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_EQ(refused(R"({"cpuset_cpus": "3-1"})"),
              "invalid --cpuset-cpus `3-1`: expected a CPU list such as `0-3,6`");
    EXPECT_EQ(refused(R"({"cpu_shares": 1})"), "invalid --cpu-shares `1`: expected 2 to 262144");
    EXPECT_EQ(refused(R"({"memory": "16Mi", "memory_reservation": "32Mi"})"),
              "invalid --memory-reservation `32Mi`: above the limit spec.resources.limits.memory "
              "(16777216)");
}

namespace {

// Any block device of this machine, for the device throttle flags.
std::string someBlockDevice(unsigned *major = nullptr, unsigned *minor = nullptr) {
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator("/dev", ec)) {
        struct stat st {};
        if (::stat(entry.path().c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
            if (major) *major = ::major(st.st_rdev);
            if (minor) *minor = ::minor(st.st_rdev);
            return entry.path().string();
        }
    }
    return {};
}

} // namespace

TEST(SpecOptionsTest, SwapSwappinessAndBlkioWeight) {
    json s = applied(R"({"memory": "64Mi", "memory_swap": "128Mi", "memory_swappiness": 0,
                         "blkio_weight": "500"})");
    EXPECT_EQ(s["resources"]["memorySwap"], 128 * 1024 * 1024);
    EXPECT_EQ(s["resources"]["memorySwappiness"], 0);
    EXPECT_EQ(s["resources"]["blkioWeight"], 500);
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--memory", "--memory-swap",
                                              "--memory-swappiness", "--blkio-weight"])"));
    EXPECT_EQ(applied(R"({"memory": "64Mi", "memory_swap": -1})")["resources"]["memorySwap"], -1);
    // the memory limit may come from the spec file
    json spec = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\n"
                                 "spec: { resources: { limits: { memory: 64Mi } } }\n",
                                 "app.yaml");
    EXPECT_EQ(applied(R"({"memory_swap": "1Gi"})", spec)["resources"]["memorySwap"], 1 << 30);

    EXPECT_EQ(optionError(R"({"memory_swap": "128Mi"})"),
              "invalid --memory-swap `128Mi`: needs a memory limit (--memory) as well");
    EXPECT_EQ(optionError(R"({"memory": "64Mi", "memory_swap": "32Mi"})"),
              "invalid --memory-swap `32Mi`: below the memory limit (67108864); --memory-swap is "
              "memory plus swap, or -1 for unlimited swap");
    EXPECT_EQ(optionError(R"({"memory": "64Mi", "memory_swap": "lots"})"),
              "invalid --memory-swap `lots`: not a quantity");
    EXPECT_EQ(optionError(R"({"memory_swappiness": 101})"),
              "invalid --memory-swappiness `101`: expected 0 to 100");
    EXPECT_EQ(optionError(R"({"blkio_weight": 5})"),
              "invalid --blkio-weight `5`: expected 10 to 1000");
    EXPECT_EQ(optionError(R"({"blkio_weight": 1001})"),
              "invalid --blkio-weight `1001`: expected 10 to 1000");
}

TEST(SpecOptionsTest, DeviceThrottleFlags) {
    unsigned major = 0, minor = 0;
    std::string dev = someBlockDevice(&major, &minor);
    if (dev.empty()) GTEST_SKIP() << "no block device in /dev";
    json s = applied(json({{"device_read_bps", {dev + ":1mb"}},
                           {"device_write_bps", dev + ":10MiB"},
                           {"device_read_iops", {dev + ":100", dev + ":200"}},
                           {"device_write_iops", {dev + ":50"}}})
                         .dump());
    json expected = {{{"device", dev},
                      {"major", major},
                      {"minor", minor},
                      {"readBps", 1048576},
                      {"writeBps", 10485760},
                      {"readIops", 200},
                      {"writeIops", 50}}};
    EXPECT_EQ(s["resources"]["deviceThrottle"], expected);
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--device-read-bps", "--device-write-bps",
                                              "--device-read-iops", "--device-write-iops"])"));
    auto bps = [&](const std::string &rate) {
        return applied(json({{"device_read_bps", dev + ":" + rate}})
                           .dump())["resources"]["deviceThrottle"][0]["readBps"]
            .get<std::uint64_t>();
    };
    EXPECT_EQ(bps("4096"), 4096u);
    EXPECT_EQ(bps("512k"), 512u * 1024);
    EXPECT_EQ(bps("1.5KB"), 1536u);
    EXPECT_EQ(bps("2g"), 2ull << 30);
    EXPECT_EQ(bps("3Mi"), 3u << 20);

    auto error = [](const std::string &key, const std::string &value) {
        return optionError(json({{key, value}}).dump());
    };
    EXPECT_EQ(error("device_read_bps", "/dev/null:1mb"),
              "invalid --device-read-bps `/dev/null:1mb`: `/dev/null` is not a block device");
    EXPECT_EQ(error("device_write_bps", "/dev/nope-nothing:1mb"),
              "invalid --device-write-bps `/dev/nope-nothing:1mb`: `/dev/nope-nothing`: No such "
              "file or directory");
    EXPECT_EQ(error("device_read_bps", dev), "invalid --device-read-bps `" + dev +
                                                 "`: expected DEVICE:RATE such as `/dev/vda:1mb`");
    EXPECT_EQ(error("device_read_bps", dev + ":fast"),
              "invalid --device-read-bps `" + dev +
                  ":fast`: `fast` is not a rate in bytes such as `1mb` or `10MiB`");
    EXPECT_EQ(error("device_read_iops", dev + ":1.5"),
              "invalid --device-read-iops `" + dev +
                  ":1.5`: `1.5` is not a positive number of operations");
    EXPECT_EQ(error("device_read_bps", "vda:1mb"),
              "invalid --device-read-bps `vda:1mb`: `vda` is not an absolute path");
}

TEST(SpecOptionsTest, VolumeFlagForms) {
    json s = applied(R"({"volume": ["/srv/data:/data", "/srv/ro:/ro/:ro", "/a:/b:rw,Z,rshared",
                                    "/c:/d:bind,nosuid,nodev,noexec,z"]})");
    EXPECT_EQ(s["mounts"], json::parse(R"([
        {"destination": "/data", "source": "/srv/data", "type": "bind", "options": ["rbind"]},
        {"destination": "/ro", "source": "/srv/ro", "type": "bind", "options": ["rbind", "ro"]},
        {"destination": "/b", "source": "/a", "type": "bind", "options": ["rbind", "rshared"]},
        {"destination": "/d", "source": "/c", "type": "bind",
         "options": ["bind", "nosuid", "nodev", "noexec"]}])"));
    // One string, a relative host path (from the current directory).
    s = applied(R"({"volume": "./here:/x"})");
    EXPECT_EQ(s["mounts"][0]["source"], (std::filesystem::current_path() / "here").string());
    // A flag replaces a spec file's mount of the same destination.
    json base = {{"mounts", {{{"destination", "/data"}, {"source", "/old"}, {"type", "bind"}}}}};
    s = applied(R"({"volume": ["/new:/data"]})", base);
    ASSERT_EQ(s["mounts"].size(), 1u);
    EXPECT_EQ(s["mounts"][0]["source"], "/new");
}

TEST(SpecOptionsTest, VolumeFlagErrors) {
    auto error = [](const std::string &value) {
        return optionError(json({{"volume", value}}).dump());
    };
    EXPECT_EQ(error("/srv"), "invalid --volume `/srv`: expected HOST:CONTAINER[:OPTIONS] or "
                             "NAME:CONTAINER[:ro] such as `/srv/data:/data:ro`");
    EXPECT_EQ(error("/a:/b:ro:x"),
              "invalid --volume `/a:/b:ro:x`: expected HOST:CONTAINER[:OPTIONS] "
              "or NAME:CONTAINER[:ro] such as `/srv/data:/data:ro`");
    EXPECT_EQ(error("/a:"), "invalid --volume `/a:`: expected HOST:CONTAINER[:OPTIONS] or "
                            "NAME:CONTAINER[:ro] such as `/srv/data:/data:ro`");
    EXPECT_EQ(error("/a:/b:"), "invalid --volume `/a:/b:`: expected HOST:CONTAINER[:OPTIONS] "
                               "or NAME:CONTAINER[:ro] such as `/srv/data:/data:ro`");
    EXPECT_EQ(error("/a:data"), "invalid --volume `/a:data`: `data` is not an absolute path");
    EXPECT_EQ(error("/a:/x/../etc"), "invalid --volume `/a:/x/../etc`: `/x/../etc` contains `..`");
    EXPECT_EQ(error("/a:/.."), "invalid --volume `/a:/..`: `/..` contains `..`");
    EXPECT_EQ(error("/a:/"), "invalid --volume `/a:/`: cannot mount over the container's root");
    EXPECT_EQ(error("/a:/b:ro,rw"), "invalid --volume `/a:/b:ro,rw`: `ro` and `rw` together");
    EXPECT_EQ(error("/a:/b:shared,slave"),
              "invalid --volume `/a:/b:shared,slave`: more than one propagation option");
    EXPECT_EQ(error("/a:/b:fast"),
              "invalid --volume `/a:/b:fast`: unknown option `fast` (known: ro, rw, z, Z, bind, "
              "rbind, private, rprivate, shared, rshared, slave, rslave, nosuid, nodev, noexec)");
    EXPECT_EQ(error("a/b:/b"), "invalid --volume `a/b:/b`: `a/b` is neither a volume name "
                               "([a-zA-Z0-9][a-zA-Z0-9_.-]*) nor a host path (absolute, or "
                               "starting with `./` or `../`)");
    EXPECT_EQ(error("-x:/b"), "invalid --volume `-x:/b`: `-x` is neither a volume name "
                              "([a-zA-Z0-9][a-zA-Z0-9_.-]*) nor a host path (absolute, or "
                              "starting with `./` or `../`)");
    EXPECT_EQ(error("data:/b:nosuid"), "invalid --volume `data:/b:nosuid`: option `nosuid` is "
                                       "for host paths; a named volume takes `ro`, `rw`, `z`, "
                                       "`Z`");
    EXPECT_EQ(error("data:rel"), "invalid --volume `data:rel`: `rel` is not an absolute path");
    EXPECT_EQ(optionError(R"({"volume": ["/a:/b", "/c:/b/"]})"),
              "invalid --volume `/c:/b/`: `/b` is already mounted by `/a:/b`");
    json many = json::array();
    for (int i = 0; i < 65; ++i) many.push_back("/a:/v" + std::to_string(i));
    EXPECT_EQ(optionError(json({{"volume", many}}).dump()),
              "invalid --volume `/a:/v64`: 65 bind mounts, at most 64 per container");
    many.erase(many.size() - 1);
    EXPECT_EQ(applied(json({{"volume", many}}).dump())["mounts"].size(), 64u);
}

TEST(SpecOptionsTest, NamedVolumesAndEphemeralStorage) {
    json s = applied(R"({"volume": ["shared:/app/shared", "db.data_1:/var/lib/db/:ro,Z",
                                    "/srv:/srv"], "ephemeral_storage": "64Mi"})");
    EXPECT_EQ(s["volumes"], json::parse(R"([
        {"name": "shared", "type": "volume", "source": "shared", "containerPath": "/app/shared",
         "readOnly": false},
        {"name": "db.data_1", "type": "volume", "source": "db.data_1",
         "containerPath": "/var/lib/db", "readOnly": true},
        {"name": "ephemeral", "type": "emptyDir", "sizeLimit": 67108864,
         "containerPath": "/scratch", "readOnly": false}])"));
    EXPECT_EQ(s["mounts"].size(), 1u);
    // accepted, and listed until the storage service mounts them
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--volume=shared:/app/shared",
        "--volume=db.data_1:/var/lib/db/:ro,Z", "--ephemeral-storage"])"));

    // A flag replaces a spec file's mount or volume of the same destination.
    json base = {
        {"mounts", {{{"destination", "/data"}, {"source", "/old"}, {"type", "bind"}}}},
        {"volumes",
         {{{"name", "old"}, {"type", "volume"}, {"source", "old"}, {"containerPath", "/v"}},
          {{"name", "tmp"}, {"type", "emptyDir"}, {"containerPath", "/scratch"}}}}};
    s = applied(R"({"volume": ["data:/data", "/host:/v"], "ephemeral_storage": "1Gi"})", base);
    EXPECT_EQ(s["mounts"], json::parse(R"([{"destination": "/v", "source": "/host",
                                          "type": "bind", "options": ["rbind"]}])"));
    EXPECT_EQ(s["volumes"], json::parse(R"([
        {"name": "data", "type": "volume", "source": "data", "containerPath": "/data",
         "readOnly": false},
        {"name": "ephemeral", "type": "emptyDir", "sizeLimit": 1073741824,
         "containerPath": "/scratch", "readOnly": false}])"));

    EXPECT_EQ(optionError(R"({"volume": ["a:/x", "/b:/x"]})"),
              "invalid --volume `/b:/x`: `/x` is already mounted by `a:/x`");
    EXPECT_EQ(optionError(R"({"volume": ["a:/scratch"], "ephemeral_storage": "1Gi"})"),
              "invalid --ephemeral-storage `1Gi`: `/scratch` is already mounted by `a:/scratch`");
    EXPECT_EQ(optionError(R"({"ephemeral_storage": "5Gx"})"),
              "invalid --ephemeral-storage `5Gx`: not a quantity");
    EXPECT_EQ(optionError(R"({"ephemeral_storage": "1Ki"})"),
              "invalid --ephemeral-storage `1Ki`: below the minimum `1Mi`");
    json many = json::array();
    for (int i = 0; i < 64; ++i)
        many.push_back("v" + std::to_string(i) + ":/v" + std::to_string(i));
    EXPECT_EQ(optionError(json({{"volume", many}, {"ephemeral_storage", "1Gi"}}).dump()),
              "invalid --volume `v63:/v63`: 65 bind mounts, at most 64 per container");
}

TEST(SpecOptionsTest, DiskLimit) {
    json s = applied(R"({"disk_limit": "2Gi"})");
    EXPECT_EQ(s["resources"]["limits"]["storage"], 2147483648);
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--disk-limit"])"));
    // the flag replaces the file's limit and its unapplied entry
    json base = {{"resources", {{"limits", {{"storage", 1 << 30}}}}},
                 {"unapplied", {"spec.resources.limits.storage"}}};
    s = applied(R"({"disk_limit": 4194304})", base);
    EXPECT_EQ(s["resources"]["limits"]["storage"], 4194304);
    EXPECT_EQ(s["unapplied"], json::parse(R"(["--disk-limit"])"));
    EXPECT_EQ(optionError(R"({"disk_limit": "lots"})"),
              "invalid --disk-limit `lots`: not a quantity");
    EXPECT_EQ(optionError(R"({"disk_limit": "100Ki"})"),
              "invalid --disk-limit `100Ki`: below the minimum `1Mi`");
    EXPECT_EQ(optionError(R"({"disk_limit": "9Pi"})"),
              "invalid --disk-limit `9Pi`: above the maximum `8Pi`");
}

TEST(SpecOptionsTest, ImageOrRootfs) {
    json file = {{"image", "busybox"}, {"rootfs", "/from/file"}};
    json s = applied(R"({"image": "alpine:3.20"})", file);
    EXPECT_EQ(s, json::parse(R"({"image": "alpine:3.20"})"));
    // a directory replaces the file's image: the container does not run it
    s = applied(R"({"rootfs": "/srv/root"})",
                {{"image", "busybox"}, {"imageId", "sha256:x"}, {"imageConfig", json::object()}});
    EXPECT_EQ(s, json::parse(R"({"rootfs": "/srv/root"})"));
    s = applied(R"({"rootfs_img": "/r.img"})", {{"image", "busybox"}});
    EXPECT_EQ(s, json::parse(R"({"rootfsImage": "/r.img"})"));
    s = applied(R"({"image": "busybox"})", {{"rootfsImage", "/r.img"}});
    EXPECT_EQ(s, json::parse(R"({"image": "busybox"})"));
    EXPECT_EQ(optionError(R"({"image": "busybox", "rootfs": "/r"})"),
              "give a ROOTFS directory or an IMAGE, not both");
    EXPECT_EQ(optionError(R"({"image": "busybox", "rootfs_img": "/r.img"})"),
              "give an IMAGE or --rootfs-img, not both");
    EXPECT_EQ(optionError(R"({"image": "bad name"})"),
              "invalid image reference `bad name`: expected a name such as `busybox:latest` or "
              "an image id");
    // CMD replaces a file's command (the Entrypoint replacement) and args
    s = applied(R"({"command": ["echo", "hi"]})",
                {{"process", {{"command", {"/bin/server"}}, {"args", {"-v"}}}}});
    EXPECT_EQ(s["process"], json::parse(R"({"args": ["echo", "hi"]})"));
}

TEST(SpecOptionsTest, SoftMountsVolatileAndRootfsImage) {
    json s = applied(R"({"soft_mounts": true, "volatile": true, "rootfs_img": "/img/root.img"})",
                     {{"rootfs", "/from/file"}});
    EXPECT_EQ(s, json::parse(R"({"softMounts": true, "volatile": true,
                                 "rootfsImage": "/img/root.img"})"));
    s = applied(R"({"rootfs": "/dir"})", {{"rootfsImage", "/from/file.img"}});
    EXPECT_EQ(s, json::parse(R"({"rootfs": "/dir"})"));
    EXPECT_EQ(optionError(R"({"rootfs": "/dir", "rootfs_img": "/x.img"})"),
              "give a ROOTFS directory or --rootfs-img, not both");
    EXPECT_EQ(optionError(R"({"volatile": "yes"})"), "invalid --volatile: expected true or false");
}

TEST(SpecOptionsTest, InitSystemAndHardwareAccess) {
    EXPECT_EQ(applied(R"({"init_system": true, "hw_access": true})"),
              json::parse(R"({"initSystem": true, "hardwareAccess": true})"));
    EXPECT_EQ(applied(R"({"init_system": false})", {{"initSystem", true}}),
              json::parse(R"({"initSystem": false})"));
    EXPECT_EQ(optionError(R"({"hw_access": "yes"})"),
              "invalid --hw-access: expected true or false");

    // Finalized: /sbin/init when no command is given, container=mobileops, and systemd's
    // halt signal SIGRTMIN+3 unless the spec names one.
    const std::string rootfs = ::testing::TempDir();
    json s = applied(R"({"init_system": true})", {{"rootfs", rootfs}});
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/sbin/init"])"));
    EXPECT_EQ(s["process"]["env"].back(), "container=mobileops");
    EXPECT_EQ(s["stopSignal"], SIGRTMIN + 3);
    EXPECT_EQ(s["stopSignal"], 37) << "glibc on Linux: SIGRTMIN is 34";
    s = applied(R"({"init_system": true, "command": ["/lib/systemd/systemd", "--log-level=debug"],
                    "env": ["container=lxc"]})",
                {{"rootfs", rootfs}, {"stopSignal", 10}});
    finalize(s);
    EXPECT_EQ(s["process"]["args"][0], "/lib/systemd/systemd");
    EXPECT_EQ(s["process"]["env"],
              json::parse(R"(["PATH=)" + std::string(kDefaultPath) + R"(", "container=lxc"])"));
    EXPECT_EQ(s["stopSignal"], 10);
    s = applied(R"({"init_system": true, "init": true})", {{"rootfs", rootfs}});
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "process.init: the built-in init (--init) cannot run an init system "
              "(--init-system): the init system is PID 1");
    // Without it nothing changes: no command is still an error, SIGTERM stops.
    s = applied(R"({"hw_access": true})", {{"rootfs", rootfs}});
    EXPECT_EQ(errorOf([&] { finalize(s); }), "no command given and the image has none");
    s = applied(R"({"command": ["/bin/sh"]})", {{"rootfs", rootfs}});
    finalize(s);
    EXPECT_EQ(s["stopSignal"], 15);
    EXPECT_FALSE(s.contains("initSystem"));
}

TEST(SpecOptionsTest, SecurityFlags) {
    json s = applied(R"({"cap_add": ["net_admin", "CAP_SYS_TIME", "NET_ADMIN"],
                         "cap_drop": ["all"],
                         "security_opt": ["no-new-privileges=false", "seccomp=unconfined"]})");
    EXPECT_EQ(s["security"], json::parse(R"({
        "capabilities": {"add": ["CAP_NET_ADMIN", "CAP_SYS_TIME"], "drop": ["ALL"]},
        "noNewPrivileges": false, "seccomp": {"mode": "unconfined"}})"));
    // docker's older `:` form; flags add to what a spec file says
    s = applied(R"({"security_opt": ["no-new-privileges:true"], "cap_add": ["chown"],
                    "privileged": true})",
                {{"security", {{"capabilities", {{"add", {"CAP_KILL"}}}}}}});
    EXPECT_EQ(s["security"], json::parse(R"({
        "capabilities": {"add": ["CAP_KILL", "CAP_CHOWN"]}, "noNewPrivileges": true,
        "privileged": true})"));
    EXPECT_FALSE(applied(R"({"privileged": false})")["security"]["privileged"]);
}

TEST(SpecOptionsTest, SeccompProfileFileIsCarriedInTheSpec) {
    const std::string dir =
        std::filesystem::path(::testing::TempDir() + "/seccomp-opt").lexically_normal().string();
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/p.json") << R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []})";
    json s = applied(R"({"security_opt": ["seccomp=)" + dir + R"(/./p.json"]})");
    EXPECT_EQ(s["security"]["seccomp"],
              json({{"mode", "profile"},
                    {"profile", {{"defaultAction", "SCMP_ACT_ERRNO"}, {"syscalls", json::array()}}},
                    {"source", dir + "/p.json"}}));
    std::ofstream(dir + "/bad.json") << "{ defaultAction";
    EXPECT_EQ(optionError(R"({"security_opt": ["seccomp=)" + dir + R"(/bad.json"]})"),
              "invalid --security-opt `seccomp=" + dir + "/bad.json`: `" + dir +
                  "/bad.json` is not a JSON seccomp profile");
    EXPECT_EQ(optionError(R"({"security_opt": ["seccomp=)" + dir + R"(/none.json"]})"),
              "invalid --security-opt `seccomp=" + dir + "/none.json`: `" + dir +
                  "/none.json`: No such file or directory");
    std::filesystem::remove_all(dir);
}

TEST(SpecOptionsTest, RefusesBadSecurityFlags) {
    EXPECT_EQ(optionError(R"({"cap_add": ["CAP_FLY"]})"),
              "invalid --cap-add `CAP_FLY`: not a capability");
    EXPECT_EQ(optionError(R"({"cap_drop": ["chwon"]})"),
              "invalid --cap-drop `chwon`: not a capability");
    EXPECT_EQ(optionError(R"({"security_opt": ["apparmor=unconfined"]})"),
              "invalid --security-opt `apparmor=unconfined`: expected `seccomp=unconfined`, "
              "`seccomp=PROFILE.json` or `no-new-privileges[=true|false]`");
    EXPECT_EQ(optionError(R"({"security_opt": ["no-new-privileges=maybe"]})"),
              "invalid --security-opt `no-new-privileges=maybe`: expected "
              "`no-new-privileges[=true|false]`");
    EXPECT_EQ(optionError(R"({"security_opt": ["seccomp"]})"),
              "invalid --security-opt `seccomp`: expected `seccomp=unconfined`, "
              "`seccomp=PROFILE.json` or `no-new-privileges[=true|false]`");
    EXPECT_EQ(optionError(R"({"privileged": "yes"})"),
              "invalid --privileged: expected true or false");
}

TEST(SpecOptionsTest, LogRetention) {
    EXPECT_EQ(applied(R"({"log_max_size": "10Mi", "log_max_age": "7d"})"),
              json::parse(R"({"logging": {"maxSize": 10485760, "maxAge": 604800}})"));
    EXPECT_EQ(applied(R"({"log_max_size": 65536})")["logging"]["maxSize"], 65536);
    EXPECT_EQ(applied(R"({"log_max_age": "1h30m"})")["logging"]["maxAge"], 5400);
    // not given: no logging block (the log service's configured defaults apply)
    EXPECT_FALSE(applied(R"({"log_max_size": null})").contains("logging"));
    // retention is the log service's: nothing for the not-applied list
    EXPECT_FALSE(applied(R"({"log_max_size": "1Gi"})").contains("unapplied"));

    EXPECT_EQ(optionError(R"({"log_max_size": "lots"})"),
              "invalid --log-max-size `lots`: not a quantity");
    EXPECT_EQ(optionError(R"({"log_max_size": "1Ki"})"),
              "invalid --log-max-size `1Ki`: below the minimum `64Ki`");
    EXPECT_EQ(optionError(R"({"log_max_size": "2Ti"})"),
              "invalid --log-max-size `2Ti`: above the maximum `1Ti`");
    EXPECT_EQ(optionError(R"({"log_max_size": true})"),
              "invalid --log-max-size: expected a number");
    EXPECT_EQ(optionError(R"({"log_max_age": "7x"})"),
              "invalid --log-max-age `7x`: not a duration such as `7d` or `1h30m` (whole "
              "numbers with units w, d, h, m, s, largest first)");
    EXPECT_EQ(optionError(R"({"log_max_age": 3600})"),
              "invalid --log-max-age `3600`: not a duration such as `7d` or `1h30m` (whole "
              "numbers with units w, d, h, m, s, largest first)");
    EXPECT_EQ(optionError(R"({"log_max_age": "0m"})"),
              "invalid --log-max-age `0m`: below the minimum `1s`");
    EXPECT_EQ(optionError(R"({"log_max_age": "3651d"})"),
              "invalid --log-max-age `3651d`: above the maximum `3650d`");
}

TEST(SpecOptionsTest, LogRetentionFlagsWinOverTheSpecFile) {
    json spec = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n"
                                 "  logging: { maxSize: 10Mi, maxAge: 7d }\n",
                                 "t.yaml");
    // each flag replaces its own field and leaves the other as the file set it
    json s = applied(R"({"log_max_age": "12h"})", spec);
    EXPECT_EQ(s["logging"], json::parse(R"({"maxSize": 10485760, "maxAge": 43200})"));
    s = applied(R"({"log_max_size": "1Gi"})", spec);
    EXPECT_EQ(s["logging"], json::parse(R"({"maxSize": 1073741824, "maxAge": 604800})"));
    s = applied(R"({"log_max_size": "64Ki", "log_max_age": "1s"})", spec);
    EXPECT_EQ(s["logging"], json::parse(R"({"maxSize": 65536, "maxAge": 1})"));
    // a bad flag is refused even when the file's value is good
    EXPECT_EQ(optionError(R"({"log_max_age": "1w1w"})", spec),
              "invalid --log-max-age `1w1w`: not a duration such as `7d` or `1h30m` (whole "
              "numbers with units w, d, h, m, s, largest first)");
}

TEST(SpecOptionsTest, PublishPutsThePortsOnTheBridge) {
    json s = applied(R"({"publish": ["8080:80", "127.0.0.1:5353:53/udp", "[::1]:8443:443/tcp"]})");
    EXPECT_EQ(s["network"]["attach"], "bridge");
    ASSERT_EQ(s["network"]["ports"].size(), 3u);
    EXPECT_EQ(s["network"]["ports"][0],
              json::parse(R"({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"})"));
    EXPECT_EQ(s["network"]["ports"][1]["hostIP"], "127.0.0.1");
    EXPECT_EQ(s["network"]["ports"][1]["protocol"], "udp");
    EXPECT_EQ(s["network"]["ports"][2]["hostIP"], "::1");
    EXPECT_EQ(s["unapplied"], json::array({"--publish"}));
    // A named network stays; ports go with it.
    s = applied(R"({"network": "n1", "publish": ["80:80"]})");
    EXPECT_EQ(s["network"]["attach"], "n1");

    EXPECT_EQ(optionError(R"({"publish": ["80"]})"),
              "invalid --publish `80`: expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp]");
    EXPECT_EQ(optionError(R"({"publish": ["0:80"]})"),
              "invalid --publish `0:80`: host port `0` is not a port (1 to 65535)");
    EXPECT_EQ(optionError(R"({"publish": ["80:70000"]})"),
              "invalid --publish `80:70000`: container port `70000` is not a port (1 to 65535)");
    EXPECT_EQ(optionError(R"({"publish": ["80:80/sctp"]})"),
              "invalid --publish `80:80/sctp`: protocol `sctp` is not tcp or udp");
    EXPECT_EQ(optionError(R"({"publish": ["999.1.1.1:80:80"]})"),
              "invalid --publish `999.1.1.1:80:80`: `999.1.1.1` is not an IP address");
    EXPECT_EQ(optionError(R"({"publish": ["80:80", "80:81"]})"),
              "invalid --publish `80:81`: host port 80/tcp is published twice");
    EXPECT_EQ(optionError(R"({"network": "host", "publish": ["80:80"]})"),
              "invalid --publish `80:80`: needs a bridge network, not --network host");
}
