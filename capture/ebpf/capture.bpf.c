// SPDX-License-Identifier: GPL-2.0
/*
 * kshark's kernel side: a TC classifier (TCX or clsact, ingress and egress) that copies
 * the packets kshark targets into a BPF ring buffer.
 *
 * - Which packets: CONFIG[0] says whether to filter at all. When it does, a packet is
 *   copied when its source or destination address is in TARGETS. On a pod's host-side
 *   veth (IFMODE = VETH) what enters the host was sent by the pod and is copied; what
 *   leaves towards the pod is copied unless its sender is LOCAL (a pod whose own veth is
 *   attached here: the packet was copied where it left that pod), so each packet is seen
 *   once, and traffic from pods on other nodes is still seen. On loopback (IFMODE = LO)
 *   only egress is used, as every packet crosses lo twice.
 * - Large packets (GSO/GRO make them up to 64 KiB on veths) are copied in chunks of
 *   CHUNK bytes through a per-CPU scratch buffer: bpf_ringbuf_output takes a variable
 *   size, bpf_ringbuf_reserve does not. User space joins the chunks by (cpu, id).
 * - Wake-ups are batched: user space is woken only once WAKEUP_BYTES are queued, and
 *   drains on a short timer too, which keeps the per-packet cost low under load.
 * - Every outcome is counted in STATS (per CPU): copied, ring full, filtered out,
 *   truncated beyond MAX_CHUNKS, load errors.
 *
 * Only UAPI headers and libbpf's bpf_helpers.h: no vmlinux.h, no bpftool.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define CHUNK 16384                 /* power of two */
#define MAX_CHUNKS 32               /* 512 KiB: the largest GSO/BIG TCP super-packet */
#define RINGBUF_BYTES (32 << 20)
#ifndef WAKEUP_BYTES
#define WAKEUP_BYTES (1 << 20)
#endif

enum { ST_PACKETS, ST_RING_FULL, ST_FILTERED, ST_TRUNCATED, ST_LOAD_ERRORS, ST_BYTES, ST_MAX };
enum { IF_PLAIN = 0, IF_VETH = 1, IF_LO = 2 };
enum { F_LAST = 1 };

struct pkt_hdr {                    /* mirrored by #[repr(C)] PktHdr in ebpf.rs */
    __u64 ts_ns;                    /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
    __u32 ifindex;
    __u32 len;                      /* skb->len: the whole packet */
    __u32 offset;                   /* where this chunk starts in the packet */
    __u32 cap_len;                  /* bytes of data in this chunk */
    __u32 id;                       /* per-CPU packet number */
    __u16 cpu;
    __u8  dir;                      /* 0 ingress, 1 egress */
    __u8  flags;                    /* F_LAST on the packet's last chunk */
};

struct scratch {
    struct pkt_hdr h;
    __u8 data[CHUNK];
};

struct addr_key { __u8 a[16]; };    /* IPv6, or IPv4 as ::ffff:a.b.c.d */

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, RINGBUF_BYTES);
} EVENTS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, ST_MAX);
    __type(key, __u32);
    __type(value, __u64);
} STATS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} SCRATCH SEC(".maps");

struct {                            /* [0]: 1 = copy only packets of TARGETS */
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} CONFIG SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct addr_key);
    __type(value, __u8);
} TARGETS SEC(".maps");

struct {                            /* pods whose veth is attached on this node */
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, struct addr_key);
    __type(value, __u8);
} LOCAL SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);             /* ifindex */
    __type(value, __u32);           /* IF_* */
} IFMODE SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&STATS, &idx);
    if (v)
        *v += n;
}

static __always_inline int is_target(struct addr_key *k)
{
    return bpf_map_lookup_elem(&TARGETS, k) != 0;
}

/* Reads the addresses of an Ethernet frame carrying IPv4 or IPv6. 0 when it is neither. */
static __always_inline int addresses(struct __sk_buff *skb, struct addr_key *src, struct addr_key *dst)
{
    __u16 proto = skb->protocol;
    __builtin_memset(src, 0, sizeof(*src));
    __builtin_memset(dst, 0, sizeof(*dst));
    if (proto == bpf_htons(ETH_P_IP)) {
        __u32 a[2];
        if (bpf_skb_load_bytes(skb, ETH_HLEN + 12, a, 8) < 0)
            return 0;
        src->a[10] = 0xff; src->a[11] = 0xff;
        dst->a[10] = 0xff; dst->a[11] = 0xff;
        __builtin_memcpy(&src->a[12], &a[0], 4);
        __builtin_memcpy(&dst->a[12], &a[1], 4);
        return 1;
    }
    if (proto == bpf_htons(ETH_P_IPV6)) {
        if (bpf_skb_load_bytes(skb, ETH_HLEN + 8, src->a, 16) < 0)
            return 0;
        if (bpf_skb_load_bytes(skb, ETH_HLEN + 24, dst->a, 16) < 0)
            return 0;
        return 1;
    }
    return 0;
}

static __always_inline int wanted(struct __sk_buff *skb, __u8 dir)
{
    __u32 zero = 0, ifindex = skb->ifindex;
    __u32 *mode = bpf_map_lookup_elem(&IFMODE, &ifindex);
    __u32 m = mode ? *mode : IF_PLAIN;
    if (m == IF_LO && dir == 0)
        return 0;
    __u32 *filter = bpf_map_lookup_elem(&CONFIG, &zero);
    if (!filter || *filter == 0)
        return 1;
    struct addr_key src, dst;
    if (!addresses(skb, &src, &dst))
        return 0;
    if (m == IF_VETH) {
        /* ingress on the host side = sent by the pod; egress = to the pod */
        if (dir == 0)
            return is_target(&src);
        return is_target(&dst) && bpf_map_lookup_elem(&LOCAL, &src) == 0;
    }
    return is_target(&src) || is_target(&dst);
}

static __always_inline int capture(struct __sk_buff *skb, __u8 dir)
{
    if (!wanted(skb, dir)) {
        stat_add(ST_FILTERED, 1);
        return TC_ACT_OK;
    }
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&SCRATCH, &zero);
    __u64 *count = bpf_map_lookup_elem(&STATS, &zero);
    if (!s || !count)
        return TC_ACT_OK;
    __u32 len = skb->len;
    s->h.ts_ns = bpf_ktime_get_ns();
    s->h.ifindex = skb->ifindex;
    s->h.len = len;
    s->h.id = (__u32)*count;
    s->h.cpu = (__u16)bpf_get_smp_processor_id();
    s->h.dir = dir;
    *count += 1;
    stat_add(ST_BYTES, len);

    for (int i = 0; i < MAX_CHUNKS; i++) {
        __u32 off = i * CHUNK;
        if (off >= len)
            break;
        __u32 cap = len - off;
        if (cap > CHUNK)
            cap = CHUNK;
        /* the same value, in a form the verifier can bound: 1..CHUNK */
        cap = ((cap - 1) & (CHUNK - 1)) + 1;
        s->h.offset = off;
        s->h.flags = (off + cap >= len || i == MAX_CHUNKS - 1) ? F_LAST : 0;
        if (bpf_skb_load_bytes(skb, off, s->data, cap) < 0) {
            stat_add(ST_LOAD_ERRORS, 1);
            cap = 0;
            s->h.flags = F_LAST;
        }
        s->h.cap_len = cap;
        __u64 flags = 0;
        if (WAKEUP_BYTES > 0)
            flags = bpf_ringbuf_query(&EVENTS, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
                                                                                  : BPF_RB_NO_WAKEUP;
        __u32 size = sizeof(struct pkt_hdr) + cap;
        if (size > sizeof(struct scratch))
            size = sizeof(struct scratch);
        if (bpf_ringbuf_output(&EVENTS, s, size, flags) < 0) {
            stat_add(ST_RING_FULL, 1);
            break;
        }
        if (s->h.flags & F_LAST)
            break;
    }
    if (len > MAX_CHUNKS * CHUNK)
        stat_add(ST_TRUNCATED, 1);
    return TC_ACT_OK;                /* never interfere with traffic */
}

/* "classifier": aya-obj 0.3 (aya 0.14) does not know SEC("tc"). */
SEC("classifier")
int kshark_ingress(struct __sk_buff *skb) { return capture(skb, 0); }

SEC("classifier")
int kshark_egress(struct __sk_buff *skb) { return capture(skb, 1); }

char LICENSE[] SEC("license") = "GPL";
