# reset.S: what a guest reset (sifive_test 0x7777) keeps and what it restores.
# First boot: write a marker outside the program, change a .data word, GPRs, mscratch, mie,
# mtvec, the UART's SCR and MCR, mtimecmp; then request a reset. Second boot (the marker
# says so): print all of them, plus mtime at shift 7 (the exact icount since the ACLINT
# reset cleared mtime) and mip, then pass. On QEMU 7.2 the program image is copied in again
# (.data restored), devices reset, the rest of RAM, the GPRs and most CSRs are kept.
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ MARKER, 0x80100000

    .text
    .globl _start
_start:
    li      s0, MARKER
    lw      s1, 0(s0)
    bnez    s1, second_boot
    li      s1, 1
    sw      s1, 0(s0)
    la      s2, data_word
    li      s3, 0x42
    sw      s3, 0(s2)
    li      s4, 0x1234
    csrw    mscratch, s4
    li      s5, 0x808               # MSIE | MEIE, but not MTIE: no interrupt is ever taken
    csrw    mie, s5
    la      s6, trap
    csrw    mtvec, s6
    li      s7, UART0
    li      s8, 0x5a
    sb      s8, 7(s7)               # SCR
    li      s8, 0x03
    sb      s8, 4(s7)               # MCR: DTR | RTS, OUT2 cleared
    li      s9, 0x02004000
    li      s10, 0x7777
    sw      s10, 0(s9)              # mtimecmp low
    li      t0, FINISHER
    li      t1, 0x7777
    sw      t1, 0(t0)
1:  j       1b

second_boot:
    la      sp, stack_top
/* The harness reads the section names a guest prints from lines like this one:
    SECTION after_reset
*/
    la      a0, title
    call    puts
    mv      a0, s3                  # a GPR written before the reset
    call    puthex
    mv      a0, s4
    call    puthex
    la      t0, data_word           # .data after the reset: the image was copied in again?
    lw      a0, 0(t0)
    call    puthex
    csrr    a0, mscratch
    call    puthex
    csrr    a0, mie
    call    puthex
    csrr    a0, mtvec
    call    puthex
    csrr    a0, mcause
    call    puthex
    csrr    a0, mstatus
    li      t0, ~0x1800             # MPP: detfuzz reads 3, QEMU 0 (README)
    and     a0, a0, t0
    call    puthex
    li      t0, UART0
    lbu     a0, 7(t0)               # SCR
    call    puthex
    li      t0, UART0
    lbu     a0, 4(t0)               # MCR
    call    puthex
    li      t0, 0x02004000
    lw      a0, 0(t0)               # mtimecmp
    call    puthex
    li      t0, 0x0200bff8
    lw      a0, 0(t0)               # mtime since the reset cleared it
    call    puthex
    csrr    a0, mip
    call    puthex
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
2:  j       2b

trap:
    li      t0, FINISHER
    li      t1, 0x13333             # fail with code 1: no trap is expected
    sw      t1, 0(t0)
3:  j       3b

puts:                               # a0 = NUL-terminated string
    li      t0, UART0
4:  lbu     t1, 0(a0)
    beqz    t1, 5f
    sb      t1, 0(t0)
    addi    a0, a0, 1
    j       4b
5:  ret

puthex:                             # a0 as 8 hex digits and a newline
    li      t0, UART0
    li      t1, 8
6:  srli    t2, a0, 28
    addi    t2, t2, '0'
    li      t3, '9' + 1
    blt     t2, t3, 7f
    addi    t2, t2, 'a' - '9' - 1
7:  sb      t2, 0(t0)
    slli    a0, a0, 4
    addi    t1, t1, -1
    bnez    t1, 6b
    li      t2, '\n'
    sb      t2, 0(t0)
    ret

    .data
data_word:  .word 0x99
title:      .asciz "== after_reset\n"
    .balign 16
stack:      .space 256
stack_top:
