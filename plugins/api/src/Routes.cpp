#include "Routes.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <sstream>

namespace mobileops::api {

using nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string &message) { throw ApiError{400, "invalid", message}; }

std::vector<std::string> split(const std::string &path) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : path) {
        if (c == '/') {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

bool truthy(const Match &m, const std::string &name) {
    auto it = m.query.find(name);
    return it != m.query.end() && (it->second == "true" || it->second == "1");
}

std::string q(const Match &m, const std::string &name) {
    auto it = m.query.find(name);
    return it == m.query.end() ? std::string() : it->second;
}

// A text value for a --flag=VALUE (the value is one argv element: it cannot become a flag).
bool validText(const std::string &s, size_t max) {
    if (s.empty() || s.size() > max) return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x20 && c != 0x7f; });
}

const std::string &id(const Match &m) { return m.path.at("id"); }

Plan run(std::vector<std::string> args, int okStatus = 200) {
    Plan p;
    p.args = std::move(args);
    p.okStatus = okStatus;
    return p;
}

json parseJson(const std::string &out) {
    json j = json::parse(out, nullptr, false);
    if (j.is_discarded()) throw ApiError{500, "internal", "the command printed no JSON"};
    return j;
}

// metadata.name of a VirtualRoot spec (JSON is YAML), for the command's NAME; the
// command line checks everything else.
std::string specName(const std::string &body) {
    if (body.empty()) bad("body: a VirtualRoot spec (JSON or YAML) is required");
    YAML::Node doc;
    try {
        doc = YAML::Load(body);
    } catch (const YAML::Exception &e) {
        bad(std::string("body: not JSON or YAML: ") + e.what());
    }
    if (!doc.IsMap()) bad("body: expected a VirtualRoot spec (a mapping)");
    YAML::Node meta = doc["metadata"];
    if (!meta || !meta.IsMap() || !meta["name"] || !meta["name"].IsScalar())
        bad("metadata.name: required (the container's name)");
    std::string name = meta["name"].as<std::string>();
    if (!validName(name))
        bad("metadata.name: `" + name + "` is not a valid name ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})");
    return name;
}

// PUT /containers/{id}: {"memory": "256Mi", "cpus": "1.5", "pids_limit": 100, ...} ->
// `container update ID --memory=256Mi ...` (the keys of `container update --help`).
std::vector<std::string> updateFlags(const std::string &body) {
    static const std::set<std::string> scalar = {
        "memory",      "memory-reservation", "cpus",
        "cpu-shares",  "cpuset-cpus",        "pids-limit",
        "memory-swap", "memory-swappiness",  "blkio-weight"};
    static const std::set<std::string> lists = {"device-read-bps", "device-write-bps",
                                                "device-read-iops", "device-write-iops"};
    json j = json::parse(body.empty() ? "null" : body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.empty())
        bad("body: expected a JSON object of resource limits, e.g. {\"memory\": \"256Mi\"}");
    std::vector<std::string> flags;
    for (auto &[key, value] : j.items()) {
        std::string flag = key;
        std::replace(flag.begin(), flag.end(), '_', '-');
        auto text = [&](const json &v) -> std::string {
            std::string s;
            if (v.is_string())
                s = v.get<std::string>();
            else if (v.is_number_integer())
                s = std::to_string(v.get<long long>());
            else if (v.is_number())
                s = v.dump();
            else
                bad(key + ": expected a string or a number");
            if (!validText(s, 256)) bad(key + ": empty or not printable");
            return s;
        };
        if (flag == "ignore-unsupported") {
            if (!value.is_boolean()) bad(key + ": expected true or false");
            if (value.get<bool>()) flags.push_back("--ignore-unsupported");
        } else if (scalar.count(flag)) {
            flags.push_back("--" + flag + "=" + text(value));
        } else if (lists.count(flag)) {
            if (!value.is_array()) bad(key + ": expected a list of DEVICE:VALUE strings");
            for (const json &v : value) flags.push_back("--" + flag + "=" + text(v));
        } else {
            bad(key + ": unknown resource (see `mobileops container update --help`)");
        }
    }
    return flags;
}

std::vector<std::string> timeoutFlag(const Match &m) {
    std::string t = q(m, "timeout");
    if (t.empty()) return {};
    return {"--time=" + t};
}

std::vector<Route> makeRoutes() {
    const Param all{"all", "boolean", "include stopped containers (default true)"};
    std::vector<Route> r;
    r.push_back({"GET", "/api/v1/version", "mobileops and API versions", {}, "", nullptr});
    r.push_back({"GET", "/api/v1/openapi.json", "this document", {}, "", nullptr});
    r.push_back({"GET",
                 "/api/v1/containers",
                 "list containers (`container list --all`)",
                 {all},
                 "",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "container", "list"};
                     if (q(m, "all") != "false" && q(m, "all") != "0") a.push_back("--all");
                     return run(a);
                 }});
    r.push_back({"POST",
                 "/api/v1/containers",
                 "create a container from a VirtualRoot spec (`container create --file -`); "
                 "its name is metadata.name",
                 {{"start", "boolean", "start it too (`container boot`)"}},
                 "spec",
                 [](const Match &m) {
                     std::string name = specName(m.body);
                     Plan p = run({"--json", "container", truthy(m, "start") ? "boot" : "create",
                                   "--file=-", name},
                                  201);
                     p.input = m.body;
                     p.withStdin = true;
                     return p;
                 }});
    r.push_back({"GET",
                 "/api/v1/containers/{id}",
                 "inspect a container (`container inspect`)",
                 {},
                 "",
                 [](const Match &m) {
                     return run({"--json", "container", "inspect", id(m)});
                 }});
    r.push_back({"PUT",
                 "/api/v1/containers/{id}",
                 "change resource limits (`container update`): {\"memory\": \"256Mi\", \"cpus\": "
                 "\"1\", \"pids_limit\": 100, ...}",
                 {},
                 "json",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "container", "update"};
                     for (auto &f : updateFlags(m.body)) a.push_back(f);
                     a.push_back("--");
                     a.push_back(id(m));
                     return run(a, 204);
                 }});
    r.push_back({"DELETE",
                 "/api/v1/containers/{id}",
                 "delete a container (`container delete`)",
                 {{"force", "boolean", "kill it first if it runs"}},
                 "",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "container", "delete"};
                     if (truthy(m, "force")) a.push_back("--force");
                     a.push_back(id(m));
                     return run(a, 204);
                 }});
    for (const char *verb : {"start", "pause", "resume"})
        r.push_back({"POST",
                     std::string("/api/v1/containers/{id}/") + verb,
                     std::string(verb) + " a container (`container " + verb + "`)",
                     {},
                     "",
                     [verb](const Match &m) {
                         return run({"--json", "container", verb, id(m)}, 204);
                     }});
    for (const char *verb : {"stop", "restart"})
        r.push_back({"POST",
                     std::string("/api/v1/containers/{id}/") + verb,
                     std::string(verb) + " a container (`container " + verb + "`)",
                     {{"timeout", "integer", "seconds before SIGKILL"}},
                     "",
                     [verb](const Match &m) {
                         std::vector<std::string> a = {"--json", "container", verb};
                         for (auto &f : timeoutFlag(m)) a.push_back(f);
                         a.push_back(id(m));
                         return run(a, 204);
                     }});
    r.push_back({"POST",
                 "/api/v1/containers/{id}/kill",
                 "signal a container (`container kill`)",
                 {{"signal", "string", "signal name or number (default KILL)"}},
                 "",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "container", "kill"};
                     if (!q(m, "signal").empty()) a.push_back("--signal=" + q(m, "signal"));
                     a.push_back(id(m));
                     return run(a, 204);
                 }});
    r.push_back({"GET",
                 "/api/v1/containers/{id}/logs",
                 "a container's output as JSON lines (`logs show`); follow streams them",
                 {{"follow", "boolean", "keep streaming until the container stops"},
                  {"tail", "integer", "only the last N lines"},
                  {"since", "string", "RFC 3339 time, Unix seconds or a duration (10m)"},
                  {"until", "string", "lines before this time"},
                  {"stream", "string", "stdout or stderr only"}},
                 "",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "logs", "show"};
                     if (truthy(m, "follow")) a.push_back("--follow");
                     for (const char *k : {"tail", "since", "until", "stream"})
                         if (!q(m, k).empty()) a.push_back(std::string("--") + k + "=" + q(m, k));
                     a.push_back(id(m));
                     Plan p = run(a);
                     p.contentType = "application/x-ndjson";
                     if (truthy(m, "follow")) {
                         p.stream = true;
                         p.check = {"--json", "container", "inspect", id(m)};
                     }
                     return p;
                 }});
    r.push_back({"GET",
                 "/api/v1/containers/{id}/stats",
                 "one sample of resource usage (`container stats --no-stream`)",
                 {},
                 "",
                 [](const Match &m) {
                     Plan p = run({"--json", "container", "stats", "--no-stream", id(m)});
                     p.shape = [](const std::string &out) {
                         json j = parseJson(out);
                         if (j.is_array() && !j.empty()) return j[0];
                         throw ApiError{409, "state", "the container is not running: no stats"};
                     };
                     return p;
                 }});
    r.push_back({"GET", "/api/v1/images", "list images (`image list`)", {}, "", [](const Match &) {
                     return run({"--json", "image", "list"});
                 }});
    r.push_back({"GET",
                 "/api/v1/images/{ref}",
                 "inspect an image (`image inspect`); the "
                 "reference may contain `/` (URL-encode it or not)",
                 {},
                 "",
                 [](const Match &m) {
                     return run({"--json", "image", "inspect", m.path.at("ref")});
                 }});
    r.push_back(
        {"GET", "/api/v1/volumes", "list volumes (`volume list`)", {}, "", [](const Match &) {
             return run({"--json", "volume", "list"});
         }});
    r.push_back({"POST",
                 "/api/v1/volumes",
                 "create a volume (`volume create`): {\"name\": ..., \"size\": \"1Gi\", "
                 "\"class\": ...}",
                 {},
                 "json",
                 [](const Match &m) {
                     json j = json::parse(m.body.empty() ? "null" : m.body, nullptr, false);
                     if (j.is_discarded() || !j.is_object()) bad("body: expected a JSON object");
                     std::vector<std::string> a = {"--json", "volume", "create"};
                     std::string name;
                     for (auto &[k, v] : j.items()) {
                         if (!v.is_string()) bad(k + ": expected a string");
                         std::string s = v.get<std::string>();
                         if (k == "name")
                             name = s;
                         else if ((k == "size" || k == "class") && validText(s, 128))
                             a.push_back("--" + k + "=" + s);
                         else if (k == "size" || k == "class")
                             bad(k + ": empty or not printable");
                         else
                             bad(k + ": unknown field (name, size, class)");
                     }
                     if (!validName(name)) bad("name: required, [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}");
                     a.push_back("--");
                     a.push_back(name);
                     return run(a, 201);
                 }});
    r.push_back({"GET",
                 "/api/v1/volumes/{id}",
                 "inspect a volume (`volume inspect`)",
                 {},
                 "",
                 [](const Match &m) {
                     return run({"--json", "volume", "inspect", id(m)});
                 }});
    r.push_back({"DELETE",
                 "/api/v1/volumes/{id}",
                 "remove a volume (`volume rm`)",
                 {},
                 "",
                 [](const Match &m) {
                     return run({"--json", "volume", "rm", id(m)}, 204);
                 }});
    r.push_back(
        {"GET", "/api/v1/networks", "list networks (`network list`)", {}, "", [](const Match &) {
             return run({"--json", "network", "list"});
         }});
    r.push_back({"GET",
                 "/api/v1/networks/{id}",
                 "inspect a network (`network inspect`)",
                 {},
                 "",
                 [](const Match &m) {
                     return run({"--json", "network", "inspect", id(m)});
                 }});
    r.push_back({"GET",
                 "/api/v1/events",
                 "lifecycle events as a stream of JSON lines (`events --follow`)",
                 {{"since", "string", "events at or after this time (RFC 3339, Unix seconds, 10m)"},
                  {"type", "string", "only this type (container.exit) or prefix (container.)"},
                  {"container", "string", "only this container (name or id)"}},
                 "",
                 [](const Match &m) {
                     std::vector<std::string> a = {"--json", "events", "list", "--follow"};
                     for (const char *k : {"since", "type", "container"})
                         if (!q(m, k).empty()) a.push_back(std::string("--") + k + "=" + q(m, k));
                     Plan p = run(a);
                     p.stream = true;
                     p.contentType = "application/x-ndjson";
                     return p;
                 }});
    return r;
}

} // namespace

bool validName(const std::string &s) {
    if (s.empty() || s.size() > 128 || !std::isalnum(static_cast<unsigned char>(s[0])))
        return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '.' || c == '-';
    });
}

bool validImageRef(const std::string &s) {
    if (s.empty() || s.size() > 255 || !std::isalnum(static_cast<unsigned char>(s[0])))
        return false;
    if (s.find("..") != std::string::npos || s.find("//") != std::string::npos) return false;
    return std::all_of(s.begin(), s.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == ':' || c == '/' ||
               c == '@';
    });
}

const std::vector<Route> &routes() {
    static const std::vector<Route> table = makeRoutes();
    return table;
}

const Route &findRoute(const std::string &method, const std::string &path, Match &match,
                       std::string &allow) {
    std::vector<std::string> segs = split(path);
    std::vector<std::string> methods;
    const Route *found = nullptr;
    for (const Route &r : routes()) {
        std::vector<std::string> pat = split(r.pattern);
        std::map<std::string, std::string> params;
        bool ok = true;
        size_t i = 0;
        for (; i < pat.size() && ok; ++i) {
            if (pat[i] == "{ref}") {
                // an image reference: the rest of the path (it may hold slashes)
                if (i >= segs.size()) {
                    ok = false;
                    break;
                }
                std::string ref;
                for (size_t k = i; k < segs.size(); ++k) ref += (k > i ? "/" : "") + segs[k];
                params["ref"] = ref;
                i = segs.size();
                break;
            }
            if (i >= segs.size()) {
                ok = false;
            } else if (pat[i].front() == '{') {
                params[pat[i].substr(1, pat[i].size() - 2)] = segs[i];
            } else if (pat[i] != segs[i]) {
                ok = false;
            }
        }
        if (!ok || (i != segs.size() && pat.back() != "{ref}") ||
            (pat.size() != segs.size() && pat.back() != "{ref}"))
            continue;
        if (r.method != method) {
            methods.push_back(r.method);
            continue;
        }
        found = &r;
        match.path = params;
    }
    if (!found) {
        if (!methods.empty()) {
            std::sort(methods.begin(), methods.end());
            for (auto &m : methods) allow += (allow.empty() ? "" : ", ") + m;
            throw ApiError{405, "method_not_allowed",
                           method + " is not allowed on `" + path + "` (allowed: " + allow + ")"};
        }
        throw ApiError{404, "not_found", "no route `" + path + "` (see /api/v1/openapi.json)"};
    }
    for (auto &[k, v] : match.path) {
        bool ok = k == "ref" ? validImageRef(v) : validName(v);
        if (!ok)
            bad("path: `" + v + "` is not a valid " +
                (k == "ref" ? "image reference" : "name or id") +
                (k == "ref" ? "" : " ([a-zA-Z0-9][a-zA-Z0-9_.-]{0,127})"));
    }
    return *found;
}

void checkQuery(const Route &route, const std::map<std::string, std::string> &query) {
    for (auto &[k, v] : query) {
        auto p = std::find_if(route.query.begin(), route.query.end(),
                              [&](const Param &x) { return x.name == k; });
        if (p == route.query.end()) {
            std::string known;
            for (auto &x : route.query) known += (known.empty() ? "" : ", ") + x.name;
            bad("query parameter `" + k + "` is not known here" +
                (known.empty() ? std::string(" (none are)") : " (known: " + known + ")"));
        }
        if (p->type == "boolean" && v != "true" && v != "false" && v != "1" && v != "0")
            bad(k + ": expected true or false, got `" + v + "`");
        if (p->type == "integer" &&
            (v.empty() || v.size() > 9 ||
             !std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c); })))
            bad(k + ": expected a non-negative integer, got `" + v + "`");
        if (p->type == "string" && !validText(v, 256)) bad(k + ": empty or not printable");
    }
}

ApiError commandError(int exitStatus, const std::string &err) {
    // The last line is the command's error ({"code", "message"}); lines before it are
    // warnings.
    std::string line;
    std::istringstream in(err);
    for (std::string l; std::getline(in, l);)
        if (!l.empty()) line = l;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("code") || !j["code"].is_string())
        return {500, "internal",
                "the command failed (status " + std::to_string(exitStatus) + ")" +
                    (line.empty() ? std::string() : ": " + line)};
    std::string code = j["code"].get<std::string>();
    std::string message = j.value("message", std::string());
    static const std::map<std::string, int> status = {
        {"invalid", 400}, {"usage", 400},       {"not_found", 404}, {"exists", 409},
        {"state", 409},   {"unsupported", 501}, {"busy", 503}};
    if (code == "system" && j.contains("errno") && j["errno"].is_number_integer()) {
        // A path or name from the request that is not there or not usable is bad input,
        // not a server failure.
        switch (j["errno"].get<int>()) {
        case ENOENT:
        case ENOTDIR:
        case EISDIR:
        case ENAMETOOLONG:
        case ELOOP:
        case EINVAL:
        case EACCES:
        case EPERM:
            return {400, "invalid", message};
        case EEXIST:
            return {409, "exists", message};
        case EBUSY:
            return {409, "state", message};
        default:
            break;
        }
    }
    auto it = status.find(code);
    return {it == status.end() ? 500 : it->second, code, message};
}

json openapi(const std::string &version) {
    json paths = json::object();
    json error = {{"description", "an error"},
                  {"content",
                   {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
    for (const Route &r : routes()) {
        std::string path = r.pattern;
        json op = {{"summary", r.summary}, {"parameters", json::array()}};
        std::string lower = r.method;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        for (const char *p : {"{id}", "{ref}"})
            if (path.find(p) != std::string::npos)
                op["parameters"].push_back(
                    {{"name", std::string(p).substr(1, std::string(p).size() - 2)},
                     {"in", "path"},
                     {"required", true},
                     {"schema", {{"type", "string"}}}});
        for (const Param &p : r.query)
            op["parameters"].push_back({{"name", p.name},
                                        {"in", "query"},
                                        {"description", p.summary},
                                        {"schema", {{"type", p.type}}}});
        if (r.body == "spec")
            op["requestBody"] = {{"required", true},
                                 {"description", "a VirtualRoot spec (docs/virtualroot-spec.md)"},
                                 {"content",
                                  {{"application/json", {{"schema", {{"type", "object"}}}}},
                                   {"application/yaml", {{"schema", {{"type", "string"}}}}}}}};
        else if (r.body == "json")
            op["requestBody"] = {
                {"required", true},
                {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
        op["responses"] = {{"default", error}};
        bool isStream = r.pattern == "/api/v1/events" || r.pattern.ends_with("/logs");
        int ok = (r.method == "POST" &&
                  (r.pattern == "/api/v1/containers" || r.pattern == "/api/v1/volumes"))
                     ? 201
                 : (r.method == "DELETE" || r.method == "PUT" ||
                    (r.method == "POST" && r.pattern.find("{id}/") != std::string::npos))
                     ? 204
                     : 200;
        if (ok == 204)
            op["responses"]["204"] = {{"description", "done"}};
        else
            op["responses"][std::to_string(ok)] = {
                {"description", "the result"},
                {"content",
                 {{isStream ? "application/x-ndjson" : "application/json",
                   {{"schema", {{"type", isStream ? "string" : "object"}}}}}}}};
        paths[path][lower] = op;
    }
    return {{"openapi", "3.0.3"},
            {"info", {{"title", "mobileops API"}, {"version", version}}},
            {"paths", paths},
            {"components",
             {{"schemas",
               {{"Error",
                 {{"type", "object"},
                  {"required", {"code", "message"}},
                  {"properties",
                   {{"code", {{"type", "string"}}}, {"message", {{"type", "string"}}}}}}}}},
              {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}}};
}

} // namespace mobileops::api
