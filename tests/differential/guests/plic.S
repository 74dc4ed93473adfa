# plic.S: the PLIC at 0x0c000000, as QEMU 7.2's `virt` builds it for one hart with s=off
# (hart config "M": context 0 is M-mode and no other context exists).
#
# Register sections (priority .. completes) use nothing but the PLIC: priorities, pending
# words, enables, threshold, claim/complete, the other contexts' offsets, the window's edges
# and the access sizes. Writes to the pending words are ignored by QEMU, so a guest cannot
# pend a source through the PLIC itself.
#
# Line sections (lines .. interrupt) make sources pending through two devices of QEMU's virt
# whose lines the guest drives: UART0's THRE interrupt (source 10: IER.THRI set raises the
# line at once, since the transmitter is always empty; every transmitted byte drives it
# again; IER = 0 lowers it) and the goldfish RTC's alarm (source 11: IRQ_ENABLED = 1, then
# an alarm at 0, which is in the past, raises it; CLEAR_INTERRUPT lowers it). The test runs
# detfuzz with small stand-ins for those two lines (test_plic_qemu.py). Only `sb` touches
# UART registers and IIR is never read (the stand-in does not model what an IIR read does).
# Every byte printed while IER.THRI is set drives line 10 again, as on QEMU.
#
# The reset section asks for a guest reset (finisher 0x7777) and checks that the PLIC's
# registers are back to 0; a flag in RAM outside the image tells the second boot apart.
# mip is printed as its MEIP bit only. Self-contained: it runs unchanged on
# `qemu-system-riscv32 -M virt -bios none -kernel` and on detfuzz. Everything is printed on
# UART0; the harness compares the output byte for byte, section by section ("== name"
# lines), and the finisher status.
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ RTC, 0x101000
    .equ PLIC, 0x0c000000
    .equ PLIC_PENDING, PLIC + 0x1000
    .equ PLIC_ENABLE, PLIC + 0x2000
    .equ PLIC_THRESHOLD, PLIC + 0x200000
    .equ PLIC_CLAIM, PLIC + 0x200004
    .equ PLIC_END, PLIC + 0x600000
    .equ RESET_FLAG, 0x80400000     # RAM past the image: a guest reset keeps it
    .equ RESET_MAGIC, 0x5e5e7777

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

    # RD tag, addr: print the word at addr. WR addr, value: store a word. Clobber s0, t1.
    .macro RD tag, addr
    li      s0, \addr
    li      t1, 0xdead
    lw      t1, 0(s0)
    SHOW    \tag, t1
    .endm
    .macro WR addr, value
    li      s0, \addr
    li      t1, \value
    sw      t1, 0(s0)
    .endm
    .macro PRIO source, value
    WR      PLIC + 4 * \source, \value
    .endm
    .macro CLAIM tag
    RD      \tag, PLIC_CLAIM
    .endm
    .macro COMPLETE source
    WR      PLIC_CLAIM, \source
    .endm
    .macro PENDING tag
    RD      \tag, PLIC_PENDING
    .endm

    # MEIP tag: print mip.MEIP (0 or 1). Clobbers t1.
    .macro MEIP tag
    csrr    t1, mip
    srli    t1, t1, 11
    andi    t1, t1, 1
    SHOW    \tag, t1
    .endm

    # The two lines: UART0 THRE (source 10) and the RTC alarm (source 11). Clobber s0, t1.
    .macro UART_UP
    li      s0, UART0
    li      t1, 2
    sb      t1, 1(s0)               # IER.THRI
    .endm
    .macro UART_DOWN
    li      s0, UART0
    sb      x0, 1(s0)
    .endm
    .macro RTC_UP
    WR      RTC + 0x10, 1           # IRQ_ENABLED
    WR      RTC + 0x0c, 0           # ALARM_HIGH
    WR      RTC + 0x08, 0           # ALARM_LOW: an alarm in the past fires at once
    .endm
    .macro RTC_DOWN
    WR      RTC + 0x1c, 1           # CLEAR_INTERRUPT
    .endm

    # TRY_LOAD op, addr / TRY_STORE op, addr, value: one access; a load's rd keeps 0xdead.
    .macro TRY_LOAD op, addr
    li      s0, \addr
    SHOW    \op\()_addr, s0
    li      t1, 0xdead
    \op     t1, 0(s0)
    SHOW    rd_after, t1
    .endm
    .macro TRY_STORE op, addr, value
    li      s0, \addr
    SHOW    \op\()_addr, s0
    li      t1, \value
    \op     t1, 0(s0)
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0
    li      t0, RESET_FLAG
    lw      t1, 0(t0)
    li      t2, RESET_MAGIC
    beq     t1, t2, after_reset

    SECTION priority                # sources 1..96 hold 3 bits (WARL: value % 8)
    .irp k, 0, 1, 2, 31, 32, 63, 64, 95, 96, 97, 127, 1023
    PRIO    \k, 0xffffffff
    RD      prio_\k, PLIC + 4 * \k
    .endr
    .irp v, 0, 1, 7, 8, 9, 15, 0x17, 0x80000003, 0xfffffff9
    PRIO    1, \v
    RD      prio1_after_\v, PLIC + 4
    .endr
    li      s0, PLIC                # write k to source k's register, 1..97
    li      t0, 1
1:  slli    t1, t0, 2
    add     t1, t1, s0
    sw      t0, 0(t1)
    addi    t0, t0, 1
    li      t2, 98
    blt     t0, t2, 1b
    li      t0, 0                   # read back 0..97 into a rotating checksum
    li      s1, 0
2:  slli    t1, t0, 2
    add     t1, t1, s0
    lw      t1, 0(t1)
    slli    t2, s1, 3
    srli    s1, s1, 29
    or      s1, s1, t2
    xor     s1, s1, t1
    addi    t0, t0, 1
    li      t2, 98
    blt     t0, t2, 2b
    SHOW    prio_checksum, s1
    .irp k, 7, 9, 33, 96
    RD      prio_\k, PLIC + 4 * \k
    .endr
    RD      prio_gap_184, PLIC + 0x184
    RD      prio_gap_ffc, PLIC + 0xffc
    li      t0, 1                   # back to 0
3:  slli    t1, t0, 2
    add     t1, t1, s0
    sw      x0, 0(t1)
    addi    t0, t0, 1
    li      t2, 98
    blt     t0, t2, 3b

    SECTION pending                 # read-only: writes are ignored
    .irp o, 0x1000, 0x1004, 0x1008, 0x100c, 0x1010, 0x107c, 0x1080
    RD      pending_\o, PLIC + \o
    .endr
    .irp o, 0x1000, 0x1004, 0x1008, 0x100c
    WR      PLIC + \o, 0xffffffff
    RD      pending_after_write_\o, PLIC + \o
    .endr

    SECTION enable                  # three words of 32 bits for context 0, nothing else
    .irp o, 0x2000, 0x2004, 0x2008, 0x200c, 0x2010, 0x207c, 0x2080, 0x2084, 0x2100, 0x3000
    WR      PLIC + \o, 0xffffffff
    RD      enable_\o, PLIC + \o
    .endr
    WR      PLIC_ENABLE + 4, 0x12345678
    RD      enable_0x2004_pattern, PLIC_ENABLE + 4
    .irp o, 0x2000, 0x2004, 0x2008
    WR      PLIC + \o, 0
    .endr

    SECTION threshold               # 3 bits, WARL like the priorities
    .irp v, 0, 1, 7, 8, 9, 15, 0xffffffff, 3
    WR      PLIC_THRESHOLD, \v
    RD      threshold_after_\v, PLIC_THRESHOLD
    .endr
    WR      PLIC_THRESHOLD, 0
    MEIP    meip

    SECTION contexts                # only context 0 exists
    .irp o, 0x200008, 0x20000c, 0x200ffc, 0x1ffffc, 0x201000, 0x201004, 0x202000, 0x3ffffc
    WR      PLIC + \o, 5
    RD      ctx_\o, PLIC + \o
    .endr
    RD      threshold, PLIC_THRESHOLD

    SECTION claim_nothing           # a claim with nothing pending returns 0
    CLAIM   claim
    PRIO    5, 7
    WR      PLIC_ENABLE, 0xffffffff
    CLAIM   claim_all_enabled
    MEIP    meip
    .irp v, 0, 5, 95, 96, 0xffffffff
    COMPLETE \v
    .endr
    CLAIM   claim_after_completes
    PENDING pending
    MEIP    meip
    PRIO    5, 0
    WR      PLIC_ENABLE, 0

    SECTION window                  # 6 MiB from 0x0c000000
    TRY_LOAD lw, PLIC - 4
    TRY_LOAD lw, PLIC + 0x3ffffc
    TRY_LOAD lw, PLIC + 0x400000
    TRY_LOAD lw, PLIC_END - 4
    TRY_LOAD lw, PLIC_END
    TRY_LOAD lw, PLIC_END + 0x1ffffc
    TRY_LOAD lw, PLIC + 0x1000000
    TRY_LOAD lw, PLIC_END - 2        # misaligned: the second word is past the window
    TRY_STORE sw, PLIC_END, 1
    TRY_STORE sw, PLIC - 4, 1
    TRY_STORE sw, PLIC_END - 4, 1

    SECTION sizes                   # aligned words only; misaligned words are split
    PRIO    1, 5
    PRIO    2, 6
    TRY_LOAD lb, PLIC + 4
    TRY_LOAD lbu, PLIC + 4
    TRY_LOAD lh, PLIC + 4
    TRY_LOAD lhu, PLIC + 6
    TRY_LOAD lbu, PLIC_CLAIM
    TRY_LOAD lhu, PLIC_PENDING
    TRY_LOAD lw, PLIC + 5           # the words at +4 and +8, combined
    TRY_LOAD lw, PLIC + 6
    TRY_LOAD lw, PLIC + 7
    TRY_STORE sb, PLIC + 4, 1
    TRY_STORE sh, PLIC + 4, 1
    TRY_STORE sb, PLIC_CLAIM, 1
    TRY_STORE sw, PLIC + 5, 0x01020304   # stored byte by byte: the first byte faults
    RD      prio_1, PLIC + 4
    RD      prio_2, PLIC + 8
    WR      PLIC_THRESHOLD, 3
    TRY_LOAD lw, PLIC_THRESHOLD + 2 # threshold and claim (nothing pending: 0)
    WR      PLIC_THRESHOLD, 0
    PRIO    1, 0
    PRIO    2, 0

    SECTION lines                   # raising sets pending; lowering leaves it (QEMU 7.2.22)
    PENDING pending
    RTC_UP
    PENDING pending_rtc_up
    RTC_DOWN
    PENDING pending_rtc_down
    UART_UP
    PENDING pending_uart_up
    UART_DOWN
    PENDING pending_uart_down
    WR      PLIC_PENDING, 0
    PENDING pending_after_write_0
    MEIP    meip_not_enabled
    WR      PLIC_ENABLE, 0xc00
    MEIP    meip_enabled_priority_0

    SECTION meip                    # re-evaluated on priority, threshold and claim/complete
    PRIO    11, 2                   # 10 and 11 are enabled and pending
    MEIP    meip_priority_11
    WR      PLIC_ENABLE, 0          # enable writes do not re-evaluate MEIP on QEMU
    MEIP    meip_disabled
    RD      threshold, PLIC_THRESHOLD
    MEIP    meip_threshold_read
    WR      PLIC_THRESHOLD, 0
    MEIP    meip_threshold_write
    WR      PLIC_ENABLE, 0x800
    MEIP    meip_enabled
    PRIO    11, 2
    MEIP    meip_priority_rewritten
    WR      PLIC_ENABLE, 0
    MEIP    meip_disabled_again
    CLAIM   claim_disabled
    MEIP    meip_after_claim_read
    WR      PLIC_ENABLE, 0x800
    MEIP    meip_enabled_again
    WR      PLIC_THRESHOLD, 2
    MEIP    meip_threshold_2
    WR      PLIC_THRESHOLD, 1
    MEIP    meip_threshold_1
    PRIO    11, 9                   # stores 1: not above the threshold
    MEIP    meip_priority_9
    PRIO    11, 0
    WR      PLIC_THRESHOLD, 0
    MEIP    meip_priority_0
    PENDING pending

    SECTION claim_order             # highest priority first, ties to the lowest id
    WR      PLIC_ENABLE, 0xc00
    PRIO    10, 2
    PRIO    11, 2
    PENDING pending
    CLAIM   claim_tie
    MEIP    meip_one_left
    CLAIM   claim_next
    MEIP    meip_none_left
    CLAIM   claim_none
    COMPLETE 10
    COMPLETE 11
    PENDING pending_after_completes  # nothing drove a line since the claims
    RTC_UP
    UART_UP
    PRIO    11, 3
    CLAIM   claim_higher
    PRIO    10, 5                   # printing drives line 10 again: pending and claimable
    PRIO    11, 6
    CLAIM   claim_claimed_skipped   # 11 is claimed: 10 comes next although lower
    COMPLETE 11
    COMPLETE 10
    UART_DOWN
    PENDING pending_while_complete  # printing drove 10 again before IER was cleared
    CLAIM   claim_10_again
    COMPLETE 10
    RTC_DOWN
    RTC_UP
    WR      PLIC_THRESHOLD, 6
    MEIP    meip_threshold_6
    CLAIM   claim_threshold_6
    WR      PLIC_THRESHOLD, 5
    MEIP    meip_threshold_5
    CLAIM   claim_threshold_5
    CLAIM   claim_threshold_5_again
    WR      PLIC_THRESHOLD, 0
    COMPLETE 11

    SECTION complete                # completion ends a claim whatever the enable bit
    RTC_DOWN
    RTC_UP
    CLAIM   claim_11
    COMPLETE 10                     # not claimed
    COMPLETE 96                     # out of range: ignored
    COMPLETE 0xffffffff
    COMPLETE 0x8000000b
    RTC_DOWN
    RTC_UP                          # pending again while claimed
    MEIP    meip_claimed_pending
    CLAIM   claim_while_claimed
    WR      PLIC_ENABLE, 0
    COMPLETE 11                     # completes although disabled
    MEIP    meip_after_complete_disabled
    WR      PLIC_ENABLE, 0x800
    MEIP    meip_enabled
    CLAIM   claim_after_enable
    COMPLETE 11
    MEIP    meip_completed
    PENDING pending
    RTC_DOWN

    SECTION interrupt               # a machine external interrupt, taken after the store
    WR      PLIC_ENABLE, 0x800      # source 11 only (printing must not pend 10)
    PRIO    10, 0
    PRIO    11, 1
    li      t0, 0x800
    csrw    mie, t0                 # MEIE
    csrsi   mstatus, 8
    la      s11, 1f
    RTC_UP
1:  nop
    csrci   mstatus, 8
    csrw    mie, x0
    SHOW    handled, s2
    MEIP    meip
    PENDING pending
    PRIO    11, 0
    WR      PLIC_ENABLE, 0

    SECTION reset                   # a guest reset clears every PLIC register
    PRIO    11, 3
    PRIO    96, 5
    WR      PLIC_ENABLE, 0xffffffff
    WR      PLIC_ENABLE + 8, 0x55
    WR      PLIC_THRESHOLD, 2
    RTC_DOWN
    RTC_UP
    CLAIM   claim
    RTC_DOWN
    RTC_UP
    PENDING pending
    MEIP    meip
    li      t0, RESET_FLAG
    li      t1, RESET_MAGIC
    sw      t1, 0(t0)
    WR      FINISHER, 0x7777
4:  j       4b

after_reset:
    SECTION after_reset
    li      t0, RESET_FLAG
    sw      x0, 0(t0)
    .irp k, 5, 11, 96
    RD      prio_\k, PLIC + 4 * \k
    .endr
    RD      enable_0, PLIC_ENABLE
    RD      enable_2, PLIC_ENABLE + 8
    RD      threshold, PLIC_THRESHOLD
    PENDING pending
    MEIP    meip
    PRIO    11, 3
    WR      PLIC_ENABLE, 0x800
    MEIP    meip_enabled
    CLAIM   claim                   # 11 was claimed before the reset: not any more
    RTC_UP
    CLAIM   claim_after_raise

    SECTION end
    call    finish_pass

    # Exceptions: print mcause and mtval, resume at mepc + 4. Machine external interrupts:
    # print mcause and mepc - s11, claim (into s2), lower the RTC line, complete, print MEIP.
    .p2align 2
trap_handler:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      s0, 8(sp)
    csrr    t0, mcause
    SHOW    mcause, t0
    bltz    t0, 1f
    csrr    t0, mtval
    SHOW    mtval, t0
    csrr    t0, mepc
    addi    t0, t0, 4
    csrw    mepc, t0
    j       2f
1:  csrr    t0, mepc
    sub     t0, t0, s11
    SHOW    mepc_offset, t0
    MEIP    meip_in_handler
    li      s0, PLIC_CLAIM
    lw      s2, 0(s0)
    SHOW    claimed, s2
    MEIP    meip_claimed
    RTC_DOWN
    li      s0, PLIC_CLAIM
    sw      s2, 0(s0)
    MEIP    meip_completed
2:  lw      s0, 8(sp)
    lw      t1, 4(sp)
    lw      t0, 0(sp)
    addi    sp, sp, 16
    mret

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

puts:                               # a0 -> NUL-terminated string
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    li      t1, UART0
1:  lbu     t0, 0(a0)
    beqz    t0, 2f
    sb      t0, 0(t1)
    addi    a0, a0, 1
    j       1b
2:  lw      t0, 0(sp)
    lw      t1, 4(sp)
    addi    sp, sp, 16
    ret

puthex:                             # a0 as 8 hex digits, then '\n'
    addi    sp, sp, -16
    sw      ra, 0(sp)
    call    puthex8
    call    putnl
    lw      ra, 0(sp)
    addi    sp, sp, 16
    ret

putnl:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    li      t0, '\n'
    li      t1, UART0
    sb      t0, 0(t1)
    lw      t0, 0(sp)
    lw      t1, 4(sp)
    addi    sp, sp, 16
    ret

puthex8:                            # a0 as 8 hex digits
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      t2, 8(sp)
    sw      t3, 12(sp)
    li      t1, UART0
    li      t2, 8
1:  srli    t0, a0, 28
    addi    t0, t0, '0'
    li      t3, '9' + 1
    blt     t0, t3, 2f
    addi    t0, t0, 'a' - '9' - 1
2:  sb      t0, 0(t1)
    slli    a0, a0, 4
    addi    t2, t2, -1
    bnez    t2, 1b
    lw      t0, 0(sp)
    lw      t1, 4(sp)
    lw      t2, 8(sp)
    lw      t3, 12(sp)
    addi    sp, sp, 16
    ret

finish_pass:
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
1:  j       1b

    .bss
    .p2align 4
stack_bottom:
    .space  8192
stack_top:
