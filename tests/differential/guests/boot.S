# boot.S: the state QEMU's `virt` boot leaves for a `-bios none -kernel` program: every
# register at entry (a0 = hartid, a1 = the device tree address for 8 MiB of RAM, a2 = the
# fw_dynamic block, t0 = the entry point, the rest 0), the boot ROM (the 10 words of the reset
# vector at 0x1000 and the 6 fw_dynamic_info words at 0x1028) and the trap CSRs after reset.
# mstatus.MPP is masked (README: detfuzz reads 3, QEMU 0 after reset).
# Self-contained: it runs unchanged on `qemu-system-riscv32 -M virt -bios none -kernel` and on
# detfuzz. Everything is printed on UART0; the harness compares the output byte for byte,
# section by section ("== name" lines), and the finisher status.
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ CLINT_MSIP, 0x2000000
    .equ CLINT_MTIMECMP, 0x2004000
    .equ CLINT_MTIME, 0x200bff8

    # SHOW tag, reg: print "tag=xxxxxxxx\n". Preserves every register (reg must not be sp).
    .macro SHOW tag, reg
    addi    sp, sp, -16
    sw      ra, 0(sp)
    sw      a0, 4(sp)
    sw      \reg, 8(sp)
    la      a0, .Ltag\@
    call    puts
    lw      a0, 8(sp)
    call    puthex
    lw      a0, 4(sp)
    lw      ra, 0(sp)
    addi    sp, sp, 16
    .pushsection .rodata
.Ltag\@: .asciz "\tag="
    .popsection
    .endm

    # SECTION name: print "== name\n". Preserves every register.
    .macro SECTION name
    addi    sp, sp, -16
    sw      ra, 0(sp)
    sw      a0, 4(sp)
    la      a0, .Lsec\@
    call    puts
    lw      a0, 4(sp)
    lw      ra, 0(sp)
    addi    sp, sp, 16
    .pushsection .rodata
.Lsec\@: .asciz "== \name\n"
    .popsection
    .endm

    .text
    .globl _start
_start:
    csrw    mscratch, t0            # the only scratch that keeps every register intact
    la      t0, regs
    .irp n, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
    sw      x\n, 4 * \n(t0)
    .endr
    csrr    t1, mscratch
    sw      t1, 4 * 5(t0)
    la      sp, stack_top

    SECTION registers_at_entry
    la      s0, regs
    li      s1, 1
1:  slli    t0, s1, 2
    add     t0, s0, t0
    lw      a0, 0(t0)
    call    puthex_sp
    andi    t0, s1, 7
    li      t1, 7
    bne     t0, t1, 2f
    call    putnl
2:  addi    s1, s1, 1
    li      t0, 32
    blt     s1, t0, 1b
    lw      t0, 4 * 10(s0)
    SHOW    a0, t0
    lw      t0, 4 * 11(s0)
    SHOW    a1, t0
    lw      t0, 4 * 12(s0)
    SHOW    a2, t0

    SECTION boot_rom                # 0x1000: reset vector (10 words), 0x1028: fw_dynamic (6)
    li      s0, 0x1000
    li      s1, 24
1:  lw      a0, 0(s0)
    call    puthex_sp
    addi    s0, s0, 4
    addi    s1, s1, -1
    andi    t0, s1, 3
    bnez    t0, 2f
    call    putnl
2:  bnez    s1, 1b

    SECTION csrs_after_reset
    csrr    t0, mstatus
    li      t1, ~0x1800
    and     t0, t0, t1
    SHOW    mstatus, t0
    .irp c, mie, mip, mtvec, mepc, mcause, mtval
    csrr    t0, \c
    SHOW    \c, t0
    .endr
    li      t0, CLINT_MTIMECMP
    lw      t1, 0(t0)
    SHOW    mtimecmp_lo, t1
    lw      t1, 4(t0)
    SHOW    mtimecmp_hi, t1
    li      t0, CLINT_MSIP
    lw      t1, 0(t0)
    SHOW    msip, t1

    call    finish_pass

    .data
    .p2align 2
regs:
    .space  32 * 4

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
