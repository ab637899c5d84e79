// Pseudo-terminals for -t: the pair, raw mode on the user's terminal, and the copy loop.
#pragma once

#include <termios.h>

#include <string>

namespace mobileops::nsruntime {

class Pty {
public:
    // Open a new pty pair; the slave gets the window size of `sizeFrom` when it is a tty.
    static Pty open(int sizeFrom);
    Pty() = default;
    Pty(Pty &&other) noexcept;
    Pty &operator=(Pty &&other) noexcept;
    ~Pty();

    int master() const { return _master; }
    int slave() const { return _slave; }
    const std::string &slavePath() const { return _slavePath; }
    void closeSlave();

private:
    int _master = -1, _slave = -1;
    std::string _slavePath;
};

// Puts a terminal in raw mode for the lifetime of the object (no-op if `fd` is no tty).
class RawMode {
public:
    explicit RawMode(int fd);
    ~RawMode();
    RawMode(const RawMode &) = delete;
    RawMode &operator=(const RawMode &) = delete;

private:
    int _fd;
    bool _active = false;
    struct termios _saved;
};

// Copy in -> master and master -> out until the process behind `pidfd` exits and the
// master has drained. Follows window size changes of `in`. `in` < 0: no input.
void pumpPty(int master, int in, int out, int pidfd);

} // namespace mobileops::nsruntime
