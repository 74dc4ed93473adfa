# interrupts.S: machine timer and software interrupts from the CLINT, taken on the exact
# instruction. Every trap goes through one logging handler that records mcause, mepc (printed
# as an offset from a label of the case), mtime at entry (at shift 7 it pins the icount) and
# mstatus, plus which mtvec slot was entered (mscratch); the log is printed after each case.
#
# Cases: a timer armed k ticks ahead interrupts a counted loop (the loop counter and mepc
# show the exact instruction), a timer already due, a software interrupt raised by a store to
# msip, MSI and MTI pending together (MSI first), vectored mtvec dispatch, an interrupt taken
# on MRET with MPIE set and on setting mstatus.MIE, and polling mip.MTIP without interrupts.
# WFI that has to sleep is in wfi.S (detfuzz does not warp the clock yet).
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

    .equ    MIE_MSIE, 0x8
    .equ    MIE_MTIE, 0x80
    .equ    MSTATUS_MIE, 0x8
    .equ    DIRECT_SLOT, 31         # mscratch value logged for a direct-mode entry

    # ARM_TIMER k: mtimecmp = mtime + k (k may be <= 0: due at once). Clobbers t0-t2.
    .macro ARM_TIMER k
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)               # high word first: nothing fires while the low changes
    li      t2, CLINT_MTIME
    lw      t1, 0(t2)
    addi    t1, t1, \k
    sw      t1, 0(t0)
    sw      x0, 4(t0)
    .endm

    # TIMER_LOOP k: arm the timer k ticks ahead, enable MTI and spin in a counted loop until
    # the handler clears s4; print the counter and the log (mepc relative to the loop).
    .macro TIMER_LOOP k
    li      s3, 0
    li      s4, 100000              # a bound, in case the interrupt never comes
    ARM_TIMER \k
    li      t0, MIE_MTIE
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
.Lloop\@:
    addi    s3, s3, 1
    blt     s3, s4, .Lloop\@
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    SHOW    k_\k\()_count, s3
    la      a1, .Lloop\@
    call    print_log
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, direct_entry
    csrw    mtvec, t0
    la      t0, log_buf
    la      t1, log_ptr
    sw      t0, 0(t1)
    li      t0, CLINT_MTIMECMP      # no timer until a case arms one
    li      t1, -1
    sw      t1, 4(t0)

    SECTION timer_exact
    TIMER_LOOP 1
    TIMER_LOOP 2
    TIMER_LOOP 3
    TIMER_LOOP 5
    TIMER_LOOP 8
    TIMER_LOOP 13
    TIMER_LOOP 40
    TIMER_LOOP 111

    SECTION timer_already_due
    TIMER_LOOP 0
    TIMER_LOOP -1
    TIMER_LOOP -100

    SECTION software
    li      t0, MIE_MSIE
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
    li      t0, CLINT_MSIP
    li      t1, 1
    sw      t1, 0(t0)               # taken before the next instruction
1:  addi    t2, t2, 1
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    la      a1, 1b
    call    print_log
    li      t0, CLINT_MSIP          # pending but not enabled: nothing happens
    li      t1, 1
    sw      t1, 0(t0)
    csrsi   mstatus, MSTATUS_MIE
    nop
    csrci   mstatus, MSTATUS_MIE
    csrr    t1, mip
    SHOW    mip_msip_pending, t1
    li      t1, MIE_MSIE            # enabled while MIE is set: taken after the csrw
    csrsi   mstatus, MSTATUS_MIE
    csrw    mie, t1
2:  nop
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    la      a1, 2b
    call    print_log

    SECTION priority                # MSI and MTI pending together: MSI is taken first
    li      t0, CLINT_MSIP
    li      t1, 1
    sw      t1, 0(t0)
    ARM_TIMER -1
    csrr    t1, mip
    SHOW    mip_both, t1
    li      t0, MIE_MSIE | MIE_MTIE
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
1:  nop
    nop
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    la      a1, 1b
    call    print_log

    SECTION vectored                # mtvec mode 1: interrupts at base + 4 * cause
    la      t0, vector_table
    ori     t0, t0, 1
    csrw    mtvec, t0
    csrr    t1, mtvec
    la      t0, vector_table
    sub     t1, t1, t0
    SHOW    mtvec_mode, t1
    li      t0, MIE_MSIE | MIE_MTIE
    csrw    mie, t0
    csrsi   mstatus, MSTATUS_MIE
    li      t0, CLINT_MSIP
    li      t1, 1
    sw      t1, 0(t0)
1:  ARM_TIMER 3
2:  la      t0, log_ptr             # wait for the two interrupts (MSI, then MTI) to be logged
    lw      t0, 0(t0)
    la      t1, log_buf + 2 * 20
    bltu    t0, t1, 2b
    ecall                           # exceptions still go to the base
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    li      t0, CLINT_MTIMECMP      # at shift 0 the timer is still ahead: disarm it
    li      t1, -1
    sw      t1, 4(t0)
    la      t0, direct_entry
    csrw    mtvec, t0
    la      a1, 1b
    call    print_log

    SECTION mret_enables            # MRET with MPIE set takes a pending interrupt at once
    li      t0, CLINT_MSIP
    li      t1, 1
    sw      t1, 0(t0)
    li      t0, MIE_MSIE
    csrw    mie, t0
    li      t0, 0x80                # MPIE
    csrs    mstatus, t0
    li      t0, 0x1800              # MPP = M: QEMU 7.2's MRET leaves MPP = U even with u=off,
    csrs    mstatus, t0             # so a second MRET without a trap in between would drop
    la      t0, 1f                  # to U-mode there (detfuzz hard-wires MPP to M)
    csrw    mepc, t0
    mret
1:  nop
    csrr    t1, mstatus
    li      t0, ~0x1800             # MPP masked (README: detfuzz reads M, QEMU 0 until a trap)
    and     t1, t1, t0
    SHOW    mstatus_after, t1
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    la      a1, 1b
    call    print_log

    SECTION handler_masks           # inside the handler MIE is 0: a second source waits
    li      t0, MIE_MSIE | MIE_MTIE
    csrw    mie, t0
    la      t0, nest_entry
    csrw    mtvec, t0
    li      t0, CLINT_MSIP
    li      t1, 1
    csrsi   mstatus, MSTATUS_MIE
    sw      t1, 0(t0)
1:  nop
    csrci   mstatus, MSTATUS_MIE
    csrw    mie, x0
    la      t0, direct_entry
    csrw    mtvec, t0
    la      a1, 1b
    call    print_log

    SECTION poll_mtip               # no interrupt: poll mip until MTIP rises
    .irp k, 1, 4, 9, 30
    ARM_TIMER \k
    li      s3, 0
1:  addi    s3, s3, 1
    csrr    t1, mip
    andi    t1, t1, MIE_MTIE
    beqz    t1, 1b
    li      t2, CLINT_MTIME
    lw      t2, 0(t2)
    SHOW    poll_\k\()_count, s3
    SHOW    poll_\k\()_mtime, t2
    .endr
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)

    SECTION mtime_write             # mtime is writable (ACLINT time_delta); last, as it moves time
    li      s0, CLINT_MTIME
    li      t0, 0x1000
    sw      t0, 0(s0)
    lw      t1, 0(s0)
    lw      t2, 4(s0)
    SHOW    lo_after_lo_write, t1
    SHOW    hi_after_lo_write, t2
    li      t0, 5
    sw      t0, 4(s0)
    lw      t1, 0(s0)
    lw      t2, 4(s0)
    SHOW    lo_after_hi_write, t1
    SHOW    hi_after_hi_write, t2
    li      t0, 0x2000
    sw      t0, 0(s0)
    lw      t1, 0(s0)
    lw      t2, 4(s0)
    SHOW    lo_after_second_lo_write, t1
    SHOW    hi_after_second_lo_write, t2
    sw      x0, 4(s0)
    li      t0, 0x100
    sw      t0, 0(s0)
    li      s1, CLINT_MTIMECMP
    li      t0, -1
    sw      t0, 4(s1)
    li      t0, 0x180
    sw      t0, 0(s1)
    sw      x0, 4(s1)
    csrr    t1, mip
    SHOW    mip_cmp_ahead, t1
    li      t0, 0x200               # mtime jumps past mtimecmp: MTIP rises at once
    sw      t0, 0(s0)
    csrr    t1, mip
    SHOW    mip_mtime_past_cmp, t1
    li      t0, 0x100               # and back: MTIP falls again
    sw      t0, 0(s0)
    csrr    t1, mip
    SHOW    mip_mtime_back, t1
    TIMER_LOOP 30                   # the timer still fires on the exact instruction

    SECTION end
    call    finish_pass

# print_log: print the log entries "mcause mepc-a1 mtime mstatus slot" and empty the log.
print_log:
    addi    sp, sp, -16
    sw      ra, 0(sp)
    sw      s0, 4(sp)
    sw      s1, 8(sp)
    la      s0, log_buf
    la      t0, log_ptr
    lw      s1, 0(t0)
1:  bgeu    s0, s1, 2f
    lw      a0, 0(s0)
    call    puthex_sp
    lw      a0, 4(s0)
    sub     a0, a0, a1
    call    puthex_sp
    lw      a0, 8(s0)
    call    puthex_sp
    lw      a0, 12(s0)
    call    puthex_sp
    lw      a0, 16(s0)
    call    puthex
    addi    s0, s0, 20
    j       1b
2:  la      t0, log_ptr
    la      t1, log_buf
    sw      t1, 0(t0)
    lw      s1, 8(sp)
    lw      s0, 4(sp)
    lw      ra, 0(sp)
    addi    sp, sp, 16
    ret

    .p2align 2
direct_entry:
    csrwi   mscratch, DIRECT_SLOT
    j       log_handler

# log_handler: append (mcause, mepc, mtime, mstatus, mscratch) to the log, then silence the
# source (MSI: clear msip; MTI: mtimecmp high = ~0; an exception: skip the instruction).
# Clears s4 (the bound of TIMER_LOOP's loop). Preserves every other register.
log_handler:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      t2, 8(sp)
    li      t2, CLINT_MTIME
    lw      t2, 0(t2)               # first, so that it pins the icount of the entry
    la      t0, log_ptr
    lw      t1, 0(t0)
    sw      t2, 8(t1)
    csrr    t2, mcause
    sw      t2, 0(t1)
    csrr    t2, mepc
    sw      t2, 4(t1)
    csrr    t2, mstatus
    sw      t2, 12(t1)
    csrr    t2, mscratch
    sw      t2, 16(t1)
    addi    t1, t1, 20
    sw      t1, 0(t0)
    li      s4, 0
    csrr    t2, mcause
    bltz    t2, 1f
    csrr    t0, mepc
    addi    t0, t0, 4
    csrw    mepc, t0
    j       9f
1:  andi    t2, t2, 0x3ff
    li      t0, 3
    bne     t2, t0, 2f
    li      t0, CLINT_MSIP
    sw      x0, 0(t0)
    j       9f
2:  li      t0, 7
    bne     t2, t0, 3f
    li      t0, CLINT_MTIMECMP
    li      t1, -1
    sw      t1, 4(t0)
    j       9f
3:  csrw    mie, x0                 # anything else: stop it from coming back
9:  lw      t2, 8(sp)
    lw      t1, 4(sp)
    lw      t0, 0(sp)
    addi    sp, sp, 16
    mret

# nest_entry: while handling MSI (MIE = 0 now), make MTI pending too; it must wait for mret.
    .p2align 2
nest_entry:
    csrwi   mscratch, 30
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      t2, 8(sp)
    sw      ra, 12(sp)
    csrr    t0, mcause
    li      t1, 0x80000003
    bne     t0, t1, 1f
    ARM_TIMER -1                    # MTI now pending and enabled, but MIE is 0
    nop
    nop
1:  lw      ra, 12(sp)
    lw      t2, 8(sp)
    lw      t1, 4(sp)
    lw      t0, 0(sp)
    addi    sp, sp, 16
    j       log_handler

    .p2align 8
vector_table:                       # slot n at vector_table + 4n
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
    j       vector_\n
    .endr
    .irp n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
vector_\n:
    csrwi   mscratch, \n
    j       log_handler
    .endr

    .data
    .p2align 2
log_ptr:
    .word   0
log_buf:
    .space  20 * 32

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
