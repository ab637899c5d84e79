// The API's route table, input checks and error mapping without a server (no privilege).
#include "Routes.h"
#include "Server.h"

#include <gtest/gtest.h>

#include <set>

namespace mobileops::api {
namespace {

const Route &find(const std::string &method, const std::string &path, Match &m) {
    std::string allow;
    return findRoute(method, path, m, allow);
}

ApiError errorOf(const std::string &method, const std::string &path) {
    Match m;
    std::string allow;
    try {
        findRoute(method, path, m, allow);
    } catch (const ApiError &e) {
        return e;
    }
    return {0, "", ""};
}

TEST(ApiRoutes, PathsBecomeFixedArgv) {
    Match m;
    const Route &r = find("POST", "/api/v1/containers/web-1/kill", m);
    m.query = {{"signal", "TERM"}};
    checkQuery(r, m.query);
    Plan p = r.plan(m);
    EXPECT_EQ(p.args,
              (std::vector<std::string>{"--json", "container", "kill", "--signal=TERM", "web-1"}));
    EXPECT_EQ(p.okStatus, 204);

    Match img;
    const Route &ri = find("GET", "/api/v1/images/registry.local/team/app:1.0", img);
    EXPECT_EQ(ri.plan(img).args.back(), "registry.local/team/app:1.0");
}

TEST(ApiRoutes, HostileNamesAreRefusedBeforeAnythingRuns) {
    for (const std::string &bad :
         std::vector<std::string>{"-rf", "--all", "..", ".hidden", "a b", std::string("a\0b", 3),
                                  std::string(129, 'x'), "a;b", "$(x)"}) {
        ApiError e = errorOf("GET", "/api/v1/containers/" + bad);
        EXPECT_EQ(e.status, 400) << bad;
        EXPECT_EQ(e.code, "invalid") << bad;
    }
    for (const std::string &bad : std::vector<std::string>{"--help", "a/../b", "-x:1", "a/.."}) {
        EXPECT_EQ(errorOf("GET", "/api/v1/images/" + bad).status, 400) << bad;
    }
}

TEST(ApiRoutes, UnknownRoutesAndMethods) {
    EXPECT_EQ(errorOf("GET", "/api/v1/nothing").status, 404);
    Match m;
    std::string allow;
    try {
        findRoute("PATCH", "/api/v1/containers/x", m, allow);
        FAIL() << "PATCH routed";
    } catch (const ApiError &e) {
        EXPECT_EQ(e.status, 405);
        EXPECT_EQ(allow, "DELETE, GET, PUT");
    }
}

TEST(ApiRoutes, QueryParametersAreChecked) {
    Match m;
    const Route &r = find("POST", "/api/v1/containers/x/stop", m);
    EXPECT_NO_THROW(checkQuery(r, {{"timeout", "5"}}));
    for (auto q : std::vector<std::map<std::string, std::string>>{{{"timeout", "-1"}},
                                                                  {{"timeout", "5s"}},
                                                                  {{"timeout", "9999999999"}},
                                                                  {{"force", "true"}}}) {
        EXPECT_THROW(checkQuery(r, q), ApiError);
    }
    const Route &d = find("DELETE", "/api/v1/containers/x", m);
    EXPECT_THROW(checkQuery(d, {{"force", "yes"}}), ApiError);
}

TEST(ApiRoutes, CreateTakesTheNameFromTheSpec) {
    Match m;
    const Route &r = find("POST", "/api/v1/containers", m);
    m.body = "apiVersion: v1\nkind: VirtualRoot\nmetadata: {name: web}\nspec: {image: bb}\n";
    Plan p = r.plan(m);
    EXPECT_EQ(p.args,
              (std::vector<std::string>{"--json", "container", "create", "--file=-", "web"}));
    EXPECT_EQ(p.input, m.body);
    for (const std::string &body :
         std::vector<std::string>{"", "[1, 2]", "{metadata: {}}", "{metadata: {name: -x}}",
                                  "{metadata: {name: [a]}}", "{: :"}) {
        m.body = body;
        try {
            r.plan(m);
            ADD_FAILURE() << "accepted: " << body;
        } catch (const ApiError &e) {
            EXPECT_EQ(e.status, 400) << body;
        }
    }
}

TEST(ApiRoutes, UpdateBodyBecomesFlags) {
    Match m;
    const Route &r = find("PUT", "/api/v1/containers/web", m);
    m.body = R"({"memory": "256Mi", "pids_limit": 100, "device-read-bps": ["/dev/vda:1mb"]})";
    Plan p = r.plan(m);
    std::set<std::string> args(p.args.begin(), p.args.end());
    EXPECT_TRUE(args.count("--memory=256Mi"));
    EXPECT_TRUE(args.count("--pids-limit=100"));
    EXPECT_TRUE(args.count("--device-read-bps=/dev/vda:1mb"));
    EXPECT_EQ(p.args.back(), "web");
    for (std::string body :
         {"{}", "[]", R"({"privileged": true})", R"({"memory": {}})", R"({"memory": ""})"}) {
        m.body = body;
        EXPECT_THROW(r.plan(m), ApiError) << body;
    }
}

TEST(ApiRoutes, CommandErrorsMapToStatuses) {
    EXPECT_EQ(commandError(1, R"({"code":"not_found","message":"no such container `x`"})").status,
              404);
    EXPECT_EQ(commandError(1, "a warning\n{\"code\":\"exists\",\"message\":\"m\"}\n").status, 409);
    EXPECT_EQ(commandError(1, R"({"code":"state","message":"m"})").status, 409);
    EXPECT_EQ(commandError(1, R"({"code":"invalid","message":"m"})").status, 400);
    EXPECT_EQ(commandError(2, R"({"code":"usage","message":"m"})").status, 400);
    EXPECT_EQ(commandError(1, R"({"code":"busy","message":"m"})").status, 503);
    EXPECT_EQ(commandError(1, R"({"code":"unsupported","message":"m"})").status, 501);
    EXPECT_EQ(commandError(1, R"({"code":"system","message":"m","errno":2})").status, 400);
    EXPECT_EQ(commandError(1, R"({"code":"system","message":"m","errno":5})").status, 500);
    EXPECT_EQ(commandError(1, R"({"code":"internal","message":"m"})").status, 500);
    ApiError crash = commandError(139, "Segmentation fault");
    EXPECT_EQ(crash.status, 500);
    EXPECT_NE(crash.message.find("139"), std::string::npos);
}

TEST(ApiRoutes, OpenApiHasEveryRoute) {
    nlohmann::json doc = openapi("1.2.3");
    size_t n = 0;
    for (auto &[path, ops] : doc["paths"].items()) n += ops.size();
    EXPECT_EQ(n, routes().size());
    for (const Route &r : routes()) {
        std::string m = r.method;
        for (char &c : m) c = static_cast<char>(std::tolower(c));
        EXPECT_TRUE(doc["paths"][r.pattern].contains(m)) << r.method << " " << r.pattern;
    }
}

// The status the document promises is the one the route's plan answers with.
TEST(ApiRoutes, OpenApiStatusesMatchThePlans) {
    nlohmann::json doc = openapi("1.2.3");
    for (const Route &r : routes()) {
        if (!r.plan) continue;
        Match m;
        m.path = {{"id", "x"}, {"ref", "x"}};
        if (r.body == "spec") m.body = "apiVersion: v1\nkind: VirtualRoot\nmetadata: {name: x}\n";
        if (r.body == "json") m.body = R"({"memory": "1Gi"})";
        if (r.pattern == "/api/v1/volumes") m.body = R"({"name": "v"})";
        if (r.pattern.ends_with("/logs")) m.query = {{"follow", "true"}};
        Plan p = r.plan(m);
        std::string method = r.method;
        for (char &c : method) c = static_cast<char>(std::tolower(c));
        const auto &responses = doc["paths"][r.pattern][method]["responses"];
        EXPECT_TRUE(responses.contains(std::to_string(p.okStatus)))
            << r.method << " " << r.pattern << " answers " << p.okStatus;
        if (p.stream) {
            EXPECT_TRUE(responses["200"]["content"].contains("application/x-ndjson")) << r.pattern;
        }
    }
}

TEST(ApiSecret, ComparesWholeSecrets) {
    EXPECT_TRUE(secretEquals("Bearer abc", "Bearer abc"));
    EXPECT_FALSE(secretEquals("Bearer abc", "Bearer abd"));
    EXPECT_FALSE(secretEquals("Bearer ab", "Bearer abc"));
    EXPECT_FALSE(secretEquals("Bearer abcd", "Bearer abc"));
    EXPECT_FALSE(secretEquals("", "x"));
    EXPECT_TRUE(secretEquals("", ""));
}

} // namespace
} // namespace mobileops::api
