// The state store: one SQLite database under the root directory holding JSON documents
// keyed by (kind, key) with an optional name unique within the kind, a small key-value
// table and an append-only event log. One connection per process; a Store is not
// thread-safe (callers serialise), but it survives fork(): the first call in a child
// opens a fresh connection.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace mobileops::core {

struct StoreOptions {
    // How long a write waits for another process's transaction before MO_E_BUSY.
    int busyTimeoutMs = 10000;
};

class Store {
public:
    using Options = StoreOptions;

    struct Object {
        std::string kind, key;
        std::string name; // empty when the object has none
        std::string data; // JSON
        std::string created, updated;
    };

    struct Event {
        int64_t seq = 0;
        std::string time; // RFC 3339, UTC, nanoseconds
        std::string type, source;
        std::string payload; // JSON
    };

    // Which events Store::events returns, oldest first.
    struct EventQuery {
        int64_t after = 0;            // sequence numbers above this one
        std::optional<int64_t> since; // ns since the epoch: events at or after it
        std::optional<int64_t> until; // ns since the epoch: events before it
        std::string type;             // exact; a prefix when it ends with `.` ("container.")
        size_t limit = 1000;
        bool newest = false; // the newest `limit` that match (still returned oldest first)
    };

    // Commits on commit(); rolls the whole transaction back when destroyed otherwise.
    class Transaction {
    public:
        explicit Transaction(Store &store);
        ~Transaction();
        Transaction(const Transaction &) = delete;
        Transaction &operator=(const Transaction &) = delete;

        void commit();

    private:
        Store &_store;
        bool _done = false;
    };

    // Open or create the database at `path` and migrate it to latestVersion(). Refuses a
    // database written by a newer mobileops and never resets a damaged one.
    static std::unique_ptr<Store> open(const std::string &path, Options options = {});
    static int latestVersion();

    ~Store();
    Store(const Store &) = delete;
    Store &operator=(const Store &) = delete;

    const std::string &path() const { return _path; }
    int schemaVersion() const { return _version; }

    std::optional<std::string> get(std::string_view kind, std::string_view key);
    std::optional<Object> getObject(std::string_view kind, std::string_view key);
    std::optional<Object> find(std::string_view kind, std::string_view name);
    // Insert or replace the whole object (an update without a name clears it). Throws
    // MO_E_EXISTS when createOnly and the key exists, or when another key of the kind
    // holds the name; MO_E_INVALID when json does not parse.
    void put(std::string_view kind, std::string_view key, const std::optional<std::string> &name,
             const std::string &json, bool createOnly = false);
    bool remove(std::string_view kind, std::string_view key);
    // Ordered by creation time, then key.
    std::vector<Object> list(std::string_view kind);

    std::optional<std::string> kvGet(std::string_view ns, std::string_view key);
    void kvPut(std::string_view ns, std::string_view key, std::string_view value);
    bool kvDelete(std::string_view ns, std::string_view key);

    // Returns the event's sequence number.
    int64_t appendEvent(std::string_view type, std::string_view source,
                        const std::string &payloadJson);
    std::vector<Event> events(int64_t afterSeq = 0, size_t limit = 1000);
    // The time bounds compare the stored RFC 3339 text, so they cost no conversion per row.
    std::vector<Event> events(const EventQuery &query);
    // Delete events older than maxAgeSeconds, then all but the newest maxRows (absent: no
    // bound of that kind). Sequence numbers are never reused, so readers' `after` stays
    // valid. Returns how many were deleted.
    int64_t pruneEvents(std::optional<int64_t> maxAgeSeconds, std::optional<int64_t> maxRows);

    // BEGIN IMMEDIATE at depth 0; nested calls only count. commit() writes at the
    // outermost level; rollback() discards everything at any depth.
    void begin();
    void commit();
    void rollback() noexcept;
    bool inTransaction() const { return _depth > 0; }

private:
    class Query;
    struct SqlHash {
        using is_transparent = void;
        size_t operator()(std::string_view sql) const { return std::hash<std::string_view>()(sql); }
    };

    Store(const std::string &path, Options options);
    void connect();
    void disconnect();
    void trackFile();
    void markTransaction(bool open);
    int readVersion();
    void migrate();
    void applyMigration(int version, const char *sql);
    void exec(const char *sql);
    void checkProcess();
    sqlite3_stmt *statement(std::string_view sql);
    std::optional<Object> readObject(Query &query);
    [[noreturn]] void fail(int rc, const std::string &context = {}) const;

    std::string _path;
    Options _options;
    sqlite3 *_db = nullptr;
    pid_t _pid = 0;
    dev_t _dev = 0;
    ino_t _ino = 0;
    bool _tracked = false;
    bool _markedTransaction = false;
    int _depth = 0;
    int _version = 0;
    int _walFrames = 0; // after this connection's last commit
    std::unordered_map<std::string, sqlite3_stmt *, SqlHash, std::equal_to<>> _statements;
};

} // namespace mobileops::core
