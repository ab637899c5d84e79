/* A UDP server for the published-port tests (busybox has no UDP server applet): answers
 * every datagram on PORT with "udp-hello from <client address>". Static, so it runs in
 * the test's busybox rootfs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: udp_echo PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("udp_echo");
        return 1;
    }
    for (;;) {
        char buf[512], reply[600];
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        if (recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len) < 0) continue;
        int n = snprintf(reply, sizeof reply, "udp-hello from %s\n", inet_ntoa(peer.sin_addr));
        sendto(s, reply, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}
