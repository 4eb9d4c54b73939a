/* vmscope test kernel: shared types, constants and the manifest format.
 *
 * Everything a reader outside the guest needs is in struct tk_manifest, written at
 * the fixed guest-physical address TK_MANIFEST_PA. All fields are little-endian; all
 * structures have fixed sizes and no implicit padding (see the _Static_asserts). */
#ifndef TK_H
#define TK_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long i64;

/* Virtual layout, as in Linux x86-64 (Documentation/arch/x86/x86_64/mm.rst). */
#define KVMA 0xffffffff80000000UL        /* __START_KERNEL_map: kernel text -> phys 0 */
#define DIRECT_MAP 0xffff888000000000UL  /* page_offset_base without KASLR */
#define VMALLOC_BASE 0xffffc90000000000UL /* vmalloc_base without KASLR */
#define APIC_FIXMAP 0xffffffffff5fb000UL /* FIX_APIC_BASE slot of the fixmap */
#define LAPIC_PA 0xfee00000UL

/* Physical layout. */
#define TK_MANIFEST_PA 0x100000UL /* 1 MiB: the manifest, up to TK_MANIFEST_MAX bytes */
#define TK_MANIFEST_MAX 0x10000UL
#define TK_TRAMPOLINE_PA 0x8000UL /* AP real-mode entry: SIPI vector 0x08 */
#define TK_ALLOC_START 0x1000000UL /* 16 MiB: page tables, stacks, node pages */
#define TK_DIRTY_START 0x4000000UL /* 64 MiB: tk.dirty writes from here up; the kernel never allocates this high */

#define TK_MAGIC 0x31304b5443534d56UL /* the bytes "VMSCTK01" */
#define TK_VERSION 1

#define TK_MAX_CPUS 16
#define TK_MAX_LISTS 16
#define TK_NODES_PER_LIST 24 /* node ids 0..23 within a list */
#define TK_MAX_LEN 16        /* a list never holds more nodes than this */
#define TK_JOURNAL_ENTRIES 32768 /* a power of two */
#define TK_MAX_MAPPINGS 256
#define TK_MAX_SYMBOLS 32
#define TK_NO_NODE 0xff

/* Mapping flags in the manifest: the x86 PTE bits of the leaf entry. */
#define PTE_P (1UL << 0)
#define PTE_W (1UL << 1)
#define PTE_PCD (1UL << 4)
#define PTE_PS (1UL << 7)
#define PTE_G (1UL << 8)
#define PTE_NX (1UL << 63)

struct list_head {
	struct list_head *next, *prev;
};

#define LIST_POISON1 ((struct list_head *)0xdead000000000100UL)
#define LIST_POISON2 ((struct list_head *)0xdead000000000122UL)

/* One element of a list: 128 bytes, so a list's nodes spread over several pages. */
struct tk_node {
	struct list_head link; /* +0: next, +8: prev */
	u64 id;                /* +16: node id within its list, 0..TK_NODES_PER_LIST-1 */
	u64 list;              /* +24: index of the list it belongs to */
	u64 value;             /* +32: the op number that last inserted it */
	u64 cpu;               /* +40: the cpu that last inserted it */
	u64 in_list;           /* +48: 1 while linked */
	u64 pad[9];
};

/* A list head with its sequence counter (odd while a writer is inside). 64 bytes. */
struct tk_list {
	u64 seq;               /* +0 */
	u64 lock;              /* +8: spinlock, 0 free */
	u64 last_op;           /* +16: op number of the last completed op, 0 if none */
	u64 len;               /* +24 */
	struct list_head head; /* +32: next, +40: prev */
	u64 id;                /* +48 */
	u64 pad;
};

enum { TK_OP_INSERT = 1, TK_OP_DELETE = 2 };

/* One journal entry, 32 bytes, at slot op_no % TK_JOURNAL_ENTRIES. Written under the
 * list's lock while its seq is odd, op_no last, so an entry whose op_no matches is
 * complete. `order` is the list's content after the op: node ids, head to tail. */
struct tk_journal_entry {
	u64 op_no; /* +0: 1, 2, 3, ...; 0 = empty slot */
	u8 op;     /* +8: TK_OP_INSERT or TK_OP_DELETE */
	u8 list;   /* +9 */
	u8 node;   /* +10: the node inserted or deleted */
	u8 prev;   /* +11: insert: the node it went after (TK_NO_NODE = the head) */
	u8 len;    /* +12: list length after the op */
	u8 cpu;    /* +13 */
	u16 pad;
	u8 order[TK_MAX_LEN]; /* +16 */
};

/* Per-cpu state, 64 bytes each, in the direct map. */
struct tk_percpu {
	u64 iterations; /* +0: mutator loop count, increases while the cpu runs */
	u64 ops;        /* +8: ops done by this cpu */
	u64 apic_id;    /* +16 */
	u64 online;     /* +24: 1 once the cpu runs the mutator */
	u64 rsp;        /* +32: top of its stack (VA) */
	u64 pad[3];
};

/* tk.dirty: what the page writer was asked and what it did, 64 bytes. Page write n
 * (0, 1, ...) stores n + 1 in the first 8 bytes of page start_pa + (n % (span / 4096))
 * * 4096, so a reader can tell which write last touched a page. */
struct tk_dirty {
	u64 pages_per_s; /* +0: tk.dirty x 256 (MB/s of 4 KiB pages, MB = MiB); 0 = off */
	u64 start_pa;    /* +8: the first page written */
	u64 span;        /* +16: bytes cycled through from start_pa */
	u64 written;     /* +24: page writes claimed; a write follows its claim at once */
	u64 dropped;     /* +32: page writes skipped: a backlog over one second */
	u64 next;        /* +40: TSC time at which the next page write is due */
	u64 period;      /* +48: TSC ticks per page write */
	u64 pad;
};

struct tk_mapping {
	u64 va;
	u64 pa;
	u64 size;
	u64 page_size; /* 4096, 2 MiB or 1 GiB */
	u64 flags;     /* PTE_* bits of the leaf entries */
	char name[24];
};

struct tk_symbol {
	char name[24];
	u64 va;
	u64 size;
};

/* At TK_MANIFEST_PA. `magic` is written last: a reader that sees it sees the rest. */
struct tk_manifest {
	u64 magic;          /* +0 TK_MAGIC */
	u32 version;        /* +8 TK_VERSION */
	u32 size;           /* +12 bytes used from TK_MANIFEST_PA */
	u64 cr3;            /* +16 physical address of the PML4 (init_top_pgt) */
	u64 ram_end;        /* +24 end of the RAM the direct map covers */
	u32 nr_cpus;        /* +32 cpus the MP table lists */
	u32 nr_mappings;    /* +36 */
	u32 nr_symbols;     /* +40 */
	u32 nr_lists;       /* +44 */
	u64 mappings_pa;    /* +48 physical address of struct tk_mapping[nr_mappings] */
	u64 symbols_pa;     /* +56 physical address of struct tk_symbol[nr_symbols] */
	u64 lists_va;       /* +64 struct tk_list[nr_lists] */
	u64 nodes_va;       /* +72 struct tk_node[nr_lists][TK_NODES_PER_LIST] (vmalloc) */
	u64 journal_va;     /* +80 struct tk_journal_entry[journal_entries] */
	u64 journal_entries; /* +88 */
	u64 ops_va;         /* +96 u64: the next op number (ops done = value - 1) */
	u64 percpu_va;      /* +104 struct tk_percpu[TK_MAX_CPUS] */
	u64 cpus_online_va; /* +112 u64 */
	u64 node_size;      /* +120 sizeof(struct tk_node) */
	u64 nodes_per_list; /* +128 */
	u64 max_len;        /* +136 */
	u64 kernel_pa;      /* +144 physical load address of _text */
	u64 kernel_va;      /* +152 virtual address of _text */
	u64 boot_params_pa; /* +160 the zero page the VMM passed */
	/* Added after version 1's first layout, in what were reserved (zero) words: a
	 * reader that finds 0 has an older kernel. */
	u64 tsc_hz;         /* +168 TSC frequency calibrated against the PIT, 0 if that failed */
	u64 rate;           /* +176 tk.rate: list ops per second across all cpus, 0 = unlimited */
	u64 dirty_va;       /* +184 struct tk_dirty (tk.dirty's page writer) */
};

_Static_assert(sizeof(struct tk_node) == 128, "tk_node layout");
_Static_assert(sizeof(struct tk_list) == 64, "tk_list layout");
_Static_assert(sizeof(struct tk_journal_entry) == 32, "journal layout");
_Static_assert(sizeof(struct tk_percpu) == 64, "percpu layout");
_Static_assert(sizeof(struct tk_mapping) == 64, "mapping layout");
_Static_assert(sizeof(struct tk_dirty) == 64, "dirty layout");
_Static_assert(sizeof(struct tk_symbol) == 40, "symbol layout");
_Static_assert(sizeof(struct tk_manifest) == 192, "manifest layout");

/* main.c */
void kprintf(const char *fmt, ...);
void *memset(void *d, int c, u64 n);
void *memcpy(void *d, const void *s, u64 n);
u64 cmdline_u64(const char *key, u64 def);
void reset_machine(void);
extern struct tk_percpu *tk_percpu;
extern volatile u64 tk_cpus_online;

/* mutator.c */
extern struct tk_list tk_lists[TK_MAX_LISTS];
extern struct tk_journal_entry tk_journal[TK_JOURNAL_ENTRIES];
extern volatile u64 tk_ops;
extern struct tk_node *tk_nodes;
extern u64 tk_nr_lists;
extern u64 tk_tsc_hz;
extern u64 tk_rate;
extern volatile u64 tk_rate_next;
void mutator_init(struct tk_node *nodes, u64 nr_lists);
void rate_init(u64 tsc_hz, u64 rate);
void mutator_run(u32 cpu) __attribute__((noreturn));

/* dirty.c */
extern struct tk_dirty tk_dirty;
void dirty_init(u64 mb_per_s, u64 span_mib, u64 ram_end);
void dirty_write_due(void);

/* Makes the page writes tk.dirty has due; inline so that without tk.dirty the
 * mutator pays one compare per op, not a call (every instruction is emulated). */
static inline void dirty_poll(void)
{
	if (*(volatile u64 *)&tk_dirty.period)
		dirty_write_due();
}

/* head.S */
extern char _text[], _end[], trampoline_start[], trampoline_end[];
extern char tr_cr3[], tr_stack[], tr_cpu[];
extern u64 early_pml4[];

static inline void outb(u16 port, u8 v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline u8 inb(u16 port)
{
	u8 v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

static inline void barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

static inline u64 xchg64(volatile u64 *p, u64 v)
{
	__asm__ volatile("xchgq %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

/* Stores `new` if *p == old; returns whether it did. */
static inline int cmpxchg64(volatile u64 *p, u64 old, u64 new)
{
	u64 prev;
	__asm__ volatile("lock cmpxchgq %2, %1" : "=a"(prev), "+m"(*p) : "r"(new), "0"(old) : "memory");
	return prev == old;
}

static inline u64 xadd64(volatile u64 *p, u64 v)
{
	__asm__ volatile("lock xaddq %0, %1" : "+r"(v), "+m"(*p) : : "memory");
	return v;
}

#endif
