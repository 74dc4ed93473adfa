# hello.S: prints a greeting and the number of instructions run so far, then passes.
# Runs unchanged on `qemu-system-riscv32 -M virt -bios none -kernel` and on `detfuzz run`.
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000

    .text
    .globl _start
_start:
    la      s0, message
    li      s1, UART0
1:  lbu     t0, 0(s0)
    beqz    t0, 2f
    sb      t0, 0(s1)
    addi    s0, s0, 1
    j       1b
2:  csrr    a0, minstret          # instructions retired before this one
    li      t1, 8                 # print a0 as 8 hex digits
3:  srli    t2, a0, 28
    addi    t2, t2, '0'
    li      t3, '9' + 1
    blt     t2, t3, 4f
    addi    t2, t2, 'a' - '9' - 1
4:  sb      t2, 0(s1)
    slli    a0, a0, 4
    addi    t1, t1, -1
    bnez    t1, 3b
    li      t2, '\n'
    sb      t2, 0(s1)
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
5:  j       5b

message:
    .asciz  "hello from detfuzz, minstret = 0x"
