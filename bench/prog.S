# detfuzz CPU benchmark: LCG fill + checksum walk (RV32IM, bare metal, machine mode).
#
# ITERS is not defined here: bench/build.py prepends a line `.equ ITERS, N` to this text
# (the same text can be fed to detfuzz's own assembler), so no C preprocessor is needed.
# ITERS must be >= 1 (the outer loop is do-while).
#
# The exact dynamic instruction count is modelled in bench/reference.py; keep the two in
# step. Only plain RV32IM instructions, labels, simple directives and the pseudo-ops
# li/la/mv/j/bnez/beqz/ret/nop are used, so any GNU-as-like assembler can build it.
# The build passes -mno-relax/--no-relax so that `la` stays auipc+addi and the count is
# independent of linker relaxation.

    .equ ARRAY_WORDS, 1024
    .equ UART_THR, 0x10000000      # ns16550a transmit holding register (QEMU virt UART0)
    .equ FINISHER, 0x100000        # sifive_test: writing 0x5555 ends the run, "pass"
    .equ FINISHER_PASS, 0x5555

    .text
    .globl _start
_start:
    # --- fill: array[i] = x = x * 1664525 + 1013904223 (Numerical Recipes LCG) ---
    la   s0, array
    li   s1, 1664525
    li   t1, 1013904223
    li   t0, 12345                 # LCG seed
    mv   a1, s0
    li   a2, ARRAY_WORDS
fill:
    mul  t0, t0, s1
    add  t0, t0, t1
    sw   t0, 0(a1)
    addi a1, a1, 4
    addi a2, a2, -1
    bnez a2, fill

    # --- checksum: ITERS walks over the array; 14 or 15 instructions per element ---
    li   a0, 0                     # checksum
    li   s2, ITERS
    li   s4, 0x9e3779b1            # odd multiplier (golden ratio), spreads low bits upwards
outer:
    mv   a1, s0
    li   a2, ARRAY_WORDS
inner:
    lw   t0, 0(a1)
    slli t1, a0, 5                 # a0 = rotl(a0, 5)
    srli t2, a0, 27
    or   a0, t1, t2
    xor  a0, a0, t0
    mul  a0, a0, s4
    add  a0, a0, t0
    andi t3, a0, 0x100             # bit 8 of a well-mixed value: the beq below is taken ~50%
    beq  t3, zero, skip
    xori a0, a0, 0x5a5
skip:
    add  t0, t0, a0                # write back so every walk sees different data
    sw   t0, 0(a1)
    addi a1, a1, 4
    addi a2, a2, -1
    bne  a2, zero, inner
    addi s2, s2, -1
    bnez s2, outer

    # --- print a0 as 8 lowercase hex digits + "\n" (a0 itself is left intact) ---
    mv   s3, a0
    li   t0, UART_THR
    la   t1, hexdigits
    li   t2, 8
print:
    srli t3, s3, 28
    add  t3, t3, t1
    lbu  t3, 0(t3)
    sb   t3, 0(t0)
    slli s3, s3, 4
    addi t2, t2, -1
    bnez t2, print
    li   t3, 10
    sb   t3, 0(t0)

    # --- finish: QEMU exits with status 0; detfuzz stops with FINISHER_PASS ---
    li   t0, FINISHER
    li   t1, FINISHER_PASS
    sw   t1, 0(t0)
halt:
    j    halt                      # Unicorn's `until` address; never reached under QEMU

    .section .rodata
    .balign 4
hexdigits:
    .word 0x33323130, 0x37363534, 0x62613938, 0x66656463   # "0123456789abcdef"

    # The array has a 4 KiB page of its own: in QEMU, stores into a page that holds
    # translated code take the slow self-modifying-code path (about 20x slower).
    .data
    .align 12
array:
    .space 4096
