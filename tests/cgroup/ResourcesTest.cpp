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

TEST(Resources, SwapBlkioAndDeviceThrottle) {
    Settings s = parseResources(json::parse(R"({
        "limits": {"memory": 67108864}, "memorySwap": 134217728, "memorySwappiness": 0,
        "blkioWeight": 500,
        "deviceThrottle": [{"device": "/dev/vda", "major": 254, "minor": 0, "readBps": 1048576,
                            "writeIops": 50}]})"));
    EXPECT_EQ(**s.memorySwap, 134217728);
    EXPECT_EQ(**s.memorySwappiness, 0);
    EXPECT_EQ(**s.blkioWeight, 500);
    ASSERT_EQ(s.deviceThrottle->size(), 1u);
    const DeviceThrottle &t = s.deviceThrottle->front();
    EXPECT_EQ(t.device, "/dev/vda");
    EXPECT_EQ(t.major, 254u);
    EXPECT_EQ(t.minor, 0u);
    EXPECT_EQ(*t.readBps, 1048576u);
    EXPECT_EQ(*t.writeIops, 50u);
    EXPECT_FALSE(t.writeBps || t.readIops);
    EXPECT_TRUE(s.io());

    Settings unlimited = parseResources(json::parse(R"({"memorySwap": -1})"));
    ASSERT_TRUE(unlimited.memorySwap.has_value());
    EXPECT_FALSE(unlimited.memorySwap->has_value());

    EXPECT_EQ(errorOf(json::parse(R"({"limits": {"memory": 67108864}, "memorySwap": 33554432})")),
              "invalid `memorySwap`: `33554432` is below the memory limit `67108864` (it is "
              "memory plus swap)");
    EXPECT_EQ(errorOf(json::parse(R"({"memorySwappiness": 101})")),
              "invalid `memorySwappiness`: `101` is above the maximum `100`");
    EXPECT_EQ(errorOf(json::parse(R"({"blkioWeight": 5})")),
              "invalid `blkioWeight`: `5` is below the `10` minimum");
    EXPECT_EQ(errorOf(json::parse(R"({"deviceThrottle": {}})")),
              "invalid `deviceThrottle`: expected an array, not an object");
    EXPECT_EQ(errorOf(json::parse(R"({"deviceThrottle": [{"major": 8}]})")),
              "invalid `deviceThrottle[0]`: expected `major` and `minor` device numbers");
    EXPECT_EQ(errorOf(json::parse(R"({"deviceThrottle": [{"major": 8, "minor": 0, "rbps": 1}]})")),
              "unknown resources field `deviceThrottle[0].rbps`");
    EXPECT_EQ(errorOf(json::parse(R"({"deviceThrottle": [{"major": 8, "minor": 0,
                                                          "readBps": "1mb"}]})")),
              "invalid `deviceThrottle[0].readBps`: expected an integer number of bytes per "
              "second, not a string");
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
