# uart.S: UART0, the ns16550a at 0x10000000 (QEMU 7.2's serial.c, reg-shift 0, PLIC source 10),
# its receive side fed without a host: with MCR.LOOP set, a byte written to THR goes to the
# receiver (QEMU's serial_xmit loopback path), so the guest can fill the RX FIFO, overrun it,
# cross the trigger levels and let the character timeout expire.
#
# Nothing can be printed while in loopback (printed bytes would go to the receiver), so the
# register-level sections record what they read in a RAM log (REC/RD) and print it once out
# of loopback (DUMP), as "tag=xxxxxxxx" lines. Sections:
#
# - reset_timeout: first, before anything writes LCR or the divisor latch: the timeout with
#   QEMU's reset character time (9600 baud 8N1), taken as an interrupt;
# - register sections: reset values, DLAB, FCR write-only, loopback and MSR, overrun without
#   FIFOs, the FIFO (fill, overrun, drain), FCR flushes, trigger levels, THR-empty interrupt
#   (thr_ipending), IIR priority, line status clear-on-read, access widths;
# - the line: PLIC pending bits after UART events, and the data, THR-empty and timeout
#   interrupts taken through the PLIC (mepc as an offset from the case's label);
# - timeouts: the character timeout for several divisors and frame formats, taken as an
#   interrupt while spinning in a counted loop: the loop count and mepc pin the icount, mtime
#   at the arming store and in the handler pin the virtual time (at shift 7); also polled
#   through IIR, masked by IER.RDI, pushed back by each byte and re-armed by an RBR read;
# - reset: a guest reset (finisher 0x7777) resets every register but FCR (QEMU's
#   serial_reset leaves it: the FIFOs stay on at their trigger level) and restores the reset
#   character time; a flag in RAM outside the image tells the second boot apart.
#
# Self-contained: it runs unchanged on `qemu-system-riscv32 -M virt -bios none -kernel` and on
# detfuzz. Everything is printed on UART0; the harness compares the output byte for byte,
# section by section ("== name" lines), and the finisher status.
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ CLINT_MTIME, 0x200bff8
    .equ PLIC, 0x0c000000
    .equ PLIC_PENDING, PLIC + 0x1000
    .equ PLIC_ENABLE, PLIC + 0x2000
    .equ PLIC_THRESHOLD, PLIC + 0x200000
    .equ PLIC_CLAIM, PLIC + 0x200004
    .equ UART_IRQ, 10
    .equ RESET_FLAG, 0x80400000     # RAM past the image: a guest reset keeps it
    .equ RESET_MAGIC, 0x5e5e7777
    .equ MIE_MEIE, 0x800
    .equ LOOP, 0x18                 # MCR: LOOP | OUT2
    .equ NORMAL, 0x08               # MCR: OUT2, QEMU's reset value

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

    # SECTION name: print "== name\n". Preserves every register. Only out of loopback.
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

    # REC tag, reg: append (tag, reg) to the RAM log. Preserves every register (not sp).
    .macro REC tag, reg
    addi    sp, sp, -16
    sw      \reg, 8(sp)
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    la      t0, log_ptr
    lw      t0, 0(t0)
    la      t1, .Lrec\@
    sw      t1, 0(t0)
    lw      t1, 8(sp)
    sw      t1, 4(t0)
    addi    t0, t0, 8
    la      t1, log_ptr
    sw      t0, 0(t1)
    lw      t0, 0(sp)
    lw      t1, 4(sp)
    addi    sp, sp, 16
    .pushsection .rodata
.Lrec\@: .asciz "\tag="
    .popsection
    .endm

    # RD tag, off: record the UART register at off (one lbu). Clobbers t1.
    .macro RD tag, off
    lbu     t1, \off(s0)
    REC     \tag, t1
    .endm
    # WR off, value: one sb of value to the UART register at off. Clobbers t1.
    .macro WR off, value
    li      t1, \value
    sb      t1, \off(s0)
    .endm
    # PEND tag: record the PLIC's pending word (source 10 is bit 10). Clobbers t1.
    .macro PEND tag
    li      t1, PLIC_PENDING
    lw      t1, 0(t1)
    REC     \tag, t1
    .endm
    # SEND first, count: write count bytes first, first+1, ... to THR (loopback: receive them).
    # Clobbers t0, t1, t2.
    .macro SEND first, count
    li      t0, \first
    li      t2, \first + \count
.Lsend\@:
    sb      t0, 0(s0)
    addi    t0, t0, 1
    blt     t0, t2, .Lsend\@
    .endm
    # WAIT_TICKS n: spin until mtime has advanced by n ticks (100 ns each). Clobbers t0-t2.
    .macro WAIT_TICKS n
    li      t2, CLINT_MTIME
    lw      t0, 0(t2)
    li      t1, \n
    add     t0, t0, t1
.Lwait\@:
    lw      t1, 0(t2)
    blt     t1, t0, .Lwait\@
    .endm
    # DIVISOR dll, dlm, lcr: program the divisor latch, then LCR. Clobbers t1.
    .macro DIVISOR dll, dlm, lcr
    WR      3, 0x80
    WR      0, \dll
    WR      1, \dlm
    WR      3, \lcr
    .endm
    # DUMP: leave loopback and print the log. Clobbers t1.
    .macro DUMP
    WR      4, NORMAL
    call    dump_log
    .endm

    # TIMEOUT_IRQ: with FIFOs at trigger level 4 and IER.RDI, receive one byte (below the
    # level) and spin in a counted loop with the UART interrupt enabled until the handler
    # has run (it clears s4); record the count, mepc - loop, mtime at the store and in the
    # handler, IIR in the handler, the claimed source and what it drained. The character
    # time is whatever LCR and the divisor say now.
    .macro TIMEOUT_IRQ
    WR      2, 0x47                 # FIFOs on (flushed), trigger level 4
    WR      4, LOOP
    WR      1, 0x01                 # IER.RDI
    call    plic_drain
    li      s3, 0
    li      s4, 0x7fffffff
    la      s11, .Lloop\@
    li      t2, CLINT_MTIME
    csrsi   mstatus, 8
    lw      s5, 0(t2)
    WR      0, 0x55                 # receive one byte: the timeout is armed here
.Lloop\@:
    addi    s3, s3, 1
    blt     s3, s4, .Lloop\@
    csrci   mstatus, 8
    WR      1, 0
    REC     count, s3
    call    record_irq
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0
    li      s0, UART0
    li      t0, PLIC + 4 * UART_IRQ # priority 1 > threshold 0, enabled, MEIE: the UART
    li      t1, 1                   # interrupt is taken whenever mstatus.MIE is set
    sw      t1, 0(t0)
    li      t0, PLIC_ENABLE
    li      t1, 1 << UART_IRQ
    sw      t1, 0(t0)
    li      t0, MIE_MEIE
    csrw    mie, t0
    li      t0, RESET_FLAG
    lw      t1, 0(t0)
    li      t2, RESET_MAGIC
    beq     t1, t2, after_reset

    SECTION reset_values
    .irp o, 0, 1, 2, 3, 4, 5, 6, 7
    RD      reg_\o, \o
    .endr
    DUMP

    SECTION reset_timeout           # nothing has written LCR or the divisor yet
    TIMEOUT_IRQ
    DUMP

    SECTION registers
    WR      3, 0x80                 # the reset divisor
    RD      dll, 0
    RD      dlm, 1
    RD      lcr_dlab, 3
    WR      3, 0
    WR      1, 0xff
    RD      ier_after_0xff, 1
    WR      1, 0
    WR      4, 0xe7
    RD      mcr_after_0xe7, 4
    WR      4, NORMAL
    WR      7, 0xa5
    RD      scr, 7
    WR      5, 0x00                 # LSR and MSR ignore writes
    WR      6, 0x00
    RD      lsr, 5
    RD      msr, 6
    WR      3, 0x5f
    RD      lcr, 3
    WR      3, 0x80                 # DLAB: offsets 0 and 1 are the divisor latch
    WR      0, 0x34
    WR      1, 0x12
    RD      dll, 0
    RD      dlm, 1
    RD      iir_dlab, 2
    WR      3, 0x03
    RD      ier_after_dlab, 1
    WR      2, 0xc1                 # FCR is write-only: offset 2 reads IIR
    RD      iir_fifo_on, 2
    WR      2, 0xc0
    RD      iir_fifo_off, 2
    WR      3, 0x80
    WR      0, 1
    WR      1, 0
    WR      3, 0x03
    DUMP

    SECTION loopback                # without FIFOs: THR -> RBR
    WR      4, LOOP
    RD      mcr, 4
    RD      lsr, 5
    RD      iir, 2
    WR      0, 'A'
    RD      lsr_after_thr, 5
    RD      iir, 2
    RD      rbr, 0
    RD      lsr_after_rbr, 5
    RD      rbr_again, 0
    WR      0, 'B'
    WR      0, 'C'                  # over an unread byte: overrun, RBR keeps the newest
    RD      lsr_overrun, 5
    RD      lsr_cleared, 5
    RD      rbr, 0
    RD      lsr, 5
    DUMP

    SECTION msr                     # in loopback MSR mirrors MCR, never with delta bits
    .irp m, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x13, 0x00, 0x1f, 0x03, 0x18
    WR      4, \m
    RD      msr_\m, 6
    RD      msr_again_\m, 6
    .endr
    WR      1, 0x08                 # IER.MSI: no modem status interrupt ever
    RD      iir_msi, 2
    WR      1, 0
    DUMP

    SECTION rlsi                    # receiver line status interrupt, without FIFOs
    WR      4, LOOP
    WR      1, 0x05                 # RLSI | RDI
    WR      0, 'D'
    RD      iir_rdi, 2
    WR      0, 'E'
    RD      iir_overrun, 2
    RD      lsr, 5                  # clears OE
    RD      iir_after_lsr, 2
    RD      lsr_again, 5
    RD      rbr, 0
    RD      iir_after_rbr, 2
    WR      1, 0
    DUMP

    SECTION fifo                    # 16 bytes, then overruns that keep the FIFO
    WR      2, 0x01
    RD      iir, 2
    WR      4, LOOP
    SEND    0x60, 15
    RD      lsr_fill_15, 5
    WR      0, 0x6f
    RD      lsr_fill_16, 5
    WR      0, 0x70
    RD      lsr_fill_17, 5
    RD      lsr_cleared, 5
    WR      0, 0x71
    WR      0, 0x72
    .irp k, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17
    RD      rbr_\k, 0
    RD      lsr_\k, 5
    .endr
    DUMP

    SECTION fcr                     # flushes: enable toggles, RX/TX reset bits
    WR      2, 0x01
    WR      4, LOOP
    SEND    0x30, 3
    WR      2, 0x01                 # same value: nothing flushed
    RD      lsr_same, 5
    WR      2, 0x41                 # new trigger level, FIFOs kept
    RD      lsr_level, 5
    WR      2, 0x09                 # DMA mode select: kept, nothing flushed
    RD      lsr_dms, 5
    RD      rbr_kept, 0
    WR      2, 0x05                 # TX reset: the RX FIFO stays
    RD      lsr_xfr, 5
    RD      rbr_after_xfr, 0
    WR      2, 0x03                 # RX reset
    RD      lsr_rfr, 5
    RD      rbr_after_rfr, 0
    SEND    0x40, 2
    WR      2, 0x00                 # disabling flushes
    RD      lsr_disabled, 5
    RD      iir_disabled, 2
    SEND    0x50, 1
    WR      2, 0x01                 # enabling flushes the byte in RBR
    RD      lsr_enabled, 5
    RD      rbr_enabled, 0
    WR      2, 0x00
    SEND    0x58, 1
    WR      2, 0x02                 # RX reset without FIFOs clears DR, RBR keeps its byte
    RD      lsr_rfr_no_fifo, 5
    RD      rbr_rfr_no_fifo, 0
    WR      2, 0xc0                 # trigger bits without the enable: no FIFO
    SEND    0x59, 2
    RD      lsr_no_fifo, 5
    RD      rbr_no_fifo, 0
    DUMP

    SECTION trigger_levels          # IER.RDI: the data interrupt from the trigger level on
    WR      4, LOOP
    .irp f, 0x01, 0x41, 0x81, 0xc1
    WR      2, \f
    WR      1, 0x01
    .irp k, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
    WR      0, 0x20 + \k
    RD      iir_\f\()_\k, 2
    .endr
    RD      rbr_\f, 0
    RD      iir_after_rbr_\f, 2
    WR      1, 0
    WR      2, 0
    .endr
    WR      2, 0x81                 # changing the level re-evaluates at once
    WR      1, 0x01
    SEND    0x20, 5
    RD      iir_8_with_5, 2
    WR      2, 0x41
    RD      iir_4_with_5, 2
    WR      2, 0xc1
    RD      iir_14_with_5, 2
    WR      1, 0
    DUMP

    SECTION thri                    # THR-empty interrupt and thr_ipending
    WR      2, 0
    PEND    pending_before
    call    plic_drain
    PEND    pending_drained
    WR      1, 0x02
    RD      iir_enabled, 2
    PEND    pending_enabled
    RD      iir_read_again, 2       # the IIR read above cleared thr_ipending
    WR      1, 0x02                 # IER unchanged: nothing re-evaluated
    RD      iir_same_ier, 2
    WR      1, 0x03                 # IER changed, THRI not: thr_ipending stays clear
    RD      iir_other_bit, 2
    WR      1, 0x00
    WR      1, 0x02                 # THRI off and on: re-sampled from LSR.THRE
    RD      iir_toggled, 2
    RD      iir_cleared, 2
    call    plic_drain
    WR      4, LOOP
    WR      0, 'x'                  # a transmitted byte makes THR empty again
    PEND    pending_after_thr
    RD      iir_after_thr, 2
    RD      rbr, 0
    WR      2, 0x04                 # TX reset sets thr_ipending (FIFOs stay off)
    RD      iir_after_xfr, 2
    WR      1, 0
    WR      2, 0x04
    WR      1, 0x02
    RD      iir_xfr_then_enable, 2
    WR      1, 0
    call    plic_drain
    DUMP

    SECTION priority                # line status > timeout > data > THR empty
    WR      2, 0x47
    WR      4, LOOP
    WR      1, 0x0f
    RD      iir_thri, 2
    WR      1, 0x0f
    SEND    0x41, 3
    RD      iir_below_level, 2
    WR      0, 0x44
    RD      iir_rdi, 2
    SEND    0x45, 12
    WR      0, 0x51                 # overrun
    RD      iir_rlsi, 2
    RD      lsr, 5
    RD      iir_after_lsr, 2
    WAIT_TICKS 1500                 # the character timeout (100200 ns) passes
    RD      iir_cti, 2
    WR      0, 0x52                 # overrun again: line status beats the timeout
    RD      iir_rlsi_again, 2
    RD      lsr_again, 5
    RD      iir_cti_again, 2
    RD      rbr, 0                  # clears the timeout; 15 bytes left: data
    RD      iir_data, 2
    WR      2, 0x43                 # RX reset: nothing received, THR empty since the last byte
    RD      iir_flushed, 2
    RD      iir_thr_read, 2         # that IIR read cleared thr_ipending
    WR      2, 0x45                 # TX reset: THR empty again
    RD      iir_thr_again, 2
    WR      1, 0
    DUMP

    SECTION widths                  # any width is one register access
    WR      2, 0x01
    WR      4, LOOP
    SEND    0x61, 4
    lw      t1, 0(s0)               # pops one byte
    REC     lw_rbr, t1
    lhu     t1, 0(s0)
    REC     lhu_rbr, t1
    lw      t1, 4(s0)
    REC     lw_mcr, t1
    lhu     t1, 2(s0)
    REC     lhu_iir, t1
    li      t1, 0x12345678
    sw      t1, 0(s0)               # sends 0x78
    li      t1, 0xabcd
    sh      t1, 0(s0)               # sends 0xcd
    .irp k, 1, 2, 3, 4
    RD      rbr_\k, 0
    .endr
    RD      lsr, 5
    WR      2, 0
    DUMP

    SECTION line                    # the PLIC pends source 10 each time the line is driven high
    WR      2, 0x01
    WR      4, LOOP
    call    plic_drain
    WR      1, 0x01
    PEND    pending_idle
    SEND    0x31, 2                 # data: the line goes high
    PEND    pending_data
    call    plic_drain
    PEND    pending_claimed
    RD      lsr, 5                  # no re-evaluation (no OE): not pended again
    PEND    pending_after_lsr
    RD      rbr, 0                  # re-evaluated, still data: pended again
    PEND    pending_after_rbr
    call    plic_drain
    RD      rbr_last, 0             # re-evaluated, nothing left: low
    PEND    pending_after_empty
    RD      iir, 2
    WR      1, 0
    WR      2, 0
    DUMP

    SECTION interrupts              # taken through the PLIC right after the access
    WR      2, 0x01
    WR      4, LOOP
    WR      1, 0x01
    call    plic_drain
    li      s4, 1
    la      s11, 1f
    li      t2, CLINT_MTIME
    lw      s5, 0(t2)
    csrsi   mstatus, 8
    WR      0, 'r'                  # received: data interrupt before the next instruction
1:  nop
    csrci   mstatus, 8
    call    record_irq
    WR      1, 0
    call    plic_drain
    li      s4, 1
    la      s11, 2f
    li      t2, CLINT_MTIME
    lw      s5, 0(t2)
    csrsi   mstatus, 8
    WR      1, 0x02                 # THRI enabled with THR empty: taken at once
2:  nop
    csrci   mstatus, 8
    WR      1, 0
    call    record_irq
    DUMP

    SECTION timeout_masked          # the timeout needs IER.RDI to show, like data
    WR      2, 0x47
    WR      4, LOOP
    SEND    0x31, 2
    WAIT_TICKS 1500
    RD      iir_masked, 2
    WR      1, 0x01
    RD      iir_enabled, 2
    RD      rbr, 0                  # one byte left: re-armed from this read
    RD      iir_after_rbr, 2
    WAIT_TICKS 700
    RD      iir_before_rearmed, 2
    WAIT_TICKS 700
    RD      iir_rearmed, 2
    RD      rbr, 0                  # empty now: the timer is not re-armed
    RD      iir_empty, 2
    WAIT_TICKS 1500
    RD      iir_later, 2
    WR      1, 0
    DUMP

    SECTION timeout_pushed          # every received byte re-arms the timeout
    WR      2, 0x47
    WR      4, LOOP
    WR      1, 0x01
    WR      0, 0x31
    WAIT_TICKS 700
    RD      iir_700, 2
    WR      0, 0x32
    WAIT_TICKS 700
    RD      iir_1400, 2
    WAIT_TICKS 700
    RD      iir_2100, 2
    WR      1, 0
    DUMP

    SECTION timeout_poll            # polled: IIR shows the timeout at its icount
    WR      2, 0x47
    WR      4, LOOP
    WR      1, 0x01
    li      s3, 0
    li      t2, CLINT_MTIME
    lw      s5, 0(t2)
    WR      0, 0x31
1:  addi    s3, s3, 1
    lbu     t1, 2(s0)
    li      t0, 0xcc
    bne     t1, t0, 1b
    lw      s6, 0(t2)
    sub     s6, s6, s5
    REC     polls, s3
    REC     mtime_delta, s6
    WR      1, 0
    DUMP

    SECTION timeout_8n1             # divisor 1, 8N1: 4 x 25050 ns
    DIVISOR 1, 0, 0x03
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_5n1             # 7-bit frames: 4 x 17535 ns
    DIVISOR 1, 0, 0x00
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_8e2             # 12-bit frames
    DIVISOR 1, 0, 0x1f
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_5o2             # 5 data bits, parity, 2 stop bits
    DIVISOR 2, 0, 0x0c
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_div3            # QEMU computes in float: 4 x 75151 ns (integers: 75150)
    DIVISOR 3, 0, 0x03
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_div7            # 4 x 175353 ns (integers: 175350)
    DIVISOR 7, 0, 0x03
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_div0            # divisor 0 counts as 3500 baud
    DIVISOR 0, 0, 0x03
    TIMEOUT_IRQ
    DUMP
    SECTION timeout_dlab_set        # the divisor latch write alone recomputes it
    DIVISOR 1, 0, 0x03
    WR      3, 0x80
    WR      0, 2
    WR      3, 0x03
    TIMEOUT_IRQ
    DUMP

    SECTION before_reset            # FIFOs on at level 8, other registers changed, data
    DIVISOR 1, 0, 0x03
    WR      2, 0x81
    WR      4, LOOP
    SEND    0x41, 3
    WR      4, 0x0b
    WR      1, 0x05
    WR      7, 0x77
    RD      iir, 2
    RD      lsr, 5
    WR      1, 0
    DUMP
    li      t0, RESET_FLAG
    li      t1, RESET_MAGIC
    sw      t1, 0(t0)
    li      t0, FINISHER
    li      t1, 0x7777
    sw      t1, 0(t0)
1:  j       1b

after_reset:
    SECTION after_reset             # every register is back, but FCR
    li      t0, RESET_FLAG
    sw      x0, 0(t0)
    .irp o, 0, 1, 2, 3, 4, 5, 6, 7
    RD      reg_\o, \o
    .endr
    WR      4, LOOP
    SEND    0x61, 2                 # the FIFOs are still on: no overrun
    RD      lsr_two_bytes, 5
    WR      1, 0x01
    SEND    0x63, 5
    RD      iir_7_bytes, 2          # still level 8, and IIR lacks the FIFO bits
    WR      0, 0x68
    RD      iir_8_bytes, 2
    .irp k, 1, 2, 3, 4, 5, 6, 7, 8
    RD      rbr_\k, 0
    .endr
    WR      1, 0
    WR      2, 0x81                 # writing FCR brings the FIFO bits back
    RD      iir_fcr_written, 2
    DUMP

    SECTION after_reset_timeout     # the reset restored the 9600-baud character time
    TIMEOUT_IRQ
    DUMP

    SECTION end
    call    finish_pass

# record_irq: record what the handler saw (mepc - s11, mtime at s5 and in the handler, IIR,
# the claimed source, LSR and the bytes it drained).
record_irq:
    addi    sp, sp, -16
    sw      ra, 0(sp)
    REC     mepc_offset, s6
    REC     mtime_armed, s5
    REC     mtime_handler, s7
    REC     iir_in_handler, s8
    REC     claimed, s9
    REC     lsr_in_handler, s10
    REC     drained, a5
    lw      ra, 0(sp)
    addi    sp, sp, 16
    ret

# plic_drain: claim and complete until nothing is claimable. Clobbers t0, t1.
plic_drain:
    li      t0, PLIC_CLAIM
1:  lw      t1, 0(t0)
    beqz    t1, 2f
    sw      t1, 0(t0)
    j       1b
2:  ret

    # Exceptions: record mcause and mtval, resume at mepc + 4. Machine external interrupts:
    # s6 = mepc - s11, s7 = mtime, s8 = IIR, s9 = the claimed source, s10 = LSR, then drain
    # RBR while LSR.DR (a5 = the bytes drained, first byte in the low 8 bits), complete, and
    # clear s4 (which ends the spinning loop of the case).
    .p2align 2
trap_handler:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      t2, 8(sp)
    csrr    t0, mcause
    bltz    t0, 1f
    REC     mcause, t0
    csrr    t0, mtval
    REC     mtval, t0
    csrr    t0, mepc
    addi    t0, t0, 4
    csrw    mepc, t0
    j       3f
1:  csrr    s6, mepc
    sub     s6, s6, s11
    li      t0, CLINT_MTIME
    lw      s7, 0(t0)
    lbu     s8, 2(s0)
    li      t0, PLIC_CLAIM
    lw      s9, 0(t0)
    lbu     s10, 5(s0)
    li      a5, 0
    li      t2, 0
2:  lbu     t1, 5(s0)
    andi    t1, t1, 1
    beqz    t1, 4f
    lbu     t1, 0(s0)
    sll     t1, t1, t2
    or      a5, a5, t1
    addi    t2, t2, 8
    j       2b
4:  li      t0, PLIC_CLAIM
    sw      s9, 0(t0)
    li      s4, 0
3:  lw      t0, 0(sp)
    lw      t1, 4(sp)
    lw      t2, 8(sp)
    addi    sp, sp, 16
    mret

# ---- output routines (clobber nothing but a0; need a stack) --------------------------------

dump_log:                           # print the RAM log as "tag=xxxxxxxx" lines and empty it
    addi    sp, sp, -16
    sw      ra, 0(sp)
    sw      s1, 4(sp)
    sw      t0, 8(sp)
    sw      t1, 12(sp)
    la      s1, log_buf
1:  la      t0, log_ptr
    lw      t0, 0(t0)
    bgeu    s1, t0, 2f
    lw      a0, 0(s1)
    call    puts
    lw      a0, 4(s1)
    call    puthex
    addi    s1, s1, 8
    j       1b
2:  la      t0, log_ptr
    la      t1, log_buf
    sw      t1, 0(t0)
    lw      ra, 0(sp)
    lw      s1, 4(sp)
    lw      t0, 8(sp)
    lw      t1, 12(sp)
    addi    sp, sp, 16
    ret

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

    .data
    .p2align 2
log_ptr: .word log_buf

    .bss
    .p2align 4
log_buf:
    .space  4096
stack_bottom:
    .space  8192
stack_top:
