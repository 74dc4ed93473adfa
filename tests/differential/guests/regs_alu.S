# regs_alu.S: every RV32I/M register-register and immediate ALU instruction, the branches
# and jumps, over edge values (0, 1, -1, INT_MIN, INT_MAX, shift amounts 0/1/31/32/33 and
# their neighbours, division by zero, INT_MIN / -1). Every result is printed.
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

    .equ    NVALS_A, 8                  # the lengths of vals_a and vals_b (checked at the end)
    .equ    NVALS_B, 13

    # BINOP op: print "op:" and, for every a in vals_a, a line of op(a, b) for b in vals_b.
    .macro BINOP op
    la      a0, .Lbin\@
    call    puts
    la      s0, vals_a
    li      s1, NVALS_A
1:  lw      s2, 0(s0)
    la      s3, vals_b
    li      s4, NVALS_B
2:  lw      s5, 0(s3)
    \op     a0, s2, s5
    call    puthex_sp
    addi    s3, s3, 4
    addi    s4, s4, -1
    bnez    s4, 2b
    call    putnl
    addi    s0, s0, 4
    addi    s1, s1, -1
    bnez    s1, 1b
    .pushsection .rodata
.Lbin\@: .asciz "\op:\n"
    .popsection
    .endm

    # IMMOP op, imm: print "op imm:" and op(a, imm) for every a in vals_a on one line.
    .macro IMMOP op, imm
    la      a0, .Limm\@
    call    puts
    la      s0, vals_a
    li      s1, NVALS_A
1:  lw      s2, 0(s0)
    \op     a0, s2, \imm
    call    puthex_sp
    addi    s0, s0, 4
    addi    s1, s1, -1
    bnez    s1, 1b
    call    putnl
    .pushsection .rodata
.Limm\@: .asciz "\op \imm:\n"
    .popsection
    .endm

    # BRANCH op: for every (a, b), print 1 if `op a, b` is taken, else 0 (one line per a).
    .macro BRANCH op
    la      a0, .Lbr\@
    call    puts
    la      s0, vals_a
    li      s1, NVALS_A
1:  lw      s2, 0(s0)
    la      s3, vals_b
    li      s4, NVALS_B
2:  lw      s5, 0(s3)
    li      a0, 1
    \op     s2, s5, 3f
    li      a0, 0
3:  call    puthex_sp
    addi    s3, s3, 4
    addi    s4, s4, -1
    bnez    s4, 2b
    call    putnl
    addi    s0, s0, 4
    addi    s1, s1, -1
    bnez    s1, 1b
    .pushsection .rodata
.Lbr\@: .asciz "\op:\n"
    .popsection
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0

    SECTION rr_alu
    BINOP   add
    BINOP   sub
    BINOP   sll
    BINOP   slt
    BINOP   sltu
    BINOP   xor
    BINOP   srl
    BINOP   sra
    BINOP   or
    BINOP   and

    SECTION muldiv
    BINOP   mul
    BINOP   mulh
    BINOP   mulhsu
    BINOP   mulhu
    BINOP   div
    BINOP   divu
    BINOP   rem
    BINOP   remu

    SECTION imm_alu
    .irp imm, 0, 1, -1, 2, 7, 31, 2047, -2048, 0x555, -0x556
    IMMOP   addi, \imm
    IMMOP   slti, \imm
    IMMOP   sltiu, \imm
    IMMOP   xori, \imm
    IMMOP   ori, \imm
    IMMOP   andi, \imm
    .endr

    SECTION imm_shift
    .irp imm, 0, 1, 2, 15, 16, 30, 31
    IMMOP   slli, \imm
    IMMOP   srli, \imm
    IMMOP   srai, \imm
    .endr

    SECTION upper
    lui     t0, 0
    SHOW    lui_0, t0
    lui     t0, 1
    SHOW    lui_1, t0
    lui     t0, 0x80000
    SHOW    lui_80000, t0
    lui     t0, 0xfffff
    SHOW    lui_fffff, t0
    lui     t0, 0x12345
    SHOW    lui_12345, t0
auipc_here:
    auipc   t0, 0
    SHOW    auipc_0, t0
    auipc   t0, 0xfffff
    SHOW    auipc_fffff, t0
    auipc   t0, 0x7ffff
    SHOW    auipc_7ffff, t0

    SECTION x0_and_aliasing
    li      t0, -1
    add     x0, t0, t0              # writes to x0 vanish
    addi    x0, x0, 5
    lui     x0, 0x12345
    mul     x0, t0, t0
    SHOW    x0, x0
    li      t1, 0x7fffffff
    add     t1, t1, t1              # rd == rs1 == rs2
    SHOW    add_alias, t1
    li      t1, -5
    mul     t1, t1, t1
    SHOW    mul_alias, t1
    li      t1, 0x80000000
    li      t2, -1
    div     t2, t1, t2              # INT_MIN / -1 into the divisor's register
    SHOW    div_alias, t2
    li      t1, 33
    sll     t1, t1, t1              # shift by 33 & 31 = 1
    SHOW    sll_alias, t1
    li      t1, 0x80000000
    sra     t1, t1, t1              # shift amount 0 (the low five bits of INT_MIN)
    SHOW    sra_alias, t1

    SECTION branches
    BRANCH  beq
    BRANCH  bne
    BRANCH  blt
    BRANCH  bge
    BRANCH  bltu
    BRANCH  bgeu

    SECTION jumps
    jal     ra, 1f
1:  la      t0, 1b
    sub     t0, ra, t0
    SHOW    jal_link_minus_target, t0       # 0: the link is pc+4 of the jal, which is 1b
    la      t1, 2f
    jalr    ra, 0(t1)
2:  sub     t0, ra, t1
    SHOW    jalr_link_minus_target, t0
    la      t1, 3f
    addi    t1, t1, 1                       # jalr clears bit 0 of the target: legal
    jalr    ra, 0(t1)
3:  la      t0, 3b
    sub     t0, ra, t0
    SHOW    jalr_odd_link, t0
    la      t1, 4f - 8
    jalr    ra, 8(t1)                       # offset added before clearing bit 0
4:  la      t0, 4b
    sub     t0, ra, t0
    SHOW    jalr_offset_link, t0
    la      t1, 5f + 7
    jalr    t1, -7(t1)                      # rd == rs1: the target uses the old value
5:  la      t0, 5b
    sub     t0, t1, t0
    SHOW    jalr_rd_eq_rs1, t0
    jal     x0, 6f                          # j with rd = x0
    li      t2, 0xbad
6:  SHOW    x0_after_j, x0

    call    finish_pass

    .p2align 2
trap_handler:                       # not expected: print the trap and stop with code 1
    csrr    t0, mcause
    SHOW    unexpected_mcause, t0
    csrr    t0, mepc
    SHOW    unexpected_mepc, t0
    li      t0, FINISHER
    li      t1, (1 << 16) | 0x3333
    sw      t1, 0(t0)
1:  j       1b

    .data
    .p2align 2
vals_a:
    .word   0, 1, -1, 0x80000000, 0x7fffffff, 0x12345678, -7, 7
    .if (. - vals_a) != NVALS_A * 4
    .error "NVALS_A does not match vals_a"
    .endif
vals_b:
    .word   0, 1, -1, 0x80000000, 0x7fffffff, 2, -2, 31, 32, 33, 3, -7, 0x80000001
    .if (. - vals_b) != NVALS_B * 4
    .error "NVALS_B does not match vals_b"
    .endif

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
