#include "mobileops/core/Store.h"

#include "mobileops/core/Error.h"

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>

namespace mobileops::core {

namespace {

struct Migration {
    int version;
    const char *sql;
};

// Append only: a released step never changes, a schema change is a new step.
constexpr Migration Migrations[] = {
    {1, R"sql(
CREATE TABLE objects(
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT,
    data TEXT NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    PRIMARY KEY(kind, key));
CREATE UNIQUE INDEX objects_kind_name ON objects(kind, name) WHERE name IS NOT NULL;
CREATE TABLE kv(
    namespace TEXT,
    key TEXT,
    value TEXT,
    PRIMARY KEY(namespace, key));
)sql"},
    {2, R"sql(
CREATE TABLE events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    payload TEXT NOT NULL);
CREATE INDEX events_time ON events(time);
CREATE INDEX objects_kind_created ON objects(kind, created);
)sql"},
};

// RFC 3339 in UTC with `digits` (3 or 9) fractional digits; fixed width, so it sorts.
// (int64_t nanoseconds span the years 1677 to 2262: always four digits.)
std::string timestamp(const timespec &ts, int digits) {
    tm t{};
    gmtime_r(&ts.tv_sec, &t);
    long fraction = digits == 3 ? ts.tv_nsec / 1000000 : ts.tv_nsec;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%0*ldZ", t.tm_year + 1900,
                  t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, digits, fraction);
    return buf;
}

std::string timestamp(int digits) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return timestamp(ts, digits);
}

// A bound for the events' `time` column, formatted as appendEvent stores it.
std::string eventTime(int64_t ns) {
    int64_t seconds = ns / 1000000000, fraction = ns % 1000000000;
    if (fraction < 0) --seconds, fraction += 1000000000;
    return timestamp(timespec{static_cast<time_t>(seconds), static_cast<long>(fraction)}, 9);
}

void requireNonEmpty(std::string_view value, const char *what) {
    if (value.empty()) throw Error(MO_E_INVALID, std::string("state store ") + what + " is empty");
}

void validateJson(const std::string &json, const std::string &what) {
    if (nlohmann::json::accept(json)) return;
    std::string reason = "not JSON";
    try {
        auto parsed = nlohmann::json::parse(json);
    } catch (const nlohmann::json::parse_error &e) {
        // Drop nlohmann's "[json.exception.parse_error.101] " prefix.
        reason = e.what();
        if (auto pos = reason.find("] "); pos != std::string::npos) reason.erase(0, pos + 2);
    }
    throw Error(MO_E_INVALID, "invalid JSON in " + what + ": " + reason);
}

void createParentDirectory(const std::string &path) {
    if (path.empty() || path == ":memory:" || path.starts_with("file:")) return;
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) return;
    struct stat st {};
    if (::stat(parent.c_str(), &st) == 0) return;
    std::filesystem::path current;
    for (const auto &part : parent) {
        current /= part;
        if (::mkdir(current.c_str(), 0700) != 0 && errno != EEXIST)
            throw Error(MO_E_STORE, "create state store directory " + quote(current.string()) +
                                        ": " + std::strerror(errno));
    }
}

// Each command opens the store, writes a little and closes it, and the first process to
// open it after all others closed it replays the whole WAL (and forgets how much of it was
// checkpointed, so the WAL would never restart and every autocheckpoint would copy it all
// again). So a writer that leaves more than CloseCheckpointFrames in the WAL checkpoints
// and truncates it when it closes; long-lived processes also checkpoint every
// AutoCheckpointFrames, as SQLite does by default.
constexpr int CloseCheckpointFrames = 128, AutoCheckpointFrames = 1000;

int walHook(void *frames, sqlite3 *db, const char *schema, int count) {
    *static_cast<int *>(frames) = count;
    if (count >= AutoCheckpointFrames)
        sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    return SQLITE_OK;
}

// Switching a database to WAL (once, when several processes create it at the same time)
// upgrades a read lock to a write lock, and SQLite never calls the busy handler for that
// because waiting could deadlock: retry here instead, within the same timeout.
int enableWal(sqlite3 *db, int timeoutMs) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
    for (useconds_t delay = 100;; delay = std::min<useconds_t>(delay * 2, 10000)) {
        int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
        if ((rc & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() >= deadline) return rc;
        ::usleep(delay);
    }
}

// SQLite keeps one lock table per process, and fcntl locks are not inherited by fork():
// in a child, SQLite believes the parent's (leaked) connection still holds the database's
// shared lock and the -shm file's dead-man-switch lock, so it never takes them again. With
// no process really holding them, another one may reset the -shm under the child (SIGBUS)
// or checkpoint and delete the WAL. So each process that inherited a live connection takes
// them itself (byte ranges from SQLite's os.h SHARED_FIRST/SHARED_SIZE and os_unix.c
// UNIX_SHM_DMS).
constexpr off_t SharedFirst = 0x40000000 + 2, SharedSize = 510, ShmDeadManSwitch = 128;

struct FileState {
    pid_t pid = 0;
    int open = 0;         // connections `pid` has open
    int transactions = 0; // of which in a write transaction
    // An ancestor's connections live on in SQLite's lock table; one held the write lock.
    bool inherited = false, inheritedWriter = false;
    bool relocked = false;
};

std::mutex &filesMutex() {
    static std::mutex mutex;
    return mutex;
}

std::map<std::pair<dev_t, ino_t>, FileState> &files() {
    static std::map<std::pair<dev_t, ino_t>, FileState> files;
    return files;
}

// 0 or an errno. The descriptor stays open for the life of the process: closing any
// descriptor of a file drops all of the process's locks on it, SQLite's included.
int holdReadLock(const std::string &file, off_t start, off_t length,
                 std::chrono::steady_clock::time_point deadline) {
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct flock lock {};
    lock.l_type = F_RDLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = start;
    lock.l_len = length;
    for (useconds_t delay = 100;; delay = std::min<useconds_t>(delay * 2, 10000)) {
        if (::fcntl(fd, F_SETLK, &lock) == 0) return 0;
        int err = errno;
        if ((err != EAGAIN && err != EACCES) || std::chrono::steady_clock::now() >= deadline) {
            ::close(fd); // holds nothing yet: this process took no real lock on the file
            return err;
        }
        ::usleep(delay);
    }
}

} // namespace

// A cached statement bound for one execution; reset when it goes out of scope so no read
// transaction outlives the call.
class Store::Query {
public:
    Query(Store &store, std::string_view sql) : _store(store), _stmt(store.statement(sql)) {}
    ~Query() {
        sqlite3_reset(_stmt);
        sqlite3_clear_bindings(_stmt);
    }
    Query(const Query &) = delete;
    Query &operator=(const Query &) = delete;

    // The text must outlive the query (SQLITE_STATIC).
    Query &bind(std::string_view text) {
        // A null data() would bind SQL NULL instead of an empty string.
        check(sqlite3_bind_text(_stmt, ++_index, text.data() ? text.data() : "",
                                static_cast<int>(text.size()), SQLITE_STATIC));
        return *this;
    }
    Query &bind(const std::optional<std::string> &text) {
        if (text) return bind(std::string_view(*text));
        check(sqlite3_bind_null(_stmt, ++_index));
        return *this;
    }
    Query &bind(int64_t value) {
        check(sqlite3_bind_int64(_stmt, ++_index, value));
        return *this;
    }

    // The raw result code, for callers that handle constraint errors themselves.
    int run() { return sqlite3_step(_stmt); }
    // True when a row is available.
    bool step() {
        int rc = sqlite3_step(_stmt);
        if (rc == SQLITE_ROW) return true;
        if (rc == SQLITE_DONE) return false;
        _store.fail(rc);
    }

    int64_t integer(int column) { return sqlite3_column_int64(_stmt, column); }
    std::string text(int column) {
        auto *data = reinterpret_cast<const char *>(sqlite3_column_text(_stmt, column));
        return data ? std::string(data, sqlite3_column_bytes(_stmt, column)) : std::string();
    }

private:
    void check(int rc) {
        if (rc != SQLITE_OK) _store.fail(rc);
    }

    Store &_store;
    sqlite3_stmt *_stmt;
    int _index = 0;
};

Store::Transaction::Transaction(Store &store) : _store(store) { _store.begin(); }

Store::Transaction::~Transaction() {
    if (!_done) _store.rollback();
}

void Store::Transaction::commit() {
    // commit() rolls back itself when COMMIT fails, so never roll back twice.
    _done = true;
    _store.commit();
}

int Store::latestVersion() {
    return std::size(Migrations) ? Migrations[std::size(Migrations) - 1].version : 0;
}

std::unique_ptr<Store> Store::open(const std::string &path, Options options) {
    createParentDirectory(path);
    std::unique_ptr<Store> store(new Store(path, options));
    store->connect();
    return store;
}

Store::Store(const std::string &path, Options options) : _path(path), _options(options) {}

Store::~Store() {
    // In a forked child the connection belongs to the parent: leak it (see checkProcess).
    if (_pid == ::getpid()) disconnect();
}

void Store::connect() {
    _pid = ::getpid();
    _depth = 0;
    _db = nullptr;
    int rc =
        sqlite3_open_v2(_path.c_str(), &_db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    try {
        if (rc != SQLITE_OK) fail(rc, "open");
        trackFile();
        sqlite3_extended_result_codes(_db, 1);
        sqlite3_busy_timeout(_db, _options.busyTimeoutMs);
        // A checkpoint (two fsyncs) and a new WAL (one more) at every close would cost far
        // more than a command's writes: see walHook and disconnect.
        sqlite3_db_config(_db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
        sqlite3_wal_hook(_db, walHook, &_walFrames);

        // Nothing may be written before this check: a newer mobileops's database stays as
        // it is, and a damaged file fails here on its first read.
        _version = readVersion();
        if (_version > latestVersion())
            throw Error(MO_E_STORE, "state store " + quote(_path) + " has schema version " +
                                        std::to_string(_version) +
                                        ", newer than this mobileops supports (" +
                                        std::to_string(latestVersion()) + "); upgrade mobileops");

        // Per connection, nothing written; before the switch to WAL so that it syncs less.
        exec("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON");
        if (int rc = enableWal(_db, _options.busyTimeoutMs); rc != SQLITE_OK) fail(rc);
        if (_version < latestVersion()) migrate();
    } catch (...) {
        disconnect();
        throw;
    }
}

void Store::disconnect() {
    if (_db && _walFrames >= CloseCheckpointFrames) {
        // Best effort and without waiting: a busy store has other writers to do it.
        sqlite3_busy_timeout(_db, 0);
        sqlite3_wal_checkpoint_v2(_db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    }
    _walFrames = 0;
    for (auto &[sql, stmt] : _statements) sqlite3_finalize(stmt);
    _statements.clear();
    if (_db) sqlite3_close_v2(_db);
    _db = nullptr;
    _depth = 0;
    if (_tracked) {
        markTransaction(false);
        std::lock_guard lock(filesMutex());
        if (FileState &state = files()[{_dev, _ino}]; state.pid == ::getpid()) --state.open;
        _tracked = false;
    }
}

void Store::trackFile() {
    struct stat st {};
    if (::stat(_path.c_str(), &st) != 0) return; // :memory: or a URI
    std::lock_guard lock(filesMutex());
    FileState &state = files()[{st.st_dev, st.st_ino}];
    pid_t pid = ::getpid();
    if (state.pid != pid)
        state = FileState{pid,
                          0,
                          0,
                          state.inherited || state.open > 0,
                          state.inheritedWriter || state.transactions > 0,
                          false};
    // SQLite here believes the leaked connection holds the write lock for good: every
    // write would wait out the busy timeout.
    if (state.inheritedWriter)
        throw Error(MO_E_STATE, "state store " + quote(_path) +
                                    " cannot be used in a process forked inside a store "
                                    "transaction; fork before begin() or after commit()");
    if (state.inherited && !state.relocked) {
        auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(_options.busyTimeoutMs);
        int err = holdReadLock(_path, SharedFirst, SharedSize, deadline);
        if (err == 0) err = holdReadLock(_path + "-shm", ShmDeadManSwitch, 1, deadline);
        // No -shm: the inherited connection was not in WAL mode, SQLite's own locks suffice.
        if (err != 0 && err != ENOENT)
            throw Error(err == EAGAIN || err == EACCES ? MO_E_BUSY : MO_E_STORE,
                        "state store " + quote(_path) +
                            ": lock it again after fork: " + std::strerror(err));
        state.relocked = true;
    }
    ++state.open;
    _dev = st.st_dev;
    _ino = st.st_ino;
    _tracked = true;
}

// 0 for a new, empty database.
int Store::readVersion() {
    Query tables(*this, "SELECT (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'schema_version'), (SELECT count(*) FROM sqlite_master WHERE "
                        "name NOT LIKE 'sqlite_%')");
    tables.step();
    if (tables.integer(0) == 0) {
        if (tables.integer(1) != 0)
            throw Error(MO_E_STORE, "state store " + quote(_path) +
                                        " is not a mobileops state store (it has tables but no "
                                        "`schema_version`); move it aside or fix the path");
        return 0;
    }
    Query version(*this, "SELECT version FROM schema_version");
    if (!version.step())
        throw Error(MO_E_STORE, "state store " + quote(_path) +
                                    " is damaged: `schema_version` is empty; restore it from a "
                                    "backup, or move it aside to start with an empty store");
    return static_cast<int>(version.integer(0));
}

void Store::migrate() {
    for (const Migration &migration : Migrations) {
        if (migration.version <= _version) continue;
        try {
            applyMigration(migration.version, migration.sql);
        } catch (const Error &e) {
            throw e.wrap("migrate state store " + quote(_path) + " to schema version " +
                         std::to_string(migration.version));
        }
    }
}

void Store::applyMigration(int version, const char *sql) {
    exec("BEGIN IMMEDIATE");
    try {
        // Another process may have migrated since the unlocked read.
        int current = readVersion();
        if (current > latestVersion())
            throw Error(MO_E_STORE, "it has schema version " + std::to_string(current) +
                                        ", newer than this mobileops supports; upgrade mobileops");
        if (current < version) {
            if (current == 0)
                exec("CREATE TABLE schema_version(version INTEGER NOT NULL); "
                     "INSERT INTO schema_version VALUES(0)");
            exec(sql);
            Query update(*this, "UPDATE schema_version SET version = ?1");
            update.bind(static_cast<int64_t>(version)).step();
            current = version;
        }
        exec("COMMIT");
        _version = current;
    } catch (...) {
        if (!sqlite3_get_autocommit(_db)) sqlite3_exec(_db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

void Store::exec(const char *sql) {
    int rc = sqlite3_exec(_db, sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) fail(rc);
}

void Store::checkProcess() {
    pid_t pid = ::getpid();
    if (pid == _pid && _db) return;
    if (pid != _pid) {
        // A forked child must neither use nor close the parent's connection
        // (https://www.sqlite.org/howtocorrupt.html#_carrying_an_open_database_connection_across_a_fork_):
        // closing would roll back in the -shm the parent shares. Leak it.
        _statements.clear();
        _db = nullptr;
        _tracked = false;
        _markedTransaction = false;
        _depth = 0;
        _pid = pid;
    }
    connect();
}

sqlite3_stmt *Store::statement(std::string_view sql) {
    if (auto it = _statements.find(sql); it != _statements.end()) return it->second;
    sqlite3_stmt *stmt = nullptr;
    int rc = sqlite3_prepare_v3(_db, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) fail(rc);
    _statements.emplace(std::string(sql), stmt);
    return stmt;
}

void Store::fail(int rc, const std::string &context) const {
    std::string message = _db ? sqlite3_errmsg(_db) : sqlite3_errstr(rc);
    int primary = rc & 0xff;
    if (int err = _db ? sqlite3_system_errno(_db) : 0;
        err != 0 && (primary == SQLITE_CANTOPEN || primary == SQLITE_IOERR))
        message += std::string(" (") + std::strerror(err) + ")";
    switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        throw Error(MO_E_BUSY, "state store is busy: " + quote(_path) + ": " + message +
                                   " (waited " + std::to_string(_options.busyTimeoutMs) + " ms)");
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        throw Error(MO_E_STORE, "state store " + quote(_path) + " is damaged: " + message +
                                    "; restore it from a backup, or move it aside to start "
                                    "with an empty store");
    default:
        throw Error(MO_E_STORE, (context.empty() ? "" : context + " ") + "state store " +
                                    quote(_path) + ": " + message);
    }
}

std::optional<std::string> Store::get(std::string_view kind, std::string_view key) {
    checkProcess();
    Query query(*this, "SELECT data FROM objects WHERE kind = ?1 AND key = ?2");
    query.bind(kind).bind(key);
    if (!query.step()) return std::nullopt;
    return query.text(0);
}

std::optional<Store::Object> Store::readObject(Query &query) {
    if (!query.step()) return std::nullopt;
    return Object{query.text(0), query.text(1), query.text(2),
                  query.text(3), query.text(4), query.text(5)};
}

std::optional<Store::Object> Store::getObject(std::string_view kind, std::string_view key) {
    checkProcess();
    Query query(*this, "SELECT kind, key, name, data, created, updated FROM objects "
                       "WHERE kind = ?1 AND key = ?2");
    query.bind(kind).bind(key);
    return readObject(query);
}

std::optional<Store::Object> Store::find(std::string_view kind, std::string_view name) {
    checkProcess();
    if (name.empty()) return std::nullopt;
    Query query(*this, "SELECT kind, key, name, data, created, updated FROM objects "
                       "WHERE kind = ?1 AND name = ?2");
    query.bind(kind).bind(name);
    return readObject(query);
}

void Store::put(std::string_view kind, std::string_view key, const std::optional<std::string> &name,
                const std::string &json, bool createOnly) {
    checkProcess();
    requireNonEmpty(kind, "kind");
    requireNonEmpty(key, "key");
    validateJson(json, quote(std::string(kind)) + " " + quote(std::string(key)));
    // An empty name is no name: Object::name cannot tell them apart.
    std::optional<std::string> stored = name && !name->empty() ? name : std::nullopt;
    std::string now = timestamp(3);

    // One statement, so outside a transaction it is its own; constraint errors tell a
    // taken key from a taken name without reading first.
    Query query(*this, createOnly
                           ? "INSERT INTO objects(kind, key, name, data, created, updated) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?5)"
                           : "INSERT INTO objects(kind, key, name, data, created, updated) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(kind, key) DO UPDATE "
                             "SET name = excluded.name, data = excluded.data, "
                             "updated = excluded.updated");
    query.bind(kind)
        .bind(key)
        .bind(stored)
        .bind(std::string_view(json))
        .bind(std::string_view(now));
    int rc = query.run();
    if (rc == SQLITE_DONE) return;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        throw Error(MO_E_EXISTS,
                    quote(std::string(kind)) + " " + quote(std::string(key)) + " already exists");
    if (rc == SQLITE_CONSTRAINT_UNIQUE && stored)
        throw Error(MO_E_EXISTS, "name " + quote(*stored) + " is already in use");
    fail(rc);
}

bool Store::remove(std::string_view kind, std::string_view key) {
    checkProcess();
    Query query(*this, "DELETE FROM objects WHERE kind = ?1 AND key = ?2");
    query.bind(kind).bind(key).step();
    return sqlite3_changes(_db) > 0;
}

std::vector<Store::Object> Store::list(std::string_view kind) {
    checkProcess();
    Query query(*this, "SELECT kind, key, name, data, created, updated FROM objects "
                       "WHERE kind = ?1 ORDER BY created, key");
    query.bind(kind);
    std::vector<Object> objects;
    while (auto object = readObject(query)) objects.push_back(std::move(*object));
    return objects;
}

std::optional<std::string> Store::kvGet(std::string_view ns, std::string_view key) {
    checkProcess();
    Query query(*this, "SELECT value FROM kv WHERE namespace = ?1 AND key = ?2");
    query.bind(ns).bind(key);
    if (!query.step()) return std::nullopt;
    return query.text(0);
}

void Store::kvPut(std::string_view ns, std::string_view key, std::string_view value) {
    checkProcess();
    Query query(*this, "INSERT INTO kv(namespace, key, value) VALUES(?1, ?2, ?3) "
                       "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value");
    query.bind(ns).bind(key).bind(value).step();
}

bool Store::kvDelete(std::string_view ns, std::string_view key) {
    checkProcess();
    Query query(*this, "DELETE FROM kv WHERE namespace = ?1 AND key = ?2");
    query.bind(ns).bind(key).step();
    return sqlite3_changes(_db) > 0;
}

int64_t Store::appendEvent(std::string_view type, std::string_view source,
                           const std::string &payloadJson) {
    checkProcess();
    requireNonEmpty(type, "event type");
    validateJson(payloadJson, "event " + quote(std::string(type)));
    std::string now = timestamp(9);
    Query query(*this, "INSERT INTO events(time, type, source, payload) VALUES(?1, ?2, ?3, ?4)");
    query.bind(std::string_view(now))
        .bind(type)
        .bind(source)
        .bind(std::string_view(payloadJson))
        .step();
    return sqlite3_last_insert_rowid(_db);
}

std::vector<Store::Event> Store::events(int64_t afterSeq, size_t limit) {
    EventQuery query;
    query.after = afterSeq;
    query.limit = limit;
    return events(query);
}

std::vector<Store::Event> Store::events(const EventQuery &q) {
    checkProcess();
    // One statement per combination of filters, so each can use its own plan (the time
    // index for a narrow window, the rowid for `after`); all are cached like any other.
    std::string sql = "SELECT seq, time, type, source, payload FROM events WHERE seq > ?1";
    if (q.since) sql += " AND time >= ?2";
    if (q.until) sql += " AND time < ?3";
    bool prefix = !q.type.empty() && q.type.back() == '.';
    if (prefix)
        sql += " AND type >= ?4 AND type < ?5"; // "container." <= type < "container/"
    else if (!q.type.empty())
        sql += " AND type = ?4";
    sql += q.newest ? " ORDER BY seq DESC LIMIT ?6" : " ORDER BY seq LIMIT ?6";
    if (q.newest) sql = "SELECT * FROM (" + sql + ") ORDER BY seq";

    std::string since = q.since ? eventTime(*q.since) : std::string();
    std::string until = q.until ? eventTime(*q.until) : std::string();
    std::string upper = q.type;
    if (prefix) upper.back() = '.' + 1;
    // Slots of filters left out of the statement exist all the same (the highest number
    // sets the count), so every value is bound in order.
    Query query(*this, sql);
    query.bind(q.after)
        .bind(std::string_view(since))
        .bind(std::string_view(until))
        .bind(std::string_view(q.type))
        .bind(std::string_view(upper))
        .bind(static_cast<int64_t>(std::min<size_t>(q.limit, INT64_MAX)));
    std::vector<Event> events;
    while (query.step())
        events.push_back(
            Event{query.integer(0), query.text(1), query.text(2), query.text(3), query.text(4)});
    return events;
}

int64_t Store::pruneEvents(std::optional<int64_t> maxAgeSeconds, std::optional<int64_t> maxRows) {
    checkProcess();
    if (maxAgeSeconds && *maxAgeSeconds < 0)
        throw Error(MO_E_INVALID, "invalid event max age " + quote(std::to_string(*maxAgeSeconds)) +
                                      ": expected seconds >= 0");
    if (maxRows && *maxRows < 0)
        throw Error(MO_E_INVALID, "invalid event max rows " + quote(std::to_string(*maxRows)) +
                                      ": expected a count >= 0");
    Transaction tx(*this);
    int64_t deleted = 0;
    if (maxAgeSeconds) {
        timespec now{};
        clock_gettime(CLOCK_REALTIME, &now);
        // An age reaching before the epoch is before every stored event.
        int64_t limit = std::min<int64_t>(*maxAgeSeconds, now.tv_sec + 1);
        std::string before = timestamp(timespec{now.tv_sec - limit, now.tv_nsec}, 9);
        Query query(*this, "DELETE FROM events WHERE time < ?1");
        query.bind(std::string_view(before)).step();
        deleted += sqlite3_changes(_db);
    }
    if (maxRows) {
        Query query(*this, "DELETE FROM events WHERE seq <= (SELECT seq FROM events ORDER BY "
                           "seq DESC LIMIT 1 OFFSET ?1)");
        query.bind(*maxRows).step();
        deleted += sqlite3_changes(_db);
    }
    tx.commit();
    return deleted;
}

void Store::begin() {
    checkProcess();
    if (_depth == 0) {
        exec("BEGIN IMMEDIATE");
        markTransaction(true);
    }
    ++_depth;
}

void Store::commit() {
    checkProcess();
    if (_depth == 0) throw Error(MO_E_STATE, "no state store transaction to commit");
    if (--_depth > 0) return;
    try {
        exec("COMMIT");
    } catch (...) {
        rollback();
        throw;
    }
    markTransaction(false);
}

void Store::rollback() noexcept {
    _depth = 0;
    // In a forked child the transaction was the parent's: nothing of it is ours to undo.
    if (_pid != ::getpid() || !_db) return;
    if (!sqlite3_get_autocommit(_db)) sqlite3_exec(_db, "ROLLBACK", nullptr, nullptr, nullptr);
    markTransaction(false);
}

// Counted per file so that a process forked inside a transaction knows (see trackFile).
void Store::markTransaction(bool open) {
    if (!_tracked || _markedTransaction == open) return;
    _markedTransaction = open;
    std::lock_guard lock(filesMutex());
    if (FileState &state = files()[{_dev, _ino}]; state.pid == ::getpid())
        state.transactions += open ? 1 : -1;
}

} // namespace mobileops::core
