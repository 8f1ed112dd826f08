// bpf/observer.c: rauta's kernel-side HTTP observer (bcc C, compiled at load time).
//
// Role: an XDP program that classifies HTTP/1.x request and status lines in the first
// payload bytes of TCP segments and pairs each request with its response in the kernel,
// plus two tracepoints that report TCP connects (established / refused / timeout).
// Userspace: rauta/observe/kernel.py loads it; rauta/observe/decode.py mirrors the
// record layouts below byte for byte.
//
// Rules:
// - XDP always returns XDP_PASS: it never drops, changes or redirects a packet.
// - Never read kernel structs (the installed headers are older than the kernel and bcc
//   does no CO-RE): packet bytes, uapi headers and tracepoint fields only.
// - Requests are seen at the server-side veth end, responses at the client-side end:
//   the flow map is keyed by the request-direction 4-tuple, and a response looks up the
//   reversed tuple. A retransmitted request (same seq) is not stored twice.
// - A flow entry is reused, not deleted and re-added, per request on a kept-alive
//   connection (an LRU delete + update cost about 0.7 us a request): a paired response
//   marks it done (end_ns != 0), the next request overwrites it in place, and a done
//   entry counts as absent everywhere. A FIN or RST in either direction deletes a done
//   entry (a pending one stays for its response, as before).
// - Metrics are exact even when events drop: per-CPU counters and per-(route, status
//   class) log2 latency histograms are updated before any event is output; every failed
//   ring/perf output is counted in C_RING_DROPS.
// - Addresses are 16 bytes, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d); ports host order.
//
// Build-time macros (set by the loader): USE_PERF, RING_PAGES, FLOW_ENTRIES,
// WATCH_ENTRIES, ROUTE_ENTRIES, HIST_ENTRIES.

#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/in.h>

#ifndef RING_PAGES
#define RING_PAGES 8192
#endif
#ifndef FLOW_ENTRIES
#define FLOW_ENTRIES 16384
#endif
#ifndef WATCH_ENTRIES
#define WATCH_ENTRIES 16384
#endif
#ifndef ROUTE_ENTRIES
#define ROUTE_ENTRIES 65536
#endif
#ifndef HIST_ENTRIES
#define HIST_ENTRIES 16384
#endif

#define HEAD_MAX 512         // bytes of the request head copied (power of two)
#define PATH_MAX_ 256        // path bytes hashed and reported (events.PATH_MAX)
#define MIN_PAYLOAD 16       // shorter payloads are not looked at
#define NBUCKETS 32          // histogram bucket i: latency < 2^i us (i = 31: overflow)

#define REC_HTTP 1
#define REC_CONNECT 2

#define F_TRUNCATED 1        // the path was cut at PATH_MAX_ bytes
#define F_WATCHED 2          // the server endpoint is in the watched map
#define F_LISTENER 4         // ... as a listener (downstream leg)

#define ROUTE_FROM_WATCH 0x80000000u

// Counter indexes: keep in step with decode.COUNTERS.
enum {
    C_PACKETS, C_TCP, C_REQUESTS, C_RESPONSES, C_NON_HTTP, C_TRUNCATED, C_UNPAIRED,
    C_MAP_FULL, C_RING_DROPS, C_RETRANSMITS, C_OVERWRITTEN, C_PAIRED, C_FILTERED,
    C_INCOMPLETE, C_CONNECTS, C_CONNECT_FAILURES, C_NCOUNTERS
};

struct flow_key {
    u8 saddr[16];   // request direction: the client
    u8 daddr[16];   // the server
    u16 sport;
    u16 dport;
};

struct watch_key {
    u8 ip[16];
    u16 port;
    u16 pad;
};

struct watch_val {
    u32 id;
    u32 flags;      // F_LISTENER
};

// One paired exchange; also the flow map's value (end_ns/status filled on the response).
struct http_ev {
    u32 type;
    u32 route_id;
    u64 start_ns;
    u64 end_ns;
    u8 saddr[16];
    u8 daddr[16];
    u16 sport;
    u16 dport;
    u32 seq;
    u32 path_hash;
    u16 status;
    u8 method;
    u8 flags;
    u16 path_off;
    u16 path_len;
    u16 head_len;
    u16 pad;
    u8 head[HEAD_MAX];
};

struct conn_ev {
    u32 type;
    u32 id;
    u64 start_ns;
    u64 end_ns;
    u8 saddr[16];
    u8 daddr[16];
    u16 sport;
    u16 dport;
    u8 outcome;     // 0 established, 1 refused, 2 timeout, 3 failed
    u8 pad[3];
};

struct hist_key {
    u32 route_id;
    u8 cls;
    u8 pad[3];
};

struct hist_val {
    u64 b[NBUCKETS];
};

struct syn_val {
    u64 start_ns;
    u32 id;
    u32 rst;
};

struct vlan_hdr_ {
    __be16 tci;
    __be16 proto;
};

BPF_PERCPU_ARRAY(counters, u64, C_NCOUNTERS);
BPF_PERCPU_ARRAY(scratch, struct http_ev, 1);
BPF_PERCPU_ARRAY(hzero, struct hist_val, 1);
// [0]: the filter. 0 (as loaded) and 1: only watched endpoints are reported; 2: every
// endpoint. Closed until userspace opens it, so nothing unwatched slips in at load time.
BPF_ARRAY(config, u32, 4);
BPF_TABLE("lru_hash", struct flow_key, struct http_ev, flows, FLOW_ENTRIES);
BPF_HASH(watched, struct watch_key, struct watch_val, WATCH_ENTRIES);
BPF_HASH(flow_route, struct flow_key, u32, ROUTE_ENTRIES);
BPF_PERCPU_HASH(hist, struct hist_key, struct hist_val, HIST_ENTRIES);
BPF_HASH(syns, u64, struct syn_val, 65536);
#ifdef USE_PERF
BPF_PERF_OUTPUT(events);
#else
BPF_RINGBUF_OUTPUT(events, RING_PAGES);
#endif

static __always_inline void cnt(u32 i) {
    u64 *p = counters.lookup(&i);
    if (p)
        *p += 1;
}

#define FILTER_OFF 2

static __always_inline int filtering(void) {
    u32 z = 0;
    u32 *f = config.lookup(&z);
    return !(f && *f == FILTER_OFF);
}

static __always_inline struct watch_val *watch_lookup(const u8 *ip, u16 port) {
    struct watch_key wk = {};
    __builtin_memcpy(wk.ip, ip, 16);
    wk.port = port;
    return watched.lookup(&wk);
}

static __always_inline u32 log2_u64(u64 v) {
    u32 r = 0;
    if (v >> 32) { v >>= 32; r += 32; }
    if (v >> 16) { v >>= 16; r += 16; }
    if (v >> 8) { v >>= 8; r += 8; }
    if (v >> 4) { v >>= 4; r += 4; }
    if (v >> 2) { v >>= 2; r += 2; }
    if (v >> 1) { r += 1; }
    return r;
}

static __always_inline void hist_add(u32 route_id, u16 status, u64 ns) {
    struct hist_key hk = {};
    hk.route_id = route_id;
    hk.cls = (status >= 100 && status <= 599) ? status / 100 : 0;
    u64 us = ns / 1000;
    u32 b = us ? log2_u64(us) + 1 : 0;
    if (b > NBUCKETS - 1)
        b = NBUCKETS - 1;
    struct hist_val *hv = hist.lookup(&hk);
    if (!hv) {
        u32 z = 0;
        struct hist_val *zero = hzero.lookup(&z);
        if (!zero)
            return;
        if (hist.update(&hk, zero) < 0) {
            cnt(C_MAP_FULL);
            return;
        }
        hv = hist.lookup(&hk);
        if (!hv)
            return;
    }
    hv->b[b & (NBUCKETS - 1)] += 1;
}

static __always_inline int output(void *ctx, void *rec, u32 size) {
#ifdef USE_PERF
    return events.perf_submit(ctx, rec, size);
#else
    // No wakeup per record: the reader polls on a timer (a wakeup per event costs the
    // traffic a context switch on a busy box).
    return events.ringbuf_output(rec, size, BPF_RB_NO_WAKEUP);
#endif
}

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

// Method id (index in events.METHODS) and the length of "METHOD ", or 0.
static __always_inline u32 method_of(const u8 *h, u32 *mlen) {
    if (h[0] == 'G' && h[1] == 'E' && h[2] == 'T' && h[3] == ' ') { *mlen = 4; return 1; }
    if (h[0] == 'P' && h[1] == 'O' && h[2] == 'S' && h[3] == 'T' && h[4] == ' ') { *mlen = 5; return 2; }
    if (h[0] == 'P' && h[1] == 'U' && h[2] == 'T' && h[3] == ' ') { *mlen = 4; return 3; }
    if (h[0] == 'D' && h[1] == 'E' && h[2] == 'L' && h[3] == 'E' && h[4] == 'T' && h[5] == 'E'
        && h[6] == ' ') { *mlen = 7; return 4; }
    if (h[0] == 'P' && h[1] == 'A' && h[2] == 'T' && h[3] == 'C' && h[4] == 'H' && h[5] == ' ') {
        *mlen = 6; return 5; }
    if (h[0] == 'H' && h[1] == 'E' && h[2] == 'A' && h[3] == 'D' && h[4] == ' ') { *mlen = 5; return 6; }
    if (h[0] == 'O' && h[1] == 'P' && h[2] == 'T' && h[3] == 'I' && h[4] == 'O' && h[5] == 'N'
        && h[6] == 'S' && h[7] == ' ') { *mlen = 8; return 7; }
    return 0;
}

// "HTTP/1.x NNN" followed by ' ' or '\r': the status, else 0.
static __always_inline u32 status_of(const u8 *h) {
    if (!(h[0] == 'H' && h[1] == 'T' && h[2] == 'T' && h[3] == 'P' && h[4] == '/' && h[5] == '1'
          && h[6] == '.' && (h[7] == '0' || h[7] == '1') && h[8] == ' '))
        return 0;
    if (!(IS_DIGIT(h[9]) && IS_DIGIT(h[10]) && IS_DIGIT(h[11]) && (h[12] == ' ' || h[12] == '\r')))
        return 0;
    if (h[9] < '1' || h[9] > '5')
        return 0;
    return (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
}

static __always_inline void reverse(struct flow_key *rk, const struct flow_key *k) {
    __builtin_memcpy(rk->saddr, k->daddr, 16);
    __builtin_memcpy(rk->daddr, k->saddr, 16);
    rk->sport = k->dport;
    rk->dport = k->sport;
}

// A FIN or RST: the connection's done flow entry (either direction) is not needed again.
// A connection's entry has one orientation (client to server), so a hit ends the search.
static __always_inline void forget_done(struct flow_key *k) {
    struct http_ev *v = flows.lookup(k);
    if (v) {
        if (v->end_ns)
            flows.delete(k);
        return;
    }
    struct flow_key rk = {};
    reverse(&rk, k);
    v = flows.lookup(&rk);
    if (v && v->end_ns)
        flows.delete(&rk);
}

static __always_inline int on_response(struct xdp_md *ctx, struct flow_key *k, u32 status,
                                       u32 fin) {
    if (filtering() && !watch_lookup(k->saddr, k->sport)) {
        cnt(C_FILTERED);
        return XDP_PASS;
    }
    cnt(C_RESPONSES);
    struct flow_key rk = {};
    reverse(&rk, k);
    struct http_ev *v = flows.lookup(&rk);
    if (!v || v->end_ns) {
        cnt(C_UNPAIRED);
        return XDP_PASS;
    }
    u64 now = bpf_ktime_get_ns();
    v->end_ns = now;
    v->status = status;
    hist_add(v->route_id, status, now - v->start_ns);
    cnt(C_PAIRED);
    if (output(ctx, v, sizeof(*v)) < 0)
        cnt(C_RING_DROPS);
    if (fin)
        flows.delete(&rk);
    return XDP_PASS;
}

static __always_inline int on_request(struct xdp_md *ctx, struct flow_key *k, struct http_ev *s,
                                      u32 method, u32 mlen, u32 poff, u32 plen, u32 seq) {
    struct watch_val *w = watch_lookup(k->daddr, k->dport);
    if (!w && filtering()) {
        cnt(C_FILTERED);
        return XDP_PASS;
    }
    // The head: as much of the payload as fits (bounded for the verifier).
    u32 n = plen;
    if (n > HEAD_MAX)
        n = HEAD_MAX;
    n -= 1;
    asm volatile("" : "+r"(n));
    n &= HEAD_MAX - 1;
    n += 1;
    if (bpf_xdp_load_bytes(ctx, poff, s->head, n) < 0)
        return XDP_PASS;
    // n is precise now (a helper's size argument): reload it from memory so that the
    // comparisons below do not split the verifier's states by its range.
    s->head_len = n;
    n = *(volatile u16 *)&s->head_len;

    u32 h = 0x811C9DC5;
    u32 i = 0, found = 0, bad = 0;
    for (i = 0; i < PATH_MAX_; i++) {
        u32 idx = mlen + i;
        if (idx >= n)
            break;
        u8 c = s->head[idx & (HEAD_MAX - 1)];
        if (c == ' ') {
            found = 1;
            break;
        }
        if (c < 0x21 || c == 0x7f) {
            bad = 1;
            break;
        }
        h ^= c;
        h *= 0x01000193;
    }
    // Through the map value and back: the verifier then sees an unknown length instead of
    // 256 different constants, so the code below is verified once, not once per exit.
    s->path_len = i;
    s->path_hash = h;
    s->method = found | (bad << 1);
    u32 plen_path = *(volatile u16 *)&s->path_len;
    u32 fb = *(volatile u8 *)&s->method;
    found = fb & 1;
    bad = fb & 2;
    if (plen_path > PATH_MAX_)
        return XDP_PASS;
    h = *(volatile u32 *)&s->path_hash;
    u8 flags = 0;
    if (bad || (found && plen_path == 0)) {
        cnt(C_NON_HTTP);
        return XDP_PASS;
    }
    if (found) {
        // " HTTP/1." must follow the path.
        u32 e = mlen + plen_path;
        if (e + 8 >= n) {
            cnt(C_INCOMPLETE);
            return XDP_PASS;
        }
        if (!(s->head[(e + 1) & (HEAD_MAX - 1)] == 'H' && s->head[(e + 2) & (HEAD_MAX - 1)] == 'T'
              && s->head[(e + 3) & (HEAD_MAX - 1)] == 'T' && s->head[(e + 4) & (HEAD_MAX - 1)] == 'P'
              && s->head[(e + 5) & (HEAD_MAX - 1)] == '/' && s->head[(e + 6) & (HEAD_MAX - 1)] == '1'
              && s->head[(e + 7) & (HEAD_MAX - 1)] == '.')) {
            cnt(C_NON_HTTP);
            return XDP_PASS;
        }
    } else if (plen_path >= PATH_MAX_) {
        flags |= F_TRUNCATED;
    } else {
        // The payload ended inside the request line.
        cnt(C_INCOMPLETE);
        return XDP_PASS;
    }

    struct http_ev *slot = flows.lookup(k);
    struct http_ev *old = slot;
    if (old && old->end_ns)
        old = 0;    // done: absent, but its slot is reused below
    else if (old) {
        if (old->seq == seq) {
            cnt(C_RETRANSMITS);
            return XDP_PASS;
        }
        cnt(C_OVERWRITTEN);
    }
    u32 route_id = 0;
    u32 *r = flow_route.lookup(k);
    if (r)
        route_id = *r;
    else if (w)
        route_id = w->id | ROUTE_FROM_WATCH;
    if (w)
        flags |= (w->flags & F_LISTENER) ? F_LISTENER : F_WATCHED;

    s->type = REC_HTTP;
    s->route_id = route_id;
    s->start_ns = bpf_ktime_get_ns();
    s->end_ns = 0;
    __builtin_memcpy(s->saddr, k->saddr, 16);
    __builtin_memcpy(s->daddr, k->daddr, 16);
    s->sport = k->sport;
    s->dport = k->dport;
    s->seq = seq;
    s->path_hash = h;
    s->status = 0;
    s->method = method;
    s->flags = flags;
    s->path_off = mlen;
    s->path_len = plen_path;
    s->head_len = n;
    s->pad = 0;
    // In place when the flow has an entry (pending or done), else a new one.
    if (slot)
        __builtin_memcpy(slot, s, sizeof(*s));
    else if (flows.update(k, s) < 0)
        cnt(C_MAP_FULL);
    cnt(C_REQUESTS);
    if (flags & F_TRUNCATED)
        cnt(C_TRUNCATED);
    return XDP_PASS;
}

int xdp_observer(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    cnt(C_PACKETS);

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_PASS;
    u16 proto = eth->h_proto;
    u32 off = sizeof(*eth);
    if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr_ *vh = data + off;
        if ((void *)(vh + 1) > data_end)
            return XDP_PASS;
        proto = vh->proto;
        off += sizeof(*vh);
    }

    struct flow_key k = {};
    u32 l4_len = 0;
    if (proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = data + off;
        if ((void *)(ip + 1) > data_end)
            return XDP_PASS;
        if (ip->protocol != IPPROTO_TCP)
            return XDP_PASS;
        if (ip->frag_off & bpf_htons(0x3fff))
            return XDP_PASS;
        u32 ihl = ip->ihl * 4;
        u32 tot = bpf_ntohs(ip->tot_len);
        if (ihl < 20 || tot < ihl)
            return XDP_PASS;
        l4_len = tot - ihl;
        k.saddr[10] = 0xff;
        k.saddr[11] = 0xff;
        k.daddr[10] = 0xff;
        k.daddr[11] = 0xff;
        __builtin_memcpy(&k.saddr[12], &ip->saddr, 4);
        __builtin_memcpy(&k.daddr[12], &ip->daddr, 4);
        off += ihl;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = data + off;
        if ((void *)(ip6 + 1) > data_end)
            return XDP_PASS;
        if (ip6->nexthdr != IPPROTO_TCP)
            return XDP_PASS;
        l4_len = bpf_ntohs(ip6->payload_len);
        __builtin_memcpy(k.saddr, &ip6->saddr, 16);
        __builtin_memcpy(k.daddr, &ip6->daddr, 16);
        off += sizeof(*ip6);
    } else {
        return XDP_PASS;
    }

    struct tcphdr *th = data + off;
    if ((void *)(th + 1) > data_end)
        return XDP_PASS;
    cnt(C_TCP);
    u32 doff = th->doff * 4;
    if (doff < 20 || doff > l4_len)
        return XDP_PASS;
    u32 plen = l4_len - doff;
    k.sport = bpf_ntohs(th->source);
    k.dport = bpf_ntohs(th->dest);
    u32 fin = th->fin | th->rst;
    if (fin)
        forget_done(&k);
    if (plen < MIN_PAYLOAD)
        return XDP_PASS;
    u32 poff = off + doff;
    u32 seq = bpf_ntohl(th->seq);

    u32 z = 0;
    struct http_ev *s = scratch.lookup(&z);
    if (!s)
        return XDP_PASS;
    if (bpf_xdp_load_bytes(ctx, poff, s->head, MIN_PAYLOAD) < 0)
        return XDP_PASS;
    u32 status = status_of(s->head);
    if (status)
        return on_response(ctx, &k, status, fin);
    u32 mlen = 0;
    u32 method = method_of(s->head, &mlen);
    if (method)
        return on_request(ctx, &k, s, method, mlen, poff, plen, seq);
    cnt(C_NON_HTTP);
    return XDP_PASS;
}

// ---- connects: sock:inet_sock_set_state + tcp:tcp_receive_reset ----

#define TCP_ESTABLISHED_ 1
#define TCP_SYN_SENT_ 2
#define TCP_CLOSE_ 7

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    if (args->newstate == TCP_SYN_SENT_) {
        struct watch_key wk = {};
        bpf_probe_read_kernel(wk.ip, 16, args->daddr_v6);
        wk.port = args->dport;
        struct watch_val *w = watched.lookup(&wk);
        if (!w && filtering())
            return 0;
        struct syn_val sv = {};
        sv.start_ns = bpf_ktime_get_ns();
        sv.id = w ? w->id : 0;
        if (syns.update(&sk, &sv) < 0)
            cnt(C_MAP_FULL);
        return 0;
    }
    if (args->oldstate != TCP_SYN_SENT_)
        return 0;
    struct syn_val *sv = syns.lookup(&sk);
    if (!sv)
        return 0;
    struct conn_ev ev = {};
    ev.type = REC_CONNECT;
    ev.id = sv->id;
    ev.start_ns = sv->start_ns;
    ev.end_ns = bpf_ktime_get_ns();
    bpf_probe_read_kernel(ev.saddr, 16, args->saddr_v6);
    bpf_probe_read_kernel(ev.daddr, 16, args->daddr_v6);
    ev.sport = args->sport;
    ev.dport = args->dport;
    if (args->newstate == TCP_ESTABLISHED_) {
        ev.outcome = 0;
    } else if (args->newstate == TCP_CLOSE_) {
        ev.outcome = sv->rst ? 1 : 2;
        cnt(C_CONNECT_FAILURES);
    } else {
        ev.outcome = 3;
        cnt(C_CONNECT_FAILURES);
    }
    syns.delete(&sk);
    cnt(C_CONNECTS);
    if (output(args, &ev, sizeof(ev)) < 0)
        cnt(C_RING_DROPS);
    return 0;
}

TRACEPOINT_PROBE(tcp, tcp_receive_reset) {
    u64 sk = (u64)args->skaddr;
    struct syn_val *sv = syns.lookup(&sk);
    if (sv)
        sv->rst = 1;
    return 0;
}
