// Defaults and host checks before a runtime spec goes to the runtime, and the whole path
// from a VirtualRoot file and flags to the runtime spec.
#include "mobileops/core/Spec.h"

#include <gtest/gtest.h>

#include "SpecFixtures.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
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

class SpecFinalizeTest : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/mobileops-spec-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        _dir = dir;
        _rootfs = _dir + "/rootfs";
        std::filesystem::create_directories(_rootfs + "/bin");
        std::ofstream(_dir + "/file") << "not a directory";
    }
    void TearDown() override { std::filesystem::remove_all(_dir); }

    // A spec with what finalize needs: a rootfs and a command.
    json minimal() const { return {{"rootfs", _rootfs}, {"process", {{"args", {"/bin/sh"}}}}}; }

    std::string _dir;
    std::string _rootfs;
};

TEST_F(SpecFinalizeTest, Defaults) {
    json s = minimal();
    finalize(s);
    EXPECT_EQ(s, json::parse(R"({
        "rootfs": ")" + _rootfs +
                             R"(",
        "readonly": false,
        "process": {
            "args": ["/bin/sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0, "additionalGids": []},
            "terminal": false, "stdin": false, "init": false, "rlimits": []
        },
        "namespaces": {"pid": true, "mount": true, "uts": true, "ipc": true, "network": true,
                       "cgroup": true, "user": false},
        "network": {"mode": "private"},
        "mounts": [], "resources": {}, "security": {}, "annotations": {}, "unapplied": [],
        "stopSignal": 15, "stopTimeout": 10, "runtime": "namespace"})"));
}

// An OCI config.json may leave pid, uts and ipc out: the caller's (podman --pid host).
TEST_F(SpecFinalizeTest, PidUtsIpcMayBeTheCallers) {
    json s = minimal();
    s["namespaces"] = {{"pid", false}, {"ipc", false}};
    finalize(s);
    EXPECT_EQ(s["namespaces"], json({{"pid", false},
                                     {"mount", true},
                                     {"uts", true},
                                     {"ipc", false},
                                     {"network", true},
                                     {"cgroup", true},
                                     {"user", false}}));
    json bad = minimal();
    bad["namespaces"] = {{"pid", "no"}};
    EXPECT_THROW(finalize(bad), Error);
}

TEST_F(SpecFinalizeTest, EmptyTablesFromLua) {
    json s = minimal();
    s["mounts"] = json::object();
    s["unapplied"] = json::object();
    s["resources"] = json::array();
    s["process"]["env"] = json::object();
    finalize(s);
    EXPECT_EQ(s["mounts"], json::array());
    EXPECT_EQ(s["unapplied"], json::array());
    EXPECT_EQ(s["resources"], json::object());
    EXPECT_EQ(s["process"]["env"].size(), 1u);
}

TEST_F(SpecFinalizeTest, IsIdempotent) {
    json s = minimal();
    s["name"] = "web";
    finalize(s);
    json again = s;
    finalize(again);
    EXPECT_EQ(again, s);
}

TEST_F(SpecFinalizeTest, HostnameDefaultsToTheName) {
    json s = minimal();
    s["name"] = "web";
    finalize(s);
    EXPECT_EQ(s["hostname"], "web");
    s = minimal();
    s["name"] = std::string(100, 'n');
    finalize(s);
    EXPECT_EQ(s["hostname"], std::string(64, 'n'));
    s = minimal();
    finalize(s);
    EXPECT_FALSE(s.contains("hostname")) << "no name: the runtime names it after the id";
}

TEST_F(SpecFinalizeTest, KeepsTheUsersPath) {
    json s = minimal();
    setEnv(s, "A", "1");
    setEnv(s, "PATH", "/opt/bin");
    finalize(s);
    EXPECT_EQ(s["process"]["env"], json::parse(R"(["A=1", "PATH=/opt/bin"])"));
}

TEST_F(SpecFinalizeTest, RootfsIsCanonical) {
    std::filesystem::create_symlink(_rootfs, _dir + "/link");
    json s = minimal();
    s["rootfs"] = _dir + "/link/bin/..";
    finalize(s);
    EXPECT_EQ(s["rootfs"], _rootfs);
}

TEST_F(SpecFinalizeTest, RootfsErrors) {
    json s = minimal();
    s["rootfs"] = _dir + "/missing";
    EXPECT_EQ(errorOf([&] { finalize(s); }, -ENOENT),
              "rootfs `" + _dir + "/missing`: No such file or directory");
    s["rootfs"] = _dir + "/file";
    EXPECT_EQ(errorOf([&] { finalize(s); }), "rootfs `" + _dir + "/file` is not a directory");
    s.erase("rootfs");
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "no rootfs given: give a rootfs directory (spec.rootfs or ROOTFS)");
    s["rootfs"] = "";
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "no rootfs given: give a rootfs directory (spec.rootfs or ROOTFS)");
    s["image"] = "busybox";
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "image `busybox` is not resolved (no imageId): resolve it in the image store "
              "(mo.plugins.storage.image_resolve) or give a rootfs directory (spec.rootfs or "
              "ROOTFS)");
}

TEST_F(SpecFinalizeTest, NameAndCommandErrors) {
    json s = minimal();
    s["name"] = "a/b";
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "invalid container name `a/b`: expected 1 to 128 letters, digits, `_`, `.`, `-`, "
              "starting with a letter or digit");
    s = minimal();
    s["process"].erase("args");
    EXPECT_EQ(errorOf([&] { finalize(s); }), "no command given and the image has none");
    s["process"]["args"] = json::array();
    EXPECT_EQ(errorOf([&] { finalize(s); }), "no command given and the image has none");
    s["process"]["args"] = {""};
    EXPECT_EQ(errorOf([&] { finalize(s); }), "invalid command: the program name is empty");
    s = minimal();
    s["process"]["cwd"] = "relative";
    EXPECT_EQ(errorOf([&] { finalize(s); }), "process.cwd: `relative` is not an absolute path");
    s = minimal();
    s["process"]["args"] = {1};
    EXPECT_EQ(errorOf([&] { finalize(s); }), "process.args: expected a list of strings");
    s = minimal();
    s["network"] = {{"mode", "bridge"}};
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "network.mode: `bridge` is not `private`, `host` or `none`");
    json notObject = json::array();
    EXPECT_EQ(errorOf([&] { finalize(notObject); }), "spec: expected an object");
}

// What storage.image_resolve gives for an image: its id and its OCI config.
json withImage(json spec, json config) {
    spec["image"] = "app:1";
    spec["imageId"] = "sha256:" + std::string(64, 'a');
    spec["imageConfig"] = std::move(config);
    return spec;
}

const char *kAppConfig = R"({
    "Entrypoint": ["/bin/app"], "Cmd": ["--serve"], "Env": ["PATH=/opt/bin:/bin", "MODE=prod"],
    "WorkingDir": "/srv", "User": "app:staff", "StopSignal": "SIGQUIT",
    "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}}})";

TEST_F(SpecFinalizeTest, ImageDefaults) {
    json s = withImage(json::object(), json::parse(kAppConfig));
    finalize(s);
    EXPECT_FALSE(s.contains("rootfs"));
    EXPECT_FALSE(s.contains("imageConfig"));
    EXPECT_EQ(s["image"], "app:1");
    EXPECT_EQ(s["imageId"], "sha256:" + std::string(64, 'a'));
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/bin/app", "--serve"])"));
    EXPECT_EQ(s["process"]["env"], json::parse(R"(["PATH=/opt/bin:/bin", "MODE=prod"])"));
    EXPECT_EQ(s["process"]["cwd"], "/srv");
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"name": "app:staff", "additionalGids": []})"));
    EXPECT_EQ(s["stopSignal"], SIGQUIT);
}

TEST_F(SpecFinalizeTest, SpecOverridesImageDefaults) {
    // CMD (process.args) replaces Cmd and keeps the Entrypoint, as podman does
    json s = withImage(json::object(), json::parse(kAppConfig));
    applyOptions(s, json::parse(R"({"command": ["--check"], "env": ["MODE=dev", "X=1"],
        "workdir": "/tmp", "user": "1000:1000", "group_add": ["5"]})"));
    s["stopSignal"] = 2;
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/bin/app", "--check"])"));
    EXPECT_EQ(s["process"]["env"], json::parse(R"(["PATH=/opt/bin:/bin", "MODE=dev", "X=1"])"));
    EXPECT_EQ(s["process"]["cwd"], "/tmp");
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"uid": 1000, "gid": 1000,
                                                    "additionalGids": [5]})"));
    EXPECT_EQ(s["stopSignal"], 2);

    // --group-add alone keeps the image's user
    s = withImage(json::object(), json::parse(kAppConfig));
    applyOptions(s, json::parse(R"({"group_add": ["5"]})"));
    finalize(s);
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"name": "app:staff", "additionalGids": [5]})"));

    // a VirtualRoot's `command` replaces the Entrypoint and drops Cmd; `args` alone keeps
    // the Entrypoint (Kubernetes' rules)
    s = withImage(parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n"
                                   "  command: [/bin/sh]\n",
                                   "t.yaml"),
                  json::parse(kAppConfig));
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/bin/sh"])"));
    s = withImage(parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n"
                                   "  args: [--debug]\n",
                                   "t.yaml"),
                  json::parse(kAppConfig));
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/bin/app", "--debug"])"));
    s = withImage(parseVirtualRoot("apiVersion: v1\nkind: VirtualRoot\nspec:\n"
                                   "  command: [/bin/sh, -c]\n  args: [date]\n",
                                   "t.yaml"),
                  json::parse(kAppConfig));
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/bin/sh", "-c", "date"])"));
}

TEST_F(SpecFinalizeTest, ImageWithoutACommand) {
    // both empty: the same error as without an image
    json s = withImage(json::object(), json::parse(R"({"Env": ["A=1"], "Cmd": null})"));
    EXPECT_EQ(errorOf([&] { finalize(s); }), "no command given and the image has none");
    s = withImage(json::object(), json::parse(R"({"Entrypoint": [], "Cmd": []})"));
    EXPECT_EQ(errorOf([&] { finalize(s); }), "no command given and the image has none");
    // an image without a PATH still gets the default one
    s = withImage(json::object(), json::parse(R"({"Cmd": ["sh"], "Env": ["A=1"]})"));
    finalize(s);
    EXPECT_EQ(s["process"]["env"][0], std::string("PATH=") + kDefaultPath);
    EXPECT_EQ(s["process"]["user"], json::parse(R"({"uid": 0, "gid": 0, "additionalGids": []})"));
    // an init system's default command only when the image has none
    s = withImage(json::object(), json::object());
    s["initSystem"] = true;
    finalize(s);
    EXPECT_EQ(s["process"]["args"], json::parse(R"(["/sbin/init"])"));
}

TEST_F(SpecFinalizeTest, ImageErrors) {
    auto error = [&](json spec) { return errorOf([&] { finalize(spec); }); };
    EXPECT_EQ(error(withImage(json::object(), json::parse(R"({"Cmd": "sh"})"))),
              "image `app:1`: config Cmd: expected a list of strings");
    EXPECT_EQ(error(withImage(json::object(), json::parse(R"({"Cmd": ["sh"], "Env": ["=x"]})"))),
              "image `app:1`: config Env: `=x` is not NAME=VALUE");
    EXPECT_EQ(
        error(withImage(json::object(), json::parse(R"({"Cmd": ["sh"], "WorkingDir": "srv"})"))),
        "image `app:1`: config WorkingDir: `srv` is not an absolute path");
    EXPECT_EQ(error(withImage(json::object(),
                              json::parse(R"({"Cmd": ["sh"], "StopSignal": "SIGNOPE"})"))),
              "image `app:1`: config StopSignal: `SIGNOPE` is not a signal");
    EXPECT_EQ(error(withImage(json::object(), json::parse(R"(["sh"])"))),
              "imageConfig: expected an object");
    json s = withImage(minimal(), json::object());
    EXPECT_EQ(error(s), "give either a rootfs directory (rootfs, rootfsImage) or an image "
                        "(imageId), not both");
    s = withImage(json::object(), json::object());
    s["imageId"] = "sha256:abc";
    EXPECT_EQ(error(s), "imageId: `sha256:abc` is not `sha256:` and 64 lowercase hex digits");
}

TEST_F(SpecFinalizeTest, Namespaces) {
    json s = minimal();
    applyOptions(s, json::parse(R"({"network": "host", "userns": "100000:65536"})"));
    finalize(s);
    EXPECT_EQ(s["namespaces"], json::parse(R"({"pid": true, "mount": true, "uts": true, "ipc": true,
        "network": false, "cgroup": true, "user": true})"));
    applyOptions(s, json::parse(R"({"network": "none", "userns": "host"})"));
    finalize(s);
    EXPECT_EQ(s["namespaces"]["network"], true);
    EXPECT_EQ(s["namespaces"]["user"], false);
}

TEST_F(SpecFinalizeTest, UserMustBeMappedInTheUserNamespace) {
    json s = minimal();
    applyOptions(s, json::parse(R"({"userns": "1000:100000:10"})"));
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "uid `0` is not mapped in the user namespace (userns.uidMappings)");
    applyOptions(s, json::parse(R"({"user": "1005:2000"})"));
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "gid `2000` is not mapped in the user namespace (userns.gidMappings)");
    applyOptions(s, json::parse(R"({"user": "1009:1000"})"));
    finalize(s);
    applyOptions(s, json::parse(R"({"user": "1010"})"));
    EXPECT_EQ(errorOf([&] { finalize(s); }),
              "uid `1010` is not mapped in the user namespace (userns.uidMappings)");
    applyOptions(s, json::parse(R"({"user": "www"})"));
    finalize(s); // resolved by the runtime, checked there
}

TEST_F(SpecFinalizeTest, BindMountSources) {
    std::filesystem::create_directories(_dir + "/data");
    json s = minimal();
    s["mounts"] = {{{"destination", "/data"},
                    {"source", _dir + "/./data"},
                    {"type", "bind"},
                    {"options", {"rbind"}}}};
    finalize(s);
    EXPECT_EQ(s["mounts"][0]["source"], _dir + "/data");
    s["mounts"][0]["source"] = _dir + "/nothing";
    EXPECT_EQ(errorOf([&] { finalize(s); }, -ENOENT),
              "mount `/data`: source `" + _dir + "/nothing`: No such file or directory");
}

TEST_F(SpecFinalizeTest, DesignExampleNeedsARootfs) {
    json s = parseVirtualRoot(kDesignYaml, "app.yaml");
    EXPECT_EQ(
        errorOf([&] { finalize(s); }),
        "image `mobileops/android-runtime:latest` is not resolved (no imageId): resolve it in "
        "the image store (mo.plugins.storage.image_resolve) or give a rootfs directory "
        "(spec.rootfs or ROOTFS)");
}

TEST_F(SpecFinalizeTest, DesignExampleWithARootfs) {
    std::filesystem::create_directories(_dir + "/data");
    std::string yaml = kDesignYaml;
    yaml.replace(yaml.find("/var/lib/mobileops/data"), 23, _dir + "/data");
    json s = parseVirtualRoot(yaml, "app.yaml");
    applyOptions(s, json::parse(R"({"command": ["/bin/app"]})"));
    applyOptions(s, json{{"rootfs", _rootfs}});
    finalize(s);
    EXPECT_EQ(s["rootfs"], _rootfs);
    EXPECT_EQ(s["hostname"], "mobile-app-env");
    EXPECT_EQ(s["readonly"], true);
    EXPECT_EQ(s["process"]["user"],
              json::parse(R"({"uid": 1000, "gid": 1000, "additionalGids": []})"));
    EXPECT_EQ(s["process"]["env"][1], "ENV=production");
    EXPECT_EQ(s["network"]["mode"], "private");
    EXPECT_EQ(s["unapplied"].size(), 10u);
}

TEST_F(SpecFinalizeTest, FromFileAndFlags) {
    std::string file = _dir + "/web.yaml";
    std::string text = "apiVersion: v1\nkind: VirtualRoot\nmetadata: { name: web }\n"
                       "spec:\n  rootfs: rootfs\n  command: [/bin/httpd, -f]\n"
                       "  ulimits: [{ name: nofile, soft: 1024 }]\n  stopSignal: SIGQUIT\n";
    std::ofstream(file) << text;
    json s = parseVirtualRoot(text, file);
    applyOptions(s, json::parse(R"({"env": ["A=1"], "tty": true, "init": true})"));
    finalize(s);
    EXPECT_EQ(s, json::parse(R"({
        "name": "web", "hostname": "web",
        "rootfs": ")" + _rootfs +
                             R"(",
        "readonly": false,
        "process": {
            "args": ["/bin/httpd", "-f"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0, "additionalGids": []},
            "terminal": true, "stdin": false, "init": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]
        },
        "namespaces": {"pid": true, "mount": true, "uts": true, "ipc": true, "network": true,
                       "cgroup": true, "user": false},
        "network": {"mode": "private"},
        "mounts": [], "resources": {}, "security": {}, "annotations": {}, "unapplied": [],
        "stopSignal": 3, "stopTimeout": 10, "runtime": "namespace"})"));
}

} // namespace
