/* vmscope test kernel: tk.dirty, a page writer with a set dirty rate.
 *
 * tk.dirty=N writes N MB/s of 4 KiB pages (N x 256 page writes a second, MB = MiB as
 * in `vmscope-workload dirty`), one 8-byte store per page, cycling through RAM from
 * TK_DIRTY_START (tk.dirty_mib=M: through M MiB of it; default: up to the end of the
 * direct map). So a live snapshot sees a known dirty rate, and the KVM dirty log can be
 * checked against what the guest says it wrote (struct tk_dirty, in the manifest).
 *
 * Pacing as tk.rate's: one shared schedule on the calibrated TSC that every cpu's
 * mutator loop polls, claiming each due write with a cmpxchg, so the total holds
 * whichever cpus run; a backlog over one second (the guest was not scheduled) is
 * dropped and counted, not written in a burst. */
#include "tk.h"

struct tk_dirty tk_dirty;
static u64 dirty_pages; /* pages in the span */

void dirty_init(u64 mb_per_s, u64 span_mib, u64 ram_end)
{
	if (!mb_per_s)
		return;
	if (!tk_tsc_hz) {
		kprintf("tk: tk.dirty=%d ignored: the TSC is not calibrated\n", mb_per_s);
		return;
	}
	u64 room = ram_end > TK_DIRTY_START ? ram_end - TK_DIRTY_START : 0;
	u64 span = span_mib && (span_mib << 20) < room ? span_mib << 20 : room;
	if (span < 4096) {
		kprintf("tk: tk.dirty ignored: no RAM above %x\n", TK_DIRTY_START);
		return;
	}
	tk_dirty.start_pa = TK_DIRTY_START;
	tk_dirty.span = span & ~4095UL;
	dirty_pages = tk_dirty.span / 4096;
	tk_dirty.pages_per_s = mb_per_s * 256;
	tk_dirty.period = tk_tsc_hz / tk_dirty.pages_per_s ? tk_tsc_hz / tk_dirty.pages_per_s : 1;
	tk_dirty.next = rdtsc();
	kprintf("tk: tk.dirty %d MB/s: one page every %d TSC ticks over %x..%x\n", mb_per_s, tk_dirty.period,
		tk_dirty.start_pa, tk_dirty.start_pa + tk_dirty.span);
}

/* Writes the pages that are due, at most 64 a call so list ops go on meanwhile.
 * Signed differences, so a small TSC skew between cpus only delays a write. */
void dirty_write_due(void)
{
	for (int i = 0; i < 64; i++) {
		u64 next = tk_dirty.next, now = rdtsc();
		if ((i64)(now - next) < 0)
			return;
		u64 from = now - next > tk_tsc_hz ? now : next;
		if (!cmpxchg64(&tk_dirty.next, next, from + tk_dirty.period))
			continue;
		if (from != next)
			xadd64(&tk_dirty.dropped, (now - next) / tk_dirty.period);
		u64 n = xadd64(&tk_dirty.written, 1);
		*(volatile u64 *)(DIRECT_MAP + tk_dirty.start_pa + (n % dirty_pages) * 4096) = n + 1;
	}
}
