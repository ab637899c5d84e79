// The config.json converter (core/src/OciSpec.cpp): what maps where, and hostile or absurd
// input refused naming the JSON path. No privilege needed.
#include "mobileops/core/OciSpec.h"
#include "mobileops/core/Error.h"

#include <gtest/gtest.h>

#include <string>

namespace {

using json = nlohmann::json;
using mobileops::core::Error;
using mobileops::core::spec::fromOci;
using mobileops::core::spec::fromOciResources;

// What podman 4.3 writes for `podman run --memory 64m --pids-limit 50 busybox echo hi`,
// trimmed to the interesting parts.
json podmanConfig() {
    return json::parse(R"({
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0, "umask": 18, "additionalGids": [10]},
    "args": ["echo", "hi"],
    "env": ["PATH=/usr/bin:/bin", "TERM=xterm", "HOSTNAME=abc"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"],
      "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"],
      "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576},
                {"type": "RLIMIT_CORE", "hard": 18446744073709551615, "soft": 18446744073709551615}],
    "oomScoreAdj": 0
  },
  "root": {"path": "/var/lib/containers/storage/vfs/dir/abc"},
  "hostname": "abc",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/etc/hosts", "type": "bind", "source": "/run/containers/abc/hosts", "options": ["bind", "rprivate"]},
    {"destination": "/dev/shm", "type": "bind", "source": "/run/containers/abc/shm", "options": ["bind", "rprivate", "nosuid", "noexec", "nodev"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rprivate", "nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "annotations": {"io.container.manager": "libpod"},
  "linux": {
    "sysctl": {"net.ipv4.ping_group_range": "0 0"},
    "resources": {
      "devices": [{"allow": false, "access": "rwm"}],
      "memory": {"limit": 67108864, "swap": 134217728},
      "pids": {"limit": 50},
      "cpu": {"quota": 50000, "period": 100000, "shares": 512}
    },
    "cgroupsPath": "/libpod_parent/libpod-abc",
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
    "maskedPaths": ["/proc/acpi", "/proc/kcore"],
    "readonlyPaths": ["/proc/sys"]
  }
})");
}

// The message of the error converting `config`, or "" when it converts.
std::string failure(const json &config, const std::string &bundle = "/b") {
    try {
        fromOci(config, bundle);
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

json minimal() {
    return json::parse(R"({"ociVersion": "1.1.0", "root": {"path": "rootfs"},
        "process": {"args": ["sh"], "cwd": "/"},
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "network"}]}})");
}

TEST(OciSpec, PodmanConfigMapsOntoTheRuntimeSpec) {
    json s = fromOci(podmanConfig(), "/bundles/abc");
    EXPECT_EQ(s["rootfs"], "/var/lib/containers/storage/vfs/dir/abc");
    EXPECT_EQ(s["oci"]["bundle"], "/bundles/abc");
    EXPECT_EQ(s["hostname"], "abc");
    EXPECT_EQ(s["process"]["args"], json::array({"echo", "hi"}));
    EXPECT_EQ(s["process"]["user"]["additionalGids"], json::array({10}));
    EXPECT_EQ(s["process"]["umask"], 18);
    EXPECT_EQ(s["process"]["oomScoreAdj"], 0);
    // 2^64-1 is RLIM_INFINITY
    EXPECT_EQ(s["process"]["rlimits"][1],
              json({{"type", "RLIMIT_CORE"}, {"soft", -1}, {"hard", -1}}));
    EXPECT_EQ(s["resources"]["limits"]["memory"], 67108864);
    EXPECT_EQ(s["resources"]["memorySwap"], 134217728);
    EXPECT_EQ(s["resources"]["limits"]["pids"], 50);
    EXPECT_EQ(s["resources"]["limits"]["cpu"], 500);
    EXPECT_EQ(s["resources"]["requests"]["cpu"], 500);
    EXPECT_EQ(s["cgroupsPath"], "/libpod_parent/libpod-abc");
    EXPECT_EQ(s["sysctl"]["net.ipv4.ping_group_range"], "0 0");
    EXPECT_EQ(s["maskedPaths"], json::array({"/proc/acpi", "/proc/kcore"}));
    EXPECT_EQ(s["security"]["seccomp"]["mode"], "profile");
    EXPECT_EQ(s["security"]["seccomp"]["profile"]["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_EQ(s["security"]["noNewPrivileges"], false);
    EXPECT_EQ(s["security"]["capabilities"]["bounding"],
              json::array({"CAP_CHOWN", "CAP_KILL", "CAP_SETUID"}));
    EXPECT_FALSE(s["security"]["capabilities"].contains("ambient"));
    EXPECT_EQ(s["annotations"]["io.container.manager"], "libpod");
    EXPECT_FALSE(s.contains("network")) << "own network namespace: the default, private";
    // the standard mounts are the runtime's; the rest are kept, engine-only options dropped
    ASSERT_EQ(s["mounts"].size(), 3u) << s["mounts"].dump();
    EXPECT_EQ(s["mounts"][0]["destination"], "/etc/hosts");
    EXPECT_EQ(s["mounts"][0]["type"], "bind");
    EXPECT_EQ(s["mounts"][1]["destination"], "/dev/shm");
    EXPECT_EQ(s["mounts"][2], json({{"destination", "/tmp"},
                                    {"type", "tmpfs"},
                                    {"source", "tmpfs"},
                                    {"options", {"rw", "rprivate", "nosuid", "nodev"}}}));
}

TEST(OciSpec, CgroupMountOnSysFsCgroupIsApplied) {
    // podman's: read-only
    json s = fromOci(podmanConfig(), "/b");
    EXPECT_EQ(s["cgroupMount"], "ro");
    EXPECT_EQ(s.value("unapplied", json::array()).dump().find("cgroup"), std::string::npos)
        << s["unapplied"].dump();
    // none in config.json: none in the container, as runc
    EXPECT_EQ(fromOci(minimal(), "/b")["cgroupMount"], "none");
    auto withOptions = [](json options) {
        json c = minimal();
        c["mounts"] = json::array({{{"destination", "/sys/fs/cgroup"},
                                    {"type", "cgroup2"},
                                    {"source", "cgroup"},
                                    {"options", options}}});
        return fromOci(c, "/b");
    };
    EXPECT_EQ(withOptions({"nosuid", "rw"})["cgroupMount"], "rw");
    EXPECT_EQ(withOptions({"rw", "ro"})["cgroupMount"], "ro");
    EXPECT_EQ(withOptions({"nosuid"})["cgroupMount"], "ro") << "read-only unless `rw`";
    EXPECT_FALSE(withOptions({"rw"}).contains("mounts")) << "not a spec mount";
}

TEST(OciSpec, RootIsRelativeToTheBundle) {
    json s = fromOci(minimal(), "/srv/bundle/");
    EXPECT_EQ(s["rootfs"], "/srv/bundle/rootfs");
    EXPECT_EQ(s["oci"]["bundle"], "/srv/bundle");
}

TEST(OciSpec, NoNetworkNamespaceIsTheHostsNetwork) {
    json c = minimal();
    c["linux"]["namespaces"] = json::array({{{"type", "mount"}}});
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["network"]["mode"], "host");
    EXPECT_EQ(s["namespaces"], json({{"pid", false}, {"ipc", false}, {"uts", false}}));
    EXPECT_FALSE(s.contains("unapplied")) << s["unapplied"].dump();
}

// podman --pid host, --ipc host, --uts host: config.json leaves the namespace out.
TEST(OciSpec, NamespacesLeftOutAreTheCallers) {
    json s = fromOci(minimal(), "/b");
    EXPECT_EQ(s["namespaces"], json({{"ipc", false}, {"uts", false}})) << s.dump();
    EXPECT_FALSE(s.contains("network"));
    json all = fromOci(podmanConfig(), "/b");
    EXPECT_FALSE(all.contains("namespaces")) << "every namespace given: the runtime's default";
}

TEST(OciSpec, NamespacePathsAreJoined) {
    json c = minimal();
    c["linux"]["namespaces"][2]["path"] = "/run/netns/x";
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["namespacePaths"]["network"], "/run/netns/x");
}

TEST(OciSpec, UserNamespaceWithMappings) {
    json c = minimal();
    c["linux"]["namespaces"].push_back({{"type", "user"}});
    c["linux"]["uidMappings"] =
        json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["userns"]["uidMappings"][0]["hostID"], 100000);
    c["linux"]["namespaces"].erase(3);
    EXPECT_NE(failure(c).find("linux.uidMappings: id mappings need a `user` namespace"),
              std::string::npos)
        << failure(c);
}

TEST(OciSpec, KrunHandlerAnnotationPicksTheKrunRuntime) {
    json c = minimal();
    c["annotations"] = {{"run.oci.handler", "krun"}};
    EXPECT_EQ(fromOci(c, "/b")["runtime"], "krun");
    c["annotations"]["run.oci.handler"] = "wasm";
    EXPECT_NE(failure(c).find("annotations.run.oci.handler: `wasm`"), std::string::npos);
}

TEST(OciSpec, UnknownPropertiesAreListedNotDropped) {
    json c = minimal();
    c["linux"]["intelRdt"] = {{"closID", "x"}};
    c["process"]["apparmorProfile"] = "docker-default";
    c["someFutureKey"] = 1;
    json s = fromOci(c, "/b");
    std::string u = s["unapplied"].dump();
    EXPECT_NE(u.find("linux.intelRdt"), std::string::npos) << u;
    EXPECT_NE(u.find("process.apparmorProfile"), std::string::npos) << u;
    EXPECT_NE(u.find("someFutureKey"), std::string::npos) << u;
}

TEST(OciSpec, CapabilitySetsPassAsGiven) {
    json c = minimal();
    c["process"]["user"] = {{"uid", 1000}, {"gid", 1000}};
    c["process"]["capabilities"] = {{"bounding", {"CAP_CHOWN", "CAP_SYS_ADMIN"}},
                                    {"effective", json::array()}};
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["security"]["capabilities"],
              json({{"bounding", {"CAP_CHOWN", "CAP_SYS_ADMIN"}}, {"effective", json::array()}}));
}

TEST(OciSpec, AmbientOutsidePermittedAndInheritableIsDroppedAndListed) {
    json c = minimal();
    c["process"]["capabilities"] = {{"bounding", {"CAP_KILL", "CAP_CHOWN"}},
                                    {"permitted", {"CAP_KILL", "CAP_CHOWN"}},
                                    {"inheritable", {"CAP_CHOWN"}},
                                    {"ambient", {"CAP_KILL", "CAP_CHOWN"}}};
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["security"]["capabilities"]["ambient"], json::array({"CAP_CHOWN"}));
    EXPECT_NE(s["unapplied"].dump().find("process.capabilities.ambient CAP_KILL"),
              std::string::npos);
}

TEST(OciSpec, UpdateResources) {
    json r = fromOciResources(
        json::parse(R"({"memory": {"limit": 33554432}, "cpu": {"shares": 1024}})"));
    EXPECT_EQ(r["limits"]["memory"], 33554432);
    EXPECT_EQ(r["requests"]["cpu"], 1000);
    try {
        fromOciResources(json::parse(R"({"memory": {"limit": 5}})"));
        FAIL() << "a 5-byte memory limit was accepted";
    } catch (const Error &e) {
        EXPECT_NE(std::string(e.what()).find("resources.memory.limit: `5` is below"),
                  std::string::npos)
            << e.what();
    }
}

TEST(OciSpec, DeviceRulesGoToTheCgroupService) {
    json c = minimal();
    c["linux"]["resources"]["devices"] = json::parse(R"([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"},
        {"allow": true, "type": "b", "major": 7, "minor": null},
        {"allow": true, "type": "c", "major": -1, "minor": -1, "access": "m"}])");
    json s = fromOci(c, "/b");
    EXPECT_EQ(s["resources"]["devices"], json::parse(R"([
        {"allow": false, "type": "a", "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 237, "access": "rw"},
        {"allow": true, "type": "b", "major": 7, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"}])"));
    EXPECT_EQ(s.value("unapplied", json::array()).dump().find("devices"), std::string::npos)
        << s["unapplied"].dump();
    // allow-all is applied too (nothing left unapplied)
    c["linux"]["resources"]["devices"] = json::parse(R"([{"allow": true, "access": "rwm"}])");
    s = fromOci(c, "/b");
    EXPECT_EQ(s["resources"]["devices"][0]["allow"], true);
    EXPECT_EQ(s.value("unapplied", json::array()).dump().find("devices"), std::string::npos);
    // updates leave device rules alone (fixed at create, as runc)
    EXPECT_FALSE(
        fromOciResources(json::parse(R"({"devices": [{"allow": true}]})")).contains("devices"));
}

// --- refused, naming the path ------------------------------------------------------------

struct Bad {
    const char *name;
    const char *patch; // JSON merge patch on minimal()
    const char *expect;
};

class OciSpecRefuses : public ::testing::TestWithParam<Bad> {};

TEST_P(OciSpecRefuses, NamingThePath) {
    json c = minimal();
    c.merge_patch(json::parse(GetParam().patch));
    std::string m = failure(c);
    EXPECT_NE(m.find(GetParam().expect), std::string::npos) << "message: " << m;
}

const Bad kBad[] = {
    {"OtherMajorVersion", R"({"ociVersion": "2.0.0"})",
     "ociVersion: `2.0.0`: this runtime reads version 1"},
    {"NoVersion", R"({"ociVersion": null})", "ociVersion: required field is missing"},
    {"GarbageVersion", R"({"ociVersion": "x"})", "ociVersion: `x` is not a version"},
    {"NoRoot", R"({"root": null})", "root: required field is missing"},
    {"NoArgs", R"({"process": {"args": []}})", "process.args: no command given"},
    {"RelativeCwd", R"({"process": {"cwd": "tmp"}})", "process.cwd: `tmp` is not an absolute path"},
    {"EnvWithoutEquals", R"({"process": {"env": ["A=1", "B"]}})",
     "process.env[1]: `B` is not NAME=VALUE"},
    {"UidTooBig", R"({"process": {"user": {"uid": 4294967295}}})",
     "process.user.uid: `4294967295` is above the maximum"},
    {"NegativeGid", R"({"process": {"user": {"gid": -1}}})",
     "process.user.gid: `-1` is below the minimum"},
    {"UmaskTooBig", R"({"process": {"user": {"umask": 4096}}})", "process.user.umask"},
    {"UnknownRlimit", R"({"process": {"rlimits": [{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]}})",
     "process.rlimits[0].type"},
    {"SoftAboveHard",
     R"({"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 1}]}})",
     "process.rlimits[0]: the soft limit is above the hard limit"},
    {"UnknownCapabilitySet", R"({"process": {"capabilities": {"all": []}}})",
     "process.capabilities.all: unknown capability set"},
    {"UnknownCapability", R"({"process": {"capabilities": {"bounding": ["CAP_PWN"]}}})",
     "process.capabilities.bounding[0]: `CAP_PWN` is not a capability"},
    {"OomScoreAdj", R"({"process": {"oomScoreAdj": 5000}})",
     "process.oomScoreAdj: `5000` is above the maximum 1000"},
    {"BadHostname", R"({"hostname": "a/b"})", "hostname: `a/b` is not a valid hostname"},
    {"HostnameWithoutUtsNamespace", R"({"hostname": "web"})",
     "hostname: setting a hostname needs the container's own `uts` namespace"},
    {"UnknownNamespace", R"({"linux": {"namespaces": [{"type": "mount"}, {"type": "bogus"}]}})",
     "linux.namespaces[1].type: `bogus` is not a namespace type"},
    {"TimeNamespace", R"({"linux": {"namespaces": [{"type": "mount"}, {"type": "time"}]}})",
     "linux.namespaces[1].type: a time namespace is not supported"},
    {"DuplicateNamespace", R"({"linux": {"namespaces": [{"type": "mount"}, {"type": "mount"}]}})",
     "linux.namespaces[1].type: `mount` is given twice"},
    {"NoMountNamespace", R"({"linux": {"namespaces": [{"type": "pid"}]}})",
     "linux.namespaces: no `mount` namespace"},
    {"NamespacePathWithDotDot",
     R"({"linux": {"namespaces": [{"type": "mount"}, {"type": "network", "path": "/run/netns/../../proc/1/ns/net"}]}})",
     "linux.namespaces[1].path: `/run/netns/../../proc/1/ns/net` contains `..`"},
    {"JoinMountNamespace",
     R"({"linux": {"namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]}})",
     "joining a `mount` namespace by path is not supported"},
    {"MemoryNegative", R"({"linux": {"resources": {"memory": {"limit": -7}}}})",
     "linux.resources.memory.limit: `-7` is below the minimum -1"},
    {"MemoryTiny", R"({"linux": {"resources": {"memory": {"limit": 1000}}}})",
     "linux.resources.memory.limit: `1000` is below the minimum"},
    {"MemoryAbsurd", R"({"linux": {"resources": {"memory": {"limit": 9223372036854775807}}}})",
     "linux.resources.memory.limit: `9223372036854775807` is above the maximum 1Pi"},
    {"MemoryAsString", R"({"linux": {"resources": {"memory": {"limit": "64m"}}}})",
     "linux.resources.memory.limit: expected an integer, not a string"},
    {"SwapBelowMemory",
     R"({"linux": {"resources": {"memory": {"limit": 67108864, "swap": 8388608}}}})",
     "linux.resources.memory.swap: is below the memory limit"},
    {"PidsAbsurd", R"({"linux": {"resources": {"pids": {"limit": 99999999}}}})",
     "linux.resources.pids.limit: `99999999` is above the maximum"},
    {"CpuPeriodTiny", R"({"linux": {"resources": {"cpu": {"period": 10, "quota": 5}}}})",
     "linux.resources.cpu.period: `10` is below the minimum 1000"},
    {"CpusetGarbage", R"({"linux": {"resources": {"cpu": {"cpus": "0-x"}}}})",
     "linux.resources.cpu.cpus: `0-x` is not a CPU list"},
    {"BlkioWeight", R"({"linux": {"resources": {"blockIO": {"weight": 5000}}}})",
     "linux.resources.blockIO.weight: `5000` is above the maximum 1000"},
    {"DeviceRuleAccess",
     R"({"linux": {"resources": {"devices": [{"allow": true, "access": "rwx"}]}}})",
     "linux.resources.devices[0].access: `rwx`"},
    {"DeviceRuleType", R"({"linux": {"resources": {"devices": [{"allow": true, "type": "u"}]}}})",
     "linux.resources.devices[0].type: `u` is not a device type (a, c, b)"},
    {"DeviceRuleMajor",
     R"({"linux": {"resources": {"devices": [{"allow": true, "major": 4294967296}]}}})",
     "linux.resources.devices[0].major: `4294967296` is above the maximum"},
    {"DeviceRuleNoAllow", R"({"linux": {"resources": {"devices": [{"access": "r"}]}}})",
     "linux.resources.devices[0].allow: required field is missing"},
    {"DeviceRuleUnknown",
     R"({"linux": {"resources": {"devices": [{"allow": true, "path": "/dev/sda"}]}}})",
     "linux.resources.devices[0].path: unknown field"},
    {"CgroupsPathEscape", R"({"linux": {"cgroupsPath": "/../../sys/fs/cgroup"}})",
     "linux.cgroupsPath: `/../../sys/fs/cgroup` contains `..`"},
    {"HostSysctl", R"({"linux": {"sysctl": {"kernel.core_pattern": "|/tmp/x"}}})",
     "linux.sysctl.kernel.core_pattern: not a sysctl of the container's own namespaces"},
    {"SysctlPathTrick", R"({"linux": {"sysctl": {"net/../kernel/core_pattern": "x"}}})",
     "is not a sysctl name"},
    {"NetSysctlOnHostNetwork",
     R"({"linux": {"namespaces": [{"type": "mount"}], "sysctl": {"net.ipv4.ip_forward": "1"}}})",
     "linux.sysctl.net.ipv4.ip_forward: not a sysctl of the container's own namespaces"},
    {"MaskedRelative", R"({"linux": {"maskedPaths": ["proc/kcore"]}})",
     "linux.maskedPaths[0]: `proc/kcore` is not an absolute path"},
    {"ReadonlyDotDot", R"({"linux": {"readonlyPaths": ["/proc/../etc"]}})",
     "linux.readonlyPaths[0]: `/proc/../etc` contains `..`"},
    {"DeviceOutsideDev",
     R"({"linux": {"devices": [{"path": "/etc/sda", "type": "b", "major": 8, "minor": 0}]}})",
     "linux.devices[0].path: `/etc/sda` is not below /dev"},
    {"DeviceDotDot",
     R"({"linux": {"devices": [{"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}]}})",
     "linux.devices[0].path: `/dev/../etc/x` contains `..`"},
    {"DeviceType",
     R"({"linux": {"devices": [{"path": "/dev/x", "type": "z", "major": 1, "minor": 3}]}})",
     "linux.devices[0].type: `z` is not a device type"},
    {"SeccompNotify",
     R"({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"}}})",
     "linux.seccomp.listenerPath: seccomp notification agents are not supported"},
    {"HookRelative", R"({"hooks": {"prestart": [{"path": "hook.sh"}]}})",
     "hooks.prestart[0].path: `hook.sh` is not an absolute path"},
    {"HookTimeout", R"({"hooks": {"poststop": [{"path": "/bin/true", "timeout": 0}]}})",
     "hooks.poststop[0].timeout: `0` is below the minimum 1"},
    {"MountDestRelative",
     R"({"mounts": [{"destination": "data", "type": "bind", "source": "/srv"}]})",
     "mounts[0].destination: `data` is not an absolute path"},
    {"MountDestDotDot",
     R"({"mounts": [{"destination": "/data/../../etc", "type": "bind", "source": "/srv"}]})",
     "mounts[0].destination: `/data/../../etc` contains `..`"},
    {"MountOnRoot", R"({"mounts": [{"destination": "/", "type": "bind", "source": "/"}]})",
     "mounts[0].destination: `/` is the root itself"},
    {"MountUnderProc",
     R"({"mounts": [{"destination": "/proc/sys/kernel", "type": "bind", "source": "/tmp"}]})",
     "mounts[0].destination: `/proc/sys/kernel` is below /proc"},
    {"MountUnderSys",
     R"({"mounts": [{"destination": "/sys/kernel/security", "type": "tmpfs", "source": "tmpfs"}]})",
     "is below /sys"},
    {"BindOverProc", R"({"mounts": [{"destination": "/proc", "type": "bind", "source": "/proc"}]})",
     "mounts[0].type: a `bind` mount on `/proc`"},
    {"BindHostDev",
     R"({"mounts": [{"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}]})",
     "mounts[0].type: a `bind` mount on `/dev`"},
    {"BindSourceProcSelf",
     R"({"mounts": [{"destination": "/host", "type": "bind", "source": "/proc/self/root"}]})",
     "mounts[0].source: `/proc/self/root` is below /proc"},
    {"BindSourceDotDot",
     R"({"mounts": [{"destination": "/x", "type": "bind", "source": "../../etc"}]})",
     "mounts[0].source: `../../etc` contains `..`"},
    {"ProcElsewhere",
     R"({"mounts": [{"destination": "/hostproc", "type": "proc", "source": "proc"}]})",
     "mounts[0].type: `proc` is not supported here"},
    {"UnknownFsType",
     R"({"mounts": [{"destination": "/x", "type": "ext4", "source": "/dev/sda1"}]})",
     "mounts[0].type: `ext4` is not supported here"},
    {"MountOptionInjection",
     R"({"mounts": [{"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m,lowerdir=/"]}]})",
     "mounts[0].options[0]: `size=1m,lowerdir=/` has a bad value"},
    {"MountOptionUnknown",
     R"({"mounts": [{"destination": "/x", "type": "bind", "source": "/srv", "options": ["bind", "idmap"]}]})",
     "mounts[0].options[1]: `idmap` is not a mount option"},
    {"IdMappedMount",
     R"({"mounts": [{"destination": "/x", "type": "bind", "source": "/srv", "uidMappings": []}]})",
     "mounts[0].uidMappings: id-mapped mounts are not supported"},
    {"NulInArg", R"({"process": {"args": ["sh\u0000-c"]}})",
     "process.args[0]: contains a NUL byte"},
    {"WrongType", R"({"process": {"terminal": "yes"}})",
     "process.terminal: expected true or false, not a string"},
};

INSTANTIATE_TEST_SUITE_P(Hostile, OciSpecRefuses, ::testing::ValuesIn(kBad),
                         [](const auto &info) { return std::string(info.param.name); });

TEST(OciSpec, RelativeBundleRefused) {
    EXPECT_NE(failure(minimal(), "bundle").find("bundle `bundle` is not an absolute path"),
              std::string::npos);
}

TEST(OciSpec, TopLevelMustBeAnObject) {
    EXPECT_NE(failure(json::array()).find("(top level): expected an object"), std::string::npos);
}

} // namespace
