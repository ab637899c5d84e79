#include "Hash.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <linux/openat2.h>
#include <openssl/evp.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace mobileops::integrity {

using common::quote;

namespace {

// Fetched once: an implicit fetch on every init takes OpenSSL's provider lock, which the
// workers would contend on for small files.
const EVP_MD *sha256Md() {
    static const EVP_MD *md = [] {
        const EVP_MD *fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        return fetched ? fetched : EVP_sha256();
    }();
    return md;
}

int64_t nowNs() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

} // namespace

Sha256::Sha256() : _ctx(EVP_MD_CTX_new()) {
    if (!_ctx || EVP_DigestInit_ex2(_ctx, sha256Md(), nullptr) != 1) {
        EVP_MD_CTX_free(_ctx);
        throw sdk::Error(MO_E_INTERNAL, "sha256: cannot initialise OpenSSL's digest");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(_ctx); }

void Sha256::update(const void *data, size_t len) {
    if (len) EVP_DigestUpdate(_ctx, data, len);
}

Sha256::Raw Sha256::finish() {
    Raw raw{};
    unsigned int n = 0;
    EVP_DigestFinal_ex(_ctx, raw.data(), &n);
    EVP_DigestInit_ex2(_ctx, sha256Md(), nullptr);
    return raw;
}

std::string Sha256::finishHex() { return toHex(finish()); }

std::string toHex(const unsigned char *data, size_t len) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(len * 2, '0');
    for (size_t i = 0; i < len; ++i) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 0xf];
    }
    return out;
}

std::string sha256Hex(std::string_view bytes) {
    Sha256 sha;
    sha.update(bytes);
    return sha.finishHex();
}

void ProgressMeter::add(uint64_t bytes, uint64_t files) {
    if (!_fn) return;
    _bytes.fetch_add(bytes, std::memory_order_relaxed);
    _files.fetch_add(files, std::memory_order_relaxed);
    int64_t now = nowNs();
    int64_t last = _last.load(std::memory_order_relaxed);
    if (last == 0) {
        _last.compare_exchange_strong(last, now);
        return;
    }
    if (now - last < 100'000'000 || !_mutex.try_lock()) return;
    std::lock_guard lock(_mutex, std::adopt_lock);
    if (now - _last.load() < 100'000'000) return;
    _last.store(now);
    _fn(_bytes.load(), _files.load());
}

void ProgressMeter::final() {
    if (!_fn) return;
    std::lock_guard lock(_mutex);
    _fn(_bytes.load(), _files.load());
}

uint64_t hashFd(int fd, const std::string &where, Sha256 &hash, std::vector<char> &buffer,
                ProgressMeter &meter) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t total = 0;
    for (;;) {
        ssize_t n = ::read(fd, buffer.data(), buffer.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("read " + where, errno);
        if (n == 0) return total;
        hash.update(buffer.data(), static_cast<size_t>(n));
        total += static_cast<uint64_t>(n);
        meter.add(static_cast<uint64_t>(n), 0);
    }
}

HashQueue::HashQueue(int rootfd, std::string rootPath, unsigned threads, ProgressMeter &meter)
    : _rootfd(rootfd), _rootPath(std::move(rootPath)), _meter(meter) {
    try {
        for (unsigned i = 0; i < std::max(threads, 1u); ++i)
            _workers.emplace_back([this] { work(); });
    } catch (...) {
        stop();
        throw;
    }
}

HashQueue::~HashQueue() { stop(); }

void HashQueue::push(size_t entry, std::string path, uint64_t dev, uint64_t ino) {
    {
        std::lock_guard lock(_mutex);
        _jobs.push_back(Job{entry, std::move(path), dev, ino, {}, 0});
    }
    _ready.notify_one();
}

const std::deque<HashQueue::Job> &HashQueue::finish() {
    {
        std::lock_guard lock(_mutex);
        _closed = true;
    }
    _ready.notify_all();
    for (auto &t : _workers) t.join();
    _workers.clear();
    if (_error) std::rethrow_exception(_error);
    return _jobs;
}

void HashQueue::stop() {
    {
        std::lock_guard lock(_mutex);
        _closed = true;
        _failed = true;
    }
    _ready.notify_all();
    for (auto &t : _workers)
        if (t.joinable()) t.join();
    _workers.clear();
}

void HashQueue::work() {
    try {
        Sha256 sha;
        std::vector<char> buffer(kHashChunk);
        for (;;) {
            Job *job;
            {
                std::unique_lock lock(_mutex);
                _ready.wait(lock, [&] { return _next < _jobs.size() || _closed || _failed; });
                if (_failed || _next == _jobs.size()) return;
                job = &_jobs[_next++];
            }
            hash(*job, sha, buffer);
        }
    } catch (...) {
        {
            std::lock_guard lock(_mutex);
            if (!_error) _error = std::current_exception();
            _failed = true;
        }
        _ready.notify_all();
    }
}

void HashQueue::hash(Job &job, Sha256 &sha, std::vector<char> &buffer) {
    const std::string where = quote(_rootPath + job.path);
    auto changed = [&] {
        return sdk::Error(MO_E_STATE, where + " changed during the scan (it is no longer the "
                                              "regular file the walk found)");
    };
    // O_NONBLOCK and O_NOCTTY: a fifo or terminal swapped in after the walk must not
    // block the scan or become its controlling terminal before fstat rejects it.
    open_how how{};
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    const uint64_t flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    int fd = -1;
    for (;;) {
        bool noatime = _noatime.load(std::memory_order_relaxed);
        how.flags = flags | (noatime ? O_NOATIME : 0);
        fd = static_cast<int>(
            ::syscall(SYS_openat2, _rootfd, job.path.c_str() + 1, &how, sizeof how));
        if (fd >= 0) break;
        if (errno == EINTR) continue;
        // O_NOATIME needs ownership or CAP_FOWNER.
        if (errno == EPERM && noatime) {
            _noatime.store(false, std::memory_order_relaxed);
            continue;
        }
        if (errno == ENOENT) throw sdk::Error(MO_E_NOT_FOUND, where + " vanished during the scan");
        if (errno == ELOOP || errno == ENOTDIR || errno == EXDEV || errno == ENXIO ||
            errno == ENODEV)
            throw changed();
        throw common::sysError("open " + where, errno);
    }
    common::Fd file(fd);
    struct stat st {};
    if (::fstat(fd, &st) < 0) throw common::sysError("stat " + where, errno);
    if (!S_ISREG(st.st_mode) || st.st_ino != job.ino || st.st_dev != job.dev) throw changed();
    job.size = hashFd(fd, where, sha, buffer, _meter);
    job.digest = sha.finishHex();
    _meter.add(0, 1);
}

} // namespace mobileops::integrity
