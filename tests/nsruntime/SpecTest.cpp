// Spec parsing and validation: users, ulimits, names, bad input messages.
#include "Spec.h"
#include "Runtime.h"
#include "State.h"

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

using namespace mobileops::nsruntime;
using nlohmann::json;

namespace {

const char *kPasswd = "root:x:0:0:root:/root:/bin/sh\n"
                      "user:x:1000:1000:user:/home/user:/bin/sh\n"
                      "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const char *kGroup = "root:x:0:\nusers:x:100:user,other\nwheel:x:10:user\nuser:x:1000:\n";

std::string errorOf(const std::function<void()> &fn) {
    try {
        fn();
    } catch (const Error &e) {
        return e.what();
    }
    return "(no error)";
}

json minimal() { return {{"rootfs", "/r"}, {"process", {{"args", {"/bin/true"}}}}}; }

} // namespace

TEST(User, NumericUidWithoutEntryGetsGidZero) {
    User u = parseUser("4242", kPasswd, kGroup);
    EXPECT_EQ(u.uid, 4242u);
    EXPECT_EQ(u.gid, 0u);
    EXPECT_TRUE(u.additionalGids.empty());
}

TEST(User, NameResolvesUidGidHomeAndGroups) {
    User u = parseUser("user", kPasswd, kGroup);
    EXPECT_EQ(u.uid, 1000u);
    EXPECT_EQ(u.gid, 1000u);
    EXPECT_EQ(u.home, "/home/user");
    EXPECT_EQ(u.additionalGids, (std::vector<gid_t>{100, 10}));
}

TEST(User, NumericUidWithEntryUsesItsGid) {
    User u = parseUser("1000", kPasswd, kGroup);
    EXPECT_EQ(u.gid, 1000u);
}

TEST(User, ExplicitGroupByNameOrNumber) {
    EXPECT_EQ(parseUser("user:users", kPasswd, kGroup).gid, 100u);
    EXPECT_EQ(parseUser("1000:4000", kPasswd, kGroup).gid, 4000u);
    EXPECT_EQ(parseUser("nobody:wheel", kPasswd, kGroup).gid, 10u);
}

TEST(User, BadUsersAreNamed) {
    EXPECT_EQ(errorOf([] { parseUser("bob", kPasswd, kGroup); }),
              "user `bob`: no such user in the container's /etc/passwd");
    EXPECT_EQ(errorOf([] { parseUser("user:nogrp", kPasswd, kGroup); }),
              "group `nogrp`: no such group in the container's /etc/group");
    EXPECT_EQ(errorOf([] { parseUser("1000:", kPasswd, kGroup); }),
              "user `1000:`: expected UID[:GID] or NAME[:GROUP]");
    EXPECT_EQ(errorOf([] { parseUser("", kPasswd, kGroup); }), "user: must not be empty");
}

TEST(Ulimit, Parse) {
    Rlimit l = parseUlimit("nofile=1024");
    EXPECT_EQ(l.resource, RLIMIT_NOFILE);
    EXPECT_EQ(l.soft, 1024u);
    EXPECT_EQ(l.hard, 1024u);
    l = parseUlimit("nproc=10:20");
    EXPECT_EQ(l.resource, RLIMIT_NPROC);
    EXPECT_EQ(l.soft, 10u);
    EXPECT_EQ(l.hard, 20u);
    EXPECT_EQ(parseUlimit("core=unlimited").hard, RLIM_INFINITY);
}

TEST(Ulimit, BadValuesAreNamed) {
    EXPECT_EQ(errorOf([] { parseUlimit("nofile"); }), "ulimit `nofile`: expected NAME=SOFT[:HARD]");
    EXPECT_EQ(errorOf([] { parseUlimit("files=1"); }), "ulimit `files=1`: unknown limit `files`");
    EXPECT_EQ(errorOf([] { parseUlimit("nofile=ten"); }),
              "ulimit `nofile=ten`: `ten` is not a number");
    EXPECT_EQ(errorOf([] { parseUlimit("nofile=20:10"); }),
              "ulimit `nofile=20:10`: the soft limit exceeds the hard limit");
}

TEST(Ulimit, AboveTheHostHardLimitIsRefused) {
    struct rlimit cur;
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &cur), 0);
    if (cur.rlim_max == RLIM_INFINITY) GTEST_SKIP() << "no hard nofile limit on this host";
    std::string caps;
    Rlimit l{RLIMIT_NOFILE, "nofile", cur.rlim_max + 10000, cur.rlim_max + 10000};
    std::string message = errorOf([&] { checkRlimit(l); });
    if (message == "(no error)")
        GTEST_SKIP() << "this process may raise hard limits (CAP_SYS_RESOURCE)";
    EXPECT_EQ(message, "ulimit `nofile=" + std::to_string(l.soft) + "`: exceeds the hard limit " +
                           std::to_string(cur.rlim_max) + " of this host");
    Rlimit ok{RLIMIT_NOFILE, "nofile", 64, 64};
    EXPECT_NO_THROW(checkRlimit(ok));
}

TEST(Spec, Minimal) {
    ContainerSpec s = parseSpec(minimal());
    EXPECT_EQ(s.rootfs, "/r");
    EXPECT_EQ(s.process.args, std::vector<std::string>{"/bin/true"});
    EXPECT_EQ(s.process.cwd, "/");
    EXPECT_TRUE(s.namespaces.pid && s.namespaces.network && s.namespaces.cgroup);
    EXPECT_FALSE(s.userns());
    EXPECT_EQ(s.networkMode, "private");
    ASSERT_EQ(s.process.env.size(), 1u);
    EXPECT_EQ(s.process.env[0].rfind("PATH=", 0), 0u);
}

TEST(Spec, Full) {
    json j = minimal();
    j["process"]["user"] = {{"uid", 1000}, {"gid", 100}, {"additionalGids", {10}}};
    j["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 100}, {"hard", 200}}};
    j["userns"] = {{"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}};
    j["network"] = {{"mode", "host"}};
    j["mounts"] = {
        {{"destination", "/d"}, {"source", "/s"}, {"type", "bind"}, {"options", {"ro"}}}};
    j["security"] = {{"allowPrivilegeEscalation", false}, {"readOnlyRootFilesystem", true}};
    ContainerSpec s = parseSpec(j);
    EXPECT_EQ(s.process.user.uid, 1000u);
    EXPECT_EQ(s.process.user.additionalGids, std::vector<gid_t>{10});
    ASSERT_EQ(s.process.rlimits.size(), 1u);
    EXPECT_EQ(s.process.rlimits[0].name, "nofile");
    EXPECT_TRUE(s.userns());
    EXPECT_EQ(s.gidMappings.size(), 1u) << "gid mappings default to the uid mappings";
    EXPECT_FALSE(s.namespaces.network);
    EXPECT_TRUE(s.process.noNewPrivileges);
    EXPECT_TRUE(s.readonly);
    ASSERT_EQ(s.mounts.size(), 1u);
}

// The core writes "unlimited" as -1 (it survives Lua numbers); 2^64-1 means the same.
TEST(Spec, UnlimitedRlimits) {
    json j = minimal();
    j["process"]["rlimits"] = {{{"type", "RLIMIT_CORE"}, {"soft", -1}, {"hard", -1}},
                               {{"type", "RLIMIT_STACK"}, {"soft", UINT64_MAX}},
                               {{"type", "RLIMIT_NOFILE"}, {"soft", 1024}, {"hard", -1}}};
    ContainerSpec s = parseSpec(j);
    ASSERT_EQ(s.process.rlimits.size(), 3u);
    EXPECT_EQ(s.process.rlimits[0].soft, RLIM_INFINITY);
    EXPECT_EQ(s.process.rlimits[0].hard, RLIM_INFINITY);
    EXPECT_EQ(s.process.rlimits[1].soft, RLIM_INFINITY);
    EXPECT_EQ(s.process.rlimits[1].hard, RLIM_INFINITY) << "the hard limit defaults to the soft";
    EXPECT_EQ(s.process.rlimits[2].soft, 1024u);
    EXPECT_EQ(s.process.rlimits[2].hard, RLIM_INFINITY);
    // As the core sends it: parsed from text.
    s = parseSpec(json::parse(R"({"rootfs": "/r", "process": {"args": ["/bin/true"],
        "rlimits": [{"type": "RLIMIT_CORE", "soft": -1, "hard": 18446744073709551615}]}})"));
    EXPECT_EQ(s.process.rlimits[0].soft, RLIM_INFINITY);
    EXPECT_EQ(s.process.rlimits[0].hard, RLIM_INFINITY);

    for (json bad : {json(-2), json(1.5), json("unlimited")}) {
        j["process"]["rlimits"] = {{{"type", "RLIMIT_CORE"}, {"soft", bad}}};
        EXPECT_EQ(errorOf([&] { parseSpec(j); }),
                  "process.rlimits[0].soft: expected a non-negative integer, or -1 for unlimited")
            << bad;
    }
}

namespace {

// A directory with etc/passwd and etc/group, as prepareProcess reads them from a rootfs.
struct FakeRootfs {
    std::string path;
    FakeRootfs() {
        char tmpl[] = "/tmp/nsruntime-spec-XXXXXX";
        path = ::mkdtemp(tmpl) ? tmpl : "";
        std::filesystem::create_directories(path + "/etc");
        std::ofstream(path + "/etc/passwd") << kPasswd;
        std::ofstream(path + "/etc/group") << kGroup << "audio:x:29:\n";
    }
    ~FakeRootfs() { std::filesystem::remove_all(path); }
};

ProcessSpec prepared(const json &user, const std::string &rootfs) {
    ProcessSpec p = parseProcess({{"args", {"/bin/true"}}, {"user", user}}, {});
    prepareProcess(p, rootfs);
    return p;
}

} // namespace

// What the core sends for `--user NAME[:GROUP] --group-add ...`: the user's own groups
// from /etc/group come first, then the spec's gids and named groups.
TEST(User, NamedUserKeepsAdditionalGidsAndGroups) {
    FakeRootfs root;
    ProcessSpec p = prepared(
        {{"name", "user"}, {"additionalGids", {4242, 10}}, {"additionalGroups", {"audio"}}},
        root.path);
    EXPECT_EQ(p.user.uid, 1000u);
    EXPECT_EQ(p.user.gid, 1000u);
    EXPECT_EQ(p.user.home, "/home/user");
    EXPECT_EQ(p.user.additionalGids, (std::vector<gid_t>{100, 10, 4242, 29}));
    EXPECT_FALSE(p.userName);
    EXPECT_TRUE(p.additionalGroups.empty());

    p = prepared({{"name", "user:users"}, {"additionalGroups", {"wheel"}}}, root.path);
    EXPECT_EQ(p.user.gid, 100u);
    EXPECT_EQ(p.user.additionalGids, (std::vector<gid_t>{100, 10}));

    // A lone uid as a name, and numeric ids with named groups.
    p = prepared({{"name", "1000"}, {"additionalGids", {7}}}, root.path);
    EXPECT_EQ(p.user.uid, 1000u);
    EXPECT_EQ(p.user.gid, 1000u);
    EXPECT_EQ(p.user.additionalGids, (std::vector<gid_t>{100, 10, 7}));
    p = prepared({{"uid", 4242}, {"gid", 4321}, {"additionalGroups", {"audio", "users"}}},
                 root.path);
    EXPECT_EQ(p.user.uid, 4242u);
    EXPECT_EQ(p.user.gid, 4321u);
    EXPECT_EQ(p.user.additionalGids, (std::vector<gid_t>{29, 100}));
}

TEST(User, UnknownAdditionalGroupIsNamed) {
    FakeRootfs root;
    EXPECT_EQ(errorOf([&] {
                  prepared({{"name", "user"}, {"additionalGroups", {"nosuch"}}}, root.path);
              }),
              "group `nosuch` not found in the container's /etc/group");
    EXPECT_EQ(errorOf([&] {
                  prepared({{"uid", 0}, {"additionalGroups", {"nosuch"}}}, root.path);
              }),
              "group `nosuch` not found in the container's /etc/group");
    EXPECT_EQ(errorOf([&] {
                  prepared({{"uid", 0}, {"additionalGroups", {1}}}, root.path);
              }),
              "process.user.additionalGroups: expected an array of strings");
}

TEST(Spec, BadInputIsNamed) {
    auto bad = [](const std::function<void(json &)> &edit) {
        json j = minimal();
        edit(j);
        return errorOf([&] { parseSpec(j); });
    };
    EXPECT_EQ(bad([](json &j) { j.erase("rootfs"); }), "rootfs: no root filesystem given");
    EXPECT_EQ(bad([](json &j) { j["rootfs"] = "rel"; }), "rootfs `rel` is not an absolute path");
    EXPECT_EQ(bad([](json &j) { j["process"]["args"] = json::array(); }),
              "process.args: no command given");
    EXPECT_EQ(bad([](json &j) { j["process"]["env"] = {"NOVALUE"}; }),
              "process.env: `NOVALUE` is not NAME=VALUE");
    EXPECT_EQ(bad([](json &j) { j["process"]["cwd"] = "tmp"; }),
              "process.cwd: `tmp` is not an absolute path");
    EXPECT_EQ(bad([](json &j) {
                  j["network"] = {{"mode", "bridge"}};
              }),
              "network.mode: `bridge` is not one of private, host, none");
    EXPECT_EQ(bad([](json &j) {
                  j["process"]["rlimits"] = {{{"type", "RLIMIT_FOO"}, {"soft", 1}}};
              }),
              "process.rlimits[0].type: unknown limit `RLIMIT_FOO`");
    EXPECT_EQ(bad([](json &j) {
                  j["namespaces"] = {{"user", true}};
              }),
              "namespaces.user: a user namespace needs userns.uidMappings");
    EXPECT_EQ(bad([](json &j) {
                  j["mounts"] = {{{"destination", "d"}, {"source", "/s"}}};
              }),
              "mounts[0].destination: `d` is not an absolute path");
    EXPECT_EQ(bad([](json &j) { j["readonly"] = "yes"; }), "readonly: expected true or false");
}

TEST(Spec, RootfsMustExistAndBeADirectory) {
    json j = minimal();
    j["rootfs"] = "/nonexistent-rootfs";
    ContainerSpec s = parseSpec(j);
    EXPECT_EQ(errorOf([&] { prepareSpec(s); }),
              "rootfs `/nonexistent-rootfs`: No such file or directory");
    j["rootfs"] = "/etc/passwd";
    s = parseSpec(j);
    EXPECT_EQ(errorOf([&] { prepareSpec(s); }), "rootfs `/etc/passwd` is not a directory");
}

TEST(Spec, ContainerNames) {
    EXPECT_NO_THROW(checkName("web"));
    EXPECT_NO_THROW(checkName("a.b-c_1"));
    EXPECT_THROW(checkName("-web"), Error);
    EXPECT_THROW(checkName("we/b"), Error);
    EXPECT_THROW(checkName(std::string(129, 'a')), Error);
    EXPECT_THROW(checkName(""), Error);
}

TEST(Spec, ImageRootAndVolumes) {
    const std::string id = "sha256:" + std::string(64, 'b');
    json doc = {
        {"image", "busybox:latest"},
        {"imageId", id},
        {"process", {{"args", {"/bin/true"}}}},
        {"resources", {{"limits", {{"storage", 1 << 30}, {"memory", 1 << 26}}}}},
        {"volumes",
         {{{"name", "data"}, {"type", "volume"}, {"source", "data"}, {"containerPath", "/data"}}}}};
    ContainerSpec s = parseSpec(doc);
    EXPECT_EQ(s.imageId, id);
    EXPECT_TRUE(s.rootfs.empty());
    ASSERT_TRUE(s.diskLimit);
    EXPECT_EQ(*s.diskLimit, 1u << 30);
    EXPECT_EQ(s.volumes.size(), 1u);
    EXPECT_TRUE(usesStorage(s));
    EXPECT_FALSE(usesStorage(parseSpec(minimal())));

    json both = doc;
    both["rootfs"] = "/r";
    EXPECT_EQ(errorOf([&] { parseSpec(both); }),
              "imageId: give either an image or a rootfs (rootfs, rootfsImage), not both");
    json bad = doc;
    bad["volumes"] = "data";
    EXPECT_EQ(errorOf([&] { parseSpec(bad); }), "volumes: expected an array");
    bad = doc;
    bad["resources"]["limits"]["storage"] = -1;
    EXPECT_EQ(errorOf([&] { parseSpec(bad); }),
              "resources.limits.storage: expected an integer from 0 to 18446744073709551615");
}

TEST(Spec, VolumeMountsGoBeforeMountsBelowThem) {
    std::vector<MountSpec> mounts = {{"/app/data/config", "/etc/app", "bind", {"rbind"}},
                                     {"/other", "/srv", "bind", {"rbind"}}};
    addVolumeMount(mounts, {{"source", "/v/app"}, {"destination", "/app/data"}});
    addVolumeMount(mounts, {{"source", "/v/logs"}, {"destination", "/logs"}, {"readOnly", true}});
    ASSERT_EQ(mounts.size(), 4u);
    EXPECT_EQ(mounts[0].destination, "/app/data");
    EXPECT_EQ(mounts[0].options, std::vector<std::string>{"rbind"});
    EXPECT_EQ(mounts[1].destination, "/app/data/config");
    EXPECT_EQ(mounts[3].destination, "/logs");
    EXPECT_EQ(mounts[3].options, (std::vector<std::string>{"rbind", "ro"}));
    EXPECT_EQ(errorOf([&] {
                  addVolumeMount(mounts, {{"source", "x"}, {"destination", "/x"}});
              }),
              "volume `/x`: source `x` is not an absolute path");
    EXPECT_EQ(errorOf([&] {
                  addVolumeMount(mounts, {{"source", "/x"}, {"destination", "/a/../x"}});
              }),
              "volume `/a/../x`: not an absolute container path without `..`");
    for (int i = 0; i < 60; ++i)
        addVolumeMount(mounts, {{"source", "/s"}, {"destination", "/m" + std::to_string(i)}});
    EXPECT_EQ(errorOf([&] {
                  addVolumeMount(mounts, {{"source", "/s"}, {"destination", "/z"}});
              }),
              "mounts: 65 bind mounts and volumes, at most 64 per container");
}

TEST(Spec, AVmContainerNamesItsLauncherAndRefusesWhatAVmCannotHave) {
    json doc = minimal();
    doc["runtime"] = "krun";
    doc["vm"] = {{"launcher", {"/usr/libexec/mobileops/mobileops-vmm"}}, {"vcpus", 1}};
    doc["hostname"] = "guest";
    doc["mounts"] = {{{"destination", "/data"}, {"source", "/srv"}, {"options", {"ro"}}}};
    doc["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 64}, {"hard", 128}}};
    ContainerSpec spec = parseSpec(doc);
    ASSERT_TRUE(spec.vm);
    EXPECT_EQ(spec.vm->launcher, std::vector<std::string>{"/usr/libexec/mobileops/mobileops-vmm"});
    EXPECT_FALSE(spec.vm->settings.contains("launcher"));
    json d = vmDescription(spec);
    EXPECT_EQ(d["vcpus"], 1);
    EXPECT_EQ(d["rootfs"], "/r");
    EXPECT_EQ(d["hostname"], "guest");
    EXPECT_EQ(d["mounts"][0],
              (json{{"source", "/srv"}, {"destination", "/data"}, {"readOnly", true}}));
    EXPECT_EQ(d["process"]["args"], json({"/bin/true"}));
    EXPECT_EQ(d["process"]["rlimits"][0], (json{{"name", "nofile"}, {"soft", 64}, {"hard", 128}}));
    EXPECT_EQ(newRecord(spec, "id", "n")["runtime"], "krun");
    EXPECT_EQ(newRecord(parseSpec(minimal()), "id", "n")["runtime"], "namespace");

    auto refused = [&](const std::function<void(json &)> &change) {
        json d2 = doc;
        change(d2);
        return errorOf([&] { parseSpec(d2); });
    };
    EXPECT_NE(refused([](json &d2) { d2["vm"]["launcher"] = {"relative"}; }).find("vm.launcher"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) { d2["vm"] = 3; }).find("vm: expected an object"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) {
                  d2["userns"] = {
                      {"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}};
              }).find("user namespace"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) { d2["volatile"] = true; }).find("volatile root"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) {
                  d2["network"] = {{"mode", "host"}};
              }).find("host's network"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) {
                  d2["network"] = {{"attach", "mo0"}};
              }).find("network attachment"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) { d2["process"]["terminal"] = true; }).find("terminal"),
              std::string::npos);
    EXPECT_NE(refused([](json &d2) {
                  d2["mounts"] = {{{"destination", "/t"}, {"type", "tmpfs"}, {"source", "tmpfs"}}};
              }).find("mounts[0]: a `tmpfs` mount"),
              std::string::npos);
}

TEST(Spec, AVmContainerTakesRuncsModelButNotHooksInsideTheContainer) {
    json doc = minimal();
    doc["runtime"] = "krun";
    doc["vm"] = {{"launcher", {"/usr/libexec/mobileops/mobileops-vmm"}}};
    doc["oci"] = {{"bundle", "/b"}, {"pidFile", "/b/pid"}};
    // a file bind (an engine's /etc/hosts) is bound into the root on the host, not shared
    doc["mounts"] = {{{"destination", "/etc/hosts"}, {"source", "/etc/hosts"}},
                     {{"destination", "/data"}, {"source", "/etc"}}};
    ContainerSpec spec = parseSpec(doc);
    ASSERT_TRUE(spec.vm);
    ASSERT_TRUE(spec.oci);
    EXPECT_EQ(spec.oci->pidFile, "/b/pid");
    EXPECT_FALSE(vmShare(spec.mounts[0]));
    EXPECT_TRUE(vmShare(spec.mounts[1]));
    json d = vmDescription(spec);
    ASSERT_EQ(d["mounts"].size(), 1u) << d.dump();
    EXPECT_EQ(d["mounts"][0]["destination"], "/data");

    json hooked = doc;
    hooked["hooks"] = {{"createContainer", {{{"path", "/bin/true"}}}}};
    EXPECT_NE(errorOf([&] { parseSpec(hooked); }).find("hooks.createContainer"), std::string::npos);
    hooked["hooks"] = {{"startContainer", {{{"path", "/bin/true"}}}}};
    EXPECT_NE(errorOf([&] { parseSpec(hooked); }).find("hooks.startContainer"), std::string::npos);
    hooked["hooks"] = {{"prestart", {{{"path", "/bin/true"}}}}};
    EXPECT_NO_THROW(parseSpec(hooked));
    json tty = doc;
    tty["process"]["terminal"] = true;
    tty["oci"]["consoleSocket"] = "/b/console.sock";
    EXPECT_NE(errorOf([&] { parseSpec(tty); }).find("a terminal"), std::string::npos);
}
