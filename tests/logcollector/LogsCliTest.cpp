// The logs and events workflows end to end: real containers (busybox rootfs) writing
// through the namespace runtime's monitor or a foreground run into the log collector,
// read back through the dispatcher.
#include "CliFixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

namespace mobileops::test {
namespace {

using nlohmann::json;

// "1\n2\n...\nN\n" (what `seq FROM TO` prints)
std::string seqText(long from, long to) {
    std::string s;
    for (long i = from; i <= to; ++i) s += std::to_string(i) + "\n";
    return s;
}

size_t countLines(const std::string &s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

// FNV-1a over the bytes: a checksum to report next to the count.
uint64_t checksum(const std::string &s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

class LogsCli : public CliTest {
protected:
    // create + start + wait: the detached path, through the monitor.
    void runDetached(const std::string &name, const std::vector<std::string> &cmd,
                     const std::vector<std::string> &flags = {}) {
        std::vector<std::string> args{"container", "create"};
        args.insert(args.end(), flags.begin(), flags.end());
        args.push_back(name);
        args.push_back(_rootfs);
        args.insert(args.end(), cmd.begin(), cmd.end());
        Result r = mo(args);
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"container", "start", name});
        ASSERT_EQ(r.status, 0) << r.err;
        r = mo({"container", "wait", name});
        ASSERT_EQ(r.status, 0) << r.err;
    }

    std::string journalDir(const std::string &name) {
        Result r = mo({"container", "inspect", name});
        json st = json::parse(r.out);
        return _tmp.path() + "/root/logs/" + st["id"].get<std::string>();
    }

    uint64_t journalBytes(const std::string &dir) {
        uint64_t total = 0;
        for (const auto &e : std::filesystem::directory_iterator(dir))
            if (e.path().extension() == ".log") total += e.file_size();
        return total;
    }
};

TEST_F(LogsCli, MillionLinesAreStoredExactlyOnceInOrder) {
    runDetached("million", {"/bin/busybox", "seq", "1", "1000000"});
    Result r = mo({"logs", "show", "million"});
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string expected = seqText(1, 1000000);
    EXPECT_EQ(countLines(r.out), 1000000u);
    EXPECT_EQ(checksum(r.out), checksum(expected));
    EXPECT_TRUE(r.out == expected)
        << "first difference at byte "
        << std::mismatch(r.out.begin(), r.out.end(), expected.begin(), expected.end()).first -
               r.out.begin();
    // --tail reads the end of the same journal.
    r = mo({"logs", "show", "million", "--tail", "3"});
    EXPECT_EQ(r.out, "999998\n999999\n1000000\n");
}

TEST_F(LogsCli, ForegroundRunShowsOutputLiveAndStoresIt) {
    Result r = mo({"container", "run", "--name", "fg", _rootfs, "/bin/sh", "-c",
                   "echo out; echo err >&2; /bin/busybox seq 1 100000; printf no-newline"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "out\n" + seqText(1, 100000) + "no-newline");
    EXPECT_NE(r.err.find("err\n"), std::string::npos) << r.err;
    r = mo({"logs", "show", "fg", "--stream", "stdout"});
    EXPECT_EQ(r.out, "out\n" + seqText(1, 100000) + "no-newline\n");
    r = mo({"logs", "show", "fg", "--stream", "stderr"});
    EXPECT_EQ(r.out, "err\n");
}

TEST_F(LogsCli, InterleavedStreamsKeepTheirOwnOrder) {
    runDetached("mixed", {"/bin/sh", "-c",
                          "i=1; while [ $i -le 20000 ]; do echo o$i; echo e$i >&2; i=$((i+1)); "
                          "done"});
    std::string out, err;
    for (int i = 1; i <= 20000; ++i) {
        out += "o" + std::to_string(i) + "\n";
        err += "e" + std::to_string(i) + "\n";
    }
    Result r = mo({"logs", "show", "mixed", "--stream", "stdout"});
    EXPECT_TRUE(r.out == out) << countLines(r.out) << " stdout lines";
    r = mo({"logs", "show", "mixed", "--stream", "stderr"});
    EXPECT_TRUE(r.out == err) << countLines(r.out) << " stderr lines";
    // Both at once: stdout lines on stdout, stderr lines on stderr.
    r = mo({"logs", "show", "mixed"});
    EXPECT_TRUE(r.out == out);
    EXPECT_TRUE(r.err == err);
    // JSON lines carry the stream and a nanosecond time, in journal order.
    r = mo({"logs", "show", "mixed", "--json", "--tail", "4"});
    std::istringstream in(r.out);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
        json j = json::parse(line);
        EXPECT_TRUE(j["stream"] == "stdout" || j["stream"] == "stderr");
        EXPECT_EQ(j["time"].get<std::string>().size(), 30u) << j;
        EXPECT_EQ(j["name"], "mixed");
    }
    EXPECT_EQ(lines, 4);
}

TEST_F(LogsCli, ExitRightAfterWritingLosesNothing) {
    for (int i = 0; i < 10; ++i) {
        std::string name = "quick" + std::to_string(i);
        runDetached(name, {"/bin/sh", "-c",
                           "/bin/busybox seq 1 20000; echo tail-" + std::to_string(i) +
                               " >&2; printf partial"});
        Result r = mo({"logs", "show", name, "--stream", "stdout"});
        EXPECT_TRUE(r.out == seqText(1, 20000) + "partial\n") << name << ": " << countLines(r.out);
        r = mo({"logs", "show", name, "--stream", "stderr"});
        EXPECT_EQ(r.out, "tail-" + std::to_string(i) + "\n");
    }
}

TEST_F(LogsCli, FollowFromMidStreamSeesEveryLineOnce) {
    Result r = mo({"container", "create", "slow", _rootfs, "/bin/sh", "-c",
                   "i=1; while [ $i -le 3000 ]; do echo line-$i; "
                   "[ $((i % 200)) = 0 ] && sleep 0.1; i=$((i+1)); done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"container", "start", "slow"}).status, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    r = mo({"logs", "show", "slow", "--follow"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::string expected;
    for (int i = 1; i <= 3000; ++i) expected += "line-" + std::to_string(i) + "\n";
    EXPECT_TRUE(r.out == expected) << countLines(r.out) << " lines";
    // --follow on a stopped container prints what there is and returns.
    r = mo({"logs", "show", "slow", "--follow", "--tail", "1"});
    EXPECT_EQ(r.out, "line-3000\n");
}

TEST_F(LogsCli, FollowAcrossRotationHasNoGapsOrDuplicates) {
    // 64Ki segments under a 1Mi limit: the follower starts early and keeps up, so it sees
    // every line although most segments are gone by the end.
    Result r = mo({"container", "create", "--log-max-size", "1Mi", "rot", _rootfs, "/bin/sh", "-c",
                   "i=1; while [ $i -le 100 ]; do /bin/busybox seq $((i*1000-999)) $((i*1000)); "
                   "sleep 0.01; i=$((i+1)); done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"container", "start", "rot"}).status, 0);
    r = mo({"logs", "show", "rot", "--follow"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(r.out == seqText(1, 100000)) << countLines(r.out) << " lines";
}

TEST_F(LogsCli, RotationKeepsTheNewestWithinTheLimit) {
    runDetached("small", {"/bin/busybox", "seq", "1", "500000"}, {"--log-max-size", "256Ki"});
    std::string dir = journalDir("small");
    uint64_t bytes = journalBytes(dir);
    EXPECT_LE(bytes, 256u * 1024) << "journal on disk";
    EXPECT_GT(bytes, 128u * 1024) << "rotation removes whole segments, not everything";
    Result r = mo({"logs", "show", "small"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_GT(r.out.size(), 2u);
    // What is kept is the newest part, contiguous up to the last line.
    long first = std::stol(r.out.substr(0, r.out.find('\n')));
    EXPECT_GT(first, 1);
    EXPECT_TRUE(r.out == seqText(first, 500000)) << "from " << first;
}

TEST_F(LogsCli, SearchFindsTheNeedleAmongAMillionLines) {
    runDetached("haystack", {"/bin/sh", "-c",
                             "/bin/busybox seq 1 500000; echo 'disk quota xyzzy exceeded on "
                             "/dev/sdz' >&2; /bin/busybox seq 500001 1000000"});
    runDetached("other", {"/bin/sh", "-c", "echo nothing to see; echo xyzzy-not-a-word"});
    Result r = mo({"logs", "search", "xyzzy exceeded", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json j = json::parse(r.out);
    ASSERT_EQ(j["hits"].size(), 1u) << j;
    EXPECT_EQ(j["hits"][0]["name"], "haystack");
    EXPECT_EQ(j["hits"][0]["stream"], "stderr");
    EXPECT_EQ(j["hits"][0]["line"], "disk quota xyzzy exceeded on /dev/sdz");
    EXPECT_EQ(j["containers"], 2);
    // A word alone finds both containers; --container narrows it.
    r = mo({"logs", "search", "xyzzy", "--json"});
    EXPECT_EQ(json::parse(r.out)["hits"].size(), 2u) << r.out;
    r = mo({"logs", "search", "xyzzy", "--container", "other", "--json"});
    EXPECT_EQ(json::parse(r.out)["hits"].size(), 1u) << r.out;
    // Text output names container, stream and time; no hit is exit status 1.
    r = mo({"logs", "search", "exceeded"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("haystack"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("stderr"), std::string::npos) << r.out;
    EXPECT_EQ(mo({"logs", "search", "nowhere-to-be-found"}).status, 1);
}

TEST_F(LogsCli, ExportMatchesTheStore) {
    runDetached("exp", {"/bin/sh", "-c", "/bin/busybox seq 1 30000; echo warn-1 >&2"});
    runDetached("exp2", {"/bin/sh", "-c", "echo only-line"});
    std::string tgz = _tmp.path() + "/logs.tar.gz";
    Result r = mo({"logs", "export", "tar.gz", "-o", tgz, "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json report = json::parse(r.out);
    EXPECT_EQ(report["containers"], 2);
    EXPECT_EQ(report["lines"], 30002);
    std::string x = _tmp.path() + "/x";
    std::filesystem::create_directories(x);
    ASSERT_EQ(run({"/bin/tar", "-xzf", tgz, "-C", x}).status, 0);
    std::ifstream mf(x + "/manifest.json");
    ASSERT_TRUE(mf) << "no manifest.json";
    json manifest = json::parse(mf);
    ASSERT_EQ(manifest["containers"].size(), 2u) << manifest;
    size_t files = 0;
    for (const auto &c : manifest["containers"]) {
        for (const auto &f : c["files"]) {
            ++files;
            std::ifstream in(x + "/" + f["path"].get<std::string>());
            ASSERT_TRUE(in) << f;
            std::string text, body;
            size_t lines = 0;
            for (std::string line; std::getline(in, line); ++lines) {
                // "<time> F <line>"
                auto a = line.find(' '), b = line.find(' ', a + 1);
                ASSERT_NE(b, std::string::npos) << line;
                EXPECT_EQ(line.substr(a + 1, 1), "F");
                body += line.substr(b + 1) + "\n";
            }
            EXPECT_EQ(lines, f["lines"].get<size_t>()) << f;
            Result shown = mo({"logs", "show", c["name"], "--stream", f["stream"]});
            EXPECT_TRUE(body == shown.out) << f["path"] << " differs from `logs show`";
        }
    }
    EXPECT_EQ(files, 3u);
    // JSON lines: one object per line.
    r = mo({"logs", "export", "jsonl", "-o", _tmp.path() + "/logs.jsonl", "--container", "exp"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::ifstream jl(_tmp.path() + "/logs.jsonl");
    size_t n = 0;
    for (std::string line; std::getline(jl, line); ++n) ASSERT_NO_THROW(json::parse(line));
    EXPECT_EQ(n, 30001u);
    r = mo({"logs", "export", "zip", "-o", _tmp.path() + "/x.zip"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("unknown export format `zip`"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(_tmp.path() + "/x.zip"));
}

TEST_F(LogsCli, BadInputGetsAClearError) {
    runDetached("c1", {"/bin/echo", "hi"});
    Result r = mo({"logs", "show", "nosuch"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("no such container `nosuch`"), std::string::npos) << r.err;
    r = mo({"logs", "show", "c1", "--since", "yesterdayish"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("invalid --since `yesterdayish`"), std::string::npos) << r.err;
    r = mo({"logs", "show", "c1", "--until", "2026-13-45"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("--until"), std::string::npos) << r.err;
    r = mo({"logs", "show", "c1", "--stream", "stdin"});
    EXPECT_NE(r.err.find("invalid --stream `stdin`"), std::string::npos) << r.err;
    r = mo({"logs", "search", "xyz", "--container", "nosuch"});
    EXPECT_NE(r.err.find("no such container `nosuch`"), std::string::npos) << r.err;
    r = mo({"logs", "search", "!! ??"});
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("no words"), std::string::npos) << r.err;
    r = mo({"events", "--since", "last tuesday"});
    EXPECT_NE(r.err.find("invalid --since `last tuesday`"), std::string::npos) << r.err;
    r = mo({"container", "create", "--log-max-size", "12Qi", "bad", _rootfs, "/bin/true"});
    EXPECT_NE(r.err.find("--log-max-size"), std::string::npos) << r.err;
    // Times that are valid select lines.
    r = mo({"logs", "show", "c1", "--since", "1h"});
    EXPECT_EQ(r.out, "hi\n");
    r = mo({"logs", "show", "c1", "--until", "1h"});
    EXPECT_EQ(r.out, "");
}

TEST_F(LogsCli, KilledMonitorKeepsWhatItReadAndTheNextStartRepairs) {
    Result r = mo({"container", "create", "mk", _rootfs, "/bin/sh", "-c",
                   "i=1; while [ $i -le 100000 ]; do echo n$i; i=$((i+1)); done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"container", "start", "mk"}).status, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    json st = json::parse(mo({"container", "inspect", "mk"}).out);
    pid_t monitor = st.value("monitor_pid", 0);
    ASSERT_GT(monitor, 0) << st;
    ::kill(monitor, SIGKILL);
    // The container dies of the broken pipe (or is still writing into it): stop it.
    mo({"container", "stop", "-t", "1", "mk"});
    r = mo({"logs", "show", "mk"});
    ASSERT_EQ(r.status, 0) << r.err;
    size_t kept = countLines(r.out);
    ASSERT_GT(kept, 0u);
    std::string expected;
    for (size_t i = 1; i <= kept; ++i) expected += "n" + std::to_string(i) + "\n";
    EXPECT_TRUE(r.out == expected) << "what was kept is a gap-free prefix";
    // A new run appends after it; the torn tail, if any, is gone.
    ASSERT_EQ(mo({"container", "start", "mk"}).status, 0);
    ASSERT_EQ(mo({"container", "wait", "mk"}).status, 0);
    r = mo({"logs", "show", "mk"});
    EXPECT_EQ(r.out.substr(0, expected.size()), expected);
    std::string second;
    for (int i = 1; i <= 100000; ++i) second += "n" + std::to_string(i) + "\n";
    EXPECT_TRUE(r.out.substr(expected.size()) == second) << "the second run, complete";
}

TEST_F(LogsCli, EventsRecordTheLifecycle) {
    ASSERT_EQ(mo({"container", "create", "ev", _rootfs, "/bin/sh", "-c", "exit 3"}).status, 0);
    ASSERT_EQ(mo({"container", "start", "ev"}).status, 0);
    EXPECT_EQ(mo({"container", "wait", "ev"}).status, 3);
    Result r = mo({"container", "create", "ev2", _rootfs, "/bin/sleep", "30"});
    ASSERT_EQ(mo({"container", "start", "ev2"}).status, 0);
    r = mo({"container", "exec", "ev2", "/bin/true"});
    EXPECT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(mo({"container", "stop", "-t", "1", "ev2"}).status, 0);
    ASSERT_EQ(mo({"container", "delete", "ev2"}).status, 0);
    r = mo({"events", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json events = json::parse(r.out);
    std::vector<std::string> ev, ev2;
    for (const auto &e : events) {
        std::string who = e["payload"].value("name", "");
        if (who == "ev") ev.push_back(e["type"]);
        if (who == "ev2") ev2.push_back(e["type"]);
        if (who == "ev" && e["type"] == "container.exit") {
            EXPECT_EQ(e["payload"]["exit_code"], 3);
        }
    }
    EXPECT_EQ(ev,
              (std::vector<std::string>{"container.create", "container.start", "container.exit"}));
    EXPECT_EQ(ev2,
              (std::vector<std::string>{"container.create", "container.start", "container.exec",
                                        "container.exec_exit", "container.exit", "container.stop",
                                        "container.remove"}));
    r = mo({"events", "--type", "container.exit", "--json"});
    EXPECT_EQ(json::parse(r.out).size(), 2u) << r.out;
    r = mo({"events", "--container", "ev"});
    EXPECT_NE(r.out.find("exit_code=3"), std::string::npos) << r.out;
    r = mo({"events", "--since", "2099-01-01T00:00:00Z", "--json"});
    EXPECT_EQ(json::parse(r.out).size(), 0u);
}

TEST_F(LogsCli, GcTrimsTheEventLogToItsLimits) {
    for (int i = 0; i < 3; ++i) runDetached("e" + std::to_string(i), {"/bin/true"});
    ASSERT_GE(json::parse(mo({"events", "--json"}).out).size(), 9u);
    std::string conf = _tmp.file("events.conf", "[events]\nmax_rows = 4\n");
    auto env = this->env();
    env["MOBILEOPS_CONFIG"] = conf;
    Result r = run({dispatcher(), "system", "gc"}, env);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("old event(s)"), std::string::npos) << r.out;
    json events = json::parse(mo({"events", "--json"}).out);
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[3]["type"], "container.exit") << "the newest are kept";
}

TEST_F(LogsCli, OomKillIsAnEvent) {
    Result r = mo({"container", "run", "--name", "oom", "--memory", "16Mi", _rootfs, "/bin/busybox",
                   "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"});
    EXPECT_NE(r.status, 0);
    r = mo({"events", "--type", "container.oom", "--json"});
    json events = json::parse(r.out);
    ASSERT_EQ(events.size(), 1u) << r.out << mo({"events"}).out;
    EXPECT_EQ(events[0]["payload"]["name"], "oom");
}

TEST_F(LogsCli, AnalyzeSummarizesErrorsRatesAndResources) {
    std::string conf = _tmp.file("sampling.conf", "[logcollector]\nsample_interval = 1s\n");
    auto env = this->env();
    env["MOBILEOPS_CONFIG"] = conf;
    auto moc = [&](const std::vector<std::string> &args) {
        std::vector<std::string> argv{dispatcher()};
        argv.insert(argv.end(), args.begin(), args.end());
        return run(argv, env);
    };
    Result r = moc({"container", "create", "an", _rootfs, "/bin/sh", "-c",
                    "echo 'ERROR: connection 12 refused by 10.0.0.7' >&2; "
                    "echo 'error: connection 345 refused by 10.0.0.9' >&2; "
                    "echo 'warning: disk 91% full'; /bin/busybox seq 1 5000; "
                    "x=$(/bin/busybox seq 1 200000 | /bin/busybox wc -l); sleep 2.5; echo done"});
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(moc({"container", "start", "an"}).status, 0);
    ASSERT_EQ(moc({"container", "wait", "an"}).status, 0);
    r = moc({"logs", "analyze", "errors", "an", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    json j = json::parse(r.out)["errors"][0];
    EXPECT_EQ(j["error_lines"], 2) << j;
    EXPECT_EQ(j["warning_lines"], 1) << j;
    ASSERT_FALSE(j["patterns"].empty()) << j;
    EXPECT_EQ(j["patterns"][0]["count"], 2) << "the two refusals fold into one pattern: " << j;
    r = moc({"logs", "analyze", "performance", "an", "--json"});
    j = json::parse(r.out)["performance"][0];
    EXPECT_EQ(j["lines"], 5004) << j;
    EXPECT_GT(j["rate"]["peak"].get<double>(), 0) << j;
    r = moc({"logs", "analyze", "resources", "an", "--json"});
    j = json::parse(r.out)["resources"][0];
    EXPECT_GE(j.value("samples", 0), 2) << j;
    EXPECT_GT(j["memory"]["max"].get<double>(), 0) << j;
    // The text form is for people: sections and the folded pattern.
    r = moc({"logs", "analyze", "an"});
    EXPECT_NE(r.out.find("== errors =="), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("refused"), std::string::npos) << r.out;
}

TEST_F(LogsCli, MonitorShowsOutputAndEvents) {
    runDetached("m1", {"/bin/sh", "-c", "echo hello-from-m1"});
    Result r = mo({"logs", "monitor"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("hello-from-m1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("container.exit"), std::string::npos) << r.out;
}

TEST_F(LogsCli, DeleteRemovesTheLogAndGcRemovesOrphans) {
    runDetached("gone", {"/bin/echo", "bye"});
    std::string dir = journalDir("gone");
    ASSERT_TRUE(std::filesystem::exists(dir));
    ASSERT_EQ(mo({"container", "delete", "gone"}).status, 0);
    EXPECT_FALSE(std::filesystem::exists(dir));
    // A journal whose container record vanished (a killed delete): gc removes it.
    std::string orphan = _tmp.path() + "/root/logs/" + std::string(64, 'a');
    std::filesystem::create_directories(orphan);
    std::ofstream(orphan + "/0000000000000000.log").put('\0');
    Result r = mo({"system", "gc"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(std::filesystem::exists(orphan)) << r.out;
}

} // namespace
} // namespace mobileops::test
