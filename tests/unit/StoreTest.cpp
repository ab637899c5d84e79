#include "mobileops/core/Store.h"
#include "mobileops/core/Error.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <thread>

using mobileops::core::Error;
using mobileops::core::Store;
namespace fs = std::filesystem;

namespace {

std::string readBytes(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeBytes(const std::string &path, const std::string &bytes) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Run SQL on the file through a connection of its own, outside Store.
void rawExec(const std::string &path, const std::string &sql) {
    sqlite3 *db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    char *err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    std::string message = err ? err : "";
    sqlite3_free(err);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK) << message;
}

std::string rawQuery(const std::string &path, const std::string &sql) {
    sqlite3 *db = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    sqlite3_stmt *stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    std::string result;
    if (stmt && sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
        result = reinterpret_cast<const char *>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return result;
}

template <typename Fn> Error catchError(Fn &&fn) {
    try {
        fn();
    } catch (const Error &e) {
        return e;
    }
    ADD_FAILURE() << "expected an Error";
    return Error(0, "");
}

class StoreTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string tmpl = (fs::temp_directory_path() / "mobileops-store-XXXXXX").string();
        ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
        _dir = tmpl;
    }
    void TearDown() override { fs::remove_all(_dir); }

    std::string file(const std::string &name) const { return (_dir / name).string(); }

    fs::path _dir;
};

TEST_F(StoreTest, CreatesDatabaseAndPrivateParentDirectory) {
    std::string path = file("a/b/state.db");
    auto store = Store::open(path);
    EXPECT_EQ(store->schemaVersion(), Store::latestVersion());
    EXPECT_GE(Store::latestVersion(), 2);
    for (const char *dir : {"a", "a/b"}) {
        struct stat st {};
        ASSERT_EQ(::stat(file(dir).c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 07777, 0700u) << dir;
    }
    EXPECT_EQ(rawQuery(path, "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(rawQuery(path, "SELECT version FROM schema_version"),
              std::to_string(Store::latestVersion()));
}

TEST_F(StoreTest, PutGetFindList) {
    auto store = Store::open(file("state.db"));
    EXPECT_FALSE(store->get("container", "a"));
    store->put("container", "b", std::string("web"), R"({"n":1})");
    // `created` has millisecond resolution; within one, list() orders by key.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    store->put("container", "a", std::nullopt, R"({"n":2})");
    store->put("image", "x", std::string("web"), "[]"); // names are unique per kind only

    EXPECT_EQ(store->get("container", "b"), R"({"n":1})");
    auto object = store->getObject("container", "b");
    ASSERT_TRUE(object);
    EXPECT_EQ(object->kind, "container");
    EXPECT_EQ(object->key, "b");
    EXPECT_EQ(object->name, "web");
    EXPECT_EQ(object->data, R"({"n":1})");
    std::regex millis(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
    EXPECT_TRUE(std::regex_match(object->created, millis)) << object->created;
    EXPECT_EQ(object->created, object->updated);

    auto found = store->find("container", "web");
    ASSERT_TRUE(found);
    EXPECT_EQ(found->key, "b");
    EXPECT_FALSE(store->find("container", "nope"));
    EXPECT_EQ(store->getObject("container", "a")->name, "");

    auto objects = store->list("container");
    ASSERT_EQ(objects.size(), 2u);
    EXPECT_EQ(objects[0].key, "b"); // created first
    EXPECT_EQ(objects[1].key, "a");
    EXPECT_TRUE(store->list("volume").empty());
}

TEST_F(StoreTest, UpdateKeepsCreatedAndReplacesName) {
    auto store = Store::open(file("state.db"));
    store->put("container", "a", std::string("web"), R"({"v":1})");
    auto before = *store->getObject("container", "a");
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    store->put("container", "a", std::string("api"), R"({"v":2})");
    auto after = *store->getObject("container", "a");
    EXPECT_EQ(after.created, before.created);
    EXPECT_GT(after.updated, before.updated);
    EXPECT_EQ(after.data, R"({"v":2})");
    EXPECT_FALSE(store->find("container", "web"));
    EXPECT_EQ(store->find("container", "api")->key, "a");
    // The old name is free again.
    store->put("container", "b", std::string("web"), "{}");
}

TEST_F(StoreTest, CreateOnlyRefusesExistingKey) {
    auto store = Store::open(file("state.db"));
    store->put("container", "a", std::nullopt, "{}", true);
    Error e = catchError([&] { store->put("container", "a", std::nullopt, R"({"x":1})", true); });
    EXPECT_EQ(e.code(), MO_E_EXISTS);
    EXPECT_STREQ(e.what(), "`container` `a` already exists");
    EXPECT_EQ(store->get("container", "a"), "{}");
}

TEST_F(StoreTest, NameInUseByAnotherKey) {
    auto store = Store::open(file("state.db"));
    store->put("container", "a", std::string("web"), "{}");
    for (bool createOnly : {false, true}) {
        Error e =
            catchError([&] { store->put("container", "b", std::string("web"), "{}", createOnly); });
        EXPECT_EQ(e.code(), MO_E_EXISTS);
        EXPECT_STREQ(e.what(), "name `web` is already in use");
    }
    EXPECT_FALSE(store->get("container", "b"));
    store->put("container", "a", std::string("web"), R"({"same":"key"})");
}

TEST_F(StoreTest, RejectsInvalidInput) {
    auto store = Store::open(file("state.db"));
    Error e = catchError([&] { store->put("container", "a", std::nullopt, "{not json"); });
    EXPECT_EQ(e.code(), MO_E_INVALID);
    EXPECT_NE(std::string(e.what()).find("invalid JSON in `container` `a`: "), std::string::npos)
        << e.what();
    EXPECT_EQ(catchError([&] { store->put("", "a", std::nullopt, "{}"); }).code(), MO_E_INVALID);
    EXPECT_EQ(catchError([&] { store->appendEvent("x", "y", ""); }).code(), MO_E_INVALID);
    EXPECT_FALSE(store->get("container", "a"));
}

TEST_F(StoreTest, Remove) {
    auto store = Store::open(file("state.db"));
    store->put("container", "a", std::string("web"), "{}");
    EXPECT_TRUE(store->remove("container", "a"));
    EXPECT_FALSE(store->remove("container", "a"));
    EXPECT_FALSE(store->get("container", "a"));
    EXPECT_FALSE(store->find("container", "web"));
}

TEST_F(StoreTest, KeyValue) {
    auto store = Store::open(file("state.db"));
    EXPECT_FALSE(store->kvGet("ipam", "10.0.0.2"));
    store->kvPut("ipam", "10.0.0.2", "c1");
    store->kvPut("ipam", "10.0.0.2", "c2");
    store->kvPut("other", "10.0.0.2", "");
    EXPECT_EQ(store->kvGet("ipam", "10.0.0.2"), "c2");
    EXPECT_EQ(store->kvGet("other", "10.0.0.2"), "");
    EXPECT_TRUE(store->kvDelete("ipam", "10.0.0.2"));
    EXPECT_FALSE(store->kvDelete("ipam", "10.0.0.2"));
    EXPECT_FALSE(store->kvGet("ipam", "10.0.0.2"));
}

TEST_F(StoreTest, Events) {
    auto store = Store::open(file("state.db"));
    int64_t first = store->appendEvent("container.start", "nsruntime", R"({"id":"a"})");
    store->appendEvent("container.stop", "nsruntime", R"({"id":"a"})");
    store->appendEvent("image.pull", "storage", "{}");

    auto all = store->events();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].seq, first);
    EXPECT_EQ(all[0].type, "container.start");
    EXPECT_EQ(all[0].source, "nsruntime");
    EXPECT_EQ(all[0].payload, R"({"id":"a"})");
    EXPECT_TRUE(
        std::regex_match(all[0].time, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)")))
        << all[0].time;
    EXPECT_LE(all[0].time, all[1].time);

    auto page = store->events(first, 1);
    ASSERT_EQ(page.size(), 1u);
    EXPECT_EQ(page[0].type, "container.stop");
    EXPECT_TRUE(store->events(all[2].seq).empty());
}

TEST_F(StoreTest, TransactionGuardRollsBackUnlessCommitted) {
    auto store = Store::open(file("state.db"));
    {
        Store::Transaction tx(*store);
        store->put("container", "a", std::nullopt, "{}");
    }
    EXPECT_FALSE(store->inTransaction());
    EXPECT_FALSE(store->get("container", "a"));
    {
        Store::Transaction tx(*store);
        store->put("container", "a", std::nullopt, "{}");
        // A failed put inside a transaction does not abort it.
        EXPECT_THROW(store->put("container", "a", std::nullopt, "{}", true), Error);
        tx.commit();
    }
    EXPECT_TRUE(store->get("container", "a"));
}

TEST_F(StoreTest, NestedTransactionsWriteAtOutermostCommit) {
    std::string path = file("state.db");
    auto store = Store::open(path);
    auto other = Store::open(path);
    store->begin();
    store->begin();
    store->put("container", "a", std::nullopt, "{}");
    store->commit();
    EXPECT_TRUE(store->inTransaction());
    EXPECT_FALSE(other->get("container", "a"));
    store->commit();
    EXPECT_TRUE(other->get("container", "a"));

    // An inner rollback discards the outer transaction too.
    store->begin();
    store->put("container", "b", std::nullopt, "{}");
    store->begin();
    store->rollback();
    EXPECT_FALSE(store->inTransaction());
    EXPECT_EQ(catchError([&] { store->commit(); }).code(), MO_E_STATE);
    EXPECT_FALSE(store->get("container", "b"));
}

TEST_F(StoreTest, BusyAfterTimeout) {
    std::string path = file("state.db");
    auto holder = Store::open(path);
    auto waiter = Store::open(path, {.busyTimeoutMs = 50});
    holder->begin();
    auto start = std::chrono::steady_clock::now();
    Error e = catchError([&] { waiter->put("container", "a", std::nullopt, "{}"); });
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(40));
    EXPECT_EQ(e.code(), MO_E_BUSY);
    EXPECT_EQ(std::string(e.what()).rfind("state store is busy: ", 0), 0u) << e.what();
    EXPECT_EQ(catchError([&] { waiter->begin(); }).code(), MO_E_BUSY);
    EXPECT_FALSE(waiter->inTransaction());
    holder->rollback();
    waiter->put("container", "a", std::nullopt, "{}");
}

// Every command is a short-lived connection, and the first one to open the store replays
// the whole WAL: it must stay short instead of growing with every command.
TEST_F(StoreTest, WalStaysBoundedAcrossShortLivedConnections) {
    std::string path = file("state.db");
    std::string doc = R"({"pad":")" + std::string(500, 'x') + R"("})";
    for (int i = 0; i < 400; ++i)
        Store::open(path)->put("container", "c" + std::to_string(i % 40),
                               "n" + std::to_string(i % 40), doc);
    // 400 commands write about 1600 frames (6.5 MB) without the close-time checkpoint.
    EXPECT_LT(fs::file_size(path + "-wal"), 1u << 20);
    EXPECT_EQ(Store::open(path)->list("container").size(), 40u);
}

TEST_F(StoreTest, MigratesVersion1Database) {
    std::string path = file("state.db");
    fs::copy_file(MOBILEOPS_SOURCE_DIR "/tests/fixtures/store/v1.db", path);
    ASSERT_EQ(rawQuery(path, "SELECT version FROM schema_version"), "1");

    auto store = Store::open(path);
    EXPECT_EQ(store->schemaVersion(), Store::latestVersion());
    EXPECT_EQ(rawQuery(path, "SELECT version FROM schema_version"),
              std::to_string(Store::latestVersion()));
    EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM schema_version"), "1");
    EXPECT_EQ(rawQuery(path, "SELECT name FROM sqlite_master WHERE name = 'objects_kind_created'"),
              "objects_kind_created");

    auto web = store->find("container", "web");
    ASSERT_TRUE(web);
    EXPECT_EQ(web->key, "3f2a9c1e");
    EXPECT_EQ(web->data, R"({"image":"busybox","state":"running"})");
    EXPECT_EQ(web->created, "2024-01-02T03:04:05.006Z");
    EXPECT_EQ(store->get("image", "sha256:1b2c"), R"({"size":1024})");
    EXPECT_EQ(store->kvGet("ipam/mobileops0", "172.20.0.2"), "3f2a9c1e");

    store->appendEvent("container.start", "test", "{}");
    EXPECT_EQ(store->events().size(), 1u);
    store.reset();
    // Opening again finds nothing left to migrate.
    EXPECT_EQ(Store::open(path)->list("container").size(), 1u);
}

TEST_F(StoreTest, RefusesNewerSchemaWithoutModifyingIt) {
    std::string path = file("state.db");
    Store::open(path)->put("container", "a", std::nullopt, "{}");
    int newer = Store::latestVersion() + 1;
    // A rollback-journal file: opening it for WAL would rewrite its header.
    rawExec(path, "PRAGMA journal_mode=DELETE; UPDATE schema_version SET version = " +
                      std::to_string(newer));
    ASSERT_FALSE(fs::exists(path + "-wal"));
    std::string before = readBytes(path);

    Error e = catchError([&] { Store::open(path); });
    EXPECT_EQ(e.code(), MO_E_STORE);
    EXPECT_EQ(std::string(e.what()),
              "state store `" + path + "` has schema version " + std::to_string(newer) +
                  ", newer than this mobileops supports (" +
                  std::to_string(Store::latestVersion()) + "); upgrade mobileops");
    EXPECT_EQ(readBytes(path), before);
    EXPECT_FALSE(fs::exists(path + "-wal"));
}

TEST_F(StoreTest, RefusesGarbageFileWithoutModifyingIt) {
    std::string path = file("state.db");
    std::string garbage;
    for (int i = 0; i < 1000; ++i) garbage += "this is not an sqlite database " + std::to_string(i);
    writeBytes(path, garbage);

    Error e = catchError([&] { Store::open(path); });
    EXPECT_EQ(e.code(), MO_E_STORE);
    EXPECT_EQ(std::string(e.what()),
              "state store `" + path +
                  "` is damaged: file is not a database; restore it from a backup, or move it "
                  "aside to start with an empty store");
    EXPECT_EQ(readBytes(path), garbage);
    EXPECT_FALSE(fs::exists(path + "-wal"));
}

TEST_F(StoreTest, RefusesTruncatedDatabaseWithoutModifyingIt) {
    std::string path = file("state.db");
    {
        auto store = Store::open(path);
        Store::Transaction tx(*store);
        for (int i = 0; i < 200; ++i)
            store->put("container", "c" + std::to_string(i), std::nullopt,
                       R"({"pad":")" + std::string(1000, 'x') + R"("})");
        tx.commit();
    }
    rawExec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
    fs::remove(path + "-wal");
    fs::remove(path + "-shm");
    ASSERT_GT(fs::file_size(path), 100000u);
    fs::resize_file(path, 8192);
    std::string before = readBytes(path);

    Error e = catchError([&] { Store::open(path)->list("container"); });
    EXPECT_EQ(e.code(), MO_E_STORE);
    std::string message = e.what();
    EXPECT_EQ(message.rfind("state store `" + path + "` is damaged: ", 0), 0u) << message;
    EXPECT_NE(message.find("restore it from a backup"), std::string::npos) << message;
    EXPECT_EQ(readBytes(path), before);
}

TEST_F(StoreTest, RefusesForeignDatabase) {
    std::string path = file("other.db");
    rawExec(path, "CREATE TABLE songs(title TEXT)");
    Error e = catchError([&] { Store::open(path); });
    EXPECT_EQ(e.code(), MO_E_STORE);
    EXPECT_NE(std::string(e.what()).find("is not a mobileops state store"), std::string::npos);
    EXPECT_EQ(rawQuery(path, "SELECT count(*) FROM sqlite_master"), "1");
}

TEST_F(StoreTest, ForkedChildReopensConnection) {
    auto store = Store::open(file("state.db"));
    store->put("container", "parent", std::nullopt, "{}");
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int status = 1;
        try {
            if (store->get("container", "parent")) {
                store->put("container", "child", std::string("from-child"), R"({"pid":1})");
                status = 0;
            }
            store.reset(); // leaks, never closes, the inherited connection
        } catch (const std::exception &e) {
            std::fprintf(stderr, "child: %s\n", e.what());
        }
        ::_exit(status);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_EQ(store->get("container", "child"), R"({"pid":1})");
    EXPECT_EQ(store->find("container", "from-child")->key, "child");
    store->put("container", "after", std::nullopt, "{}");
    EXPECT_EQ(store->list("container").size(), 3u);
}

// The parent closing its connection (as a dispatcher exits after forking a monitor) must
// not let the next opener reset the -shm file under the child: that was a SIGBUS.
TEST_F(StoreTest, ForkedChildOutlivesParentConnection) {
    std::string path = file("state.db");
    for (bool reuseInherited : {true, false}) {
        SCOPED_TRACE(reuseInherited ? "inherited Store" : "fresh Store in the child");
        std::string kind = reuseInherited ? "inherited" : "fresh";
        auto store = Store::open(path);
        store->put(kind, "parent", std::nullopt, "{}");
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int status = 0;
            try {
                auto own = reuseInherited ? nullptr : Store::open(path);
                Store &s = reuseInherited ? *store : *own;
                auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
                for (int i = 0; std::chrono::steady_clock::now() < end; ++i)
                    s.put(kind, "child-" + std::to_string(i), std::nullopt, "{}");
            } catch (const std::exception &e) {
                std::fprintf(stderr, "child: %s\n", e.what());
                status = 1;
            }
            ::_exit(status);
        }
        store.reset();
        int status = 0, opens = 0;
        while (::waitpid(pid, &status, WNOHANG) == 0) {
            Store::open(path)->put("parent", std::to_string(opens++), std::nullopt, "{}");
        }
        ASSERT_FALSE(WIFSIGNALED(status)) << "child killed by signal " << WTERMSIG(status);
        EXPECT_EQ(WEXITSTATUS(status), 0);
        EXPECT_GT(opens, 0);
        EXPECT_GT(Store::open(path)->list(kind).size(), 1u);
    }
    EXPECT_EQ(rawQuery(path, "PRAGMA integrity_check"), "ok");
}

TEST_F(StoreTest, ForkInsideTransactionFailsFast) {
    std::string path = file("state.db");
    auto store = Store::open(path);
    store->begin();
    store->put("container", "a", std::nullopt, "{}");
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int status = 0;
        store->rollback(); // as a Transaction guard unwinding in the child would
        for (int attempt = 0; attempt < 2; ++attempt) {
            try {
                attempt == 0 ? (void)store->get("container", "a") : (void)Store::open(path);
                status |= 1;
            } catch (const Error &e) {
                if (e.code() != MO_E_STATE ||
                    std::string(e.what()).find("forked inside a store transaction") ==
                        std::string::npos)
                    status |= 2;
            }
        }
        ::_exit(status);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    store->commit();
    EXPECT_TRUE(store->get("container", "a"));
}

// 8 processes race to create the store, then each writes 50 objects and tries to take one
// contested name.
TEST_F(StoreTest, ConcurrentProcesses) {
    constexpr int Processes = 8, Puts = 50;
    enum { Lost = 0, Won = 1, Busy = 2, Failed = 3 };
    std::string path = file("state/state.db");
    int gate[2];
    ASSERT_EQ(::pipe(gate), 0);
    std::vector<pid_t> children;
    for (int p = 0; p < Processes; ++p) {
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(gate[1]);
            char c;
            (void)!::read(gate[0], &c, 1); // returns at EOF, when the parent opens the gate
            int result = Failed;
            try {
                auto store = Store::open(path);
                for (int i = 0; i < Puts; ++i)
                    store->put("container", "p" + std::to_string(p) + "-" + std::to_string(i),
                               std::nullopt, R"({"i":)" + std::to_string(i) + "}", true);
                try {
                    store->put("container", "contender-" + std::to_string(p),
                               std::string("contested"), "{}", true);
                    result = Won;
                } catch (const Error &e) {
                    if (e.code() != MO_E_EXISTS) throw;
                    result = Lost;
                }
            } catch (const Error &e) {
                std::fprintf(stderr, "process %d: %s\n", p, e.what());
                result = e.code() == MO_E_BUSY ? Busy : Failed;
            } catch (const std::exception &e) {
                std::fprintf(stderr, "process %d: %s\n", p, e.what());
            }
            ::_exit(result);
        }
        children.push_back(pid);
    }
    ::close(gate[0]);
    ::close(gate[1]);

    int won = 0;
    for (pid_t pid : children) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        int code = WEXITSTATUS(status);
        EXPECT_TRUE(code == Won || code == Lost) << "child exited " << code;
        won += code == Won;
    }
    EXPECT_EQ(won, 1);

    auto store = Store::open(path);
    auto objects = store->list("container");
    EXPECT_EQ(objects.size(), size_t(Processes * Puts + 1));
    for (int p = 0; p < Processes; ++p)
        for (int i = 0; i < Puts; ++i)
            EXPECT_TRUE(store->get("container", "p" + std::to_string(p) + "-" + std::to_string(i)));
    ASSERT_TRUE(store->find("container", "contested"));
}

// Event rows with chosen times, written beside the Store's own connection: appendEvent
// takes the clock's, which a test cannot place on a boundary.
void insertEvent(const std::string &path, const std::string &time, const std::string &type) {
    rawExec(path, "INSERT INTO events(time, type, source, payload) VALUES('" + time + "', '" +
                      type + "', 'test', '{}')");
}

// "2024-01-01T00:00:00.000000001Z" -> nanoseconds since the epoch.
int64_t nanosOf(const std::string &time) {
    tm t{};
    EXPECT_NE(::strptime(time.c_str(), "%Y-%m-%dT%H:%M:%S", &t), nullptr) << time;
    return static_cast<int64_t>(::timegm(&t)) * 1000000000 + std::stoll(time.substr(20, 9));
}

std::vector<std::string> typesOf(const std::vector<Store::Event> &events) {
    std::vector<std::string> types;
    for (const auto &e : events) types.push_back(e.type);
    return types;
}

using Types = std::vector<std::string>;

TEST_F(StoreTest, EventQueryByAfterTypeAndLimit) {
    auto store = Store::open(file("state.db"));
    int64_t first = store->appendEvent("container.create", "nsruntime", R"({"id":"a"})");
    store->appendEvent("container.start", "nsruntime", "{}");
    store->appendEvent("containerd.sync", "other", "{}"); // shares the text, not the prefix
    store->appendEvent("container", "other", "{}");
    store->appendEvent("container.exit", "nsruntime", R"({"code":3})");
    store->appendEvent("image.pull", "storage", "{}");
    store->appendEvent("container.exit.oom", "cgroup", "{}");

    Store::EventQuery q;
    EXPECT_EQ(store->events(q).size(), 7u);
    q.type = "container.exit";
    EXPECT_EQ(typesOf(store->events(q)), Types{"container.exit"});
    q.type = "container.";
    EXPECT_EQ(typesOf(store->events(q)), (Types{"container.create", "container.start",
                                                "container.exit", "container.exit.oom"}));
    q.type = "container.exit.";
    EXPECT_EQ(typesOf(store->events(q)), Types{"container.exit.oom"});
    q.type = "container";
    EXPECT_EQ(typesOf(store->events(q)), Types{"container"});
    q.type = "nothing.";
    EXPECT_TRUE(store->events(q).empty());

    q.type = "container.";
    q.after = first;
    EXPECT_EQ(typesOf(store->events(q)),
              (Types{"container.start", "container.exit", "container.exit.oom"}));
    q.limit = 2;
    auto page = store->events(q);
    EXPECT_EQ(typesOf(page), (Types{"container.start", "container.exit"}));
    q.after = page.back().seq;
    EXPECT_EQ(typesOf(store->events(q)), Types{"container.exit.oom"});
    q.limit = 0;
    EXPECT_TRUE(store->events(q).empty());

    Store::EventQuery all;
    all.limit = 3;
    EXPECT_EQ(typesOf(store->events(all)),
              (Types{"container.create", "container.start", "containerd.sync"}));
    EXPECT_EQ(store->events(all)[0].payload, R"({"id":"a"})");
}

TEST_F(StoreTest, EventQuerySinceIsInclusiveAndUntilExclusive) {
    std::string path = file("state.db");
    auto store = Store::open(path);
    insertEvent(path, "2024-01-01T00:00:00.000000000Z", "t0");
    insertEvent(path, "2024-01-01T00:00:00.000000001Z", "t1");
    insertEvent(path, "2024-01-01T00:00:00.999999999Z", "t2");
    insertEvent(path, "2024-01-01T00:00:01.000000000Z", "t3");
    const int64_t t0 = int64_t(1704067200) * 1000000000;

    Store::EventQuery q;
    q.since = t0 + 1;
    EXPECT_EQ(typesOf(store->events(q)), (Types{"t1", "t2", "t3"}));
    q.until = t0 + 999999999;
    EXPECT_EQ(typesOf(store->events(q)), Types{"t1"});
    q.until = t0 + 1000000000;
    EXPECT_EQ(typesOf(store->events(q)), (Types{"t1", "t2"}));
    q.since = q.until;
    EXPECT_TRUE(store->events(q).empty());
    q.since = t0 + 999999999;
    q.until.reset();
    EXPECT_EQ(typesOf(store->events(q)), (Types{"t2", "t3"}));

    // the ends of the range are before and after everything
    q.since = INT64_MIN;
    q.until = INT64_MAX;
    EXPECT_EQ(store->events(q).size(), 4u);
    q.since = INT64_MAX;
    EXPECT_TRUE(store->events(q).empty());
    q.since = -1; // 1969-12-31T23:59:59.999999999Z
    q.until = 0;
    EXPECT_TRUE(store->events(q).empty());

    // a bound taken from an event appendEvent wrote finds exactly that event
    int64_t live = store->appendEvent("live", "test", "{}");
    Store::EventQuery after;
    after.after = live - 1;
    int64_t at = nanosOf(store->events(after).at(0).time);
    Store::EventQuery window;
    window.since = at;
    window.until = at + 1;
    window.type = "live";
    ASSERT_EQ(store->events(window).size(), 1u);
    EXPECT_EQ(store->events(window)[0].seq, live);
    window.since = at + 1;
    window.until.reset();
    EXPECT_TRUE(store->events(window).empty());
}

TEST_F(StoreTest, PruneEventsByAgeAndCount) {
    std::string path = file("state.db");
    auto store = Store::open(path);
    insertEvent(path, "1970-01-01T00:00:00.500000000Z", "epoch");
    insertEvent(path, "2001-01-01T00:00:00.000000000Z", "old");
    int64_t recent = store->appendEvent("recent", "test", "{}");
    insertEvent(path, "2200-01-01T00:00:00.000000000Z", "future");

    // an age beyond the epoch reaches nothing
    EXPECT_EQ(store->pruneEvents(INT64_MAX, std::nullopt), 0);
    EXPECT_EQ(store->pruneEvents(3600, std::nullopt), 2);
    EXPECT_EQ(typesOf(store->events()), (Types{"recent", "future"}));
    EXPECT_EQ(store->pruneEvents(std::nullopt, std::nullopt), 0);
    EXPECT_EQ(store->pruneEvents(std::nullopt, 5), 0);

    for (int i = 0; i < 5; ++i) store->appendEvent("n" + std::to_string(i), "test", "{}");
    // age first, then the count of what is left: only the newest 3 stay
    EXPECT_EQ(store->pruneEvents(3600, 3), 4);
    EXPECT_EQ(typesOf(store->events()), (Types{"n2", "n3", "n4"}));

    // sequence numbers are never reused, so a reader's cursor stays valid
    int64_t last = store->events().back().seq;
    EXPECT_EQ(store->pruneEvents(std::nullopt, 0), 3);
    EXPECT_TRUE(store->events().empty());
    int64_t next = store->appendEvent("after", "test", "{}");
    EXPECT_GT(next, last);
    EXPECT_GT(last, recent);
    EXPECT_EQ(typesOf(store->events(last, 10)), Types{"after"});

    EXPECT_STREQ(catchError([&] { store->pruneEvents(-1, std::nullopt); }).what(),
                 "invalid event max age `-1`: expected seconds >= 0");
    EXPECT_EQ(catchError([&] { store->pruneEvents(std::nullopt, -2); }).code(), MO_E_INVALID);
    EXPECT_FALSE(store->inTransaction());
}

// Not a timing assertion: prints what a filtered read over many events costs.
TEST_F(StoreTest, EventQueryOverManyEvents) {
    auto store = Store::open(file("state.db"));
    constexpr int N = 100000;
    {
        Store::Transaction tx(*store);
        for (int i = 0; i < N; ++i)
            store->appendEvent(i % 10 == 0 ? "container.exit" : "image.pull", "test",
                               R"({"n":)" + std::to_string(i) + "}");
        tx.commit();
    }
    Store::EventQuery q;
    q.type = "container.";
    q.limit = N;
    auto start = std::chrono::steady_clock::now();
    auto events = store->events(q);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start);
    EXPECT_EQ(events.size(), size_t(N / 10));
    q.since = nanosOf(events[N / 20].time);
    q.after = events[N / 20].seq - 1;
    EXPECT_EQ(store->events(q).size(), size_t(N / 20));
    std::printf("[ measure  ] %d events: %zu by type prefix in %.1f ms\n", N, events.size(),
                ms.count());
}

} // namespace
