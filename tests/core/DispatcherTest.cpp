// The `mobileops` dispatcher end to end: exit statuses, one-line errors, help generated
// from scripts, user workflows, the Lua sandbox, lazy loading, generated docs.
#include "TestUtil.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

using namespace mobileops::test;

namespace {

class Dispatcher : public ::testing::Test {
protected:
    Result mo(const std::vector<std::string> &args, std::vector<std::string> fixtures = {}) {
        std::vector<std::string> argv{dispatcher()};
        argv.insert(argv.end(), args.begin(), args.end());
        std::string pluginPath;
        for (auto &f : fixtures) pluginPath += (pluginPath.empty() ? "" : ":") + fixtureDir(f);
        return run(argv, {{"MOBILEOPS_ROOT", _tmp.path() + "/root"},
                          {"MOBILEOPS_RUN", _tmp.path() + "/run"},
                          {"MOBILEOPS_SCRIPT_PATH", _tmp.path() + "/scripts"},
                          {"MOBILEOPS_PLUGIN_PATH", pluginPath},
                          {"MOBILEOPS_CONFIG", _tmp.path() + "/none.conf"}});
    }

    void script(const std::string &name, const std::string &body) {
        _tmp.file("scripts/" + name + ".lua", body);
    }

    // A user workflow whose verb `go` runs `code`.
    void verb(const std::string &code) {
        script("t", "local mo = require('mobileops')\n"
                    "local wf = mo.workflow{ name = 't', summary = 'test workflow' }\n"
                    "wf:verb{ name = 'go', summary = 'run it', run = function(opts, args)\n" +
                        code + "\nend }\nreturn wf\n");
    }

    static void expectOneLineError(const Result &r, const std::string &fragment) {
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_EQ(r.err.rfind("mobileops: ", 0), 0u) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
        EXPECT_EQ(r.err.find("stack traceback"), std::string::npos) << r.err;
        EXPECT_EQ(r.err.find("std::"), std::string::npos) << r.err;
    }

    TempDir _tmp;
};

TEST_F(Dispatcher, VersionListsFeaturesAndExitsZero) {
    Result r = mo({"--version"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("mobileops 0."), std::string::npos);
    EXPECT_NE(r.out.find("features: "), std::string::npos);
    EXPECT_NE(r.out.find("lazy-plugins"), std::string::npos);
}

TEST_F(Dispatcher, UsageErrorsExitTwo) {
    EXPECT_EQ(mo({}).status, 2);
    EXPECT_EQ(mo({"--bogus"}).status, 2);
    Result r = mo({"nosuchworkflow"});
    EXPECT_EQ(r.status, 2);
    EXPECT_EQ(r.err, "mobileops: unknown workflow `nosuchworkflow`; see `mobileops help`\n");
    r = mo({"system", "nosuchverb"});
    EXPECT_EQ(r.status, 2);
    r = mo({"system", "info", "--nosuchflag"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("unknown option `--nosuchflag`"), std::string::npos);
    r = mo({"plugin", "info"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("missing NAME"), std::string::npos);
}

TEST_F(Dispatcher, ACommandThatNeedsNoPluginLoadsNone) {
    Result r = mo({"--debug", "system", "info"}, {"good", "provides_runtime"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("load plugin"), std::string::npos) << r.err;
    r = mo({"--debug", "plugin", "list"}, {"good", "provides_runtime"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("load plugin"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("provides_runtime"), std::string::npos);
}

TEST_F(Dispatcher, ServiceUseLoadsOnlyItsProvider) {
    verb("local s = mo.service('runtime', 'fixture').state('x'); mo.print(s.id)");
    Result r = mo({"--debug", "t", "go"}, {"good", "provides_runtime"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "fixture\n");
    EXPECT_NE(r.err.find("load plugin `provides_runtime`"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("load plugin `good`"), std::string::npos) << r.err;
}

TEST_F(Dispatcher, PluginMethodResultReachesLua) {
    verb("local r = mo.plugins.good.ping{}; mo.print(tostring(r.pong))");
    Result r = mo({"t", "go"}, {"good"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "true\n");
}

TEST_F(Dispatcher, PluginErrorIsOneLineWithThePluginsMessage) {
    verb("mo.plugins.method_error.fail{ x = 'y' }");
    expectOneLineError(mo({"t", "go"}, {"method_error"}),
                       "mobileops: invalid 'x': expected a number");
}

TEST_F(Dispatcher, PluginErrorIsAStructuredLuaError) {
    verb("local ok, e = pcall(mo.plugins.method_error.fail, {})\n"
         "mo.print(ok, e.code, e.plugin, tostring(e))");
    Result r = mo({"t", "go"}, {"method_error"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "false\t-1000\tmethod_error\tinvalid 'x': expected a number\n");
}

TEST_F(Dispatcher, BadArgumentNamesTheParameter) {
    verb("mo.has(42)");
    expectOneLineError(mo({"t", "go"}), "mo.has: invalid 'name': expected string, got number");
    verb("mo.runtime.create(nil)");
    expectOneLineError(mo({"t", "go"}),
                       "mo.runtime.create: invalid 'spec': expected table, got nil");
}

TEST_F(Dispatcher, BrokenPluginIsReportedAndCommandFails) {
    verb("mo.plugins.wrong_major.x{}");
    expectOneLineError(mo({"t", "go"}, {"wrong_major"}), "built for ABI 2.0");
    Result r = mo({"plugin", "list"}, {"wrong_major", "good"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.err.find("plugin `wrong_major`"), std::string::npos) << r.err;
    EXPECT_NE(r.out.find("failed"), std::string::npos);
}

TEST_F(Dispatcher, SyntaxErrorInAScriptIsOneLine) {
    script("broken", "local x = = 1\n");
    expectOneLineError(mo({"broken", "go"}), "workflow `broken`: syntax error");
}

TEST_F(Dispatcher, ScriptErrorHidesLocationUnlessDebug) {
    verb("error('boom happened')");
    Result r = mo({"t", "go"});
    expectOneLineError(r, "mobileops: boom happened");
    r = mo({"--debug", "t", "go"});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("t.lua:4: boom happened"), std::string::npos) << r.err;
}

TEST_F(Dispatcher, VerbReturnValueIsTheExitStatus) {
    verb("return 3");
    EXPECT_EQ(mo({"t", "go"}).status, 3);
    verb("return false");
    EXPECT_EQ(mo({"t", "go"}).status, 1);
}

TEST_F(Dispatcher, UserWorkflowRunsWithParsedOptionsAndArgs) {
    script("greet", R"(
local mo = require("mobileops")
local wf = mo.workflow{ name = "greet", summary = "say hello" }
wf:verb{ name = "hello", summary = "greet someone",
  options = { { name = "shout", short = "s", summary = "loudly" },
              { name = "times", short = "n", type = "int", default = 1, summary = "repeat" },
              { name = "tag", short = "t", type = "list", summary = "tags" } },
  args = { { name = "WHO", summary = "who" }, { name = "REST", variadic = true, optional = true } },
  run = function(opts, args)
    for _ = 1, opts.times do
      mo.print((opts.shout and "HELLO " or "hello ") .. args.WHO, table.concat(opts.tag, ","),
               table.concat(args.REST, " "))
    end
  end }
return wf
)");
    Result r = mo({"greet", "hello", "-s", "--times=2", "-t", "a", "--tag", "b", "bob", "x",
                   "--not-an-option"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "HELLO bob\ta,b\tx --not-an-option\nHELLO bob\ta,b\tx --not-an-option\n");
    r = mo({"greet", "hello", "--times", "x", "bob"});
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("invalid --times `x`: expected an integer"), std::string::npos) << r.err;

    r = mo({"help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("greet"), std::string::npos);
    EXPECT_NE(r.out.find("say hello"), std::string::npos);
    EXPECT_NE(r.out.find("system"), std::string::npos);
    r = mo({"greet", "--help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("hello  greet someone"), std::string::npos) << r.out;
    r = mo({"greet", "hello", "--help"});
    EXPECT_EQ(r.status, 0);
    EXPECT_NE(r.out.find("Usage: mobileops greet hello [OPTIONS] WHO [REST...]"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("-n, --times N"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(repeatable)"), std::string::npos) << r.out;
}

TEST_F(Dispatcher, AnOptionCanTakeAnArgumentsPlace) {
    // run's ROOTFS with --rootfs-img: the option given, the next word starts the command
    script("boot", R"(
local mo = require("mobileops")
local wf = mo.workflow{ name = "boot", summary = "boot" }
wf:verb{ name = "run", summary = "run",
  options = { { name = "img", type = "string", summary = "image" } },
  args = { { name = "ROOT", optional = true, unless = "img" },
           { name = "CMD", variadic = true, optional = true } },
  run = function(opts, args)
    mo.print(args.ROOT or "-", opts.img or "-", table.concat(args.CMD, " "))
  end }
return wf
)");
    Result r = mo({"boot", "run", "--img", "x.img", "sh", "-c", "echo hi"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "-\tx.img\tsh -c echo hi\n");
    r = mo({"boot", "run", "/root", "sh", "-c", "echo hi"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "/root\t-\tsh -c echo hi\n");
}

TEST_F(Dispatcher, ShadowingABuiltinWorkflowWarns) {
    script("system",
           "local mo = require('mobileops')\n"
           "local wf = mo.workflow{ name = 'system', summary = 'mine' }\n"
           "wf:verb{ name = 'info', run = function() mo.print('mine') end }\nreturn wf\n");
    Result r = mo({"system", "info"});
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.out, "mine\n");
    EXPECT_NE(r.err.find("warning: workflow `system`"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("shadows the built-in one"), std::string::npos) << r.err;
}

TEST_F(Dispatcher, SandboxRemovesProcessAndNativeCodeAccess) {
    verb(R"(
mo.print(type(io.popen), type(os.execute), type(os.exit), type(package.loadlib), type(debug),
         type(string.dump), pcall(require, "ffi"))
local f = load(string.char(27) .. "LJ")
mo.print(f == nil)
)");
    Result r = mo({"t", "go"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, r.out.find('\n')),
              "nil\tnil\tnil\tnil\tnil\tnil\tfalse\tmodule 'ffi' not found:");
    EXPECT_NE(r.out.find("\ntrue\n"), std::string::npos) << r.out;
}

TEST_F(Dispatcher, JsonRoundTripAndOutput) {
    verb("mo.output(mo.json_decode('{\"a\":[1,2,{\"b\":\"c\"}],\"e\":[]}'))");
    Result r = mo({"t", "go", "--json"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(
        r.out,
        "{\n  \"a\": [\n    1,\n    2,\n    {\n      \"b\": \"c\"\n    }\n  ],\n  \"e\": []\n}\n");
}

TEST_F(Dispatcher, SystemInfoJsonIsValidJson) {
    Result r = mo({"--json", "system", "info"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.front(), '{');
    EXPECT_NE(r.out.find("\"cgroup\""), std::string::npos);
}

TEST_F(Dispatcher, DoctorReportsEachPlugin) {
    Result r = mo({"system", "doctor"}, {"good", "init_fails"});
    EXPECT_EQ(r.status, 1); // one plugin is not usable
    EXPECT_NE(r.out.find("ok   good"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("FAIL init_fails"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("fixture refuses to start"), std::string::npos) << r.out;
}

TEST_F(Dispatcher, FeaturesIncludePluginFeatures) {
    Result r = mo({"features", "--json"}, {"good"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("\"good\""), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("mo.runtime.create"), std::string::npos);
}

TEST_F(Dispatcher, LuaApiDocsAreUpToDate) {
    Result r = mo({"--lua-api-docs"});
    ASSERT_EQ(r.status, 0);
    std::ifstream in(MOBILEOPS_SOURCE_DIR "/docs/lua-api.md");
    std::stringstream committed;
    committed << in.rdbuf();
    EXPECT_EQ(committed.str(), r.out)
        << "regenerate with: build/bin/mobileops --lua-api-docs > docs/lua-api.md";
}

} // namespace

namespace {

TEST_F(Dispatcher, ExceptionThrownByAPluginsInitIsReportedNotFatal) {
    Result r = mo({"system", "doctor"}, {"init_throws", "good"});
    EXPECT_EQ(r.status, 1) << r.err; // init_throws is unusable, the dispatcher survives
    EXPECT_NE(r.out.find("FAIL init_throws"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("init failed"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("ok   good"), std::string::npos) << r.out;
}

} // namespace
