// The routes of the API: for each, its method and path, its query parameters and body,
// and how it becomes a mobileops command line. The OpenAPI document is generated from
// this table, so the two cannot drift apart.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace mobileops::api {

// An error answered as {"code": ..., "message": ...} with an HTTP status.
struct ApiError {
    int status;
    std::string code, message;
};

struct Param {
    std::string name, type, summary; // type: boolean, integer, string
};

// What a route does for one request.
struct Plan {
    std::vector<std::string> args; // after the dispatcher's own name
    std::string input;             // its stdin
    bool withStdin = false;
    int okStatus = 200;             // 200 (the command's JSON), 201, 204 (no body)
    bool stream = false;            // chunked, until the command ends or the client goes
    std::vector<std::string> check; // a command that must succeed before a stream starts
    std::string contentType = "application/json";
    std::function<nlohmann::json(const std::string &)> shape; // stdout -> the answer
    nlohmann::json local; // answered without a command (when args is empty)
};

struct Match {
    std::map<std::string, std::string> path;  // {id}, {ref}
    std::map<std::string, std::string> query; // checked against the route's params
    std::string body;
};

struct Route {
    std::string method, pattern, summary;
    std::vector<Param> query;
    std::string body; // "" none, "spec" (VirtualRoot JSON or YAML), "json"
    std::function<Plan(const Match &)> plan;
};

const std::vector<Route> &routes();

// The route for method and path; path parameters validated. Throws ApiError: 404 for
// no route, 405 (allow filled) for a path whose route wants another method, 400 for a
// bad parameter.
const Route &findRoute(const std::string &method, const std::string &path, Match &match,
                       std::string &allow);
// Query parameters checked against the route (unknown ones and bad values: 400).
void checkQuery(const Route &route, const std::map<std::string, std::string> &query);

// The OpenAPI 3 document of every route.
nlohmann::json openapi(const std::string &version);

// An error the command line printed (MOBILEOPS_ERROR_FORMAT=json) as an HTTP status.
ApiError commandError(int exitStatus, const std::string &stderrText);

// Names accepted in paths: a container, volume or network name or id; an image reference.
bool validName(const std::string &s);
bool validImageRef(const std::string &s);

} // namespace mobileops::api
