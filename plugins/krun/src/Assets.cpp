#include "Assets.h"

#include <mobileops/common/Errors.h>
#include <mobileops/common/Fd.h>

#include <archive.h>
#include <archive_entry.h>

#include <elf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <vector>

namespace mobileops::krun {

namespace fs = std::filesystem;
using common::Error;
using common::quote;

namespace {

// Part of the cache key: bump it when the initramfs layout or the key's inputs change.
constexpr int kFormat = 1;

// What the guest init loads (Assets.h), each after its dependencies.
const char *const kWantedModules[] = {
    "virtio_mmio", "virtio_console", "9pnet", "9pnet_virtio", "netfs", "9p", "overlay"};
const std::set<std::string> kOptionalModules = {"netfs"};

const char *const kInstallKernel = "install linux-image-amd64";

std::string readFile(const std::string &path) {
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0) throw common::sysError("read " + quote(path), errno);
    std::string out;
    char buf[1 << 16];
    for (;;) {
        ssize_t n = ::read(fd.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw common::sysError("read " + quote(path), errno);
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
    }
}

// Written and synced under a temporary name, then renamed: a reader sees all or nothing,
// also after a crash.
void writeFileAtomically(const std::string &path, const std::string &bytes) {
    std::string tmp = path + ".tmp";
    {
        common::Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
        if (fd.fd < 0) throw common::sysError("write " + quote(tmp), errno);
        for (size_t done = 0; done < bytes.size();) {
            ssize_t n = ::write(fd.fd, bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw common::sysError("write " + quote(tmp), errno);
            done += static_cast<size_t>(n);
        }
        if (::fsync(fd.fd) < 0) throw common::sysError("write " + quote(tmp), errno);
    }
    if (::rename(tmp.c_str(), path.c_str()) < 0)
        throw common::sysError("rename " + quote(tmp), errno);
}

void syncPath(const std::string &path) {
    common::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.fd < 0 || ::fsync(fd.fd) < 0) throw common::sysError("sync " + quote(path), errno);
}

// ---- ELF -------------------------------------------------------------------------------

template <typename T> bool readAt(const std::string &bytes, uint64_t offset, T &out) {
    if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return false;
    std::memcpy(&out, bytes.data() + offset, sizeof(T));
    return true;
}

bool hasElfMagic(const std::string &bytes) { return bytes.compare(0, SELFMAG, ELFMAG) == 0; }

struct ElfLayout {
    std::vector<Elf64_Phdr> headers;
    uint64_t end = 0; // where the file ends: its last header table or segment
};

// A complete little-endian ELF64 file at the start of `bytes`, or nothing when a header
// table or a segment lies outside (a truncated stream).
std::optional<ElfLayout> elfLayout(const std::string &bytes) {
    Elf64_Ehdr eh;
    if (!hasElfMagic(bytes) || !readAt(bytes, 0, eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr))
        return std::nullopt;
    ElfLayout out;
    out.end =
        std::max<uint64_t>({sizeof eh, eh.e_phoff + uint64_t(eh.e_phnum) * sizeof(Elf64_Phdr),
                            eh.e_shnum ? eh.e_shoff + uint64_t(eh.e_shnum) * eh.e_shentsize : 0});
    out.headers.resize(eh.e_phnum);
    for (size_t i = 0; i < out.headers.size(); ++i) {
        if (!readAt(bytes, eh.e_phoff + i * sizeof(Elf64_Phdr), out.headers[i]))
            return std::nullopt;
        out.end = std::max(out.end, out.headers[i].p_offset + out.headers[i].p_filesz);
    }
    if (out.end > bytes.size()) return std::nullopt;
    return out;
}

// Xen's PHYS32_ENTRY note: the PVH entry point qemu boots an uncompressed kernel through.
bool hasPvhNote(const std::string &elf, const std::vector<Elf64_Phdr> &headers) {
    constexpr uint32_t kXenElfnotePhys32Entry = 18;
    auto align4 = [](uint64_t n) { return (n + 3) & ~uint64_t(3); };
    for (const auto &ph : headers) {
        if (ph.p_type != PT_NOTE) continue;
        for (uint64_t at = ph.p_offset, end = ph.p_offset + ph.p_filesz;
             at + sizeof(Elf64_Nhdr) <= end;) {
            Elf64_Nhdr note;
            readAt(elf, at, note);
            uint64_t name = at + sizeof note;
            if (note.n_type == kXenElfnotePhys32Entry && note.n_namesz == 4 &&
                elf.compare(name, 4, std::string("Xen", 4)) == 0)
                return true;
            at = name + align4(note.n_namesz) + align4(note.n_descsz);
        }
    }
    return false;
}

// ---- decompression ---------------------------------------------------------------------

using Reader = std::unique_ptr<archive, decltype(&archive_read_free)>;

struct Decompressed {
    std::string bytes;
    std::string error; // empty when the stream ended cleanly
};

// The single stream at `data` through whichever of libarchive's filters recognises it
// (none: the bytes themselves), up to its end or its first error. `keep` sees the output
// so far and may stop early by returning false.
Decompressed decompress(const void *data, size_t size,
                        const std::function<bool(const std::string &)> &keep) {
    Reader reader(archive_read_new(), archive_read_free);
    archive *a = reader.get();
    auto failed = [a](Decompressed out) {
        out.error = archive_error_string(a) ? archive_error_string(a) : "unreadable";
        return out;
    };
    archive_entry *entry;
    if (archive_read_support_filter_all(a) != ARCHIVE_OK ||
        archive_read_support_format_raw(a) != ARCHIVE_OK ||
        archive_read_open_memory(a, data, size) != ARCHIVE_OK ||
        archive_read_next_header(a, &entry) != ARCHIVE_OK)
        return failed({});
    Decompressed out;
    char buf[1 << 16];
    for (;;) {
        la_ssize_t n = archive_read_data(a, buf, sizeof buf);
        if (n < 0) return failed(std::move(out));
        if (n == 0) return out;
        out.bytes.append(buf, static_cast<size_t>(n));
        if (!keep(out.bytes)) return out;
    }
}

std::string decompressFile(const std::string &path) {
    std::string bytes = readFile(path);
    auto out = decompress(bytes.data(), bytes.size(), [](const std::string &) { return true; });
    if (!out.error.empty())
        throw Error(MO_E_INVALID, "decompress " + quote(path) + ": " + out.error);
    return std::move(out.bytes);
}

struct Payload {
    size_t offset, size;
};

// Where a kernel payload may be: first exactly where the bzImage header says (boot
// protocol 2.08+), then from every compressed-stream or ELF magic to the end of the image,
// in file order.
std::vector<Payload> payloadCandidates(const std::string &image) {
    std::vector<Payload> out;
    uint32_t magic = 0, offset = 0, length = 0;
    uint16_t version = 0;
    uint8_t setupSectors = 0;
    if (readAt(image, 0x1f1, setupSectors) && readAt(image, 0x202, magic) &&
        std::memcmp(&magic, "HdrS", 4) == 0 && readAt(image, 0x206, version) && version >= 0x208 &&
        readAt(image, 0x248, offset) && readAt(image, 0x24c, length)) {
        size_t start = (setupSectors ? setupSectors + 1 : 5) * 512 + size_t(offset);
        if (start < image.size() && length <= image.size() - start) out.push_back({start, length});
    }
    static const std::string magics[] = {
        std::string("\x1f\x8b\x08", 3), // gzip
        std::string("\xfd"
                    "7zXZ\0",
                    6),                     // xz
        std::string("\x28\xb5\x2f\xfd", 4), // zstd
        std::string("\x02\x21\x4c\x18", 4), // lz4, the kernel's legacy framing
        std::string(ELFMAG, SELFMAG),       // uncompressed
    };
    std::vector<size_t> found;
    for (const auto &m : magics)
        for (size_t at = image.find(m); at != std::string::npos; at = image.find(m, at + 1))
            found.push_back(at);
    std::sort(found.begin(), found.end());
    for (size_t at : found) out.push_back({at, image.size() - at});
    return out;
}

// ---- modules ---------------------------------------------------------------------------

struct Module {
    std::string name; // file name in the initramfs and /modules/order: "virtio_mmio.ko"
    std::string path; // the installed file, maybe compressed
};

// "kernel/fs/9p/9p.ko.xz" -> "9p"; '-' and '_' are the same in module names.
std::string moduleName(const std::string &path) {
    std::string name = fs::path(path).filename();
    name = name.substr(0, name.find(".ko"));
    std::replace(name.begin(), name.end(), '-', '_');
    return name;
}

struct DepEntry {
    std::string path;
    std::vector<std::string> deps;
};

std::map<std::string, DepEntry> readModulesDep(const std::string &dir) {
    std::string file = dir + "/modules.dep";
    if (!fs::exists(file))
        throw Error(MO_E_NOT_FOUND, "no " + quote(file) + " (" + kInstallKernel + ")");
    std::map<std::string, DepEntry> out;
    std::string text = readFile(file);
    for (size_t at = 0; at < text.size();) {
        size_t eol = std::min(text.find('\n', at), text.size());
        std::string line = text.substr(at, eol - at);
        at = eol + 1;
        size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        DepEntry e{line.substr(0, colon), {}};
        for (size_t p = colon + 1; p < line.size();) {
            size_t q = std::min(line.find(' ', p), line.size());
            if (q > p) e.deps.push_back(line.substr(p, q - p));
            p = q + 1;
        }
        out[moduleName(e.path)] = std::move(e);
    }
    return out;
}

std::set<std::string> readBuiltins(const std::string &dir) {
    std::set<std::string> out;
    std::error_code ec;
    if (!fs::exists(dir + "/modules.builtin", ec)) return out;
    std::string text = readFile(dir + "/modules.builtin");
    for (size_t at = 0; at < text.size();) {
        size_t eol = std::min(text.find('\n', at), text.size());
        if (eol > at) out.insert(moduleName(text.substr(at, eol - at)));
        at = eol + 1;
    }
    return out;
}

// The wanted modules and what they need, dependencies first, each once. Built-in ones
// need no loading.
std::vector<Module> resolveModules(const std::string &dir) {
    auto deps = readModulesDep(dir);
    auto builtins = readBuiltins(dir);
    std::vector<Module> out;
    std::set<std::string> added;
    std::function<void(const std::string &)> add = [&](const std::string &name) {
        if (added.count(name)) return;
        const DepEntry &e = deps.at(name);
        for (const auto &d : e.deps)
            if (deps.count(moduleName(d))) add(moduleName(d));
        added.insert(name);
        std::string file = fs::path(e.path).filename();
        out.push_back({file.substr(0, file.find(".ko") + 3), dir + "/" + e.path});
    };
    for (const char *name : kWantedModules) {
        if (deps.count(name))
            add(name);
        else if (!builtins.count(name) && !kOptionalModules.count(name))
            throw Error(MO_E_NOT_FOUND, "kernel module " + quote(name) + " not found in " +
                                            quote(dir + "/modules.dep"));
    }
    return out;
}

// ---- the initramfs ---------------------------------------------------------------------

class CpioWriter {
public:
    explicit CpioWriter(const std::string &path)
        : _path(path), _a(archive_write_new(), archive_write_free),
          _entry(archive_entry_new(), archive_entry_free) {
        if (archive_write_set_format_cpio_newc(_a.get()) != ARCHIVE_OK ||
            archive_write_add_filter_none(_a.get()) != ARCHIVE_OK ||
            archive_write_open_filename(_a.get(), path.c_str()) != ARCHIVE_OK)
            fail();
    }
    void dir(const std::string &name) { add(name, AE_IFDIR, 0755, {}); }
    void file(const std::string &name, mode_t mode, const std::string &data) {
        add(name, AE_IFREG, mode, data);
    }
    void charDevice(const std::string &name, mode_t mode, unsigned major, unsigned minor) {
        add(name, AE_IFCHR, mode, {}, major, minor);
    }
    void close() {
        if (archive_write_close(_a.get()) != ARCHIVE_OK) fail();
    }

private:
    void add(const std::string &name, unsigned type, mode_t mode, const std::string &data,
             unsigned major = 0, unsigned minor = 0) {
        archive_entry *e = _entry.get();
        archive_entry_clear(e);
        archive_entry_set_pathname(e, name.c_str());
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, mode);
        archive_entry_set_ino(e, ++_ino); // distinct: equal inodes read as hard links
        archive_entry_set_nlink(e, type == AE_IFDIR ? 2 : 1);
        archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
        archive_entry_set_rdevmajor(e, major);
        archive_entry_set_rdevminor(e, minor);
        if (archive_write_header(_a.get(), e) != ARCHIVE_OK) fail();
        if (!data.empty() && archive_write_data(_a.get(), data.data(), data.size()) !=
                                 static_cast<la_ssize_t>(data.size()))
            fail();
    }
    [[noreturn]] void fail() {
        const char *why = archive_error_string(_a.get());
        throw Error(MO_E_INTERNAL,
                    "write " + quote(_path) + ": " + (why ? why : "libarchive failed"));
    }

    std::string _path;
    std::unique_ptr<archive, decltype(&archive_write_free)> _a;
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> _entry;
    int64_t _ino = 0;
};

void writeInitramfs(const std::string &path, const std::string &guestInit,
                    const std::vector<Module> &modules) {
    CpioWriter cpio(path);
    for (const char *d : {"dev", "mo", "mo/job", "mo/root", "modules", "proc", "sys"}) cpio.dir(d);
    // The kernel opens it as init's stdin, stdout and stderr before anything is mounted.
    cpio.charDevice("dev/console", 0600, 5, 1);
    cpio.file("init", 0755, guestInit);
    std::string order;
    for (const auto &m : modules) {
        cpio.file("modules/" + m.name, 0644, decompressFile(m.path));
        order += m.name + "\n";
    }
    cpio.file("modules/order", 0644, order);
    cpio.close();
    syncPath(path);
}

// ---- the cache -------------------------------------------------------------------------

struct Inputs {
    std::string kernelVersion, kernelImage, guestInit;
    std::vector<Module> modules;
    std::string entry; // the cache entry's directory
};

std::string newestKernel(const std::string &modulesRoot) {
    std::vector<std::string> versions;
    std::error_code ec;
    for (const auto &e : fs::directory_iterator("/boot", ec)) {
        std::string name = e.path().filename();
        if (name.rfind("vmlinuz-", 0) == 0 &&
            fs::exists(modulesRoot + "/" + name.substr(8) + "/modules.dep"))
            versions.push_back(name.substr(8));
    }
    if (versions.empty())
        throw Error(MO_E_NOT_FOUND, "no kernel image in `/boot` with modules in " +
                                        quote(modulesRoot) + " (" + kInstallKernel + ")");
    std::sort(versions.begin(), versions.end(), [](const std::string &a, const std::string &b) {
        return ::strverscmp(a.c_str(), b.c_str()) < 0;
    });
    return "/boot/vmlinuz-" + versions.back();
}

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

// A content key, not a digest: only whether to rebuild depends on it, so libstdc++'s
// 64-bit hash of the bytes will do (krun_engine does not link libcrypto).
std::string contentHash(const std::string &path) {
    return hex64(std::hash<std::string_view>{}(readFile(path)));
}

Inputs resolveInputs(const AssetOptions &options) {
    Inputs in;
    in.kernelImage =
        options.kernelImage.empty() ? newestKernel(options.modulesRoot) : options.kernelImage;
    std::string base = fs::path(in.kernelImage).filename();
    if (base.rfind("vmlinuz-", 0) != 0 || base.size() == 8)
        throw Error(MO_E_INVALID, "kernel image " + quote(in.kernelImage) +
                                      ": cannot tell its version (want a name vmlinuz-<version>)");
    in.kernelVersion = base.substr(8);
    if (!fs::exists(in.kernelImage))
        throw Error(MO_E_NOT_FOUND,
                    "no kernel image " + quote(in.kernelImage) + " (" + kInstallKernel + ")");
    in.guestInit = options.guestInit;
    if (in.guestInit.empty() || !fs::exists(in.guestInit))
        throw Error(MO_E_NOT_FOUND, "no guest init " + quote(in.guestInit) +
                                        " (build the mobileops-guest-init target)");
    in.modules = resolveModules(options.modulesRoot + "/" + in.kernelVersion);

    std::string key = "format " + std::to_string(kFormat) + "\nkernel " + in.kernelVersion + " " +
                      contentHash(in.kernelImage) + "\ninit " + contentHash(in.guestInit) + "\n";
    for (const auto &m : in.modules) key += "module " + m.name + " " + contentHash(m.path) + "\n";
    in.entry =
        options.cacheDir + "/" + in.kernelVersion + "-" + hex64(std::hash<std::string>{}(key));
    return in;
}

GuestAssets assetsAt(const Inputs &in) {
    return {in.kernelVersion, in.entry + "/vmlinux", in.entry + "/initramfs.cpio", in.entry};
}

std::optional<GuestAssets> lookup(const Inputs &in) {
    GuestAssets a = assetsAt(in);
    std::error_code ec;
    if (fs::exists(a.dir + "/assets.json", ec) && fs::exists(a.kernel, ec) &&
        fs::exists(a.initramfs, ec))
        return a;
    return std::nullopt;
}

void checkStatic(const std::string &path, const std::string &bytes) {
    auto elf = elfLayout(bytes);
    if (!elf) throw Error(MO_E_INVALID, "guest init " + quote(path) + " is not an ELF64 program");
    for (const auto &ph : elf->headers)
        if (ph.p_type == PT_INTERP)
            throw Error(MO_E_INVALID, "guest init " + quote(path) + " is not statically linked");
}

void build(const Inputs &in, const std::string &dir, bool quiet) {
    bool talk = !quiet && ::isatty(2);
    std::string init = readFile(in.guestInit);
    checkStatic(in.guestInit, init);
    if (talk)
        std::fprintf(stderr, "extracting the guest kernel from %s\n",
                     quote(in.kernelImage).c_str());
    extractVmlinux(in.kernelImage, dir + "/vmlinux");
    if (talk)
        std::fprintf(stderr, "writing the guest initramfs (%zu modules)\n", in.modules.size());
    writeInitramfs(dir + "/initramfs.cpio", init, in.modules);
    nlohmann::json doc = assetsAt(in).toJson();
    doc["format"] = kFormat;
    doc["kernelImage"] = in.kernelImage;
    doc["guestInit"] = in.guestInit;
    doc["modules"] = nlohmann::json::array();
    for (const auto &m : in.modules) doc["modules"].push_back(m.name);
    writeFileAtomically(dir + "/assets.json", doc.dump(2) + "\n");
}

// Serialises prepares on one cache: the second waits, then finds the first one's entry.
// The locked fd.
int lockCache(const std::string &cacheDir) {
    std::error_code ec;
    fs::create_directories(cacheDir, ec);
    if (ec) throw Error(-ec.value(), "create " + quote(cacheDir) + ": " + ec.message());
    std::string path = cacheDir + "/.lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw common::sysError("open " + quote(path), errno);
    while (::flock(fd, LOCK_EX) < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        throw common::sysError("lock " + quote(path), err);
    }
    return fd;
}

} // namespace

nlohmann::json GuestAssets::toJson() const {
    return {{"kernelVersion", kernelVersion},
            {"kernel", kernel},
            {"initramfs", initramfs},
            {"dir", dir}};
}

void extractVmlinux(const std::string &bzImage, const std::string &output) {
    std::string image = readFile(bzImage);
    std::optional<std::string> firstElf;
    auto stillElf = [](const std::string &out) { return out.size() < SELFMAG || hasElfMagic(out); };
    for (const auto &p : payloadCandidates(image)) {
        // Found by its magic, a payload runs on into what follows it, which may make the
        // decompressor fail after the stream's end: a complete ELF file is what counts.
        std::string elf = decompress(image.data() + p.offset, p.size, stillElf).bytes;
        auto layout = elfLayout(elf);
        if (!layout) continue;
        elf.resize(layout->end);
        if (hasPvhNote(elf, layout->headers)) {
            writeFileAtomically(output, elf);
            return;
        }
        if (!firstElf) firstElf = std::move(elf);
    }
    if (!firstElf)
        throw Error(MO_E_INVALID,
                    "kernel image " + quote(bzImage) +
                        ": no gzip, xz, zstd, lz4 or uncompressed payload holds an ELF kernel");
    writeFileAtomically(output, *firstElf);
}

std::optional<GuestAssets> findAssets(const AssetOptions &options) {
    return lookup(resolveInputs(options));
}

GuestAssets prepareAssets(const AssetOptions &options) {
    Inputs in = resolveInputs(options);
    if (auto found = lookup(in)) return *found;
    common::Fd lock(lockCache(options.cacheDir));
    if (auto found = lookup(in)) return *found;
    std::string tmp = options.cacheDir + "/.tmp-" + fs::path(in.entry).filename().string();
    std::error_code ec;
    // Whatever a killed prepare left (the lock says no other one runs).
    for (const auto &e : fs::directory_iterator(options.cacheDir, ec))
        if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);
    fs::remove_all(in.entry, ec);
    fs::create_directory(tmp, ec);
    if (ec) throw Error(-ec.value(), "create " + quote(tmp) + ": " + ec.message());
    build(in, tmp, options.quiet);
    syncPath(tmp);
    if (::rename(tmp.c_str(), in.entry.c_str()) < 0)
        throw common::sysError("rename " + quote(tmp), errno);
    syncPath(options.cacheDir);
    return assetsAt(in);
}

} // namespace mobileops::krun
