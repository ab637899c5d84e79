// Security audits of container records: the three records `container inspect` printed for
// a `--privileged --network host -v /etc:/hostetc` container, a plain one and a hardened
// one (`--user 1000 --read-only --cap-drop ALL`), kept here verbatim, and variants of the
// plain one with one weakness each.
#include "Audit.h"

#include "TestUtil.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <stdexcept>

using namespace mobileops::integrity;
using nlohmann::json;

namespace {

const char *kPrivileged = R"({
  "command": ["/bin/sleep", "100"],
  "created": "2026-11-23T08:06:05.884Z",
  "id": "6e7a34cd954c2f3935827275b8e08e9cdb799b6ff020853eeb28e6fd0c286d0a",
  "image": "",
  "name": "priv",
  "pid": 0,
  "rootfs": "/tmp/aud/rootfs",
  "runtime": "namespace",
  "spec": {
    "annotations": {},
    "hostname": "priv",
    "mounts": [
      {"destination": "/hostetc", "options": ["rbind"], "source": "/etc", "type": "bind"}
    ],
    "name": "priv",
    "namespaces": {"cgroup": true, "ipc": true, "mount": true, "network": false,
                   "pid": true, "user": false, "uts": true},
    "network": {"mode": "host"},
    "process": {
      "args": ["/bin/sleep", "100"],
      "cwd": "/",
      "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "init": false,
      "rlimits": [],
      "stdin": false,
      "terminal": false,
      "user": {"additionalGids": [], "gid": 0, "uid": 0}
    },
    "readonly": false,
    "resources": {},
    "rootfs": "/tmp/aud/rootfs",
    "runtime": "namespace",
    "security": {"privileged": true},
    "stopSignal": 15,
    "stopTimeout": 10,
    "unapplied": {}
  },
  "status": "created"
})";

const char *kPlain = R"({
  "command": ["/bin/sleep", "100"],
  "created": "2026-11-23T08:06:05.918Z",
  "id": "6831994f721a7f52b499ce7e60c7aa93c74176ee6d62ddf5c6317716cc86613f",
  "image": "",
  "name": "plain",
  "pid": 0,
  "rootfs": "/tmp/aud/rootfs",
  "runtime": "namespace",
  "spec": {
    "annotations": {},
    "hostname": "plain",
    "mounts": [],
    "name": "plain",
    "namespaces": {"cgroup": true, "ipc": true, "mount": true, "network": true,
                   "pid": true, "user": false, "uts": true},
    "network": {"mode": "private"},
    "process": {
      "args": ["/bin/sleep", "100"],
      "cwd": "/",
      "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "init": false,
      "rlimits": [],
      "stdin": false,
      "terminal": false,
      "user": {"additionalGids": [], "gid": 0, "uid": 0}
    },
    "readonly": false,
    "resources": {},
    "rootfs": "/tmp/aud/rootfs",
    "runtime": "namespace",
    "security": {},
    "stopSignal": 15,
    "stopTimeout": 10,
    "unapplied": {}
  },
  "status": "created"
})";

const char *kHardened = R"({
  "command": ["/bin/sleep", "100"],
  "created": "2026-11-23T08:06:05.944Z",
  "id": "8fc476a1db29237efe9ec6e769dc3808a43d9004241ae5ac9f86be5828b1e8c1",
  "image": "",
  "name": "hard",
  "pid": 0,
  "rootfs": "/tmp/aud/rootfs",
  "runtime": "namespace",
  "spec": {
    "annotations": {},
    "hostname": "hard",
    "mounts": [],
    "name": "hard",
    "namespaces": {"cgroup": true, "ipc": true, "mount": true, "network": true,
                   "pid": true, "user": false, "uts": true},
    "network": {"mode": "private"},
    "process": {
      "args": ["/bin/sleep", "100"],
      "cwd": "/",
      "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      "init": false,
      "rlimits": [],
      "stdin": false,
      "terminal": false,
      "user": {"additionalGids": [], "name": "1000"}
    },
    "readonly": true,
    "resources": {},
    "rootfs": "/tmp/aud/rootfs",
    "runtime": "namespace",
    "security": {"capabilities": {"drop": ["ALL"]}},
    "stopSignal": 15,
    "stopTimeout": 10,
    "unapplied": {}
  },
  "status": "created"
})";

json record(const char *text) { return json::parse(text); }

// The plain record with `patch` merged into its spec.
json plainWith(const json &patch) {
    json r = record(kPlain);
    r["spec"].merge_patch(patch);
    return r;
}

json withSecurity(const json &security) { return plainWith({{"security", security}}); }

std::vector<std::string> ids(const AuditReport &r) {
    std::vector<std::string> out;
    for (const auto &f : r.findings) out.push_back(f.id);
    return out;
}

bool has(const AuditReport &r, const std::string &id) {
    auto v = ids(r);
    return std::find(v.begin(), v.end(), id) != v.end();
}

// The findings of one id ("cap-added" may come once per capability).
std::vector<Finding> all(const AuditReport &r, const std::string &id) {
    std::vector<Finding> out;
    for (const auto &f : r.findings)
        if (f.id == id) out.push_back(f);
    return out;
}

Finding one(const AuditReport &r, const std::string &id) {
    auto found = all(r, id);
    EXPECT_EQ(found.size(), 1u) << id << " in " << r.toJson().dump(2);
    return found.empty() ? Finding{} : found[0];
}

json bindMount(const std::string &source, const std::string &destination, bool readOnly) {
    json options = readOnly ? json{"rbind", "ro"} : json{"rbind"};
    return {
        {"destination", destination}, {"source", source}, {"type", "bind"}, {"options", options}};
}

using Ids = std::vector<std::string>;

} // namespace

TEST(Audit, PrivilegedHostNetworkContainerListsEveryWeakness) {
    AuditReport r = audit(record(kPrivileged));
    EXPECT_EQ(r.name, "priv");
    EXPECT_EQ(r.id, "6e7a34cd954c2f3935827275b8e08e9cdb799b6ff020853eeb28e6fd0c286d0a");
    EXPECT_EQ(ids(r), (Ids{"privileged", "sensitive-mount", "host-network", "seccomp-unconfined",
                           "no-new-privs-off", "root-user", "no-memory-limit", "no-pids-limit",
                           "writable-rootfs"}));

    Finding p = one(r, "privileged");
    EXPECT_EQ(p.severity, Severity::Critical);
    EXPECT_EQ(p.fix, "drop --privileged; add only the capabilities it needs with --cap-add");
    EXPECT_EQ(one(r, "host-network").severity, Severity::High);
    EXPECT_NE(one(r, "host-network").fix.find("--network"), std::string::npos);

    Finding etc = one(r, "sensitive-mount");
    EXPECT_EQ(etc.severity, Severity::Critical); // read-write
    EXPECT_EQ(etc.message, "`/etc` mounted read-write at `/hostetc`: the host's configuration "
                           "(passwd, shadow, sudoers)");
    EXPECT_NE(etc.fix.find("-v /etc:/hostetc:ro"), std::string::npos) << etc.fix;

    // --privileged turns no_new_privs off and the seccomp filter with it.
    EXPECT_EQ(one(r, "no-new-privs-off").message,
              "no_new_privs is off (--privileged turns it off): setuid programs and file "
              "capabilities raise privileges inside");
    EXPECT_EQ(one(r, "seccomp-unconfined").severity, Severity::High);
    EXPECT_EQ(one(r, "seccomp-unconfined").fix,
              "drop --privileged, or keep a filter with --security-opt seccomp=PROFILE.json");
    Finding root = one(r, "root-user");
    EXPECT_EQ(root.severity, Severity::Medium);
    EXPECT_NE(root.fix.find("--user UID[:GID]"), std::string::npos);
    // Every capability is the privileged finding's; none is listed again.
    EXPECT_FALSE(has(r, "cap-added"));

    EXPECT_EQ(r.score, 0); // 40+40+20+20+10+10+5+5+5, floored
    EXPECT_EQ(r.grade, "F");
}

TEST(Audit, PlainContainerRunsAsRootWithAWritableRoot) {
    AuditReport r = audit(record(kPlain));
    EXPECT_EQ(ids(r), (Ids{"root-user", "no-memory-limit", "no-pids-limit", "writable-rootfs"}));
    EXPECT_EQ(one(r, "root-user").message,
              "runs as root (uid 0) without a user namespace: root in the container is root "
              "on the host");
    EXPECT_EQ(one(r, "writable-rootfs").fix,
              "use --read-only (and a volume or --ephemeral-storage for what it writes)");
    EXPECT_EQ(r.score, 75);
    EXPECT_EQ(r.grade, "B");
}

TEST(Audit, HardenedContainerScoresHigherThanThePlainOne) {
    AuditReport hard = audit(record(kHardened));
    EXPECT_EQ(ids(hard), (Ids{"no-memory-limit", "no-pids-limit", "no-user-namespace"}));
    EXPECT_EQ(one(hard, "no-user-namespace").severity, Severity::Info);
    EXPECT_EQ(one(hard, "no-user-namespace").message,
              "no user namespace: its uid 1000 is the same uid on the host");
    EXPECT_EQ(hard.score, 90);
    EXPECT_EQ(hard.grade, "A");
    EXPECT_GT(hard.score, audit(record(kPlain)).score);
}

TEST(Audit, SeccompUnconfined) {
    AuditReport r = audit(plainWith({{"security", {{"seccomp", {{"mode", "unconfined"}}}}}}));
    Finding f = one(r, "seccomp-unconfined");
    EXPECT_EQ(f.severity, Severity::High);
    EXPECT_EQ(f.message,
              "no seccomp filter (seccomp=unconfined): every system call reaches the kernel");
    EXPECT_NE(f.fix.find("seccomp=PROFILE.json"), std::string::npos);
    EXPECT_EQ(r.score, 55);
    EXPECT_EQ(r.grade, "D");

    // The default profile, named explicitly, is no finding; a privileged container that
    // asks for it keeps its filter.
    EXPECT_FALSE(has(audit(plainWith({{"security", {{"seccomp", {{"mode", "default"}}}}}})),
                     "seccomp-unconfined"));
    EXPECT_FALSE(
        has(audit(plainWith(
                {{"security", {{"privileged", true}, {"seccomp", {{"mode", "default"}}}}}})),
            "seccomp-unconfined"));

    // A profile that allows whatever it does not name.
    json profile = {{"defaultAction", "SCMP_ACT_ALLOW"},
                    {"syscalls", {{{"names", {"keyctl"}}, {"action", "SCMP_ACT_ERRNO"}}}}};
    Finding loose =
        one(audit(plainWith(
                {{"security",
                  {{"seccomp",
                    {{"mode", "profile"}, {"profile", profile}, {"source", "/etc/p.json"}}}}}})),
            "seccomp-permissive");
    EXPECT_EQ(loose.severity, Severity::Medium);
    EXPECT_EQ(loose.message, "seccomp profile `/etc/p.json` allows every system call it does not "
                             "name (defaultAction `SCMP_ACT_ALLOW`)");
}

TEST(Audit, AddedCapabilitiesBySeverity) {
    AuditReport r = audit(
        plainWith({{"security",
                    {{"capabilities",
                      {{"add", {"SYS_ADMIN", "net_admin", "CAP_NET_RAW", "CHOWN", "MKNOD"}}}}}}}));
    auto caps = all(r, "cap-added");
    ASSERT_EQ(caps.size(), 4u) << r.toJson().dump(2); // CHOWN is in the base set
    EXPECT_EQ(caps[0].message, "`CAP_NET_ADMIN` added: it reaches past the container to the host");
    EXPECT_EQ(caps[0].severity, Severity::High);
    EXPECT_EQ(caps[0].fix, "drop --cap-add NET_ADMIN unless the workload cannot run without it");
    EXPECT_EQ(caps[1].message, "`CAP_SYS_ADMIN` added: it reaches past the container to the host");
    EXPECT_EQ(caps[1].severity, Severity::High);
    EXPECT_EQ(caps[2].message, "`CAP_MKNOD` added");
    EXPECT_EQ(caps[2].severity, Severity::Medium);
    EXPECT_EQ(caps[3].message, "`CAP_NET_RAW` added");
    EXPECT_EQ(caps[3].severity, Severity::Medium);

    // Only what goes beyond the base set counts: dropping is no finding.
    EXPECT_FALSE(
        has(audit(plainWith(
                {{"security", {{"capabilities", {{"drop", {"ALL"}}, {"add", {"CHOWN"}}}}}}})),
            "cap-added"));

    json everything = {{"add", {"ALL"}}, {"drop", {"sys_module"}}};
    Finding every = one(audit(withSecurity({{"capabilities", everything}})), "cap-added");
    EXPECT_EQ(every.severity, Severity::Critical);
    EXPECT_EQ(
        every.message.rfind("every capability added (--cap-add ALL) except `CAP_SYS_MODULE`", 0),
        0u)
        << every.message;
}

TEST(Audit, SensitiveMountReadOnlyIsHighReadWriteIsCritical) {
    Finding ro = one(audit(plainWith({{"mounts", {bindMount("/etc", "/hostetc", true)}}})),
                     "sensitive-mount");
    EXPECT_EQ(ro.severity, Severity::High);
    EXPECT_EQ(ro.message, "`/etc` mounted read-only at `/hostetc`: the host's configuration "
                          "(passwd, shadow, sudoers)");
    Finding rw = one(audit(plainWith({{"mounts", {bindMount("/etc/", "/hostetc", false)}}})),
                     "sensitive-mount");
    EXPECT_EQ(rw.severity, Severity::Critical);
}

TEST(Audit, SensitiveMountsBelowAboveAndThroughSymlinks) {
    auto exposes = [](const std::string &source) {
        auto found = all(audit(plainWith({{"mounts", {bindMount(source, "/x", false)}}})),
                         "sensitive-mount");
        return found.empty() ? std::string() : found[0].message;
    };
    EXPECT_EQ(exposes("/"), "`/` mounted read-write at `/x`: the host's whole filesystem");
    EXPECT_EQ(exposes("/var/run/docker.sock"),
              "`/var/run/docker.sock` mounted read-write at `/x`: the docker daemon's socket "
              "(root on the host)");
    EXPECT_EQ(exposes("/proc/sys/kernel"),
              "`/proc/sys/kernel` mounted read-write at `/x`: the host's processes and kernel "
              "knobs");
    // A directory above a sensitive one holds it.
    EXPECT_EQ(exposes("/var/lib"), "`/var/lib` mounted read-write at `/x`: it holds "
                                   "`/var/lib/docker` (docker's store)");
    EXPECT_EQ(exposes("/var/lib/mobileops/storage"),
              "`/var/lib/mobileops/storage` mounted read-write at `/x`: mobileops's state store "
              "and images");
    EXPECT_EQ(exposes("/srv/data"), "");
    EXPECT_EQ(exposes("/etcetera"), "");

    // What containers commonly get exposes nothing; other devices do.
    EXPECT_EQ(exposes("/dev/null"), "");
    EXPECT_EQ(exposes("/dev/sda"), "`/dev/sda` mounted read-write at `/x`: the host's devices");
    EXPECT_FALSE(has(audit(plainWith({{"mounts", {bindMount("/etc/localtime", "/x", true)}}})),
                     "sensitive-mount"));
    EXPECT_NE(exposes("/etc/localtime"), "");

    // A harmless-looking path that this host resolves to /etc.
    mobileops::test::TempDir dir;
    std::string link = dir.path() + "/config";
    ASSERT_EQ(::symlink("/etc", link.c_str()), 0);
    EXPECT_EQ(exposes(link), "`" + link +
                                 "` mounted read-write at `/x`: the host's configuration "
                                 "(passwd, shadow, sudoers)");

    // Only bind mounts carry host paths.
    EXPECT_FALSE(
        has(audit(plainWith(
                {{"mounts", {{{"destination", "/x"}, {"source", "/etc"}, {"type", "tmpfs"}}}}})),
            "sensitive-mount"));
}

TEST(Audit, HostNamespaces) {
    AuditReport r = audit(plainWith(
        {{"namespaces", {{"pid", false}, {"ipc", false}, {"uts", false}, {"network", false}}}}));
    EXPECT_EQ(one(r, "host-network").severity, Severity::High);
    EXPECT_EQ(one(r, "host-pid").severity, Severity::High);
    EXPECT_EQ(one(r, "host-ipc").severity, Severity::Medium);
    EXPECT_EQ(one(r, "host-uts").severity, Severity::Medium);
    // network.mode host alone says it too.
    EXPECT_TRUE(has(audit(plainWith({{"network", {{"mode", "host"}}}})), "host-network"));
}

TEST(Audit, RootInAUserNamespace) {
    json mapped = {
        {"namespaces", {{"user", true}}},
        {"userns", {{"uidMappings", {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}}}}}};
    AuditReport r = audit(plainWith(mapped));
    EXPECT_FALSE(has(r, "root-user"));
    EXPECT_FALSE(has(r, "no-user-namespace"));

    // A mapping that gives the container the host's root is no protection.
    mapped["userns"]["uidMappings"][0]["hostID"] = 0;
    EXPECT_EQ(one(audit(plainWith(mapped)), "root-user").message,
              "runs as root (uid 0) mapped to the host's root by its user namespace: root in the "
              "container is root on the host");

    EXPECT_TRUE(
        has(audit(plainWith({{"process", {{"user", {{"name", "root:root"}}}}}})), "root-user"));
    EXPECT_TRUE(has(audit(plainWith({{"process", {{"user", {{"name", "0"}}}}}})), "root-user"));
    AuditReport named = audit(plainWith({{"process", {{"user", {{"name", "www-data"}}}}}}));
    EXPECT_FALSE(has(named, "root-user"));
    EXPECT_EQ(one(named, "no-user-namespace").message,
              "no user namespace: its user is the same uid on the host");
}

TEST(Audit, NoNewPrivileges) {
    EXPECT_EQ(
        one(audit(plainWith({{"security", {{"noNewPrivileges", false}}}})), "no-new-privs-off")
            .message,
        "no_new_privs is off: setuid programs and file capabilities raise privileges inside");
    EXPECT_TRUE(has(audit(plainWith({{"security", {{"allowPrivilegeEscalation", true}}}})),
                    "no-new-privs-off"));
    // Asked for explicitly, a privileged container keeps it.
    EXPECT_FALSE(
        has(audit(plainWith({{"security", {{"privileged", true}, {"noNewPrivileges", true}}}})),
            "no-new-privs-off"));
}

TEST(Audit, HardwareAccessInitSystemAndLimits) {
    AuditReport r =
        audit(plainWith({{"hardwareAccess", true},
                         {"initSystem", true},
                         {"readonly", true},
                         {"resources", {{"limits", {{"memory", 67108864}, {"pids", 100}}}}}}));
    EXPECT_EQ(ids(r), (Ids{"hardware-access", "root-user", "init-system"}));
    EXPECT_EQ(one(r, "hardware-access").severity, Severity::Critical);
    EXPECT_EQ(one(r, "hardware-access").fix, "drop --hw-access; pass only the devices it needs");
    EXPECT_EQ(r.score, 50);
    EXPECT_EQ(r.grade, "D");
}

TEST(Audit, LimitsNotAppliedAreNone) {
    json limits = {{"limits", {{"memory", 67108864}, {"pids", 100}}}};
    EXPECT_FALSE(has(audit(plainWith({{"resources", limits}})), "no-memory-limit"));
    // Accepted but not applied where no cgroup service is installed: from flags, and
    // from a VirtualRoot file.
    AuditReport flags =
        audit(plainWith({{"resources", limits}, {"unapplied", {"--memory", "--pids-limit"}}}));
    EXPECT_TRUE(has(flags, "no-memory-limit"));
    EXPECT_TRUE(has(flags, "no-pids-limit"));
    AuditReport file =
        audit(plainWith({{"resources", limits}, {"unapplied", {"spec.resources.limits.pids"}}}));
    EXPECT_FALSE(has(file, "no-memory-limit"));
    EXPECT_TRUE(has(file, "no-pids-limit"));
    EXPECT_TRUE(has(audit(plainWith({{"resources", limits}, {"unapplied", {"spec.resources"}}})),
                    "no-memory-limit"));
}

TEST(Audit, GradesAtTheirThresholds) {
    json limits = {{"limits", {{"memory", 67108864}, {"pids", 100}}}};
    // No finding but the root user (10): 90 is still an A.
    AuditReport a = audit(plainWith({{"readonly", true}, {"resources", limits}}));
    EXPECT_EQ(a.score, 90);
    EXPECT_EQ(a.grade, "A");
    AuditReport b = audit(plainWith({{"resources", limits}}));
    EXPECT_EQ(b.score, 85);
    EXPECT_EQ(b.grade, "B");
    AuditReport c = audit(plainWith({{"resources", limits}, {"network", {{"mode", "host"}}}}));
    EXPECT_EQ(c.score, 65);
    EXPECT_EQ(c.grade, "C");
}

TEST(Audit, ReportAsJson) {
    json j = audit(record(kHardened)).toJson();
    EXPECT_EQ(j["id"], "8fc476a1db29237efe9ec6e769dc3808a43d9004241ae5ac9f86be5828b1e8c1");
    EXPECT_EQ(j["name"], "hard");
    EXPECT_EQ(j["score"], 90);
    EXPECT_EQ(j["grade"], "A");
    ASSERT_EQ(j["findings"].size(), 3u);
    EXPECT_EQ(j["findings"][0],
              (json{{"id", "no-memory-limit"},
                    {"severity", "low"},
                    {"message", "no memory limit: it can take all of the host's memory"},
                    {"fix", "use --memory SIZE (resources.limits.memory)"}}));
    EXPECT_EQ(j["findings"][2]["severity"], "info");
}

TEST(Audit, ARecordWithoutSpecIsRefused) {
    try {
        audit({{"id", "abc"}, {"name", "web"}});
        FAIL() << "no error";
    } catch (const std::invalid_argument &e) {
        EXPECT_STREQ(e.what(), "container `web` has no spec to audit");
    }
    EXPECT_THROW(audit(json::array()), std::invalid_argument);
}
