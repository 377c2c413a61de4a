// SPDX-License-Identifier: GPL-2.0
/*
 * kshark's TLS plaintext: uprobes on OpenSSL's SSL_write, SSL_write_ex, SSL_read and
 * SSL_read_ex (entry and return), and a raw tracepoint on sys_enter.
 *
 * - At a call's entry its arguments are kept per thread (ACTIVE): the SSL*, the buffer,
 *   and for the _ex forms where the byte count will be written.
 * - The socket: OpenSSL's structs differ between versions, so the fd is not read from
 *   them. A read or write system call made by the thread while it is inside the call is
 *   the socket's (sys_enter's first argument); it is kept per SSL* (SSL_FD) for calls
 *   that need no system call (a record already buffered).
 * - At the return, the bytes the call moved (its return value, or *written / *readbytes
 *   for the _ex forms) are copied from the buffer into the ring buffer, in chunks of
 *   CHUNK bytes: a call larger than one event is chunked, not dropped (up to MAX_CHUNKS;
 *   beyond it, counted as truncated).
 * - Each direction of each SSL* counts the bytes it moved (OFFSETS), and every event says
 *   where its bytes start in that count: what a full ring lost is a gap user space sees
 *   (the stream's parsers resynchronise after it), not bytes silently run together.
 * - User space is woken at once for a connection's first call (it looks the socket up in
 *   /proc while it is surely open), and in batches after that.
 * - Every outcome is counted in STATS (per CPU): events, ring full, truncated, calls
 *   whose entry was not seen (missed), calls with no fd known.
 *
 * Go's crypto/tls is hooked too (below: go_write, go_read, go_read_ret).
 *
 * Only UAPI headers and libbpf's bpf_helpers.h / bpf_tracing.h.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define CHUNK 16384                 /* power of two */
#define MAX_CHUNKS 64               /* 1 MiB in one call */
#define RINGBUF_BYTES (16 << 20)

enum { ST_EVENTS, ST_RING_FULL, ST_TRUNCATED, ST_MISSED, ST_NO_FD, ST_MAX };
enum { DIR_WRITE = 0, DIR_READ = 1 };
enum { F_LAST = 1, F_BIND = 2 };

struct tls_hdr {                    /* mirrored by #[repr(C)] TlsHdr in tls.rs */
    __u64 ts_ns;                    /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
    __u64 ssl;                      /* the SSL* (tells connections of one process apart) */
    __u32 pid;                      /* the process (tgid) */
    __u32 tid;
    __s32 fd;                       /* -1: not known */
    __u32 len;                      /* bytes the call moved */
    __u32 offset;                   /* where this chunk starts */
    __u32 cap_len;                  /* bytes in this chunk */
    __u64 stream_off;               /* where the call's first byte is in its direction */
    __u8  dir;                      /* DIR_WRITE: the process sent; DIR_READ: it received */
    __u8  flags;                    /* F_LAST on the call's last chunk; F_BIND: no data, the
                                       fd (and socket) of an SSL* whose calls had none */
    __u8  family;                   /* 2, 10: the socket's addresses below; 0: none */
    __u8  pad;
    __u16 sport;                    /* host order: the process's end */
    __u16 dport;                    /* host order: the other end */
    __u8  saddr[16];                /* IPv4 in the first 4 bytes */
    __u8  daddr[16];
};

struct scratch {
    struct tls_hdr h;
    __u8 data[CHUNK];
};

struct call {
    __u64 ssl;
    __u64 buf;
    __u64 count_ptr;                /* the _ex forms: size_t *written / *readbytes */
    __s32 fd;
    __u8  dir;
    __u8  ex;
    __u8  pad[2];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, RINGBUF_BYTES);
} EVENTS SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct scratch);
} SCRATCH SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);             /* pid_tgid */
    __type(value, struct call);
} ACTIVE SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);             /* (tgid << 32) ^ SSL* */
    __type(value, __s32);
} SSL_FD SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 131072);
    __type(key, __u64);             /* ssl_key ^ direction */
    __type(value, __u64);           /* bytes moved so far */
} OFFSETS SEC(".maps");

/*
 * Libraries that do their own socket I/O around OpenSSL (gRPC's C core: SSL_write into a
 * memory BIO, then sendmsg; recvmsg, then SSL_read out of one) make no system call inside
 * SSL_read or SSL_write. For the processes user space marks (TRACKED: those with a hooked
 * OpenSSL), the thread's last read-type fd is kept (LAST_READ) and names an SSL_read's
 * socket; an SSL_write's is the thread's next write-type call (PENDING_W), sent as an
 * F_BIND event that user space replays the held calls with.
 */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);             /* tgid */
    __type(value, __u8);
} TRACKED SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);             /* pid_tgid */
    __type(value, __s32);
} LAST_READ SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);             /* pid_tgid */
    __type(value, __u64);           /* the SSL* */
} PENDING_W SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, ST_MAX);
    __type(key, __u32);
    __type(value, __u64);
} STATS SEC(".maps");

/* per process: what was lost (ST_RING_FULL .. ST_NO_FD), for the status per pod */
struct proc_counts {
    __u64 n[8];                     /* indexed by ST_*, masked to 8 for the verifier */
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);             /* tgid */
    __type(value, struct proc_counts);
} PROC_STATS SEC(".maps");

static __always_inline void count(__u32 which, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&STATS, &which);
    if (v)
        *v += n;
    if (which == ST_EVENTS || which >= ST_MAX)
        return;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct proc_counts *p = bpf_map_lookup_elem(&PROC_STATS, &tgid);
    if (!p) {
        struct proc_counts zero = {};
        bpf_map_update_elem(&PROC_STATS, &tgid, &zero, BPF_NOEXIST);
        p = bpf_map_lookup_elem(&PROC_STATS, &tgid);
        if (!p)
            return;
    }
    __sync_fetch_and_add(&p->n[which & 7], n);
}

static __always_inline __u64 ssl_key(__u64 pid_tgid, __u64 ssl)
{
    return ((pid_tgid >> 32) << 32) ^ ssl;
}

/* ex: 0 for SSL_read/SSL_write (the count is the return value), else which argument is
 * the count pointer (4: the _ex forms and the internal functions they wrap; 5: OpenSSL
 * 3.2's ssl_write_internal, which takes flags before it) */
static __always_inline int enter(struct pt_regs *ctx, __u8 dir, __u8 ex)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call c = {};
    c.ssl = (__u64)PT_REGS_PARM1(ctx);
    c.buf = (__u64)PT_REGS_PARM2(ctx);
    c.count_ptr = ex == 5 ? (__u64)PT_REGS_PARM5(ctx) : ex ? (__u64)PT_REGS_PARM4(ctx) : 0;
    c.fd = -1;
    c.dir = dir;
    c.ex = ex;
    bpf_map_update_elem(&ACTIVE, &id, &c, BPF_ANY);
    return 0;
}

/*
 * The socket of an fd, read from the kernel's own structures at each call (the task's fd table -> the file -> its socket -> the sock's addresses),
 * so that a connection closed before user space reads the event is still named. The
 * structs are the kernel's, cut to the fields read; their offsets are relocated from the
 * kernel's BTF when the program is loaded (CO-RE, `preserve_access_index`).
 */
struct files_struct;
struct fdtable;
struct file;
struct sock;
struct task_struct {
    struct files_struct *files;
} __attribute__((preserve_access_index));
struct files_struct {
    struct fdtable *fdt;
} __attribute__((preserve_access_index));
struct fdtable {
    unsigned int max_fds;
    struct file **fd;
} __attribute__((preserve_access_index));
struct file {
    void *private_data;
} __attribute__((preserve_access_index));
struct socket {
    struct sock *sk;
} __attribute__((preserve_access_index));
struct sock_common {
    __be32 skc_daddr;
    __be32 skc_rcv_saddr;
    __be16 skc_dport;
    __u16 skc_num;
    unsigned short skc_family;
    struct in6_addr skc_v6_daddr;
    struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));
struct sock {
    struct sock_common __sk_common;
} __attribute__((preserve_access_index));

static __always_inline void sock_of(__s32 fd, struct tls_hdr *h)
{
    h->family = 0;
    if (fd < 0)
        return;
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    struct files_struct *files = 0;
    struct fdtable *fdt = 0;
    struct file **fds = 0;
    struct file *f = 0;
    struct socket *so = 0;
    struct sock *sk = 0;
    unsigned int max = 0;
    if (bpf_probe_read_kernel(&files, sizeof(files), &t->files) < 0 || !files)
        return;
    if (bpf_probe_read_kernel(&fdt, sizeof(fdt), &files->fdt) < 0 || !fdt)
        return;
    if (bpf_probe_read_kernel(&max, sizeof(max), &fdt->max_fds) < 0 || (unsigned int)fd >= max)
        return;
    if (bpf_probe_read_kernel(&fds, sizeof(fds), &fdt->fd) < 0 || !fds)
        return;
    if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) < 0 || !f)
        return;
    if (bpf_probe_read_kernel(&so, sizeof(so), &f->private_data) < 0 || !so)
        return;
    if (bpf_probe_read_kernel(&sk, sizeof(sk), &so->sk) < 0 || !sk)
        return;
    unsigned short family = 0;
    __u16 num = 0;
    __be16 dport = 0;
    bpf_probe_read_kernel(&family, sizeof(family), &sk->__sk_common.skc_family);
    bpf_probe_read_kernel(&num, sizeof(num), &sk->__sk_common.skc_num);
    bpf_probe_read_kernel(&dport, sizeof(dport), &sk->__sk_common.skc_dport);
    if (num == 0 || dport == 0)
        return;
    if (family == 2) {
        bpf_probe_read_kernel(h->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
        bpf_probe_read_kernel(h->daddr, 4, &sk->__sk_common.skc_daddr);
    } else if (family == 10) {
        bpf_probe_read_kernel(h->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
        bpf_probe_read_kernel(h->daddr, 16, &sk->__sk_common.skc_v6_daddr);
    } else {
        return;
    }
    h->family = (__u8)family;
    h->sport = num;
    h->dport = __builtin_bswap16(dport);
}

/* Copies n bytes at buf, moved by connection `conn` of the calling process in direction
 * dir over fd (-1: not known), into the ring in chunks. */
static __always_inline void emit(__u64 id, __u64 conn, __u64 buf, __u64 n, __s32 fd, __u8 dir)
{
    __u64 key = ssl_key(id, conn);
    __s32 *known = bpf_map_lookup_elem(&SSL_FD, &key);
    /* user space drains the ring every few ms; it is woken only for a connection's first
     * call (a wake-up per call cost more than the rest of the work at 100,000 calls/s) */
    __u64 wake = known ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
    if (fd < 0) {
        if (known)
            fd = *known;
    } else if (!known || *known != fd) {
        bpf_map_update_elem(&SSL_FD, &key, &fd, BPF_ANY);
    }
    __u64 okey = key ^ ((__u64)dir << 63);
    __u64 start = 0;
    __u64 *moved = bpf_map_lookup_elem(&OFFSETS, &okey);
    if (moved)
        start = *moved;
    __u64 next = start + n;
    bpf_map_update_elem(&OFFSETS, &okey, &next, BPF_ANY);
    if (fd < 0)
        count(ST_NO_FD, 1);
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&SCRATCH, &zero);
    if (!s)
        return;
    s->h.ts_ns = bpf_ktime_get_ns();
    s->h.ssl = conn;
    s->h.pid = id >> 32;
    s->h.tid = (__u32)id;
    s->h.fd = fd;
    s->h.len = n > 0xffffffff ? 0xffffffff : (__u32)n;
    s->h.dir = dir;
    s->h.stream_off = start;
    /* the socket's addresses, at every call: an SSL* and an fd number are both reused
     * for the next connection (malloc, the fd table), the socket's ends are not */
    sock_of(fd, &s->h);
    for (int i = 0; i < MAX_CHUNKS; i++) {
        __u64 off = (__u64)i * CHUNK;
        if (off >= n)
            break;
        __u64 cap = n - off;
        if (cap > CHUNK)
            cap = CHUNK;
        s->h.offset = (__u32)off;
        s->h.cap_len = (__u32)cap;
        s->h.flags = (off + cap >= n) ? F_LAST : 0;
        if (bpf_probe_read_user(s->data, cap, (void *)(buf + off)) < 0)
            break;
        if (bpf_ringbuf_output(&EVENTS, s, sizeof(s->h) + cap, wake) < 0) {
            count(ST_RING_FULL, 1);
            break;
        }
        count(ST_EVENTS, 1);
        if (i == MAX_CHUNKS - 1 && off + cap < n)
            count(ST_TRUNCATED, 1);
    }
}

static __always_inline int leave(struct pt_regs *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct call *c = bpf_map_lookup_elem(&ACTIVE, &id);
    if (!c) {
        count(ST_MISSED, 1);
        return 0;
    }
    /* the functions return an int: the register's upper half is not part of it (a -1
     * read as a long would be 4 GiB of "data") */
    int ret = (int)PT_REGS_RC(ctx);
    __u64 n = 0;
    if (c->ex) {
        /* the _ex forms return 1, the internal functions a positive value */
        if (ret > 0 && c->count_ptr)
            bpf_probe_read_user(&n, sizeof(n), (void *)c->count_ptr);
    } else if (ret > 0) {
        n = (__u64)ret;
    }
    if (n > 0) {
        __s32 fd = c->fd;
        if (fd < 0) {
            __u64 key = ssl_key(id, c->ssl);
            if (!bpf_map_lookup_elem(&SSL_FD, &key)) {
                if (c->dir == DIR_READ) {
                    __s32 *last = bpf_map_lookup_elem(&LAST_READ, &id);
                    if (last)
                        fd = *last;
                } else {
                    __u64 ssl = c->ssl;
                    bpf_map_update_elem(&PENDING_W, &id, &ssl, BPF_ANY);
                }
            }
        }
        emit(id, c->ssl, c->buf, n, fd, c->dir);
    }
    bpf_map_delete_elem(&ACTIVE, &id);
    return 0;
}

SEC("uprobe")
int ssl_write(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 0); }

SEC("uprobe")
int ssl_write_ex(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 4); }

SEC("uprobe")
int ssl_write_ex5(struct pt_regs *ctx) { return enter(ctx, DIR_WRITE, 5); }

SEC("uprobe")
int ssl_read(struct pt_regs *ctx) { return enter(ctx, DIR_READ, 0); }

SEC("uprobe")
int ssl_read_ex(struct pt_regs *ctx) { return enter(ctx, DIR_READ, 4); }

SEC("uretprobe")
int ssl_ret(struct pt_regs *ctx) { return leave(ctx); }

/* read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg (x86_64 numbers) */
static __always_inline int io_syscall(long nr)
{
    return nr == 0 || nr == 1 || nr == 19 || nr == 20 || nr == 44 || nr == 45 || nr == 46 || nr == 47;
}

static __always_inline int read_syscall(long nr)
{
    return nr == 0 || nr == 19 || nr == 45 || nr == 47;
}

SEC("raw_tracepoint/sys_enter")
int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
    long nr = (long)ctx->args[1];
    if (!io_syscall(nr))
        return 0;
    __u64 id = bpf_get_current_pid_tgid();
    struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
    unsigned long di = 0;
    struct call *c = bpf_map_lookup_elem(&ACTIVE, &id);
    if (c) {
        if (c->fd < 0) {
            bpf_probe_read_kernel(&di, sizeof(di), &regs->rdi);
            c->fd = (__s32)di;
        }
        return 0;
    }
    __u32 tgid = id >> 32;
    if (!bpf_map_lookup_elem(&TRACKED, &tgid))
        return 0;
    bpf_probe_read_kernel(&di, sizeof(di), &regs->rdi);
    __s32 fd = (__s32)di;
    if (read_syscall(nr)) {
        bpf_map_update_elem(&LAST_READ, &id, &fd, BPF_ANY);
        return 0;
    }
    __u64 *ssl = bpf_map_lookup_elem(&PENDING_W, &id);
    if (!ssl)
        return 0;
    __u64 conn = *ssl;
    bpf_map_delete_elem(&PENDING_W, &id);
    __u64 key = ssl_key(id, conn);
    bpf_map_update_elem(&SSL_FD, &key, &fd, BPF_ANY);
    __u32 zero = 0;
    struct scratch *s = bpf_map_lookup_elem(&SCRATCH, &zero);
    if (!s)
        return 0;
    s->h.ts_ns = bpf_ktime_get_ns();
    s->h.ssl = conn;
    s->h.pid = tgid;
    s->h.tid = (__u32)id;
    s->h.fd = fd;
    s->h.len = 0;
    s->h.offset = 0;
    s->h.cap_len = 0;
    s->h.stream_off = 0;
    s->h.dir = DIR_WRITE;
    s->h.flags = F_BIND;
    sock_of(fd, &s->h);
    bpf_ringbuf_output(&EVENTS, &s->h, sizeof(s->h), BPF_RB_FORCE_WAKEUP);
    return 0;
}

/*
 * Go's crypto/tls: (*Conn).Write and (*Conn).Read, register ABI (Go 1.17 and later):
 * the receiver in RAX, the slice's pointer and length in RBX and RCX, the current
 * goroutine in R14; the results (n, err) come back in RAX, RBX, RCX. Write's bytes are
 * all written unless it fails: they are taken at its entry. Read's are taken at each of
 * its RET instructions (user space finds them by disassembling the function: a
 * uretprobe rewrites the return address on the goroutine's stack, which Go moves), its
 * arguments kept per goroutine meanwhile (a goroutine may come back on another thread).
 * The fd: tls.Conn.conn (a net.Conn interface; its data word at +8) -> *net.TCPConn ->
 * its *netFD at +0 -> poll.FD.Sysfd at +16.
 */
struct go_key {
    __u64 tgid;
    __u64 g;
};

struct go_call {
    __u64 conn;
    __u64 buf;
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct go_key);
    __type(value, struct go_call);
} GO_ACTIVE SEC(".maps");

static __always_inline __s32 go_fd(__u64 conn)
{
    __u64 data = 0, netfd = 0;
    __s64 fd = -1;
    if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + 8)) < 0 || !data)
        return -1;
    if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)data) < 0 || !netfd)
        return -1;
    if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(netfd + 16)) < 0)
        return -1;
    return fd >= 0 && fd < (1 << 24) ? (__s32)fd : -1;
}

SEC("uprobe")
int go_write(struct pt_regs *ctx)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u64 conn = ctx->rax, buf = ctx->rbx, n = ctx->rcx;
    if (n > 0 && (__s64)n > 0)
        emit(id, conn, buf, n, go_fd(conn), DIR_WRITE);
    return 0;
}

SEC("uprobe")
int go_read(struct pt_regs *ctx)
{
    struct go_key k = { bpf_get_current_pid_tgid() >> 32, ctx->r14 };
    struct go_call c = { ctx->rax, ctx->rbx };
    bpf_map_update_elem(&GO_ACTIVE, &k, &c, BPF_ANY);
    return 0;
}

/* The end of a Go Read: `n` bytes at `buf` read by the goroutine's Read begun at go_read. */
static __always_inline int go_read_done(struct pt_regs *ctx, __u64 buf_or_0, __s64 n)
{
    __u64 id = bpf_get_current_pid_tgid();
    struct go_key k = { id >> 32, ctx->r14 };
    struct go_call *c = bpf_map_lookup_elem(&GO_ACTIVE, &k);
    if (!c) {
        count(ST_MISSED, 1);
        return 0;
    }
    if (n > 0)
        emit(id, c->conn, buf_or_0 ? buf_or_0 : c->buf, (__u64)n, go_fd(c->conn), DIR_READ);
    bpf_map_delete_elem(&GO_ACTIVE, &k);
    return 0;
}

/* At a RET of Read: n in RAX, the bytes in the buffer it was given. */
SEC("uprobe")
int go_read_ret(struct pt_regs *ctx) { return go_read_done(ctx, 0, (__s64)ctx->rax); }

/* Where Read copies the record's plaintext out (runtime.memmove, called from the inlined
 * bytes.Reader.Read): the source in RBX, the length in RCX. Used instead of the RET
 * probes when user space found that one call: a call is emulated by the kernel, a RET
 * single-stepped (a debug trap per Read). */
SEC("uprobe")
int go_read_copy(struct pt_regs *ctx) { return go_read_done(ctx, ctx->rbx, (__s64)ctx->rcx); }

char LICENSE[] SEC("license") = "GPL";
