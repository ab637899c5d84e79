// Record reconciliation and the log format: pure logic.
#include "State.h"
#include "Monitor.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <set>

using namespace mobileops::nsruntime;
using nlohmann::json;

namespace {
json running() {
    return {{"id", std::string(64, 'a')},
            {"name", "web"},
            {"status", "running"},
            {"pid", 100},
            {"pid_start", 5},
            {"monitor_pid", 90},
            {"monitor_start", 4}};
}
AliveFn aliveSet(std::set<std::pair<pid_t, uint64_t>> alive) {
    return [alive](pid_t pid, uint64_t start) { return alive.count({pid, start}) > 0; };
}
} // namespace

TEST(Reconcile, LiveProcessIsUnchanged) {
    json r = running();
    EXPECT_EQ(reconcile(r, aliveSet({{100, 5}, {90, 4}})), Reconciled::unchanged);
    EXPECT_EQ(r["status"], "running");
}

TEST(Reconcile, ReusedPidIsStopped) {
    json r = running();
    // pid 100 runs, but started at another time: not our container.
    EXPECT_EQ(reconcile(r, aliveSet({{100, 6}})), Reconciled::changed);
    EXPECT_EQ(r["status"], "stopped");
    EXPECT_EQ(r["pid"], 0);
    EXPECT_EQ(r["exit_code"], -1);
    EXPECT_TRUE(r.contains("finished"));
    EXPECT_TRUE(r.contains("error"));
}

TEST(Reconcile, DeadProcessWithLiveMonitorIsTransient) {
    json r = running();
    EXPECT_EQ(reconcile(r, aliveSet({{90, 4}})), Reconciled::transient);
    EXPECT_EQ(r["status"], "stopped");
}

TEST(Reconcile, StoppedAndCreatedAreLeftAlone) {
    json r = {{"status", "stopped"}, {"exit_code", 3}};
    EXPECT_EQ(reconcile(r, aliveSet({})), Reconciled::unchanged);
    EXPECT_EQ(r["exit_code"], 3);
    json c = {{"status", "created"}};
    EXPECT_EQ(reconcile(c, aliveSet({})), Reconciled::unchanged);
}

TEST(Reconcile, AbandonedCreate) {
    json r = {{"status", "creating"}, {"creator", {{"pid", 7}, {"start", 1}}}};
    EXPECT_FALSE(abandonedCreate(r, aliveSet({{7, 1}})));
    EXPECT_TRUE(abandonedCreate(r, aliveSet({})));
    EXPECT_TRUE(abandonedCreate(r, aliveSet({{7, 2}})));
    json done = {{"status", "created"}};
    EXPECT_FALSE(abandonedCreate(done, aliveSet({})));
}

TEST(Reconcile, PublicViewHidesInternals) {
    json r = {{"status", "creating"}, {"creator", {{"pid", 7}}}, {"pid_start", 1}};
    json v = publicView(r);
    EXPECT_EQ(v["status"], "created");
    EXPECT_FALSE(v.contains("creator"));
    EXPECT_FALSE(v.contains("pid_start"));
}

TEST(State, IdsAndTimestamps) {
    std::string a = newContainerId(), b = newContainerId();
    EXPECT_EQ(a.size(), 64u);
    EXPECT_NE(a, b);
    EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
    std::string t = nowTimestamp();
    EXPECT_EQ(t.size(), 24u);
    EXPECT_EQ(t.back(), 'Z');
}
