// bench/xdp_flood.c: paced raw-frame sender for bench/bench_observer.py.
//
// Role: sends N request/response frame pairs at a target rate through two AF_PACKET
// sockets, one opened in each network namespace of a veth pair (the request from the
// client end, the response from the server end, so the observer's XDP program sees
// both and pairs them). Each pair gets its own client port and sequence number.
// Rules: bounded by N; prints "sent <pairs> <seconds>" on stdout; the frames' bytes come
// from two template files written by the benchmark (scapy); only ports/seq are patched.
// Build: cc -O2 -o xdp_flood xdp_flood.c
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32

static int open_sock(const char *ns, const char *ifname) {
    int self = open("/proc/thread-self/ns/net", O_RDONLY);
    int fd = open(ns, O_RDONLY);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) { perror(ns); exit(1); }
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s < 0) { perror("socket"); exit(1); }
    struct sockaddr_ll sll = {0};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = if_nametoindex(ifname);
    if (bind(s, (struct sockaddr *)&sll, sizeof(sll)) < 0) { perror("bind"); exit(1); }
    int sz = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    if (setns(self, CLONE_NEWNET) < 0) { perror("setns back"); exit(1); }
    close(fd);
    close(self);
    return s;
}

static size_t slurp(const char *path, unsigned char *buf, size_t max) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    size_t n = fread(buf, 1, max, f);
    fclose(f);
    return n;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: %s cns cif sns sif reqfile respfile pairs rate l4off_req l4off_resp\n", argv[0]);
        return 2;
    }
    int sc = open_sock(argv[1], argv[2]);
    int ss = open_sock(argv[3], argv[4]);
    static unsigned char req[2048], resp[2048];
    size_t rl = slurp(argv[5], req, sizeof(req)), pl = slurp(argv[6], resp, sizeof(resp));
    long pairs = atol(argv[7]);
    double rate = atof(argv[8]);
    int oq = atoi(argv[9]), op = atoi(argv[10]);
    static unsigned char rq[BATCH][2048], rs[BATCH][2048];
    struct mmsghdr mq[BATCH], mp[BATCH];
    struct iovec vq[BATCH], vp[BATCH];
    memset(mq, 0, sizeof(mq));
    memset(mp, 0, sizeof(mp));
    for (int i = 0; i < BATCH; i++) {
        memcpy(rq[i], req, rl);
        memcpy(rs[i], resp, pl);
        vq[i].iov_base = rq[i]; vq[i].iov_len = rl;
        vp[i].iov_base = rs[i]; vp[i].iov_len = pl;
        mq[i].msg_hdr.msg_iov = &vq[i]; mq[i].msg_hdr.msg_iovlen = 1;
        mp[i].msg_hdr.msg_iov = &vp[i]; mp[i].msg_hdr.msg_iovlen = 1;
    }
    double t0 = now();
    long sent = 0, failed = 0;
    while (sent < pairs) {
        int n = pairs - sent < BATCH ? (int)(pairs - sent) : BATCH;
        for (int i = 0; i < n; i++) {
            uint16_t port = htons(1024 + (uint16_t)((sent + i) % 60000));
            uint32_t seq = htonl((uint32_t)(sent + i));
            memcpy(rq[i] + oq, &port, 2);       // request: TCP source port
            memcpy(rq[i] + oq + 4, &seq, 4);    // request: TCP seq
            memcpy(rs[i] + op + 2, &port, 2);   // response: TCP destination port
        }
        int a = sendmmsg(sc, mq, n, 0);
        int b = sendmmsg(ss, mp, n, 0);
        if (a < n || b < n) failed += n - (a < b ? a : b);
        sent += n;
        double due = t0 + sent / rate;
        while (now() < due) {
            double d = due - now();
            if (d > 0.0005) { struct timespec ts = {0, (long)(d * 1e9 * 0.8)}; nanosleep(&ts, NULL); }
        }
    }
    printf("sent %ld %.6f failed %ld\n", sent, now() - t0, failed);
    return 0;
}
