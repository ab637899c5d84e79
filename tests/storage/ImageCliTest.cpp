// The image workflow through the dispatcher (real root): import in every compression,
// build-rootfs, multi-layer load with whiteouts and opaque directories, hostile archives
// refused with nothing left behind, layers shared between images, tag/rm/prune, and the
// round trips with podman (its save loaded here, ours loaded there).
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace mobileops::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string script() { return MOBILEOPS_SOURCE_DIR "/tests/storage/archives.py"; }

class ImageCli : public CliTest {
protected:
    std::string storage() const { return _tmp.path() + "/root/storage"; }

    // Entries of a storage subdirectory (blobs/sha256, layers, tmp).
    std::set<std::string> entries(const std::string &sub) const {
        std::set<std::string> out;
        std::error_code ec;
        for (const auto &e : fs::directory_iterator(storage() + "/" + sub, ec))
            out.insert(e.path().filename().string());
        return out;
    }

    json listJson() {
        Result r = mo({"--json", "image", "list"});
        EXPECT_EQ(r.status, 0) << r.err;
        return json::parse(r.out.empty() ? "[]" : r.out);
    }

    // A tar of the busybox rootfs, compressed with `filter` ("" for none).
    std::string rootfsTar(const std::string &filter) {
        std::string file = _tmp.path() + "/rootfs.tar" + (filter.empty() ? "" : "." + filter);
        std::vector<std::string> argv{"/bin/tar", "-C", _rootfs, "-cf", file, "."};
        if (filter == "gz") argv.insert(argv.begin() + 1, "--gzip");
        if (filter == "xz") argv.insert(argv.begin() + 1, "--xz");
        if (filter == "zst") argv.insert(argv.begin() + 1, "--zstd");
        if (filter == "bz2") argv.insert(argv.begin() + 1, "--bzip2");
        Result r = run(argv);
        EXPECT_EQ(r.status, 0) << r.err;
        return file;
    }

    static std::string readAll(const std::string &path) {
        std::ifstream in(path);
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }
};

TEST_F(ImageCli, ImportsEveryCompressionAndSharesTheLayer) {
    std::set<std::string> diffIds;
    for (const char *filter : {"", "gz", "xz", "zst", "bz2"}) {
        std::string name = std::string("bb:") + (*filter ? filter : "plain");
        Result r = mo({"--json", "image", "import", rootfsTar(filter), name});
        ASSERT_EQ(r.status, 0) << filter << ": " << r.err;
        json image = json::parse(r.out);
        ASSERT_EQ(image["layers"].size(), 1u);
        diffIds.insert(image["layers"][0]["diffId"].get<std::string>());
    }
    // Every compression of the same tar unpacks to the same layer, extracted once; each
    // import is an image of its own (its config records when it was made).
    EXPECT_EQ(diffIds.size(), 1u);
    EXPECT_EQ(entries("layers").size(), 1u);
    EXPECT_EQ(listJson().size(), 5u);
    Result r = mo({"--json", "image", "inspect", "bb:gz"});
    ASSERT_EQ(r.status, 0) << r.err;
    json image = json::parse(r.out);
    EXPECT_EQ(image["names"].size(), 1u);
    EXPECT_EQ(image["config"]["config"]["Cmd"][0], "/bin/sh");
    EXPECT_TRUE(entries("tmp").empty());
}

TEST_F(ImageCli, BuildRootfsThenUnpackGivesTheSameTree) {
    Result r = mo({"image", "build-rootfs", _rootfs, "local/busybox:1"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::string out = _tmp.path() + "/unpacked";
    r = mo({"image", "unpack", "local/busybox:1", out});
    ASSERT_EQ(r.status, 0) << r.err;
    Result a = run({"/bin/sh", "-c",
                    "cd '" + _rootfs + "' && find . -printf '%p %m %U %G %y %s %l\\n' | sort"});
    Result b = run(
        {"/bin/sh", "-c", "cd '" + out + "' && find . -printf '%p %m %U %G %y %s %l\\n' | sort"});
    EXPECT_EQ(a.out, b.out);
    EXPECT_FALSE(a.out.empty());
}

TEST_F(ImageCli, MultiLayerWhiteoutsAndOpaqueDirectories) {
    for (const char *form : {"layout", "layout-tar"}) {
        SCOPED_TRACE(form);
        std::string path = _tmp.path() + "/" + form;
        Result r = run({"/usr/bin/python3", script(), form, path});
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"--json", "image", "load", path});
        ASSERT_EQ(r.status, 0) << r.err;
        json loaded = json::parse(r.out);
        ASSERT_EQ(loaded.size(), 1u);
        EXPECT_EQ(loaded[0]["layers"].size(), 2u);

        std::string out = _tmp.path() + "/tree-" + form;
        r = mo({"image", "unpack", "example.test/layered:1", out});
        ASSERT_EQ(r.status, 0) << r.err;
        Result tree = run({"/bin/sh", "-c", "cd '" + out + "' && find . | sort"});
        EXPECT_EQ(tree.out, ".\n./a\n./a/keep\n./a/new\n./bin\n./bin/tool\n./o\n./o/fresh\n");
        EXPECT_EQ(readAll(out + "/a/keep"), "keep\n");

        // The stored upper layer keeps the whiteouts in overlayfs's form.
        std::string upper;
        for (const auto &l : entries("layers")) {
            struct stat st;
            if (::lstat((storage() + "/layers/" + l + "/fs/a/gone").c_str(), &st) == 0 &&
                S_ISCHR(st.st_mode)) {
                upper = l;
                EXPECT_EQ(st.st_rdev, 0u);
            }
        }
        EXPECT_FALSE(upper.empty()) << "no layer holds the whiteout of a/gone";
    }
    // The same layers twice: still two layer directories.
    EXPECT_EQ(entries("layers").size(), 2u);
}

TEST_F(ImageCli, HostileArchivesAreRefusedAndLeaveNothing) {
    struct Case {
        const char *name;
        const char *needle; // what the error must name
    };
    for (const Case &c :
         {Case{"dotdot", "bin/../../evil"}, Case{"absolute", "/etc/evil"},
          Case{"hardlink", "bin/shadow"}, Case{"symlink", "bin/up"}, Case{"device", "dev/sda"},
          Case{"whiteout", "bin/.wh.ok"}, Case{"truncated", "bin/big"}, Case{"huge", "bin/huge"}}) {
        SCOPED_TRACE(c.name);
        std::string file = _tmp.path() + "/" + c.name + ".tar";
        Result r = run({"/usr/bin/python3", script(), c.name, file});
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"image", "import", file, std::string("evil:") + c.name});
        EXPECT_NE(r.status, 0);
        EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
        EXPECT_TRUE(entries("layers").empty());
        EXPECT_TRUE(entries("blobs/sha256").empty());
        EXPECT_TRUE(entries("tmp").empty());
        EXPECT_TRUE(listJson().empty());
    }
    // The host was not touched.
    struct stat st;
    EXPECT_NE(::stat("/evil", &st), 0);
    EXPECT_NE(::stat("/etc/evil", &st), 0);
    // Device nodes are accepted when asked for.
    std::string file = _tmp.path() + "/device.tar";
    Result r = mo({"image", "import", "--allow-devices", file, "dev:ok"});
    EXPECT_EQ(r.status, 0) << r.err;
}

TEST_F(ImageCli, TagRmAndPrune) {
    ASSERT_EQ(mo({"image", "import", rootfsTar("gz"), "one:1"}).status, 0);
    ASSERT_EQ(mo({"image", "tag", "one:1", "two:2"}).status, 0);
    // Another image with no name stays through an rm of this one.
    ASSERT_EQ(mo({"image", "import", rootfsTar("")}).status, 0);
    json image = json::parse(mo({"--json", "image", "inspect", "one:1"}).out);
    std::string id = image["id"].get<std::string>().substr(7, 12);
    Result r = mo({"image", "rm", id});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("has 2 names"), std::string::npos) << r.err;
    r = mo({"image", "rm", "one:1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("untagged"), std::string::npos);
    EXPECT_EQ(listJson().size(), 2u); // two:2 and the unnamed one
    r = mo({"image", "rm", "two:2"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(listJson().size(), 1u) << "the unnamed image is prune's, not rm's";
    r = mo({"image", "prune"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(listJson().empty());
    EXPECT_TRUE(entries("layers").empty()) << "the last image's layer goes with it";
    EXPECT_TRUE(entries("blobs/sha256").empty());
    r = mo({"image", "rm", "nothing:here"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("nothing:here"), std::string::npos) << r.err;
}

// A load or pull in another process has stored a layer it has not recorded yet: its
// tmp/<pid>-ingest marker keeps rm and prune off it while that process lives.
TEST_F(ImageCli, SweepsSpareWhatALiveIngestHasStored) {
    Result r = mo({"--json", "image", "import", rootfsTar("gz"), "swept:1"});
    ASSERT_EQ(r.status, 0) << r.err;
    json image = json::parse(r.out);
    std::string diffHex = image["layers"][0]["diffId"].get<std::string>().substr(7);
    std::string blobHex = image["layers"][0]["digest"].get<std::string>().substr(7);
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::pause();
        ::_exit(0);
    }
    std::ofstream(storage() + "/tmp/" + std::to_string(pid) + "-ingest") << diffHex << "\n"
                                                                         << blobHex << "\n";
    r = mo({"image", "rm", "swept:1"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(entries("layers").count(diffHex), 1u);
    EXPECT_EQ(entries("blobs/sha256").count(blobHex), 1u);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ASSERT_EQ(mo({"image", "prune"}).status, 0);
    EXPECT_TRUE(entries("layers").empty());
    EXPECT_TRUE(entries("blobs/sha256").empty());
    EXPECT_TRUE(entries("tmp").empty()) << "the dead process's marker goes too";
}

TEST_F(ImageCli, SaveAndLoadRoundTrip) {
    ASSERT_EQ(mo({"image", "build-rootfs", _rootfs, "rt:1"}).status, 0);
    json before = json::parse(mo({"--json", "image", "inspect", "rt:1"}).out);
    for (const char *format : {"docker-archive", "oci-archive"}) {
        SCOPED_TRACE(format);
        std::string file = _tmp.path() + "/saved-" + format + ".tar";
        Result r = mo({"image", "save", "rt:1", "-o", file, "--format", format});
        ASSERT_EQ(r.status, 0) << r.err;
        ASSERT_EQ(mo({"image", "rm", "rt:1"}).status, 0);
        r = mo({"--json", "image", "load", file});
        ASSERT_EQ(r.status, 0) << r.err;
        json after = json::parse(mo({"--json", "image", "inspect", "rt:1"}).out);
        EXPECT_EQ(after["id"], before["id"]) << "the config is carried byte for byte";
        EXPECT_EQ(after["layers"][0]["diffId"], before["layers"][0]["diffId"]);
    }
}

// podman with its own storage below the test directory (vfs: no mounts to leave).
class PodmanRoundTrip : public ImageCli {
protected:
    void SetUp() override {
        ImageCli::SetUp();
        if (run({"/bin/sh", "-c", "command -v podman"}).status != 0) GTEST_SKIP() << "no podman";
    }
    Result podman(std::vector<std::string> args) {
        std::vector<std::string> argv{"/usr/bin/podman",
                                      "--root",
                                      _tmp.path() + "/podman-root",
                                      "--runroot",
                                      _tmp.path() + "/podman-run",
                                      "--storage-driver",
                                      "vfs",
                                      "--cgroup-manager",
                                      "cgroupfs",
                                      "--events-backend",
                                      "none",
                                      "--runtime",
                                      "runc"};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv);
    }
};

TEST_F(PodmanRoundTrip, PodmanSaveLoadsAndRuns) {
    Result r = podman({"import", rootfsTar(""), "localhost/frompodman:1"});
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char *format : {"docker-archive", "oci-archive"}) {
        SCOPED_TRACE(format);
        std::string file = _tmp.path() + "/podman-" + format + ".tar";
        r = podman({"save", "--format", format, "-o", file, "localhost/frompodman:1"});
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"--json", "image", "load", file});
        ASSERT_EQ(r.status, 0) << r.err;
        std::string out = _tmp.path() + std::string("/unpacked-") + format;
        r = mo({"image", "unpack", "localhost/frompodman:1", out});
        ASSERT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(::access((out + "/bin/busybox").c_str(), X_OK), 0);
        r = mo({"container", "run", "--rm", "localhost/frompodman:1", "/bin/echo", "ran"});
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_EQ(r.out, "ran\n");
    }
}

TEST_F(PodmanRoundTrip, OurSaveLoadsInPodmanAndRuns) {
    ASSERT_EQ(mo({"image", "build-rootfs", _rootfs, "localhost/ours:1"}).status, 0);
    for (const char *format : {"docker-archive", "oci-archive"}) {
        SCOPED_TRACE(format);
        std::string file = _tmp.path() + "/ours-" + format + ".tar";
        Result r = mo({"image", "save", "localhost/ours:1", "-o", file, "--format", format});
        ASSERT_EQ(r.status, 0) << r.err;
        r = podman({"load", "-i", file});
        ASSERT_EQ(r.status, 0) << r.out << r.err;
        // `podman run` cannot start here: runc sets podman's default RLIMIT_NOFILE and
        // RLIMIT_NPROC, which needs CAP_SYS_RESOURCE, absent from this host's bounding
        // set. podman's own view of the image (its mount) runs the program instead.
        r = podman({"image", "mount", "localhost/ours:1"});
        ASSERT_EQ(r.status, 0) << r.err;
        std::string mnt = r.out.substr(0, r.out.find('\n'));
        r = run({"/usr/sbin/chroot", mnt, "/bin/echo", "hello"});
        EXPECT_EQ(r.out, "hello\n") << r.err;
        r = podman({"image", "inspect", "--format", "{{.Config.Cmd}}", "localhost/ours:1"});
        EXPECT_EQ(r.out, "[/bin/sh]\n") << r.err;
        podman({"image", "unmount", "localhost/ours:1"});
        podman({"rmi", "-f", "localhost/ours:1"});
    }
}

} // namespace
} // namespace mobileops::test
