// The guest's boot assets: vmlinux extraction, the initramfs, module order and the cache.
// A small fake kernel tree (a bzImage-like file around a compressed ELF with a PVH note,
// modules.dep, modules, some xz-compressed) keeps most tests fast; the real Debian kernel
// is extracted where it is installed.
#include "Assets.h"
#include "TestUtil.h"

#include <mobileops/common/Errors.h>

#include <archive.h>
#include <archive_entry.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace mobileops::krun {
namespace {

namespace fs = std::filesystem;
using test::run;
using test::TempDir;

const std::string kRealKernel = "/boot/vmlinuz-6.1.0-56-amd64";

std::string slurp(const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void spit(const std::string &path, const std::string &bytes) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
}

// An ELF64 header, one PT_NOTE program header and its note (Xen's PHYS32_ENTRY, type 18,
// what qemu boots a vmlinux through, or without PVH a GNU note), a body and a section
// header table at the end, as a linked vmlinux has.
std::string tinyElf(bool pvh) {
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = sizeof eh;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 1;
    Elf64_Nhdr nh{4, 4, pvh ? 18u : 1u};
    Elf64_Phdr ph{};
    ph.p_type = PT_NOTE;
    ph.p_offset = sizeof eh + sizeof ph;
    ph.p_filesz = sizeof nh + 8;
    std::string out(reinterpret_cast<char *>(&eh), sizeof eh);
    out.append(reinterpret_cast<char *>(&ph), sizeof ph);
    out.append(reinterpret_cast<char *>(&nh), sizeof nh);
    out.append(pvh ? std::string("Xen\0", 4) : std::string("GNU\0", 4));
    out.append("\x00\x00\x10\x01", 4);
    out.append(std::string(4096, 'k'));
    Elf64_Shdr sh{};
    eh.e_shoff = out.size();
    eh.e_shentsize = sizeof sh;
    eh.e_shnum = 1;
    out.replace(0, sizeof eh, reinterpret_cast<char *>(&eh), sizeof eh);
    out.append(reinterpret_cast<char *>(&sh), sizeof sh);
    return out;
}

// `data` as a raw stream through libarchive's `filter` (ARCHIVE_FILTER_XZ, _GZIP, ...).
std::string compress(const std::string &data, int filter) {
    std::string out(data.size() + (1 << 16), '\0');
    size_t used = 0;
    archive *a = archive_write_new();
    archive_write_add_filter(a, filter);
    archive_write_set_format_raw(a);
    archive_write_open_memory(a, out.data(), out.size(), &used);
    archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "data");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    archive_write_data(a, data.data(), data.size());
    archive_write_close(a);
    archive_entry_free(e);
    archive_write_free(a);
    out.resize(used);
    return out;
}

// A bzImage-like file: a setup header that says where the payload is (boot protocol
// 2.15), code before the payload (with a false gzip magic that leads nowhere), other
// data after it. Without the header a payload can only be found by its magic.
std::string fakeBzImage(const std::string &payload, bool header = true) {
    const uint8_t setupSectors = 3;
    const uint32_t offset = 6000, length = static_cast<uint32_t>(payload.size());
    const uint16_t version = 0x020f;
    std::string setup((setupSectors + 1) * 512, '\0');
    if (header) {
        setup[0x1f1] = static_cast<char>(setupSectors);
        setup.replace(0x202, 4, "HdrS");
        setup.replace(0x206, 2, reinterpret_cast<const char *>(&version), 2);
        setup.replace(0x248, 4, reinterpret_cast<const char *>(&offset), 4);
        setup.replace(0x24c, 4, reinterpret_cast<const char *>(&length), 4);
    }
    std::string code(offset, '\x90');
    code.replace(1000, 6, std::string("\x1f\x8b\x08\x00\xff\xff", 6));
    return setup + code + payload + std::string(3000, '\xcc');
}

// A kernel tree like Debian's: /boot/vmlinuz-<ver> and /lib/modules/<ver>, the modules the
// guest needs with their real dependencies, some compressed.
struct FakeKernel {
    TempDir tmp;
    std::string version = "9.9.9-test";
    std::string image = tmp.path() + "/boot/vmlinuz-" + version;
    std::string modulesRoot = tmp.path() + "/lib/modules";
    std::string moduleDir = modulesRoot + "/" + version;
    std::string guestInit = tmp.path() + "/mobileops-guest-init";
    std::string cache = tmp.path() + "/cache";
    std::string elf = tinyElf(true);

    FakeKernel() {
        spit(image, fakeBzImage(compress(elf, ARCHIVE_FILTER_XZ)));
        spit(guestInit, slurp(MOBILEOPS_GUEST_INIT));
        module("kernel/drivers/virtio/virtio_ring.ko.xz", "");
        module("kernel/drivers/virtio/virtio.ko.xz", "kernel/drivers/virtio/virtio_ring.ko.xz");
        module("kernel/drivers/virtio/virtio_mmio.ko.xz",
               "kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz");
        module("kernel/drivers/char/virtio_console.ko",
               "kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz");
        module("kernel/fs/9p/9p.ko",
               "kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko");
        module("kernel/net/9p/9pnet.ko", "");
        module("kernel/net/9p/9pnet_virtio.ko",
               "kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko.xz "
               "kernel/drivers/virtio/virtio_ring.ko.xz");
        module("kernel/fs/netfs/netfs.ko", "");
        module("kernel/fs/fscache/fscache.ko", "kernel/fs/netfs/netfs.ko");
        module("kernel/fs/overlayfs/overlay.ko", "");
        module("kernel/fs/unrelated/unrelated.ko", "");
    }

    // Its content names it: "module <file name without compression suffix>".
    void module(const std::string &path, const std::string &deps) {
        std::string name = fs::path(path).filename();
        std::string content = "module " + name.substr(0, name.find(".ko") + 3) + "\n";
        bool xz = path.size() > 3 && path.compare(path.size() - 3, 3, ".xz") == 0;
        spit(moduleDir + "/" + path, xz ? compress(content, ARCHIVE_FILTER_XZ) : content);
        std::ofstream(moduleDir + "/modules.dep", std::ios::app)
            << path << ":" << (deps.empty() ? "" : " ") << deps << "\n";
    }

    AssetOptions options() const {
        AssetOptions o;
        o.cacheDir = cache;
        o.guestInit = guestInit;
        o.kernelImage = image;
        o.modulesRoot = modulesRoot;
        return o;
    }
};

std::vector<std::string> lines(const std::string &text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// One member of a cpio archive, through GNU cpio.
std::string cpioMember(const std::string &archive, const std::string &name) {
    auto r = run({"/usr/bin/cpio", "-i", "--quiet", "--to-stdout", "-F", archive, name});
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
}

bool hasPvhNote(const std::string &elf) {
    Elf64_Ehdr eh;
    if (elf.size() < sizeof eh || elf.compare(0, SELFMAG, ELFMAG) != 0) return false;
    std::memcpy(&eh, elf.data(), sizeof eh);
    for (int i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, elf.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        for (uint64_t at = ph.p_offset;
             ph.p_type == PT_NOTE && at + 12 <= ph.p_offset + ph.p_filesz;) {
            Elf64_Nhdr nh;
            std::memcpy(&nh, elf.data() + at, sizeof nh);
            if (nh.n_type == 18 && elf.compare(at + 12, 4, std::string("Xen\0", 4)) == 0)
                return true;
            at += 12 + ((nh.n_namesz + 3) & ~3u) + ((nh.n_descsz + 3) & ~3u);
        }
    }
    return false;
}

TEST(Assets, ExtractsEachCompressedPayloadAroundFalseMagics) {
    TempDir tmp;
    std::string elf = tinyElf(true);
    for (int filter :
         {ARCHIVE_FILTER_XZ, ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_ZSTD, ARCHIVE_FILTER_NONE}) {
        SCOPED_TRACE(filter);
        std::string image = tmp.file(
            "vmlinuz", fakeBzImage(filter == ARCHIVE_FILTER_NONE ? elf : compress(elf, filter)));
        extractVmlinux(image, tmp.path() + "/vmlinux");
        EXPECT_TRUE(slurp(tmp.path() + "/vmlinux") == elf);
    }
}

TEST(Assets, FindsPayloadsByTheirMagicWithoutAHeader) {
    TempDir tmp;
    std::string elf = tinyElf(true);
    std::string image = tmp.file("vmlinuz", fakeBzImage(elf, false));
    extractVmlinux(image, tmp.path() + "/vmlinux");
    EXPECT_TRUE(slurp(tmp.path() + "/vmlinux") == elf);
}

TEST(Assets, PrefersThePayloadWithAPvhNote) {
    TempDir tmp;
    std::string plain = tinyElf(false), pvh = tinyElf(true);
    // The xz stream last: found by its magic, it must end where the file does.
    std::string image =
        tmp.file("vmlinuz", fakeBzImage(compress(plain, ARCHIVE_FILTER_GZIP), false) +
                                compress(pvh, ARCHIVE_FILTER_XZ));
    extractVmlinux(image, tmp.path() + "/vmlinux");
    EXPECT_TRUE(slurp(tmp.path() + "/vmlinux") == pvh);
}

TEST(Assets, GarbageKernelImageIsAClearError) {
    TempDir tmp;
    std::string garbage;
    for (int i = 0; i < 100000; ++i) garbage += static_cast<char>((i * 7919) >> 3);
    std::string image = tmp.file("vmlinuz-garbage", garbage);
    try {
        extractVmlinux(image, tmp.path() + "/vmlinux");
        FAIL() << "no error";
    } catch (const common::Error &e) {
        EXPECT_EQ(e.code(), MO_E_INVALID);
        EXPECT_EQ(std::string(e.what()),
                  "kernel image `" + image +
                      "`: no gzip, xz, zstd, lz4 or uncompressed payload holds an ELF kernel");
    }
    EXPECT_FALSE(fs::exists(tmp.path() + "/vmlinux"));
}

TEST(Assets, ExtractsTheDebianKernelWithItsPvhNote) {
    if (!fs::exists(kRealKernel)) GTEST_SKIP() << kRealKernel << " is not installed";
    TempDir tmp;
    extractVmlinux(kRealKernel, tmp.path() + "/vmlinux");
    std::string elf = slurp(tmp.path() + "/vmlinux");
    EXPECT_GT(elf.size(), 20u << 20);
    EXPECT_TRUE(hasPvhNote(elf));
    auto r = run({"/usr/bin/readelf", "-h", tmp.path() + "/vmlinux"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("Advanced Micro Devices X86-64"), std::string::npos) << r.out;
}

TEST(Assets, InitramfsHoldsInitModulesAndConsole) {
    FakeKernel k;
    GuestAssets a = prepareAssets(k.options());
    EXPECT_EQ(a.kernelVersion, k.version);
    EXPECT_EQ(fs::path(a.dir).parent_path(), k.cache);
    EXPECT_TRUE(slurp(a.kernel) == k.elf);

    auto r = run({"/usr/bin/cpio", "-itv", "--quiet", "-F", a.initramfs});
    ASSERT_EQ(r.status, 0) << r.err;
    std::map<std::string, std::string> listed; // name -> its `ls -l` line
    for (const auto &l : lines(r.out)) listed[l.substr(l.rfind(' ') + 1)] = l;
    for (const char *name :
         {"init", "dev", "dev/console", "proc", "sys", "mo/job", "mo/root", "modules/order",
          "modules/virtio_mmio.ko", "modules/9p.ko", "modules/overlay.ko"})
        EXPECT_TRUE(listed.count(name)) << name << " missing from\n" << r.out;
    EXPECT_FALSE(listed.count("modules/unrelated.ko"));
    EXPECT_EQ(listed["dev/console"].substr(0, 10), "crw-------");
    EXPECT_NE(listed["dev/console"].find("5,   1"), std::string::npos) << listed["dev/console"];
    EXPECT_EQ(listed["init"].substr(0, 10), "-rwxr-xr-x");

    EXPECT_TRUE(cpioMember(a.initramfs, "init") == slurp(MOBILEOPS_GUEST_INIT));
    // Compressed modules go in decompressed.
    EXPECT_EQ(cpioMember(a.initramfs, "modules/virtio_mmio.ko"), "module virtio_mmio.ko\n");
    EXPECT_EQ(cpioMember(a.initramfs, "modules/9p.ko"), "module 9p.ko\n");
}

TEST(Assets, ModuleOrderPutsDependenciesFirst) {
    FakeKernel k;
    GuestAssets a = prepareAssets(k.options());
    EXPECT_EQ(lines(cpioMember(a.initramfs, "modules/order")),
              (std::vector<std::string>{"virtio_ring.ko", "virtio.ko", "virtio_mmio.ko",
                                        "virtio_console.ko", "9pnet.ko", "9pnet_virtio.ko",
                                        "netfs.ko", "fscache.ko", "9p.ko", "overlay.ko"}));
}

TEST(Assets, MissingModuleIsNamed) {
    FakeKernel k;
    std::string dep = slurp(k.moduleDir + "/modules.dep");
    spit(k.moduleDir + "/modules.dep", dep.substr(0, dep.find("kernel/fs/overlayfs")) +
                                           dep.substr(dep.find("kernel/fs/unrelated")));
    try {
        prepareAssets(k.options());
        FAIL() << "no error";
    } catch (const common::Error &e) {
        EXPECT_EQ(e.code(), MO_E_NOT_FOUND);
        EXPECT_EQ(std::string(e.what()),
                  "kernel module `overlay` not found in `" + k.moduleDir + "/modules.dep`");
    }
}

TEST(Assets, BuiltinModuleNeedsNoFile) {
    FakeKernel k;
    std::string dep = slurp(k.moduleDir + "/modules.dep");
    spit(k.moduleDir + "/modules.dep", dep.substr(0, dep.find("kernel/fs/overlayfs")) +
                                           dep.substr(dep.find("kernel/fs/unrelated")));
    spit(k.moduleDir + "/modules.builtin", "kernel/fs/overlayfs/overlay.ko\n");
    GuestAssets a = prepareAssets(k.options());
    EXPECT_EQ(lines(cpioMember(a.initramfs, "modules/order")).back(), "9p.ko");
}

TEST(Assets, MissingInputsAreNamed) {
    FakeKernel k;
    AssetOptions o = k.options();
    o.guestInit = k.tmp.path() + "/nope";
    try {
        prepareAssets(o);
        FAIL() << "no error";
    } catch (const common::Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "no guest init `" + o.guestInit + "` (build the mobileops-guest-init target)");
    }
    o = k.options();
    o.kernelImage = k.tmp.path() + "/boot/vmlinuz-1.2.3";
    try {
        prepareAssets(o);
        FAIL() << "no error";
    } catch (const common::Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "no kernel image `" + o.kernelImage + "` (install linux-image-amd64)");
    }
    o = k.options();
    o.guestInit = k.tmp.file("dynamic-init", slurp("/bin/true"));
    try {
        prepareAssets(o);
        FAIL() << "no error";
    } catch (const common::Error &e) {
        EXPECT_EQ(std::string(e.what()),
                  "guest init `" + o.guestInit + "` is not statically linked");
    }
}

TEST(Assets, CacheIsReusedAndRebuiltWhenTheGuestInitChanges) {
    FakeKernel k;
    EXPECT_FALSE(findAssets(k.options()));
    GuestAssets first = prepareAssets(k.options());
    struct stat before;
    ASSERT_EQ(::stat(first.initramfs.c_str(), &before), 0);

    auto found = findAssets(k.options());
    ASSERT_TRUE(found);
    EXPECT_EQ(found->toJson(), first.toJson());
    GuestAssets again = prepareAssets(k.options());
    EXPECT_EQ(again.toJson(), first.toJson());
    struct stat after;
    ASSERT_EQ(::stat(again.initramfs.c_str(), &after), 0);
    EXPECT_EQ(after.st_ino, before.st_ino); // not rewritten
    EXPECT_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);

    // A rebuilt init of the same size and time still counts: the key is the content.
    std::string init = slurp(k.guestInit);
    init[init.size() - 1] ^= 1;
    spit(k.guestInit, init);
    EXPECT_FALSE(findAssets(k.options()));
    GuestAssets rebuilt = prepareAssets(k.options());
    EXPECT_NE(rebuilt.dir, first.dir);
    EXPECT_TRUE(cpioMember(rebuilt.initramfs, "init") == init);
}

TEST(Assets, ConcurrentPreparesBuildOnceAndLeaveNoTemporaries) {
    FakeKernel k;
    fs::create_directories(k.cache + "/.tmp-left-by-a-killed-prepare");
    GuestAssets a, b;
    auto prepare = [&k](GuestAssets &out) {
        try {
            out = prepareAssets(k.options());
        } catch (const common::Error &e) {
            ADD_FAILURE() << e.what();
        }
    };
    std::thread one(prepare, std::ref(a)), two(prepare, std::ref(b));
    one.join();
    two.join();
    EXPECT_EQ(a.toJson(), b.toJson());
    std::vector<std::string> entries;
    for (const auto &e : fs::directory_iterator(k.cache)) entries.push_back(e.path().filename());
    std::sort(entries.begin(), entries.end());
    EXPECT_EQ(entries, (std::vector<std::string>{".lock", fs::path(a.dir).filename()}));
    auto doc = nlohmann::json::parse(slurp(a.dir + "/assets.json"));
    EXPECT_EQ(doc["kernel"], a.kernel);
    EXPECT_EQ(doc["modules"].size(), 10u);
}

} // namespace
} // namespace mobileops::krun
