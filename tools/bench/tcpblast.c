/* tcpblast: a TCP sink and source for network-bench.sh, one static binary for the
 * containers' busybox rootfs and the host alike, so both paths run the same code.
 *   tcpblast -l PORT          accept connections for ever; each: read to EOF, print bytes
 *   tcpblast IP PORT MIB      send MIB mebibytes, then wait for the sink to close */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    if (argc == 3 && strcmp(argv[1], "-l") == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        addr.sin_port = htons((unsigned short)atoi(argv[2]));
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(s, 4) < 0) {
            perror("tcpblast: listen");
            return 1;
        }
        for (;;) {
            int c = accept(s, NULL, NULL);
            if (c < 0) continue;
            long long total = 0;
            ssize_t n;
            while ((n = read(c, buf, sizeof buf)) > 0) total += n;
            close(c);
            printf("%lld\n", total);
            fflush(stdout);
        }
    }
    if (argc != 4) {
        fprintf(stderr, "usage: tcpblast -l PORT | tcpblast IP PORT MIB\n");
        return 2;
    }
    addr.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "tcpblast: bad address %s\n", argv[1]);
        return 2;
    }
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("tcpblast: connect");
        return 1;
    }
    long long left = atoll(argv[3]) << 20;
    while (left > 0) {
        ssize_t n = write(s, buf, left < (long long)sizeof buf ? (size_t)left : sizeof buf);
        if (n <= 0) {
            perror("tcpblast: write");
            return 1;
        }
        left -= n;
    }
    shutdown(s, SHUT_WR);
    while (read(s, buf, sizeof buf) > 0) {
    }
    return 0;
}
