// spec.resources -> settings, and the unit conversions.
#include "Resources.h"

#include <gtest/gtest.h>

namespace mobileops::cgroup {
namespace {

using nlohmann::json;

std::string errorOf(const json &j) {
    try {
        parseResources(j);
    } catch (const Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        return e.what();
    }
    return "no error";
}

TEST(Resources, NormalizedSpec) {
    Settings s = parseResources(json::parse(R"({
        "requests": {"cpu": 500, "memory": 1073741824, "storage": 5368709120},
        "limits": {"cpu": 2000, "memory": 4294967296, "storage": 1, "pids": 100},
        "cpuset": "0-3,6"})"));
    EXPECT_EQ(**s.cpuRequest, 500);
    EXPECT_EQ(**s.cpuLimit, 2000);
    EXPECT_EQ(**s.memoryRequest, 1073741824);
    EXPECT_EQ(**s.memoryLimit, 4294967296);
    EXPECT_EQ(**s.pidsLimit, 100);
    EXPECT_EQ(*s.cpuset, "0-3,6");
}

TEST(Resources, EmptyAndAbsentLeaveEverythingAlone) {
    EXPECT_TRUE(parseResources(json::object()).empty());
    EXPECT_TRUE(parseResources(json()).empty());
    EXPECT_TRUE(parseResources(json::parse(R"({"limits": {"storage": 1048576}})")).empty());
}

TEST(Resources, NullResetsToNoLimit) {
    Settings s = parseResources(json::parse(R"({"limits": {"pids": null, "memory": null}})"));
    ASSERT_TRUE(s.pidsLimit.has_value());
    EXPECT_FALSE(s.pidsLimit->has_value());
    ASSERT_TRUE(s.memoryLimit.has_value());
    EXPECT_FALSE(s.memoryLimit->has_value());
    EXPECT_FALSE(s.cpuLimit.has_value());
}

TEST(Resources, BadValuesNameTheField) {
    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"memory": 1024}})")),
              "invalid `limits.memory`: `1024` is below the 4Mi minimum");
    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"memory": "4Gi"}})")),
              "invalid `limits.memory`: expected an integer number of bytes, not a string");
    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"cpu": 0}})")),
              "invalid `limits.cpu`: `0` is below the `1m` minimum");
    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"cpu": 1.5}})")),
              "invalid `limits.cpu`: expected an integer number of millicores, not a fractional "
              "number");
    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"pids": 5000000}})")),
              "invalid `limits.pids`: `5000000` is above the maximum `4194304`");
    EXPECT_EQ(errorOf(json::parse(R"({"requests": {"pids": 3}})")),
              "unknown resources field `requests.pids`");
    EXPECT_EQ(errorOf(json::parse(R"({"swap": 3})")), "unknown resources field `swap`");
    EXPECT_EQ(errorOf(json::parse(R"({"cpuset": "3-1"})")),
              "invalid `cpuset`: `3-1` is not a CPU list such as `0-3,6`");
    EXPECT_EQ(errorOf(json::parse(R"({"limits": []})")),
              "invalid `limits`: expected an object, not an array");
    EXPECT_EQ(errorOf(json::parse("[]")), "invalid `resources`: expected an object, not an array");
}

TEST(Resources, CpuConversions) {
    EXPECT_EQ(sharesFromMillis(1000), 1024u);
    EXPECT_EQ(sharesFromMillis(500), 512u);
    EXPECT_EQ(sharesFromMillis(1), 2u); // Kubernetes' minimum
    EXPECT_EQ(sharesFromMillis(1000000), 262144u);
    EXPECT_EQ(weightFromShares(2), 1u);
    EXPECT_EQ(weightFromShares(1024), 39u);
    EXPECT_EQ(weightFromShares(262144), 10000u);
    EXPECT_EQ(quotaFromMillis(500).quotaUs, 50000u);
    EXPECT_EQ(quotaFromMillis(500).periodUs, 100000u);
    EXPECT_EQ(quotaFromMillis(1500).quotaUs, 150000u);
    // Below 10m the 100ms period would need a quota under the kernel's 1ms minimum.
    EXPECT_EQ(quotaFromMillis(5).quotaUs, 5000u);
    EXPECT_EQ(quotaFromMillis(5).periodUs, 1000000u);
    EXPECT_EQ(quotaFromMillis(10).quotaUs, 1000u);
    EXPECT_EQ(quotaFromMillis(10).periodUs, 100000u);
}

TEST(Resources, CpuLists) {
    EXPECT_TRUE(isCpuList("0"));
    EXPECT_TRUE(isCpuList("0-3,6"));
    EXPECT_FALSE(isCpuList(""));
    EXPECT_FALSE(isCpuList("0,"));
    EXPECT_FALSE(isCpuList("a"));
    EXPECT_FALSE(isCpuList("1-"));
}

} // namespace
} // namespace mobileops::cgroup
