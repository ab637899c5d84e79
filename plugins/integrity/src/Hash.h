// sha256 through OpenSSL's EVP, and the pool that hashes a tree's regular files on worker
// threads while the walk is still finding them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

struct evp_md_ctx_st;

namespace mobileops::integrity {

class Sha256 {
public:
    using Raw = std::array<unsigned char, 32>;

    Sha256();
    ~Sha256();
    Sha256(const Sha256 &) = delete;
    Sha256 &operator=(const Sha256 &) = delete;

    void update(const void *data, size_t len);
    void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
    // The digest of everything updated since the last finish; starts over.
    Raw finish();
    std::string finishHex();

private:
    evp_md_ctx_st *_ctx;
};

// A self-delimiting byte string for hashing: integers big-endian, strings and blobs
// preceded by their u32 length, so no two different field lists encode alike.
class Canonical {
public:
    Canonical &u8(uint8_t v) {
        _out += static_cast<char>(v);
        return *this;
    }
    Canonical &u32(uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) _out += static_cast<char>((v >> s) & 0xff);
        return *this;
    }
    Canonical &u64(uint64_t v) {
        for (int s = 56; s >= 0; s -= 8) _out += static_cast<char>((v >> s) & 0xff);
        return *this;
    }
    Canonical &str(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        _out += s;
        return *this;
    }
    Canonical &raw(const Sha256::Raw &r) {
        _out.append(reinterpret_cast<const char *>(r.data()), r.size());
        return *this;
    }
    const std::string &bytes() const { return _out; }

private:
    std::string _out;
};

std::string toHex(const unsigned char *data, size_t len);
inline std::string toHex(const Sha256::Raw &raw) { return toHex(raw.data(), raw.size()); }
std::string sha256Hex(std::string_view bytes);

using ProgressFn = std::function<void(uint64_t bytes, uint64_t files)>;

// Counts hashed bytes and files and calls the caller's progress function at most every
// 100 ms, from whichever thread crosses the interval, never two calls at once.
class ProgressMeter {
public:
    explicit ProgressMeter(ProgressFn fn) : _fn(std::move(fn)) {}
    void add(uint64_t bytes, uint64_t files);
    void final();

private:
    ProgressFn _fn;
    std::atomic<uint64_t> _bytes{0}, _files{0};
    std::atomic<int64_t> _last{0}; // steady clock, ns
    std::mutex _mutex;
};

// 256 KiB reads cost the same CPU time as 1 MiB reads and as mmap of large files (measured
// on a 100 MB tree) and keep each worker's buffer in its L2 cache.
constexpr size_t kHashChunk = 256 * 1024;

// Reads `fd` to its end into `hash`, reporting every chunk to `meter`; returns the bytes
// read. A read error names `where`.
uint64_t hashFd(int fd, const std::string &where, Sha256 &hash, std::vector<char> &buffer,
                ProgressMeter &meter);

// Hashes the regular files queued by the walk on `threads` workers. Each file is opened
// below `rootfd` without following any symlink and must still be the inode the walk saw.
class HashQueue {
public:
    struct Job {
        size_t entry;     // index into the caller's entries
        std::string path; // inside the tree, absolute
        uint64_t dev, ino;
        std::string digest; // filled by a worker
        uint64_t size = 0;  // bytes read
    };

    HashQueue(int rootfd, std::string rootPath, unsigned threads, ProgressMeter &meter);
    ~HashQueue();
    HashQueue(const HashQueue &) = delete;
    HashQueue &operator=(const HashQueue &) = delete;

    void push(size_t entry, std::string path, uint64_t dev, uint64_t ino);
    // True once a worker has failed: the walk may stop early, finish() throws.
    bool failed() const { return _failed.load(std::memory_order_relaxed); }
    // Waits until every queued file is hashed; rethrows the first worker's error.
    const std::deque<Job> &finish();

private:
    void work();
    void hash(Job &job, Sha256 &sha, std::vector<char> &buffer);
    void stop();

    int _rootfd;
    std::string _rootPath;
    ProgressMeter &_meter;
    std::mutex _mutex;
    std::condition_variable _ready;
    std::deque<Job> _jobs; // push_back keeps references to earlier jobs valid
    size_t _next = 0;
    bool _closed = false;
    std::atomic<bool> _failed{false};
    std::atomic<bool> _noatime{true}; // cleared after the first EPERM (not the owner)
    std::exception_ptr _error;
    std::vector<std::thread> _workers;
};

} // namespace mobileops::integrity
