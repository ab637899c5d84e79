// VirtualRoot documents (YAML and JSON) to the runtime spec.
#include "mobileops/core/Spec.h"

#include <gtest/gtest.h>

#include "SpecFixtures.h"

#include <stdlib.h>
#include <sys/stat.h>
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

// The message parseVirtualRoot gives for `body` under a minimal header (spec: starts on
// line 3).
std::string specError(const std::string &body) {
    return errorOf(
        [&] { parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n" + body, "t.yaml"); });
}

json parseSpec(const std::string &body) {
    return parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n" + body, "t.yaml");
}

const char *const kDesignJson = R"({
  "apiVersion": "v1",
  "kind": "VirtualRoot",
  "metadata": {"name": "mobile-app-env", "namespace": "production"},
  "spec": {
    "image": "mobileops/android-runtime:latest",
    "resources": {
      "requests": {"cpu": "0.5", "memory": "1Gi", "storage": "5Gi"},
      "limits": {"cpu": "2", "memory": "4Gi", "storage": "20Gi"}
    },
    "security": {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": true,
                 "allowPrivilegeEscalation": false},
    "networking": {"mode": "bridge", "ports": [{"containerPort": 8080, "hostPort": 8080}]},
    "volumes": [
      {"name": "app-data", "hostPath": "/var/lib/mobileops/data", "containerPath": "/app/data"},
      {"name": "config", "configMap": "app-config", "containerPath": "/app/config",
       "readOnly": true}
    ],
    "environment": [{"name": "ENV", "value": "production"}]
  }
})";

const char *const kDesignSpec = R"({
  "name": "mobile-app-env",
  "namespace": "production",
  "image": "mobileops/android-runtime:latest",
  "readonly": true,
  "process": {"env": ["ENV=production"], "user": {"uid": 1000, "gid": 1000}},
  "network": {"mode": "private", "attach": "bridge",
              "ports": [{"containerPort": 8080, "hostPort": 8080, "protocol": "tcp"}]},
  "mounts": [{"destination": "/app/data", "source": "/var/lib/mobileops/data", "type": "bind",
              "options": ["rbind"]}],
  "volumes": [{"name": "config", "type": "configMap", "source": "app-config",
               "containerPath": "/app/config", "readOnly": true}],
  "resources": {
    "requests": {"cpu": 500, "memory": 1073741824, "storage": 5368709120},
    "limits": {"cpu": 2000, "memory": 4294967296, "storage": 21474836480}
  },
  "security": {"noNewPrivileges": true},
  "unapplied": [
    "metadata.namespace",
    "spec.resources.requests.cpu", "spec.resources.requests.memory",
    "spec.resources.requests.storage",
    "spec.resources.limits.cpu", "spec.resources.limits.memory", "spec.resources.limits.storage",
    "spec.networking.mode=bridge", "spec.networking.ports",
    "spec.volumes[1].configMap"
  ]
})";

TEST(SpecParseTest, DesignExampleYaml) {
    EXPECT_EQ(parseVirtualRoot(kDesignYaml, "app.yaml"), json::parse(kDesignSpec));
}

TEST(SpecParseTest, DesignExampleJson) {
    EXPECT_EQ(parseVirtualRoot(kDesignJson, "app.json"), json::parse(kDesignSpec));
}

TEST(SpecParseTest, MinimalDocuments) {
    EXPECT_EQ(parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\n", "t.yaml"), json::object());
    EXPECT_EQ(parseVirtualRoot(R"({"apiVersion": "v1", "kind": "VirtualRoot", "spec": {}})", "t"),
              json::object());
    EXPECT_EQ(parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nmetadata:\nspec: ~\n", "t"),
              json::object());
}

TEST(SpecParseTest, ProcessFields) {
    json s = parseSpec("  rootfs: /srv/rootfs/\n"
                       "  command: [/bin/server]\n"
                       "  args: [--port, 8080, --verbose, true]\n"
                       "  workingDir: /app/./bin/..\n"
                       "  hostname: web-1\n"
                       "  init: true\n"
                       "  stopSignal: SIGINT\n"
                       "  stopTimeout: 30\n"
                       "  environment:\n"
                       "    - { name: PORT, value: 8080 }\n"
                       "    - { name: VERSION, value: 1.10 }\n"
                       "    - { name: EMPTY }\n"
                       "    - { name: PORT, value: \"9090\" }\n"
                       "  ulimits:\n"
                       "    - { name: nofile, soft: 1024, hard: 2048 }\n"
                       "    - { name: core, soft: unlimited }\n"
                       "    - { name: RLIMIT_NPROC, soft: 100, hard: -1 }\n");
    EXPECT_EQ(s, json::parse(R"({
        "rootfs": "/srv/rootfs",
        "process": {
            "command": ["/bin/server"],
            "args": ["--port", "8080", "--verbose", "true"],
            "cwd": "/app",
            "init": true,
            "env": ["PORT=9090", "VERSION=1.10", "EMPTY="],
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                        {"type": "RLIMIT_CORE", "soft": -1, "hard": -1},
                        {"type": "RLIMIT_NPROC", "soft": 100, "hard": -1}]
        },
        "hostname": "web-1",
        "stopSignal": 2,
        "stopTimeout": 30
    })"));
}

TEST(SpecParseTest, CommandAloneOrArgsAlone) {
    // kept apart until finalize joins them: `command` replaces an image's Entrypoint
    EXPECT_EQ(parseSpec("  command: [/bin/sh, -c, 'echo hi']\n")["process"],
              json::parse(R"({"command": ["/bin/sh", "-c", "echo hi"]})"));
    EXPECT_EQ(parseSpec("  args: [/bin/true]\n")["process"]["args"],
              json::parse(R"(["/bin/true"])"));
    EXPECT_FALSE(parseSpec("  command: []\n").contains("process"));
}

TEST(SpecParseTest, MetadataLabelsAnnotations) {
    json s = parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nmetadata:\n"
                              "  name: web\n"
                              "  namespace: default\n"
                              "  labels: { app: web, tier: 1, app.kubernetes.io/name: web }\n"
                              "  annotations: { note: 'free text: with colon', empty: }\n",
                              "t.yaml");
    EXPECT_EQ(s, json::parse(R"({
        "name": "web",
        "namespace": "default",
        "labels": {"app": "web", "tier": "1", "app.kubernetes.io/name": "web"},
        "annotations": {"note": "free text: with colon", "empty": ""}
    })"));
}

TEST(SpecParseTest, Resources) {
    json s = parseSpec("  resources:\n"
                       "    requests: { cpu: 250m, memory: 67108864 }\n"
                       "    limits: { cpu: 1.5, memory: 1G, storage: 1e9, pids: 100 }\n"
                       "    cpuset: 0-1,3\n");
    EXPECT_EQ(s["resources"], json::parse(R"({
        "requests": {"cpu": 250, "memory": 67108864},
        "limits": {"cpu": 1500, "memory": 1000000000, "storage": 1000000000, "pids": 100},
        "cpuset": "0-1,3"
    })"));
    EXPECT_EQ(s["unapplied"], json::parse(R"([
        "spec.resources.requests.cpu", "spec.resources.requests.memory",
        "spec.resources.limits.cpu", "spec.resources.limits.memory",
        "spec.resources.limits.storage", "spec.resources.limits.pids", "spec.resources.cpuset"])"));
}

TEST(SpecParseTest, Security) {
    json s = parseSpec("  security:\n"
                       "    runAsUser: 1000\n"
                       "    supplementalGroups: [10, 20]\n"
                       "    privileged: false\n"
                       "    allowPrivilegeEscalation: true\n"
                       "    capabilities: { add: [net_admin, CAP_SYS_TIME], drop: [] }\n"
                       "    seccompProfile: { type: Unconfined }\n");
    // the runtime form (docs/runtime-spec.md): users went to process.user
    EXPECT_EQ(s["security"], json::parse(R"({
        "privileged": false, "noNewPrivileges": false,
        "capabilities": {"add": ["CAP_NET_ADMIN", "CAP_SYS_TIME"], "drop": []},
        "seccomp": {"mode": "unconfined"}})"));
    // a uid alone: its group comes from the rootfs's /etc/passwd, resolved by the runtime
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"name": "1000", "additionalGids": [10, 20]})"));
    EXPECT_FALSE(s.contains("unapplied")) << "the runtime applies all of it";

    // a Localhost profile is read now and carried in the spec
    char dir[] = "/tmp/spec-seccomp-XXXXXX";
    ASSERT_TRUE(::mkdtemp(dir));
    std::string file = std::string(dir) + "/p.json";
    std::ofstream(file) << R"({"defaultAction": "SCMP_ACT_ALLOW"})";
    s = parseSpec("  security: { runAsGroup: 5, privileged: true, capabilities: { drop: [ALL] },\n"
                  "              seccompProfile: { type: Localhost, localhostProfile: " +
                  file + " } }\n");
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"uid": 0, "gid": 5})"));
    EXPECT_EQ(s["security"]["seccomp"], json({{"mode", "profile"},
                                              {"profile", {{"defaultAction", "SCMP_ACT_ALLOW"}}},
                                              {"source", file}}));
    EXPECT_EQ(s["security"]["capabilities"], json::parse(R"({"drop": ["ALL"]})"));
    EXPECT_EQ(s["security"]["privileged"], true);
    EXPECT_FALSE(s.contains("unapplied"));
    std::ofstream(file) << "not json";
    EXPECT_EQ(specError("  security: { seccompProfile: { type: Localhost, localhostProfile: " +
                        file + " } }\n"),
              "t.yaml:4: spec.security.seccompProfile.localhostProfile: `" + file +
                  "` is not a JSON seccomp profile");
    std::filesystem::remove_all(dir);
    EXPECT_EQ(specError("  security: { seccompProfile: { type: Localhost, localhostProfile: " +
                        file + " } }\n"),
              "t.yaml:4: spec.security.seccompProfile.localhostProfile: `" + file +
                  "`: No such file or directory");
    // RuntimeDefault: the runtime's default profile
    EXPECT_EQ(parseSpec("  security: { seccompProfile: { type: RuntimeDefault } }\n")["security"],
              json::parse(R"({"seccomp": {"mode": "default"}})"));
}

TEST(SpecParseTest, Networking) {
    json s = parseSpec("  networking:\n"
                       "    mode: host\n"
                       "    hostname: box\n"
                       "    ports:\n"
                       "      - { containerPort: 53, hostPort: 5353, protocol: UDP }\n"
                       "      - { containerPort: 53, hostPort: 5353, protocol: tcp, hostIP: ::1 }\n"
                       "      - { containerPort: 80 }\n"
                       "    dns: { nameservers: [10.0.0.1, 'fd00::1'], searches: [example.com],\n"
                       "           options: ['ndots:2'] }\n");
    EXPECT_EQ(s, json::parse(R"({
        "network": {"mode": "host",
                    "ports": [{"containerPort": 53, "hostPort": 5353, "protocol": "udp"},
                              {"containerPort": 53, "hostPort": 5353, "protocol": "tcp",
                               "hostIP": "::1"},
                              {"containerPort": 80, "protocol": "tcp"}],
                    "dns": {"nameservers": ["10.0.0.1", "fd00::1"], "searches": ["example.com"],
                            "options": ["ndots:2"]}},
        "hostname": "box",
        "unapplied": ["spec.networking.ports", "spec.networking.dns"]})"));
    EXPECT_EQ(parseSpec("  networking: { mode: none }\n"),
              json::parse(R"({"network": {"mode": "none"}})"));
    EXPECT_EQ(parseSpec("  networking: { mode: private }\n"),
              json::parse(R"({"network": {"mode": "private"}})"));
    EXPECT_EQ(parseSpec("  networking: { mode: custom-net }\n"),
              json::parse(R"({"network": {"mode": "private", "attach": "custom-net"},
                              "unapplied": ["spec.networking.mode=custom-net"]})"));
    EXPECT_EQ(parseSpec("  hostname: a\n  networking: { hostname: a }\n")["hostname"], "a");
}

TEST(SpecParseTest, Volumes) {
    json s = parseSpec(
        "  volumes:\n"
        "    - { name: data, hostPath: /srv/data/, containerPath: /data, readOnly: true }\n"
        "    - { name: scratch, emptyDir: , containerPath: /scratch }\n"
        "    - { name: shm, emptyDir: { medium: Memory, sizeLimit: 64Mi }, containerPath: /shm }\n"
        "    - { name: conf, configMap: { name: app-config }, containerPath: /etc/app }\n"
        "    - { name: db, volume: pgdata, containerPath: /var/lib/pg }\n");
    EXPECT_EQ(s["mounts"], json::parse(R"([{"destination": "/data", "source": "/srv/data",
        "type": "bind", "options": ["rbind", "ro"]}])"));
    EXPECT_EQ(s["volumes"], json::parse(R"([
        {"name": "scratch", "type": "emptyDir", "containerPath": "/scratch", "readOnly": false},
        {"name": "shm", "type": "emptyDir", "medium": "Memory", "sizeLimit": 67108864,
         "containerPath": "/shm", "readOnly": false},
        {"name": "conf", "type": "configMap", "source": "app-config", "containerPath": "/etc/app",
         "readOnly": false},
        {"name": "db", "type": "volume", "source": "pgdata", "containerPath": "/var/lib/pg",
         "readOnly": false}])"));
    EXPECT_EQ(s["unapplied"],
              json::parse(R"(["spec.volumes[1].emptyDir", "spec.volumes[2].emptyDir",
        "spec.volumes[3].configMap", "spec.volumes[4].volume"])"));
}

TEST(SpecParseTest, UsernsForms) {
    json expected = json::parse(R"({
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
        "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})");
    EXPECT_EQ(parseSpec("  userns: \"100000:65536\"\n")["userns"], expected);
    EXPECT_EQ(parseSpec("  userns: 0:100000:65536\n")["userns"], expected);
    EXPECT_EQ(
        parseSpec("  userns:\n    uidMappings: [{containerID: 0, hostID: 100000, size: 65536}]\n")
            ["userns"],
        expected);
    json two = parseSpec("  userns:\n"
                         "    uidMappings: [{containerID: 0, hostID: 100000, size: 1000},\n"
                         "                  {containerID: 1000, hostID: 1000, size: 1}]\n"
                         "    gidMappings: [{containerID: 0, hostID: 200000, size: 65536}]\n");
    EXPECT_EQ(two["userns"]["uidMappings"].size(), 2u);
    EXPECT_EQ(two["userns"]["gidMappings"][0]["hostID"], 200000);
}

TEST(SpecParseTest, PolicyFields) {
    json s = parseSpec("  restartPolicy: OnFailure:3\n  verify: strict\n  runtime: krun\n"
                       "  stopSignal: 9\n");
    EXPECT_EQ(s, json::parse(R"({
        "restartPolicy": {"name": "on-failure", "maximumRetryCount": 3},
        "verify": "strict", "runtime": "krun", "stopSignal": 9,
        "unapplied": ["spec.restartPolicy", "spec.verify"]})"));
    EXPECT_FALSE(parseSpec("  runtime: namespace\n").contains("unapplied"));
    s = parseSpec("  restartPolicy: Never\n  verify: off\n");
    EXPECT_EQ(s, json::parse(R"({"restartPolicy": {"name": "no"}, "verify": "off"})"));
    EXPECT_EQ(parseSpec("  restartPolicy: unless-stopped\n")["restartPolicy"]["name"],
              "unless-stopped");
    EXPECT_EQ(parseSpec("  restartPolicy: always\n")["restartPolicy"]["name"], "always");
}

TEST(SpecParseTest, NullMeansAbsent) {
    EXPECT_EQ(parseSpec("  hostname: ~\n  image: null\n  volumes:\n"), json::object());
}

TEST(SpecParseTest, RelativePathsFollowTheFile) {
    char dir[] = "/tmp/mobileops-spec-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    std::string file = std::string(dir) + "/app.yaml";
    std::string text = "apiVersion: v1\nkind: VirtualRoot\nspec:\n  rootfs: ./rootfs\n"
                       "  volumes: [{name: d, hostPath: ../data, containerPath: /d}]\n";
    std::ofstream(file) << text;
    json s = parseVirtualRoot(text, file);
    EXPECT_EQ(s["rootfs"], std::string(dir) + "/rootfs");
    EXPECT_EQ(s["mounts"][0]["source"], "/tmp/data");
    // not a file: relative to the current directory
    s = parseVirtualRoot(text, "<stdin>");
    EXPECT_EQ(s["rootfs"], std::filesystem::current_path().string() + "/rootfs");
    std::filesystem::remove_all(dir);
}

TEST(SpecParseTest, ErrorsCarryTheLine) {
    std::string yaml = std::string(kDesignYaml);
    yaml.replace(yaml.find("\"4Gi\""), 5, "\"4Gx\"");
    EXPECT_EQ(errorOf([&] { parseVirtualRoot(yaml, "app.yaml"); }),
              "app.yaml:8: spec.resources.limits.memory: `4Gx` is not a quantity");
    EXPECT_EQ(specError("  image: x\n  foo: 1\n"), "t.yaml:5: spec.foo: unknown field");
    EXPECT_EQ(specError("  resource: {}\n"),
              "t.yaml:4: spec.resource: unknown field (did you mean `resources`?)");
    EXPECT_EQ(
        specError("  volumes:\n    - name: a\n      containerPath: /a\n      ReadOnly: true\n"),
        "t.yaml:7: spec.volumes[0].ReadOnly: unknown field (did you mean `readOnly`?)");
    // a missing field: the line of the object it is missing from
    EXPECT_EQ(specError("  volumes:\n    - name: a\n      hostPath: /a\n"),
              "t.yaml:5: spec.volumes[0].containerPath: required field is missing");
}

TEST(SpecParseTest, JsonErrorsCarryTheLine) {
    std::string json = kDesignJson;
    json.replace(json.find("\"4Gi\""), 5, "\"4Gx\"");
    EXPECT_EQ(errorOf([&] { parseVirtualRoot(json, "app.json"); }),
              "app.json:9: spec.resources.limits.memory: `4Gx` is not a quantity");
}

TEST(SpecParseTest, RefusesBadDocuments) {
    EXPECT_EQ(errorOf([] { parseVirtualRoot("", "t.yaml"); }), "t.yaml: empty document");
    EXPECT_EQ(errorOf([] { parseVirtualRoot("# only a comment\n", "t.yaml"); }),
              "t.yaml: empty document");
    EXPECT_EQ(
        errorOf([] { parseVirtualRoot("- a\n- b\n", "t.yaml"); }),
        "t.yaml: expected a VirtualRoot mapping (apiVersion, kind, metadata, spec), not a list");
    EXPECT_EQ(
        errorOf([] { parseVirtualRoot("just text", "t.yaml"); }),
        "t.yaml: expected a VirtualRoot mapping (apiVersion, kind, metadata, spec), not a string");
    EXPECT_EQ(errorOf([] {
                  parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\n---\napiVersion: v1\n",
                                   "t.yaml");
              }),
              "t.yaml: more than one document; expected one VirtualRoot");
    EXPECT_EQ(errorOf([] { parseVirtualRoot("kind: VirtualRoot\n", "t.yaml"); }),
              "t.yaml: apiVersion: required field is missing");
    EXPECT_EQ(errorOf([] { parseVirtualRoot("apiVersion: v1\n", "t.yaml"); }),
              "t.yaml: kind: required field is missing");
    EXPECT_EQ(errorOf([] { parseVirtualRoot("apiVersion: v2\nkind: VirtualRoot\n", "t.yaml"); }),
              "t.yaml:1: apiVersion: `v2` is not supported (expected `v1`)");
    EXPECT_EQ(errorOf([] { parseVirtualRoot("apiVersion: v1\nkind: Pod\n", "t.yaml"); }),
              "t.yaml:2: kind: `Pod` is not supported (expected `VirtualRoot`)");
    EXPECT_EQ(
        errorOf([] { parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nstatus: {}\n", "t"); }),
        "t:3: status: unknown field");
}

TEST(SpecParseTest, RefusesBadSyntax) {
    EXPECT_EQ(errorOf([] { parseVirtualRoot("apiVersion: v1\nkind: [VirtualRoot\n", "t.yaml"); }),
              "t.yaml:3:1: invalid YAML: end of sequence flow not found");
    EXPECT_EQ(errorOf([] {
                  parseVirtualRoot("apiVersion: v1\n  kind: x\n", "t.yaml");
              }).rfind("t.yaml:2:", 0),
              0u);
    // JSON that YAML cannot read either: JSON's parser says why
    EXPECT_EQ(errorOf([] { parseVirtualRoot("{\n  \"apiVersion\": \"v1\",,\n}\n", "t.json"); }),
              "t.json:2:22: invalid JSON: syntax error while parsing object key - unexpected ','; "
              "expected string literal");
    EXPECT_EQ(errorOf([] { parseVirtualRoot(R"({"apiVersion": 1e99999,,})", "t.json"); }),
              "t.json: invalid JSON: number overflow parsing '1e99999'");
    // not JSON but YAML in flow style: fine
    EXPECT_EQ(parseVirtualRoot("{apiVersion: v1, kind: VirtualRoot, spec: {hostname: h}}", "t"),
              json::parse(R"({"hostname": "h"})"));
    // valid JSON with a duplicate key is still refused
    EXPECT_EQ(errorOf([] {
                  parseVirtualRoot(R"({"apiVersion": "v1", "kind": "VirtualRoot", "kind": "x"})",
                                   "t");
              }),
              "t:1: kind: duplicate key");
    EXPECT_EQ(errorOf([] {
                  parseVirtualRoot("apiVersion: v1\napiVersion: v1\nkind: VirtualRoot\n", "t");
              }),
              "t:2: apiVersion: duplicate key");
    EXPECT_EQ(specError("  image: !custom x\n"), "t.yaml:4: spec.image: unsupported tag `!custom`");
    EXPECT_EQ(specError("  init: !!bool maybe\n"), "t.yaml:4: spec.init: `maybe` is not a boolean");
    EXPECT_EQ(specError("  ? [a]\n  : b\n"), "t.yaml:4: spec: keys must be strings");
}

TEST(SpecParseTest, RefusesInvalidUtf8) {
    EXPECT_EQ(specError("  hostname: \"a\xff"
                        "b\"\n"),
              "t.yaml:4: spec.hostname: not valid UTF-8");
    EXPECT_EQ(specError("  \xff: 1\n"), "t.yaml:4: spec: a key is not valid UTF-8");
    EXPECT_NE(
        errorOf([] { parseVirtualRoot("{\"apiVersion\": \"\xff\"}", "t.json"); }).find("t.json"),
        std::string::npos);
}

// yaml-cpp 0.7's LoadAll reads these as endless empty documents until memory runs out.
TEST(SpecParseTest, StrayFlowIndicators) {
    for (const char *text : {",", ", a", ",x: 1", "apiVersion: v1\n---\n,", "]", "}"}) {
        std::string message = errorOf([&] { parseVirtualRoot(text, "t.yaml"); });
        EXPECT_EQ(message.rfind("t.yaml", 0), 0u) << text << ": " << message;
    }
    EXPECT_EQ(errorOf([] { parseVirtualRoot(",", "t.yaml"); }),
              "t.yaml:1:1: invalid YAML: unexpected character `,`");
}

TEST(SpecParseTest, ExplicitStringTagKeepsText) {
    EXPECT_EQ(parseSpec("  environment: [{ name: A, value: !!str 010 }]\n")["process"]["env"][0],
              "A=010");
    EXPECT_EQ(parseSpec("  stopTimeout: !!int 5\n")["stopTimeout"], 5);
}

TEST(SpecParseTest, RefusesAliasBombs) {
    std::string yaml = "apiVersion: v1\nkind: VirtualRoot\nmetadata:\n  annotations:\n"
                       "    a: &a [x, x, x, x, x, x, x, x, x, x]\n";
    std::string prev = "a";
    for (char c = 'b'; c <= 'h'; ++c) {
        yaml += std::string("    ") + c + ": &" + c + " [";
        for (int i = 0; i < 10; ++i) yaml += std::string(i ? ", *" : "*") + prev;
        yaml += "]\n";
        prev = std::string(1, c);
    }
    EXPECT_EQ(errorOf([&] { parseVirtualRoot(yaml, "bomb.yaml"); }),
              "bomb.yaml: the document is too large (more than 10000 values)");
}

TEST(SpecParseTest, RefusesDeepNesting) {
    std::string yaml = "apiVersion: v1\nkind: VirtualRoot\nspec: " + std::string(100, '[') +
                       std::string(100, ']') + "\n";
    EXPECT_NE(errorOf([&] { parseVirtualRoot(yaml, "t"); }).find("nested too deeply"),
              std::string::npos);
}

TEST(SpecParseTest, RefusesWrongTypes) {
    EXPECT_EQ(specError("  resources: [a]\n"),
              "t.yaml:4: spec.resources: expected a mapping, not a list");
    EXPECT_EQ(specError("  command: /bin/sh\n"),
              "t.yaml:4: spec.command: expected a list, not a string");
    EXPECT_EQ(specError("  command: [[a]]\n"),
              "t.yaml:4: spec.command[0]: expected a string, not a list");
    EXPECT_EQ(specError("  init: yes\n"),
              "t.yaml:4: spec.init: `yes` is not a boolean (true or false)");
    EXPECT_EQ(specError("  init: \"true\"\n"),
              "t.yaml:4: spec.init: `true` is not a boolean (true or false)");
    EXPECT_EQ(specError("  stopTimeout: \"10\"\n"),
              "t.yaml:4: spec.stopTimeout: `10` is not an integer");
    EXPECT_EQ(specError("  stopTimeout: 1.5\n"),
              "t.yaml:4: spec.stopTimeout: `1.5` is not an integer");
    EXPECT_EQ(specError("  image: ''\n"), "t.yaml:4: spec.image: must not be empty");
    EXPECT_EQ(specError("  image: a b\n"), "t.yaml:4: spec.image: `a b` is not an image reference");
    EXPECT_EQ(specError("  rootfs: {}\n"),
              "t.yaml:4: spec.rootfs: expected a string, not a mapping");
}

TEST(SpecParseTest, RefusesBadProcessFields) {
    EXPECT_EQ(specError("  workingDir: app\n"),
              "t.yaml:4: spec.workingDir: `app` is not an absolute path");
    EXPECT_EQ(
        specError("  hostname: -x\n"),
        "t.yaml:4: spec.hostname: `-x` is not a valid hostname (1 to 64 letters, digits, `-`, "
        "`_`, `.`)");
    EXPECT_EQ(specError("  hostname: a\n  networking: { hostname: b }\n"),
              "t.yaml:5: spec.networking.hostname: `b` conflicts with spec.hostname `a`");
    EXPECT_EQ(specError("  stopTimeout: -1\n"),
              "t.yaml:4: spec.stopTimeout: `-1` is out of range (0 to 86400)");
    EXPECT_EQ(specError("  stopTimeout: 86401\n"),
              "t.yaml:4: spec.stopTimeout: `86401` is out of range (0 to 86400)");
    EXPECT_EQ(specError("  stopSignal: SIGFOO\n"),
              "t.yaml:4: spec.stopSignal: `SIGFOO` is not a signal");
    EXPECT_EQ(specError("  stopSignal: 0\n"),
              "t.yaml:4: spec.stopSignal: `0` is not a signal number (1 to 64)");
    EXPECT_EQ(specError("  environment: [{ value: x }]\n"),
              "t.yaml:4: spec.environment[0].name: required field is missing");
    EXPECT_EQ(
        specError("  environment: [{ name: A=B }]\n"),
        "t.yaml:4: spec.environment[0].name: `A=B` is not a variable name (no `=` or whitespace)");
    EXPECT_EQ(specError("  environment: [{ name: '' }]\n"),
              "t.yaml:4: spec.environment[0].name: must not be empty");
    EXPECT_EQ(specError("  environment: [{ name: A, valueFrom: x }]\n"),
              "t.yaml:4: spec.environment[0].valueFrom: unknown field");
    EXPECT_EQ(
        specError("  ulimits: [{ name: nofle, soft: 1 }]\n")
            .rfind(
                "t.yaml:4: spec.ulimits[0].name: `nofle` is not a resource limit (one of as core",
                0),
        0u);
    EXPECT_EQ(specError("  ulimits: [{ name: nofile, soft: 20, hard: 10 }]\n"),
              "t.yaml:4: spec.ulimits[0].soft: the soft limit is above the hard limit");
    EXPECT_EQ(specError("  ulimits: [{ name: nofile, soft: unlimited, hard: 10 }]\n"),
              "t.yaml:4: spec.ulimits[0].soft: the soft limit is above the hard limit");
    EXPECT_EQ(specError("  ulimits: [{ name: nofile, soft: -2 }]\n"),
              "t.yaml:4: spec.ulimits[0].soft: `-2` is out of range (-1 to 9223372036854775807)");
    EXPECT_EQ(specError("  ulimits: [{ name: nofile, soft: lots }]\n"),
              "t.yaml:4: spec.ulimits[0].soft: `lots` is not a number or `unlimited`");
    EXPECT_EQ(specError("  ulimits: [{ name: nofile }]\n"),
              "t.yaml:4: spec.ulimits[0].soft: required field is missing");
    EXPECT_EQ(
        specError("  ulimits:\n    - { name: nofile, soft: 1 }\n    - { name: NOFILE, soft: 2 }\n"),
        "t.yaml:6: spec.ulimits[1].name: `NOFILE` is already limited by spec.ulimits[0].name");
}

TEST(SpecParseTest, RefusesBadResources) {
    EXPECT_EQ(specError("  resources: { limits: { memory: 1Ki } }\n"),
              "t.yaml:4: spec.resources.limits.memory: `1Ki` is below the minimum `4Mi`");
    EXPECT_EQ(specError("  resources: { limits: { memory: 2Pi } }\n"),
              "t.yaml:4: spec.resources.limits.memory: `2Pi` is above the maximum `1Pi`");
    EXPECT_EQ(
        specError("  resources: { limits: { memory: 512m } }\n"),
        "t.yaml:4: spec.resources.limits.memory: `512m` is not a quantity of bytes (`m` means "
        "milli; did you mean `512Mi`?)");
    EXPECT_EQ(specError("  resources: { limits: { memory: -1Gi } }\n"),
              "t.yaml:4: spec.resources.limits.memory: `-1Gi` is negative");
    EXPECT_EQ(
        specError("  resources: { limits: { memory: [1] } }\n"),
        "t.yaml:4: spec.resources.limits.memory: expected a quantity such as `512Mi`, not a list");
    EXPECT_EQ(specError("  resources: { limits: { storage: 10Pi } }\n"),
              "t.yaml:4: spec.resources.limits.storage: `10Pi` is above the maximum `8Pi`");
    EXPECT_EQ(specError("  resources: { requests: { cpu: -1 } }\n"),
              "t.yaml:4: spec.resources.requests.cpu: `-1` is negative");
    EXPECT_EQ(specError("  resources: { requests: { cpu: 0 } }\n"),
              "t.yaml:4: spec.resources.requests.cpu: `0` is below the minimum `1m`");
    EXPECT_EQ(specError("  resources: { limits: { cpu: 5000 } }\n"),
              "t.yaml:4: spec.resources.limits.cpu: `5000` is above the maximum `4096`");
    EXPECT_EQ(
        specError("  resources: { limits: { cpu: 0.0001 } }\n"),
        "t.yaml:4: spec.resources.limits.cpu: `0.0001` is finer than `1m` (a thousandth of a CPU)");
    EXPECT_EQ(specError("  resources: { limits: { pids: 0 } }\n"),
              "t.yaml:4: spec.resources.limits.pids: `0` is out of range (1 to 4194304)");
    EXPECT_EQ(specError("  resources: { requests: { pids: 10 } }\n"),
              "t.yaml:4: spec.resources.requests.pids: unknown field");
    EXPECT_EQ(specError("  resources: { cpuset: 3-1 }\n"),
              "t.yaml:4: spec.resources.cpuset: `3-1` is not a CPU list such as `0-3,6`");
    EXPECT_EQ(
        specError("  resources:\n    requests: { memory: 8Gi }\n    limits: { memory: 4Gi }\n"),
        "t.yaml:5: spec.resources.requests.memory: `8Gi` is above the limit `4Gi`");
}

TEST(SpecParseTest, RefusesBadSecurity) {
    EXPECT_EQ(specError("  security: { runAsUser: 4294967295 }\n"),
              "t.yaml:4: spec.security.runAsUser: `4294967295` is out of range (0 to 4294967294)");
    EXPECT_EQ(specError("  security: { runAsUser: -1 }\n"),
              "t.yaml:4: spec.security.runAsUser: `-1` is out of range (0 to 4294967294)");
    EXPECT_EQ(specError("  security: { runAsUser: root }\n"),
              "t.yaml:4: spec.security.runAsUser: `root` is not an integer");
    EXPECT_EQ(specError("  security: { supplementalGroups: [1, x] }\n"),
              "t.yaml:4: spec.security.supplementalGroups[1]: `x` is not an integer");
    EXPECT_EQ(specError("  security: { capabilities: { add: [CAP_FOO] } }\n"),
              "t.yaml:4: spec.security.capabilities.add[0]: `CAP_FOO` is not a capability");
    EXPECT_EQ(
        specError("  security: { seccompProfile: { type: Default } }\n"),
        "t.yaml:4: spec.security.seccompProfile.type: `Default` is not one of `RuntimeDefault`, "
        "`Unconfined`, `Localhost`");
    EXPECT_EQ(
        specError("  security: { seccompProfile: { type: Localhost } }\n"),
        "t.yaml:4: spec.security.seccompProfile.localhostProfile: required with type `Localhost`");
    EXPECT_EQ(specError("  security: { seccompProfile: { localhostProfile: /x } }\n"),
              "t.yaml:4: spec.security.seccompProfile.type: required field is missing");
    EXPECT_EQ(specError("  security: { runAsNonRoot: true }\n"),
              "t.yaml:4: spec.security.runAsNonRoot: unknown field");
}

TEST(SpecParseTest, RefusesBadNetworking) {
    EXPECT_EQ(
        specError("  networking: { mode: 'a b' }\n"),
        "t.yaml:4: spec.networking.mode: `a b` is not `bridge`, `host`, `none`, `private` or a "
        "network name");
    EXPECT_EQ(specError("  networking: { ports: [{ containerPort: 0 }] }\n"),
              "t.yaml:4: spec.networking.ports[0].containerPort: `0` is out of range (1 to 65535)");
    EXPECT_EQ(specError("  networking: { ports: [{ containerPort: 80, hostPort: 65536 }] }\n"),
              "t.yaml:4: spec.networking.ports[0].hostPort: `65536` is out of range (1 to 65535)");
    EXPECT_EQ(specError("  networking: { ports: [{ hostPort: 80 }] }\n"),
              "t.yaml:4: spec.networking.ports[0].containerPort: required field is missing");
    EXPECT_EQ(specError("  networking: { ports: [{ containerPort: 80, protocol: icmp }] }\n"),
              "t.yaml:4: spec.networking.ports[0].protocol: `icmp` is not `TCP`, `UDP` or `SCTP`");
    EXPECT_EQ(specError("  networking: { ports: [{ containerPort: 80, hostIP: 1.2.3 }] }\n"),
              "t.yaml:4: spec.networking.ports[0].hostIP: `1.2.3` is not an IP address");
    EXPECT_EQ(
        specError("  networking:\n    ports:\n      - { containerPort: 80, hostPort: 8080 }\n"
                  "      - { containerPort: 81, hostPort: 8080 }\n"),
        "t.yaml:7: spec.networking.ports[1].hostPort: host port `8080/tcp` is already published by "
        "spec.networking.ports[0]");
    EXPECT_EQ(specError("  networking: { dns: { nameservers: [dns.google] } }\n"),
              "t.yaml:4: spec.networking.dns.nameservers[0]: `dns.google` is not an IP address");
    EXPECT_EQ(specError("  networking: { dns: { searches: ['-bad'] } }\n"),
              "t.yaml:4: spec.networking.dns.searches[0]: `-bad` is not a domain name");
}

TEST(SpecParseTest, RefusesBadVolumes) {
    EXPECT_EQ(
        specError("  volumes: [{ name: a, containerPath: /a }]\n"),
        "t.yaml:4: spec.volumes[0]: needs a source: one of `hostPath`, `configMap`, `emptyDir`, "
        "`volume`");
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, volume: b, containerPath: /a }]\n"),
              "t.yaml:4: spec.volumes[0]: has more than one source (`hostPath` and `volume`)");
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, containerPath: a }]\n"),
              "t.yaml:4: spec.volumes[0].containerPath: `a` is not an absolute path");
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, containerPath: / }]\n"),
              "t.yaml:4: spec.volumes[0].containerPath: `/` is the container's root");
    EXPECT_EQ(specError("  volumes: [{ hostPath: /a, containerPath: /a }]\n"),
              "t.yaml:4: spec.volumes[0].name: required field is missing");
    EXPECT_EQ(specError("  volumes: [{ name: 'a/b', hostPath: /a, containerPath: /a }]\n"),
              "t.yaml:4: spec.volumes[0].name: `a/b` is not a valid volume name "
              "([a-zA-Z0-9][a-zA-Z0-9_.-]{0,62})");
    EXPECT_EQ(specError("  volumes:\n    - { name: a, hostPath: /a, containerPath: /a }\n"
                        "    - { name: a, hostPath: /b, containerPath: /b }\n"),
              "t.yaml:6: spec.volumes[1].name: `a` is already the name of spec.volumes[0].name");
    EXPECT_EQ(specError("  volumes:\n    - { name: a, hostPath: /a, containerPath: /a }\n"
                        "    - { name: b, hostPath: /b, containerPath: /a/ }\n"),
              "t.yaml:6: spec.volumes[1].containerPath: `/a/` is already mounted by "
              "spec.volumes[0].containerPath");
    EXPECT_EQ(
        specError("  volumes: [{ name: a, emptyDir: { medium: Disk }, containerPath: /a }]\n"),
        "t.yaml:4: spec.volumes[0].emptyDir.medium: `Disk` is not `Memory` or empty");
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, containerPath: /a, readOnly: 1 }]\n"),
              "t.yaml:4: spec.volumes[0].readOnly: `1` is not a boolean (true or false)");
    EXPECT_EQ(specError("  volumes: { a: b }\n"),
              "t.yaml:4: spec.volumes: expected a list, not a mapping");
}

TEST(SpecParseTest, RefusesBadUserns) {
    EXPECT_EQ(specError("  userns: 100000\n"), "t.yaml:4: spec.userns: expected `HOSTID:SIZE` or a "
                                               "mapping with uidMappings, not a number");
    EXPECT_EQ(specError("  userns: 'x:1'\n"),
              "t.yaml:4: spec.userns: `x:1`: expected HOSTID:SIZE or CONTAINERID:HOSTID:SIZE");
    EXPECT_EQ(specError("  userns: { gidMappings: [{containerID: 0, hostID: 1, size: 1}] }\n"),
              "t.yaml:4: spec.userns.uidMappings: required field is missing");
    EXPECT_EQ(specError("  userns: { uidMappings: [] }\n"),
              "t.yaml:4: spec.userns.uidMappings: must not be empty");
    EXPECT_EQ(specError("  userns: { uidMappings: [{containerID: 0, hostID: 1, size: 0}] }\n"),
              "t.yaml:4: spec.userns.uidMappings[0].size: `0` is out of range (1 to 4294967295)");
    EXPECT_EQ(specError("  userns: { uidMappings: [{containerID: 0, hostID: 1}] }\n"),
              "t.yaml:4: spec.userns.uidMappings[0].size: required field is missing");
    EXPECT_EQ(
        specError(
            "  userns:\n    uidMappings:\n      - {containerID: 0, hostID: 100000, size: 10}\n"
            "      - {containerID: 5, hostID: 200000, size: 10}\n"),
        "t.yaml:7: spec.userns.uidMappings[1]: container ids overlap spec.userns.uidMappings[0]");
    EXPECT_EQ(
        specError(
            "  userns:\n    uidMappings:\n      - {containerID: 0, hostID: 100000, size: 10}\n"
            "      - {containerID: 10, hostID: 100005, size: 10}\n"),
        "t.yaml:7: spec.userns.uidMappings[1]: host ids overlap spec.userns.uidMappings[0]");
    EXPECT_EQ(
        specError("  userns: { uidMappings: [{containerID: 4294967294, hostID: 1, size: 2}] }\n"),
        "t.yaml:4: spec.userns.uidMappings[0]: the range goes past id 4294967294");
}

TEST(SpecParseTest, RefusesBadPolicies) {
    EXPECT_EQ(
        specError("  restartPolicy: sometimes\n"),
        "t.yaml:4: spec.restartPolicy: `sometimes` is not a restart policy (`Never`, `Always`, "
        "`OnFailure[:N]`, `unless-stopped`)");
    EXPECT_EQ(
        specError("  restartPolicy: Always:3\n"),
        "t.yaml:4: spec.restartPolicy: `Always:3` is not a restart policy (a retry count goes with "
        "`OnFailure:N`)");
    EXPECT_EQ(specError("  verify: maybe\n"),
              "t.yaml:4: spec.verify: `maybe` is not one of `off`, `lazy`, `strict`");
    EXPECT_EQ(
        specError("  runtime: 'no such'\n"),
        "t.yaml:4: spec.runtime: `no such` is not a runtime name (such as `namespace` or `krun`)");
}

TEST(SpecParseTest, RefusesBadMetadata) {
    auto meta = [](const std::string &body) {
        return errorOf([&] {
            parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nmetadata:\n" + body, "t.yaml");
        });
    };
    EXPECT_EQ(
        meta("  name: a/b\n"),
        "t.yaml:4: metadata.name: `a/b` is not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})");
    EXPECT_EQ(meta("  name: " + std::string(129, 'a') + "\n").find("is not a valid name"),
              std::string(129, 'a').size() + std::string("t.yaml:4: metadata.name: ``").size() + 1);
    EXPECT_EQ(meta("  labels: { 'a b': c }\n"),
              "t.yaml:4: metadata.labels.a b: invalid key `a b` (1 to 253 characters, no spaces)");
    EXPECT_EQ(meta("  labels: { a: [b] }\n"),
              "t.yaml:4: metadata.labels.a: expected a string, not a list");
    EXPECT_EQ(meta("  uid: x\n"), "t.yaml:4: metadata.uid: unknown field");
}

} // namespace

TEST(SpecParseTest, SwapSwappinessAndBlkioWeight) {
    json s = parseSpec("  resources: { memorySwap: 256Mi, memorySwappiness: 10, blkioWeight: 300,\n"
                       "               limits: { memory: 128Mi } }\n");
    EXPECT_EQ(s["resources"]["memorySwap"], 256 * 1024 * 1024);
    EXPECT_EQ(s["resources"]["memorySwappiness"], 10);
    EXPECT_EQ(s["resources"]["blkioWeight"], 300);
    EXPECT_EQ(parseSpec("  resources: { memorySwap: -1 }\n")["resources"]["memorySwap"], -1);
    EXPECT_THROW(parseSpec("  resources: { blkioWeight: 5 }\n"), mobileops::core::Error);
    EXPECT_THROW(parseSpec("  resources: { memorySwappiness: 101 }\n"), mobileops::core::Error);
}

TEST(SpecParseTest, SystemContainerFields) {
    json s = parseSpec("  rootfsImage: /img/root.img\n  volatile: true\n  softMounts: true\n");
    EXPECT_EQ(s["rootfsImage"], "/img/root.img");
    EXPECT_EQ(s["volatile"], true);
    EXPECT_EQ(s["softMounts"], true);
    EXPECT_EQ(specError("  volatile: yes please\n"),
              "t.yaml:4: spec.volatile: `yes please` is not a boolean (true or false)");
    EXPECT_EQ(specError("  softMount: true\n"),
              "t.yaml:4: spec.softMount: unknown field (did you mean `softMounts`?)");
}

TEST(SpecParseTest, HostPathVolumeChecks) {
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, containerPath: /x/../etc }]\n"),
              "t.yaml:4: spec.volumes[0].containerPath: `/x/../etc` contains `..`");
    EXPECT_EQ(specError("  volumes: [{ name: a, hostPath: /a, containerPath: '/..' }]\n"),
              "t.yaml:4: spec.volumes[0].containerPath: `/..` contains `..`");
    // `..` inside a name is just a name.
    EXPECT_EQ(
        parseSpec("  volumes: [{ name: a, hostPath: /a, containerPath: /x..y }]\n")["mounts"][0]
                                                                                   ["destination"],
        "/x..y");
    std::string many = "  volumes:\n";
    for (int i = 0; i < 65; ++i)
        many += "    - { name: v" + std::to_string(i) + ", hostPath: /a, containerPath: /v" +
                std::to_string(i) + " }\n";
    EXPECT_EQ(specError(many), "t.yaml:4: spec.volumes: 65 volumes, at most 64 per container");
    many.erase(many.rfind("    - {"));
    EXPECT_EQ(parseSpec(many)["mounts"].size(), 64u);
}

TEST(SpecParseTest, InitSystemAndHardwareAccess) {
    json s = parseSpec("  initSystem: true\n  hardwareAccess: true\n");
    EXPECT_EQ(s["initSystem"], true);
    EXPECT_EQ(s["hardwareAccess"], true);
    EXPECT_FALSE(s.contains("process")) << "the command and stop signal default in finalize";
    EXPECT_EQ(specError("  initSystem: systemd\n"),
              "t.yaml:4: spec.initSystem: `systemd` is not a boolean (true or false)");
    EXPECT_EQ(specError("  hardwareAccess: 1\n"),
              "t.yaml:4: spec.hardwareAccess: `1` is not a boolean (true or false)");
    EXPECT_EQ(specError("  initsystem: true\n"),
              "t.yaml:4: spec.initsystem: unknown field (did you mean `initSystem`?)");
}

TEST(SpecParseTest, DeviceRules) {
    json s = parseSpec("  resources:\n    devices:\n"
                       "      - { allow: false }\n"
                       "      - { allow: true, type: c, major: 10, minor: 229, access: rw }\n"
                       "      - { allow: true, type: b, major: -1, access: m }\n");
    EXPECT_EQ(s["resources"]["devices"], json::parse(R"([
        {"allow": false, "type": "a", "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        {"allow": true, "type": "b", "access": "m"}])"));
    EXPECT_NE(s["unapplied"].dump().find("spec.resources.devices"), std::string::npos)
        << "listed until a cgroup service takes it";
    EXPECT_EQ(specError("  resources:\n    devices: [{ allow: true, type: u }]\n"),
              "t.yaml:5: spec.resources.devices[0].type: `u` is not a device type (a, c, b)");
    EXPECT_EQ(specError("  resources:\n    devices: [{ allow: true, access: rwx }]\n"),
              "t.yaml:5: spec.resources.devices[0].access: `rwx` is not an access such as `rwm`");
    EXPECT_EQ(specError("  resources:\n    devices: [{ type: c }]\n"),
              "t.yaml:5: spec.resources.devices[0].allow: required field is missing");
    EXPECT_NE(specError("  resources:\n    devices: [{ allow: true, major: 1048576 }]\n")
                  .find("spec.resources.devices[0].major"),
              std::string::npos);
    EXPECT_NE(specError("  resources:\n    devices: [{ allow: true, path: /dev/sda }]\n")
                  .find("spec.resources.devices[0].path: unknown field"),
              std::string::npos);
}

TEST(SpecParseTest, DeviceThrottleAndIgnoreUnsupported) {
    EXPECT_EQ(
        parseSpec("  resources: { ignoreUnsupported: true }\n")["resources"]["ignoreUnsupported"],
        true);
    EXPECT_EQ(
        specError("  resources:\n    deviceThrottle: [{ device: /dev/null, readBps: 1Mi }]\n"),
        "t.yaml:5: spec.resources.deviceThrottle[0].device: `/dev/null` is not a block "
        "device");
    EXPECT_EQ(specError("  resources:\n    deviceThrottle: [{ device: dev/vda, readBps: 1Mi }]\n"),
              "t.yaml:5: spec.resources.deviceThrottle[0].device: `dev/vda` is not an absolute "
              "path");
    // a block device of this machine, if it has one
    std::string device;
    for (const auto &e : std::filesystem::directory_iterator("/sys/class/block")) {
        std::string name = e.path().filename();
        struct stat st {};
        if (::stat(("/dev/" + name).c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
            device = "/dev/" + name;
            break;
        }
    }
    if (device.empty()) GTEST_SKIP() << "no block device node in /dev";
    EXPECT_EQ(specError("  resources:\n    deviceThrottle: [{ device: " + device + " }]\n"),
              "t.yaml:5: spec.resources.deviceThrottle[0]: needs at least one of `readBps`, "
              "`writeBps`, `readIops`, `writeIops`");
    EXPECT_EQ(specError("  resources:\n    deviceThrottle: [{ device: " + device +
                        ", readIops: lots }]\n"),
              "t.yaml:5: spec.resources.deviceThrottle[0].readIops: `lots` is not an integer");
    json s = parseSpec("  resources:\n    deviceThrottle: [{ device: " + device +
                       ", readBps: 1Mi, writeIops: 100 }]\n");
    const json &t = s["resources"]["deviceThrottle"][0];
    EXPECT_EQ(t["device"], device);
    EXPECT_EQ(t["readBps"], 1048576);
    EXPECT_EQ(t["writeIops"], 100);
    EXPECT_TRUE(t["major"].is_number());
}

TEST(SpecParseTest, Logging) {
    EXPECT_EQ(parseSpec("  logging: { maxSize: 10Mi, maxAge: 7d }\n"),
              json::parse(R"({"logging": {"maxSize": 10485760, "maxAge": 604800}})"));
    EXPECT_EQ(parseSpec("  logging: { maxSize: 65536 }\n"),
              json::parse(R"({"logging": {"maxSize": 65536}})"));
    EXPECT_EQ(parseSpec("  logging: { maxSize: \"1Ti\" }\n")["logging"]["maxSize"], 1ull << 40);
    EXPECT_EQ(parseSpec("  logging: { maxSize: 1.5Mi }\n")["logging"]["maxSize"], 1572864);
    auto age = [](const std::string &text) {
        return parseSpec("  logging: { maxAge: \"" + text + "\" }\n")["logging"]["maxAge"];
    };
    EXPECT_EQ(age("1s"), 1);
    EXPECT_EQ(age("90m"), 5400);
    EXPECT_EQ(age("1h30m"), 5400);
    EXPECT_EQ(age("2w3d4h5m6s"), 2 * 604800 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6);
    EXPECT_EQ(age("0h1s"), 1);
    EXPECT_EQ(age("3650d"), 3650 * 86400);
    EXPECT_EQ(age("521w3d"), 3650 * 86400);
    // nothing given is no logging block
    EXPECT_EQ(parseSpec("  logging: {}\n"), json::object());
    EXPECT_EQ(parseSpec("  logging:\n"), json::object());
    EXPECT_EQ(parseSpec("  logging: { maxSize: ~ }\n"), json::object());
    // JSON gives the same
    EXPECT_EQ(parseVirtualRoot(R"({"apiVersion": "v1", "kind": "VirtualRoot",
                                   "spec": {"logging": {"maxSize": "10Mi", "maxAge": "12h"}}})",
                               "t.json")["logging"],
              json::parse(R"({"maxSize": 10485760, "maxAge": 43200})"));
}

TEST(SpecParseTest, RefusesBadLogging) {
    EXPECT_EQ(specError("  logging: { maxSize: 10Mx }\n"),
              "t.yaml:4: spec.logging.maxSize: `10Mx` is not a quantity");
    EXPECT_EQ(specError("  logging: { maxSize: 10mb }\n"),
              "t.yaml:4: spec.logging.maxSize: `10mb` is not a quantity");
    EXPECT_EQ(specError("  logging: { maxSize: 63Ki }\n"),
              "t.yaml:4: spec.logging.maxSize: `63Ki` is below the minimum `64Ki`");
    EXPECT_EQ(specError("  logging: { maxSize: 65535 }\n"),
              "t.yaml:4: spec.logging.maxSize: `65535` is below the minimum `64Ki`");
    EXPECT_EQ(specError("  logging: { maxSize: 1025Gi }\n"),
              "t.yaml:4: spec.logging.maxSize: `1025Gi` is above the maximum `1Ti`");
    EXPECT_EQ(specError("  logging: { maxSize: -1Mi }\n"),
              "t.yaml:4: spec.logging.maxSize: `-1Mi` is negative");
    EXPECT_EQ(specError("  logging: { maxSize: [1] }\n"),
              "t.yaml:4: spec.logging.maxSize: expected a quantity such as `10Mi`, not a list");
    EXPECT_EQ(specError("  logging: { maxSize: true }\n"),
              "t.yaml:4: spec.logging.maxSize: expected a quantity such as `10Mi`, not a boolean");

    const std::string form = "is not a duration such as `7d` or `1h30m` (whole numbers with "
                             "units w, d, h, m, s, largest first)";
    for (const char *bad : {"7x", "7", "d", "7D", "1.5h", "1h 30m", "30m1h", "1m1m", "-1d", "1h30",
                            "h1", "1y", "+1d", "7days"})
        EXPECT_EQ(specError(std::string("  logging: { maxAge: \"") + bad + "\" }\n"),
                  std::string("t.yaml:4: spec.logging.maxAge: `") + bad + "` " + form)
            << bad;
    EXPECT_EQ(specError("  logging: { maxAge: \"\" }\n"),
              "t.yaml:4: spec.logging.maxAge: an empty value " + form);
    // a plain number has no unit
    EXPECT_EQ(specError("  logging: { maxAge: 3600 }\n"),
              "t.yaml:4: spec.logging.maxAge: `3600` " + form);
    EXPECT_EQ(specError("  logging: { maxAge: 0s }\n"),
              "t.yaml:4: spec.logging.maxAge: `0s` is below the minimum `1s`");
    EXPECT_EQ(specError("  logging: { maxAge: 0d0h }\n"),
              "t.yaml:4: spec.logging.maxAge: `0d0h` is below the minimum `1s`");
    EXPECT_EQ(specError("  logging: { maxAge: 3650d1s }\n"),
              "t.yaml:4: spec.logging.maxAge: `3650d1s` is above the maximum `3650d`");
    EXPECT_EQ(specError("  logging: { maxAge: 522w }\n"),
              "t.yaml:4: spec.logging.maxAge: `522w` is above the maximum `3650d`");
    EXPECT_EQ(specError("  logging: { maxAge: 99999999999999999999s }\n"),
              "t.yaml:4: spec.logging.maxAge: `99999999999999999999s` is above the maximum "
              "`3650d`");
    EXPECT_EQ(specError("  logging: { maxAge: { days: 7 } }\n"),
              "t.yaml:4: spec.logging.maxAge: expected a duration such as `7d`, not a mapping");

    EXPECT_EQ(specError("  logging: { maxsize: 10Mi }\n"),
              "t.yaml:4: spec.logging.maxsize: unknown field (did you mean `maxSize`?)");
    EXPECT_EQ(specError("  logging: { maxAge: 7d, driver: json-file }\n"),
              "t.yaml:4: spec.logging.driver: unknown field");
    EXPECT_EQ(specError("  logging: 10Mi\n"),
              "t.yaml:4: spec.logging: expected a mapping, not a string");
    EXPECT_EQ(specError("  loging: {}\n"),
              "t.yaml:4: spec.loging: unknown field (did you mean `logging`?)");
}
