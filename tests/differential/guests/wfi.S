# wfi.S: WFI that must sleep until a timer. Under `-icount sleep=off` QEMU warps the virtual
# clock straight to the next timer deadline when the hart idles; detfuzz does not implement
# that warp yet (part 2) and stops with WFI_IDLE instead. Kept apart from interrupts.S.
#
# Every WFI here is the last word of a page: QEMU 7.2 does not end a translation block at
# WFI and charges the whole block's icount when helper_wfi leaves the CPU loop, so the
# instructions after a WFI in the same block would be counted twice (a block never crosses
# a page).
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

    # ARM_TIMER k: mtimecmp = mtime + k. Clobbers t0-t2.
    .macro ARM_TIMER k
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)
    li      t2, CLINT_MTIME
    lw      t1, 0(t2)
    addi    t1, t1, \k
    sw      t1, 0(t0)
    sw      x0, 4(t0)
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, handler
    csrw    mtvec, t0
    li      s11, CLINT_MTIME

    SECTION wfi_interrupt           # MIE set: the timer interrupt is taken after the WFI
    .irp k, 5, 50
    ARM_TIMER \k
    li      t0, 0x80
    csrw    mie, t0
    csrsi   mstatus, 8
    li      s5, 0
    j       1f
    .p2align 12
    .space  4096 - 8
1:  lw      s0, 0(s11)
    wfi                             # the last word of the page
    csrci   mstatus, 8
    csrw    mie, x0
    la      t0, 1b
    sub     s6, s6, t0              # 8: the instruction after the WFI
    SHOW    k_\k\()_mtime_before, s0
    SHOW    k_\k\()_mcause, s5
    SHOW    k_\k\()_mepc_offset, s6
    SHOW    k_\k\()_mtime_in_handler, s7
    .endr

    SECTION wfi_wakeup_masked       # MIE clear: WFI wakes up on MTIP and execution goes on
    .irp k, 7, 70
    ARM_TIMER \k
    li      t0, 0x80
    csrw    mie, t0
    j       1f
    .p2align 12
    .space  4096 - 8
1:  lw      s0, 0(s11)
    wfi
    lw      s1, 0(s11)
    csrw    mie, x0
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)
    SHOW    k_\k\()_mtime_before, s0
    SHOW    k_\k\()_mtime_after, s1
    .endr

    call    finish_pass

    .p2align 2
handler:                            # s5 = mcause, s6 = mepc, s7 = mtime at entry
    lw      s7, 0(s11)
    csrr    s5, mcause
    csrr    s6, mepc
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)
    mret

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
