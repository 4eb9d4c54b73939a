/* vmscope test kernel: boot, page tables, manifest, SMP bring-up. */
#include <stdarg.h>
#include "tk.h"

#define GIB (1UL << 30)
#define MIB2 (1UL << 21)
#define PAGE 4096UL

struct tk_percpu *tk_percpu;
volatile u64 tk_cpus_online;
u64 tk_final_cr3; /* read by ap_entry64 */

static u64 boot_params_pa;
static char cmdline[2048];
static u64 ram_end;
static u64 alloc_next = TK_ALLOC_START;
static u64 *pml4;
static u64 phys_base; /* how physical memory is reached: 0 (identity) or DIRECT_MAP */
static struct tk_mapping maps[TK_MAX_MAPPINGS];
static u32 nr_maps;
static struct tk_symbol syms[TK_MAX_SYMBOLS];
static u32 nr_syms;
static u32 apic_ids[TK_MAX_CPUS];
static u32 nr_cpus = 1;

/* ---- console ---- */

static void putc(char c)
{
	if (c == '\n')
		outb(0x3f8, '\r');
	outb(0x3f8, (u8)c);
}

static void puts_(const char *s)
{
	while (*s)
		putc(*s++);
}

static void putnum(u64 v, u32 base, int width)
{
	char buf[24];
	int i = 0;
	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i < width)
		buf[i++] = '0';
	while (i)
		putc(buf[--i]);
}

static volatile u64 console_lock;

void kprintf(const char *fmt, ...)
{
	va_list ap;
	while (xchg64(&console_lock, 1))
		while (console_lock)
			barrier();
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			putc(*fmt);
			continue;
		}
		fmt++;
		int width = 0;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		switch (*fmt) {
		case 'd': putnum(va_arg(ap, u64), 10, width); break;
		case 'x': putnum(va_arg(ap, u64), 16, width); break;
		case 's': puts_(va_arg(ap, const char *)); break;
		default: putc(*fmt); break;
		}
	}
	va_end(ap);
	barrier();
	console_lock = 0;
}

void *memset(void *d, int c, u64 n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, u64 n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

static void strlcpy_(char *d, const char *s, u64 n)
{
	u64 i = 0;
	for (; i + 1 < n && s[i]; i++)
		d[i] = s[i];
	d[i] = 0;
}

static void *phys(u64 pa)
{
	return (void *)(pa + phys_base);
}

/* Value of `key=` on the command line, or `def`. Decimal, or hex with 0x. */
u64 cmdline_u64(const char *key, u64 def)
{
	const char *p = cmdline;
	while (*p) {
		const char *k = key, *q = p;
		while (*k && *q == *k) {
			k++;
			q++;
		}
		if (!*k && *q == '=' && (p == cmdline || p[-1] == ' ')) {
			q++;
			u64 v = 0, base = 10;
			if (q[0] == '0' && q[1] == 'x') {
				base = 16;
				q += 2;
			}
			for (;; q++) {
				u64 d;
				if (*q >= '0' && *q <= '9') d = (u64)(*q - '0');
				else if (base == 16 && *q >= 'a' && *q <= 'f') d = (u64)(*q - 'a' + 10);
				else break;
				v = v * base + d;
			}
			return v;
		}
		p++;
	}
	return def;
}

void reset_machine(void)
{
	outb(0x64, 0xfe); /* i8042: pulse the reset line */
	for (;;)
		__asm__ volatile("cli; hlt");
}

struct exc_frame {
	u64 r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax, vector, error, rip, cs, rflags;
};

void exception(struct exc_frame *f)
{
	u64 cr2;
	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	kprintf("tk: exception %d error %x at rip %x cr2 %x\n", f->vector, f->error, f->rip, cr2);
	outb(0x501, 99); /* debug exit: the VMM ends with status 99 */
	reset_machine();
}

/* ---- page tables ---- */

static u64 alloc_page(void)
{
	u64 pa = alloc_next;
	alloc_next += PAGE;
	if (alloc_next > ram_end) {
		kprintf("tk: out of memory\n");
		reset_machine();
	}
	memset(phys(pa), 0, PAGE);
	return pa;
}

/* The entry for `va` at `level` (4 = PML4 ... 1 = PT), creating tables above it. */
static u64 *pte_for(u64 va, int level)
{
	u64 *table = pml4;
	for (int l = 4; l > level; l--) {
		u64 *e = &table[(va >> (12 + 9 * (l - 1))) & 511];
		if (!(*e & PTE_P))
			*e = alloc_page() | PTE_P | PTE_W;
		table = phys(*e & 0x000ffffffffff000UL);
	}
	return &table[(va >> (12 + 9 * (level - 1))) & 511];
}

static void map_range(const char *name, u64 va, u64 pa, u64 size, u64 page_size, u64 flags)
{
	int level = page_size == GIB ? 3 : page_size == MIB2 ? 2 : 1;
	u64 leaf = flags | PTE_P | (level > 1 ? PTE_PS : 0);
	for (u64 off = 0; off < size; off += page_size)
		*pte_for(va + off, level) = (pa + off) | leaf;
	if (nr_maps < TK_MAX_MAPPINGS) {
		struct tk_mapping *m = &maps[nr_maps++];
		m->va = va;
		m->pa = pa;
		m->size = size;
		m->page_size = page_size;
		m->flags = leaf & ~PTE_PS;
		strlcpy_(m->name, name, sizeof m->name);
	}
}

static void add_symbol(const char *name, u64 va, u64 size)
{
	if (nr_syms < TK_MAX_SYMBOLS) {
		strlcpy_(syms[nr_syms].name, name, sizeof syms[0].name);
		syms[nr_syms].va = va;
		syms[nr_syms++].size = size;
	}
}

/* Direct map of [0, ram_end): the first 2 MiB with 4 KiB pages, 1 GiB pages for every
 * whole GiB above the first, 2 MiB pages for the rest — as Linux does with gbpages. */
static void map_direct(void)
{
	const u64 rw = PTE_W | PTE_G | PTE_NX;
	map_range("direct-4k", DIRECT_MAP, 0, MIB2, PAGE, rw);
	u64 first_gib_end = ram_end < GIB ? ram_end : GIB;
	map_range("direct-2m", DIRECT_MAP + MIB2, MIB2, first_gib_end - MIB2, MIB2, rw);
	u64 whole = ram_end & ~(GIB - 1);
	if (whole > GIB)
		map_range("direct-1g", DIRECT_MAP + GIB, GIB, whole - GIB, GIB, rw);
	if (ram_end > GIB && ram_end > whole)
		map_range("direct-2m-tail", DIRECT_MAP + whole, whole, ram_end - whole, MIB2, rw);
}

static void build_page_tables(void)
{
	pml4 = phys(alloc_page());
	map_direct();
	u64 kend = ((u64)_end - KVMA + MIB2 - 1) & ~(MIB2 - 1);
	map_range("kernel", KVMA, 0, kend, MIB2, PTE_W | PTE_G);
	map_range("apic", APIC_FIXMAP, LAPIC_PA, PAGE, PAGE, PTE_W | PTE_PCD | PTE_NX);
}

/* Node pages in the vmalloc area: 4 KiB pages whose frames are handed out in a
 * scrambled order, so virtual neighbours are not physical neighbours. */
static struct tk_node *alloc_nodes(u64 nr_lists)
{
	u64 bytes = nr_lists * TK_NODES_PER_LIST * sizeof(struct tk_node);
	u64 pages = (bytes + PAGE - 1) / PAGE;
	u64 base = alloc_next;
	for (u64 i = 0; i < pages; i++)
		alloc_page();
	for (u64 i = 0; i < pages; i++) {
		u64 frame = (i * 5 + 3) % pages;
		if (pages % 5 == 0)
			frame = pages - 1 - i;
		map_range("vmalloc-nodes", VMALLOC_BASE + i * PAGE, base + frame * PAGE, PAGE, PAGE,
			  PTE_W | PTE_G | PTE_NX);
	}
	return (struct tk_node *)VMALLOC_BASE;
}

/* ---- boot_params (Linux zero page) ---- */

static void read_boot_params(void)
{
	u8 *bp = phys(boot_params_pa);
	u8 n = bp[0x1e8];
	for (u32 i = 0; i < n && i < 128; i++) {
		u8 *e = bp + 0x2d0 + 20 * i;
		u64 addr = *(u64 *)e, size = *(u64 *)(e + 8);
		u32 type = *(u32 *)(e + 16);
		/* The direct map covers the RAM region that starts at or below 1 MiB and
		 * everything contiguous with it below 4 GiB. */
		if (type == 1 && addr <= 0x100000 && addr + size > ram_end)
			ram_end = addr + size;
		if (type == 1 && addr == ram_end && addr + size <= 0x100000000UL)
			ram_end = addr + size;
	}
	u64 cmd = *(u32 *)(bp + 0x228);
	if (cmd)
		strlcpy_(cmdline, (const char *)phys(cmd), sizeof cmdline);
	ram_end &= ~(MIB2 - 1);
}

/* ---- SMP ---- */

static u32 sum8(const u8 *p, u64 n)
{
	u32 s = 0;
	while (n--)
		s += *p++;
	return s & 0xff;
}

static void find_cpus(void)
{
	u64 ranges[2][2] = { { 0x9fc00, 0xa0000 }, { 0xf0000, 0x100000 } };
	for (int r = 0; r < 2; r++) {
		for (u64 a = ranges[r][0]; a < ranges[r][1]; a += 16) {
			const u8 *f = phys(a);
			if (f[0] != '_' || f[1] != 'M' || f[2] != 'P' || f[3] != '_' || sum8(f, 16))
				continue;
			u64 cfg = *(const u32 *)(f + 4);
			const u8 *c = phys(cfg);
			if (c[0] != 'P' || c[1] != 'C' || c[2] != 'M' || c[3] != 'P')
				continue;
			u32 count = *(const u16 *)(c + 34);
			const u8 *e = c + 44;
			nr_cpus = 0;
			for (u32 i = 0; i < count; i++) {
				if (e[0] == 0) {
					if ((e[3] & 1) && nr_cpus < TK_MAX_CPUS)
						apic_ids[nr_cpus++] = e[1];
					e += 20;
				} else {
					e += 8;
				}
			}
			if (!nr_cpus)
				nr_cpus = 1;
			return;
		}
	}
}

static void lapic_write(u32 reg, u32 v)
{
	*(volatile u32 *)(APIC_FIXMAP + reg) = v;
}

static u32 lapic_read(u32 reg)
{
	return *(volatile u32 *)(APIC_FIXMAP + reg);
}

static void spin(u64 n)
{
	for (volatile u64 i = 0; i < n; i++)
		;
}

static void start_aps(void)
{
	u32 self = lapic_read(0x20) >> 24;
	memcpy(phys(TK_TRAMPOLINE_PA), trampoline_start, (u64)(trampoline_end - trampoline_start));
	u64 off_cr3 = (u64)(tr_cr3 - trampoline_start), off_stack = (u64)(tr_stack - trampoline_start),
	    off_cpu = (u64)(tr_cpu - trampoline_start);
	*(u64 *)phys(TK_TRAMPOLINE_PA + off_cr3) = (u64)early_pml4 - KVMA;
	for (u32 cpu = 0; cpu < nr_cpus; cpu++) {
		if (apic_ids[cpu] == self) {
			tk_percpu[cpu].apic_id = self;
			continue;
		}
		u64 stack = alloc_page();
		alloc_page();
		alloc_page();
		alloc_page();
		tk_percpu[cpu].rsp = DIRECT_MAP + stack + 4 * PAGE;
		tk_percpu[cpu].apic_id = apic_ids[cpu];
		*(u64 *)phys(TK_TRAMPOLINE_PA + off_stack) = tk_percpu[cpu].rsp;
		*(u64 *)phys(TK_TRAMPOLINE_PA + off_cpu) = cpu;
		u64 before = tk_cpus_online;
		lapic_write(0x310, apic_ids[cpu] << 24);
		lapic_write(0x300, 0x4500); /* INIT */
		spin(1000);
		for (int i = 0; i < 2 && tk_cpus_online == before; i++) {
			lapic_write(0x310, apic_ids[cpu] << 24);
			lapic_write(0x300, 0x4600 | (TK_TRAMPOLINE_PA >> 12)); /* STARTUP */
			for (u64 t = 0; t < 2000000 && tk_cpus_online == before; t++)
				barrier();
		}
		if (tk_cpus_online == before)
			kprintf("tk: cpu %d (apic %d) did not start\n", cpu, apic_ids[cpu]);
	}
}

/* ---- IDT ---- */

extern u64 exc_table[32];
static u64 idt[64] __attribute__((aligned(16)));

static void load_idt(void)
{
	if (!idt[1]) {
		for (int v = 0; v < 32; v++) {
			u64 h = exc_table[v];
			idt[2 * v] = (h & 0xffff) | (0x08UL << 16) | (0x8eUL << 40) | ((h >> 16 & 0xffff) << 48);
			idt[2 * v + 1] = h >> 32;
		}
	}
	struct {
		u16 limit;
		u64 base;
	} __attribute__((packed)) d = { sizeof idt - 1, (u64)idt };
	__asm__ volatile("lidt %0" : : "m"(d));
}

static void enter_final_tables(void)
{
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(0xc0000080));
	lo |= 1 << 11; /* EFER.NXE */
	__asm__ volatile("wrmsr" : : "a"(lo), "d"(hi), "c"(0xc0000080));
	u64 cr3 = (u64)pml4 - phys_base;
	tk_final_cr3 = cr3;
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
}

void ap_main(u64 cpu)
{
	enter_final_tables();
	load_idt();
	mutator_run((u32)cpu);
}

/* ---- TSC ---- */

#define PIT_HZ 1193182UL
#define CAL_MS 50UL

/* TSC ticks in CAL_MS, timed against PIT channel 2 counting down in mode 0 (gate on
 * through port 0x61, terminal count seen on its bit 5), as Linux's pit_calibrate_tsc
 * does. `*err` gets the uncertainty in ticks: how long the count's start and its end
 * could have been from where they were read (a vCPU descheduled there). 0 if the PIT
 * never fires or the TSC runs backwards. */
static u64 calibrate_once(u64 *err)
{
	u64 count = PIT_HZ * CAL_MS / 1000;
	u8 p61 = inb(0x61);
	outb(0x61, (u8)((p61 & ~0x02) | 0x01)); /* gate 2 high, speaker off */
	outb(0x43, 0xb0);                       /* channel 2, lobyte/hibyte, mode 0 */
	outb(0x42, (u8)count);
	u64 s0 = rdtsc();
	outb(0x42, (u8)(count >> 8)); /* counting starts with the high byte */
	u64 s1 = rdtsc(), last = s1, before = s1, after = s1;
	int backwards = 0, fired = 0;
	for (u64 polls = 0; polls < 10000000 && last - s1 < (1UL << 36); polls++) {
		before = last;
		fired = inb(0x61) & 0x20;
		after = rdtsc();
		backwards |= after < last;
		last = after;
		if (fired)
			break;
	}
	outb(0x61, p61);
	if (!fired || backwards) {
		kprintf("tk: TSC calibration failed (PIT fired %d, TSC backwards %d)\n", (u64)!!fired, (u64)backwards);
		return 0;
	}
	*err = (s1 - s0) + (after - before);
	return (before + after) / 2 - (s0 + s1) / 2;
}

/* TSC ticks per second: the most certain of up to twenty calibrations (one is
 * usually enough; on a loaded host a descheduled vCPU spoils many), if it is
 * within 0.1% and plausible (100 MHz .. 20 GHz); else 0. */
static u64 calibrate_tsc(void)
{
	u64 best = 0, best_err = ~0UL;
	for (int i = 0; i < 20 && best_err * 1000 > best; i++) {
		u64 err = 0, ticks = calibrate_once(&err);
		if (ticks && err < best_err) {
			best = ticks;
			best_err = err;
		}
	}
	u64 hz = best * 1000 / CAL_MS, err_hz = best_err * 1000 / CAL_MS;
	kprintf("tk: TSC %d kHz (+- %d kHz)\n", hz / 1000, err_hz / 1000);
	if (!best || best_err * 1000 > best || hz < 100000000UL || hz > 20000000000UL) {
		kprintf("tk: TSC calibration is not usable\n");
		return 0;
	}
	return hz;
}

/* ---- manifest ---- */

static void write_manifest(struct tk_node *nodes)
{
	struct tk_manifest *m = phys(TK_MANIFEST_PA);
	u64 maps_pa = TK_MANIFEST_PA + sizeof *m;
	u64 syms_pa = maps_pa + nr_maps * sizeof(struct tk_mapping);
	memset(m, 0, sizeof *m);
	memcpy(phys(maps_pa), maps, nr_maps * sizeof(struct tk_mapping));
	memcpy(phys(syms_pa), syms, nr_syms * sizeof(struct tk_symbol));
	m->version = TK_VERSION;
	m->size = (u32)(syms_pa + nr_syms * sizeof(struct tk_symbol) - TK_MANIFEST_PA);
	m->cr3 = (u64)pml4 - phys_base;
	m->ram_end = ram_end;
	m->nr_cpus = nr_cpus;
	m->nr_mappings = nr_maps;
	m->nr_symbols = nr_syms;
	m->nr_lists = (u32)tk_nr_lists;
	m->mappings_pa = maps_pa;
	m->symbols_pa = syms_pa;
	m->lists_va = (u64)tk_lists;
	m->nodes_va = (u64)nodes;
	m->journal_va = (u64)tk_journal;
	m->journal_entries = TK_JOURNAL_ENTRIES;
	m->ops_va = (u64)&tk_ops;
	m->percpu_va = (u64)tk_percpu;
	m->cpus_online_va = (u64)&tk_cpus_online;
	m->node_size = sizeof(struct tk_node);
	m->nodes_per_list = TK_NODES_PER_LIST;
	m->max_len = TK_MAX_LEN;
	m->kernel_pa = (u64)_text - KVMA;
	m->kernel_va = (u64)_text;
	m->boot_params_pa = boot_params_pa;
	m->tsc_hz = tk_tsc_hz;
	m->rate = tk_rate;
	m->dirty_va = (u64)&tk_dirty;
	barrier();
	*(volatile u64 *)&m->magic = TK_MAGIC;
}

void kmain(u64 bp_pa)
{
	boot_params_pa = bp_pa;
	kprintf("vmscope testkernel: booting\n");
	read_boot_params();
	if (ram_end < 64 * MIB2) {
		kprintf("tk: need at least 128 MiB of RAM, have %x\n", ram_end);
		reset_machine();
	}
	build_page_tables();
	u64 pcpu = alloc_page();
	alloc_page();
	tk_percpu = (struct tk_percpu *)(DIRECT_MAP + pcpu);
	u64 nr_lists = cmdline_u64("tk.lists", 8);
	if (nr_lists < 1 || nr_lists > TK_MAX_LISTS)
		nr_lists = 8;
	struct tk_node *nodes = alloc_nodes(nr_lists);
	enter_final_tables();
	phys_base = DIRECT_MAP;
	pml4 = (u64 *)((u64)pml4 + DIRECT_MAP);
	load_idt();
	find_cpus();
	if (cmdline_u64("tk.smp", 1) == 0)
		nr_cpus = 1;

	add_symbol("_text", (u64)_text, 0);
	add_symbol("_end", (u64)_end, 0);
	add_symbol("init_top_pgt", (u64)pml4, PAGE);
	add_symbol("tk_lists", (u64)tk_lists, sizeof tk_lists);
	add_symbol("tk_journal", (u64)tk_journal, sizeof tk_journal);
	add_symbol("tk_ops", (u64)&tk_ops, 8);
	add_symbol("tk_nodes", (u64)nodes, nr_lists * TK_NODES_PER_LIST * sizeof(struct tk_node));
	add_symbol("tk_percpu", (u64)tk_percpu, TK_MAX_CPUS * sizeof(struct tk_percpu));
	add_symbol("tk_cpus_online", (u64)&tk_cpus_online, 8);
	add_symbol("tk_rate_next", (u64)&tk_rate_next, 8);
	add_symbol("tk_dirty", (u64)&tk_dirty, sizeof tk_dirty);
	add_symbol("kmain", (u64)kmain, 0);
	add_symbol("mutator_run", (u64)mutator_run, 0);

	mutator_init(nodes, nr_lists);
	rate_init(calibrate_tsc(), cmdline_u64("tk.rate", 0));
	dirty_init(cmdline_u64("tk.dirty", 0), cmdline_u64("tk.dirty_mib", 0), ram_end);
	write_manifest(nodes);
	kprintf("tk: manifest at %x: %d mappings, %d lists, cr3 %x, ram %x, %d cpus\n", TK_MANIFEST_PA,
		(u64)nr_maps, nr_lists, (u64)pml4 - phys_base, ram_end, (u64)nr_cpus);
	if (cmdline_u64("tk.fault", 0))
		*(volatile u64 *)0xffffc8ffdead0000UL = 1; /* unmapped: #PF, exit status 99 */
	if (nr_cpus > 1)
		start_aps();
	mutator_run(0);
}
