/* vmscope test kernel: entry points, early page tables, GDT/IDT stubs, AP trampoline.
 *
 * The VMM enters _start_phys in 64-bit mode (Linux x86-64 boot protocol: paging on
 * with an identity map covering the kernel, %rsi = physical address of boot_params).
 * We run at our physical address until we load early_pml4, which maps both the
 * identity of the first GiB and the kernel at KVMA, then jump to the high alias. */

#define KVMA 0xffffffff80000000
#define TK_TRAMPOLINE_PA 0x8000
#define TR(sym) (TK_TRAMPOLINE_PA + (sym) - trampoline_start)

	.section .head.text, "ax"
	.code64
	.globl _start
_start:
	cli
	cld
	mov %rsi, %r15
	/* Running at the physical address: %rip-relative is physical here. */
	lea early_pml4(%rip), %rax
	mov %rax, %cr3
	movabs $1f, %rax
	jmp *%rax
1:
	lgdt gdt_desc(%rip)
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	lea boot_stack_top(%rip), %rsp
	pushq $0x08
	lea 2f(%rip), %rax
	pushq %rax
	lretq
2:
	mov %r15, %rdi
	call kmain
3:	hlt
	jmp 3b

/* APs arrive here from the trampoline, on early_pml4, in 64-bit mode at low addresses
 * until the jump. */
	.globl ap_entry64
ap_entry64:
	lgdt gdt_desc(%rip)
	mov TR(tr_stack), %rsp         /* read through the identity map ... */
	mov TR(tr_cpu), %rdi
	mov tk_final_cr3(%rip), %rax   /* ... before leaving it: the stack is in the direct map */
	mov %rax, %cr3
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	pushq $0x08
	lea 1f(%rip), %rax
	pushq %rax
	lretq
1:
	call ap_main
2:	hlt
	jmp 2b

/* Exception stubs: push a dummy error code where the CPU pushes none, then the
 * vector, and call exception(frame). */
	.text
.macro EXC vec
	.globl exc\vec
exc\vec:
	.if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
.endm
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC \v
	.endr
exc_common:
	push %rax
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	mov %rsp, %rdi
	and $-16, %rsp
	call exception
1:	hlt
	jmp 1b

	.section .rodata
	.balign 8
	.globl exc_table
exc_table:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc\v
	.endr

/* AP trampoline: copied to TK_TRAMPOLINE_PA; SIPI vector 0x08 starts it in real mode
 * at 0800:0000. Real -> protected -> long mode on early_pml4, then ap_entry64. */
	.balign 16
	.globl trampoline_start, trampoline_end, tr_cr3, tr_stack, tr_cpu
trampoline_start:
	.code16
	cli
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tr_gdt_desc - trampoline_start
	mov %cr0, %eax
	or $1, %eax
	mov %eax, %cr0
	ljmpl $0x08, $TR(tr_pm)
	.code32
tr_pm:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $0x20, %eax                 /* PAE */
	mov %eax, %cr4
	mov TR(tr_cr3), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx          /* EFER */
	rdmsr
	or $0x900, %eax                /* LME | NXE */
	wrmsr
	mov %cr0, %eax
	or $0x80000001, %eax           /* PG | PE */
	mov %eax, %cr0
	ljmp $0x18, $TR(tr_lm)
	.code64
tr_lm:
	movabs $ap_entry64, %rax
	jmp *%rax
	.balign 8
tr_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff /* 0x08: 32-bit code */
	.quad 0x00cf92000000ffff /* 0x10: data */
	.quad 0x00af9a000000ffff /* 0x18: 64-bit code */
tr_gdt_desc:
	.word 4 * 8 - 1
	.long TR(tr_gdt)
	.balign 8
tr_cr3:	.quad 0
tr_stack: .quad 0
tr_cpu:	.quad 0
trampoline_end:

/* The kernel's own GDT: null, 0x08 64-bit code, 0x10 data. */
	.balign 8
gdt:
	.quad 0
	.quad 0x00af9a000000ffff
	.quad 0x00cf92000000ffff
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

/* Early page tables: identity map and kernel map of the first GiB, 2 MiB pages. */
	.section .data.pgt, "aw"
	.balign 4096
	.globl early_pml4
early_pml4:
	.quad early_pdpt_low - KVMA + 3
	.fill 510, 8, 0
	.quad early_pdpt_high - KVMA + 3
early_pdpt_low:
	.quad early_pd - KVMA + 3
	.fill 511, 8, 0
early_pdpt_high:
	.fill 510, 8, 0
	.quad early_pd - KVMA + 3
	.quad 0
early_pd:
	.set i, 0
	.rept 512
	.quad (i << 21) + 0x83
	.set i, i + 1
	.endr

	.section .bss
	.balign 4096
boot_stack:
	.skip 16384
boot_stack_top:
