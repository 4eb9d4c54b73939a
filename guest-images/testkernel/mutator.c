/* vmscope test kernel: the list mutator every cpu runs, and its journal.
 *
 * Each op takes the list's spinlock, makes seq odd, takes the next global op number,
 * inserts or deletes one node (Linux list_add / list_del semantics, poisoning deleted
 * nodes), writes the journal entry with the list's resulting order, records last_op,
 * and makes seq even again. So for a paused guest: a list whose seq is even equals
 * the `order` of the journal entry numbered its last_op; an odd seq is a writer
 * caught mid-update.
 *
 * tk.rate=N paces the ops of all cpus together to N per second: one shared "next op
 * may start" time on the TSC, advanced by one period per op with a cmpxchg, so the
 * total holds whichever cpus happen to run. While it waits, and after each op, a cpu
 * does the page writes tk.dirty has due (dirty.c). */
#include "tk.h"

struct tk_list tk_lists[TK_MAX_LISTS];
struct tk_journal_entry tk_journal[TK_JOURNAL_ENTRIES];
volatile u64 tk_ops = 1;
struct tk_node *tk_nodes;
u64 tk_nr_lists;
u64 tk_tsc_hz;             /* 0: not calibrated */
u64 tk_rate;               /* ops per second across all cpus, 0 = unlimited */
volatile u64 tk_rate_next; /* TSC time at which the next op may start */
static u64 rate_period;    /* TSC ticks per op; 0 = unlimited */
static u64 tsc_boot;       /* cpu 0's TSC when pacing began */

static struct tk_node *node_of(struct list_head *p)
{
	return (struct tk_node *)p; /* link is the first member */
}

static void list_add_between(struct list_head *n, struct list_head *prev, struct list_head *next)
{
	next->prev = n;
	n->next = next;
	n->prev = prev;
	*(struct list_head *volatile *)&prev->next = n;
}

static void list_del(struct list_head *e)
{
	e->next->prev = e->prev;
	*(struct list_head *volatile *)&e->prev->next = e->next;
	e->next = LIST_POISON1;
	e->prev = LIST_POISON2;
}

void mutator_init(struct tk_node *nodes, u64 nr_lists)
{
	tk_nodes = nodes;
	tk_nr_lists = nr_lists;
	for (u64 l = 0; l < nr_lists; l++) {
		struct tk_list *list = &tk_lists[l];
		list->id = l;
		list->head.next = &list->head;
		list->head.prev = &list->head;
		for (u64 i = 0; i < TK_NODES_PER_LIST; i++) {
			struct tk_node *n = &nodes[l * TK_NODES_PER_LIST + i];
			memset(n, 0, sizeof *n);
			n->id = i;
			n->list = l;
			n->link.next = LIST_POISON1;
			n->link.prev = LIST_POISON2;
		}
	}
}

static void lock(struct tk_list *l)
{
	while (xchg64(&l->lock, 1))
		while (*(volatile u64 *)&l->lock)
			barrier();
}

static void unlock(struct tk_list *l)
{
	barrier();
	*(volatile u64 *)&l->lock = 0; /* a plain store releases on x86 */
}

static void journal(struct tk_list *l, u64 op_no, u8 op, u8 node, u8 prev, u32 cpu)
{
	struct tk_journal_entry *e = &tk_journal[op_no & (TK_JOURNAL_ENTRIES - 1)];
	*(volatile u64 *)&e->op_no = 0;
	barrier();
	e->op = op;
	e->list = (u8)l->id;
	e->node = node;
	e->prev = prev;
	e->len = (u8)l->len;
	e->cpu = (u8)cpu;
	u32 i = 0;
	for (struct list_head *p = l->head.next; p != &l->head && i < TK_MAX_LEN; p = p->next)
		e->order[i++] = (u8)node_of(p)->id;
	for (; i < TK_MAX_LEN; i++)
		e->order[i] = TK_NO_NODE;
	barrier();
	*(volatile u64 *)&e->op_no = op_no;
}

static u64 xorshift(u64 *s)
{
	u64 x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void one_op(u32 cpu, u64 r)
{
	struct tk_list *l = &tk_lists[r % tk_nr_lists];
	struct tk_node *base = &tk_nodes[l->id * TK_NODES_PER_LIST];
	lock(l);
	*(volatile u64 *)&l->seq = l->seq + 1;
	barrier();
	u64 op_no = xadd64(&tk_ops, 1);
	int insert = l->len == 0 || (l->len < TK_MAX_LEN && ((r >> 8) & 1));
	u64 k = (r >> 24) % (l->len + (insert ? 1 : 0));
	struct list_head *p = &l->head;
	if (insert) {
		struct tk_node *n = 0;
		for (u64 i = 0; i < TK_NODES_PER_LIST && !n; i++) {
			struct tk_node *c = &base[((r >> 16) + i) % TK_NODES_PER_LIST];
			if (!c->in_list)
				n = c;
		}
		for (u64 i = 0; i < k; i++)
			p = p->next;
		n->value = op_no;
		n->cpu = cpu;
		n->in_list = 1;
		list_add_between(&n->link, p, p->next);
		l->len++;
		journal(l, op_no, TK_OP_INSERT, (u8)n->id, p == &l->head ? TK_NO_NODE : (u8)node_of(p)->id, cpu);
	} else {
		for (u64 i = 0; i <= k; i++)
			p = p->next;
		struct tk_node *n = node_of(p);
		list_del(&n->link);
		n->in_list = 0;
		l->len--;
		journal(l, op_no, TK_OP_DELETE, (u8)n->id, TK_NO_NODE, cpu);
	}
	l->last_op = op_no;
	barrier();
	*(volatile u64 *)&l->seq = l->seq + 1;
	unlock(l);
	tk_percpu[cpu].ops++;
}

void rate_init(u64 tsc_hz, u64 rate)
{
	tk_tsc_hz = tsc_hz;
	if (rate && !tsc_hz) {
		kprintf("tk: tk.rate=%d ignored: the TSC is not calibrated\n", rate);
		rate = 0;
	}
	tk_rate = rate;
	if (rate) {
		rate_period = tsc_hz / rate ? tsc_hz / rate : 1;
		tsc_boot = rdtsc();
		tk_rate_next = tsc_boot;
		kprintf("tk: tk.rate %d ops/s across all cpus: one op every %d TSC ticks\n", rate, rate_period);
	}
}

/* Waits for this op's slot. A backlog of more than a second (the vCPUs were not
 * scheduled) is dropped rather than made up in a burst. Signed differences, so a
 * small TSC skew between cpus only delays an op. */
static void pace(void)
{
	for (;;) {
		u64 next = tk_rate_next, now = rdtsc();
		if ((i64)(now - next) < 0) {
			dirty_poll();
			continue;
		}
		u64 from = now - next > tk_tsc_hz ? now : next;
		if (cmpxchg64(&tk_rate_next, next, from + rate_period))
			return;
	}
}

void mutator_run(u32 cpu)
{
	u64 exit_after = cmdline_u64("tk.exit_after", 0);
	u64 delay = cmdline_u64("tk.delay", 0);
	u64 rng = 0x9e3779b97f4a7c15UL * (cpu + 1);
	tk_percpu[cpu].online = 1;
	xadd64(&tk_cpus_online, 1);
	kprintf("tk: cpu %d runs the mutator\n", (u64)cpu);
	if (rate_period && (i64)(rdtsc() - tsc_boot) < 0)
		kprintf("tk: cpu %d: its TSC is behind cpu 0's; tk.rate pacing may stall\n", (u64)cpu);
	for (;;) {
		*(volatile u64 *)&tk_percpu[cpu].iterations = tk_percpu[cpu].iterations + 1;
		if (rate_period)
			pace();
		one_op(cpu, xorshift(&rng));
		if (exit_after && tk_ops > exit_after) {
			kprintf("tk: %d ops done, resetting\n", tk_ops - 1);
			reset_machine();
		}
		for (volatile u64 i = 0; i < delay; i++)
			;
		dirty_poll();
	}
}
