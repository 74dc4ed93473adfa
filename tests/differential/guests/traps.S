# traps.S: synchronous exceptions and CSR behaviour. The trap handler prints mcause, mepc
# (absolute: both machines load the same ELF), mtval and mstatus, then resumes at mepc + 4
# (or, for an instruction fetch fault, at ra, the link of the jump that faulted).
#
# Deliberate differences avoided here (README, "Where detfuzz deliberately differs"):
# mstatus.MPP is masked where it is read before the first trap (detfuzz: 3, QEMU: 0); only
# mstatus.MIE/MPIE are written; mepc is only written with aligned values; CSRs that QEMU
# implements but detfuzz deliberately does not (time, mstatush, mcountinhibit, medeleg,
# mideleg, mhpm*, mconfigptr, tselect/tdata*) are not touched.
#
# QEMU 7.2 differences avoided: mie accepts S/VS/LCOF enable bits on QEMU even with s=off, h=off
# (reads back 0x2eee after writing ~0; the spec makes them read-only 0 without S-mode), so mie
# is printed masked to the machine bits; SFENCE.VMA executes as a no-op in M-mode on QEMU
# although s=off (detfuzz: illegal), so it is not used. For JAL and taken branches to a
# misaligned target QEMU 7.2 writes a stale pc (the start of the translation block) to mtval
# instead of the target: those values are printed as "mtval_qemu_stale" (the harness masks them
# and checks detfuzz's against the "target" line printed before each such jump).
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

    # TRY_WORD w: execute the 32-bit word w as an instruction.
    .macro TRY_WORD w
    li      t0, \w
    SHOW    word, t0
    .word   \w
    .endm

    # TRY_CSR c: read CSR c (an illegal instruction when c does not exist).
    .macro TRY_CSR c
    li      t0, \c
    SHOW    csr, t0
    csrr    t1, \c
    .endm

    # TRY_LOAD op, addr / TRY_STORE op, addr: one access; the destination keeps 0xdead.
    .macro TRY_LOAD op, addr
    li      s0, \addr
    SHOW    \op\()_addr, s0
    li      t1, 0xdead
    \op     t1, 0(s0)
    SHOW    rd_after, t1
    .endm
    .macro TRY_STORE op, addr
    li      s0, \addr
    SHOW    \op\()_addr, s0
    li      t1, 0
    \op     t1, 0(s0)
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    li      s10, 0                  # 1 while a jump whose mtval is stale on QEMU is tested
    csrr    t0, mstatus
    li      t1, ~0x1800             # MPP masked (detfuzz reads 3, QEMU 0 before a trap)
    and     t0, t0, t1
    SHOW    mstatus_reset, t0
    la      t0, trap_handler
    csrw    mtvec, t0

    SECTION illegal_decode
    TRY_WORD 0x00000000
    TRY_WORD 0xffffffff
    TRY_WORD 0x02009093             # slli with shamt[5] set (RV64 only)
    TRY_WORD 0x4000c033             # xor with funct7 0x20
    TRY_WORD 0x0400e0b3             # OP with funct7 2
    TRY_WORD 0x0000000b             # custom-0
    TRY_WORD 0x10200073             # sret (no S-mode)
    TRY_WORD 0x00200073             # uret
    TRY_WORD 0x7b200073             # dret
    TRY_WORD 0x0000200f             # MISC-MEM funct3 2
    TRY_WORD 0xfff0f00f             # fence with rs1 != 0 and fm = 0xf
    TRY_WORD 0x00003003             # ld
    TRY_WORD 0x00006003             # lwu
    TRY_WORD 0x00003023             # sd
    TRY_WORD 0x0000001b             # addiw
    TRY_WORD 0x0000202f             # amo (a=off)
    TRY_WORD 0x00002007             # flw (f=off)
    TRY_WORD 0x00000173             # ecall with rd = 2
    TRY_WORD 0x000000f3             # ecall with rd = 1
    TRY_WORD 0x30200273             # mret with rd = 4
    TRY_WORD 0x00004073             # SYSTEM funct3 4
    TRY_WORD 0x42005013             # srai with bit 25 set
    TRY_WORD 0x0000100f             # fence.i: legal
    TRY_WORD 0x8330000f             # fence.tso: legal
    TRY_WORD 0x0ff0000f             # fence iorw, iorw: legal
    TRY_WORD 0x00001013             # slli x0, x0, 0: legal

    SECTION illegal_csr
    .irp c, 0x7c0, 0x800, 0xfff, 0x100, 0x104, 0x144, 0x180, 0x3a0, 0x3b0, 0x306, 0x30a, 0x747, 0x7b0, 0x34a, 0x34b, 0xda0, 0x321, 0x015, 0x001, 0x003
    TRY_CSR \c
    .endr
    .irp c, mvendorid, marchid, mimpid, mhartid, cycle, cycleh, instret, instreth
    la      t0, 1f
    SHOW    write_ro, t0
1:  csrw    \c, x0                  # a write to a read-only CSR
    csrrwi  x0, \c, 0               # rd = x0 does not make it legal
    li      t2, 1
    csrrs   t1, \c, t2              # rs1 != x0: a write
    csrrci  t1, \c, 1
    # Not tested: CSRRS/CSRRC with rs1 != x0 holding zero. The spec makes it a write
    # attempt (illegal on a read-only CSR), as detfuzz does; QEMU 7.2 checks the value of
    # rs1 instead of the register number and lets it through.
    csrrs   t1, \c, x0              # legal: no write
    csrrc   x0, \c, x0              # legal
    csrrsi  t1, \c, 0               # legal
    csrrci  t1, \c, 0               # legal
    .endr

    SECTION ecall_ebreak
    ecall
    ebreak
    li      t0, 0x88                # MIE|MPIE: seen as MPIE in the handler, restored by mret
    csrs    mstatus, t0
    ecall
    csrr    t0, mstatus
    li      t1, ~0x1800
    and     t0, t0, t1
    SHOW    mstatus_after_mret, t0
    csrci   mstatus, 8

    SECTION access_faults
    TRY_LOAD lw, 0x0
    TRY_LOAD lb, 0x100
    TRY_LOAD lhu, 0x800
    TRY_LOAD lw, 0x20000
    TRY_LOAD lw, 0x02010000         # past the CLINT window (QEMU: 0x0200c000 on)
    TRY_LOAD lw, 0x04000000
    TRY_LOAD lw, 0x10000100         # past the UART window
    TRY_LOAD lw, 0x80800000         # just past RAM
    TRY_LOAD lbu, 0x90000000
    TRY_LOAD lw, 0xfffffffc
    TRY_LOAD lb, 0x0200bff8         # CLINT accepts 4-byte accesses only (QEMU: 4 and 8)
    TRY_LOAD lh, 0x0200bff8
    TRY_LOAD lhu, 0x02004000
    TRY_LOAD lb, 0x00100000         # the finisher accepts 2- and 4-byte accesses
    TRY_STORE sw, 0x0
    TRY_STORE sb, 0x100
    TRY_STORE sh, 0x80800000
    TRY_STORE sw, 0x80800000
    TRY_STORE sw, 0x10000100
    TRY_STORE sw, 0xfffffffc
    TRY_STORE sb, 0x02000000        # msip, byte-wide
    TRY_STORE sh, 0x02004000        # mtimecmp, half-word
    TRY_STORE sb, 0x00100000        # finisher, byte-wide
    li      t0, 0x80800000
    li      t1, 0x12345678
    lw      t1, 0(t0)               # rd == rs1 is not written by a faulting load
    SHOW    rd_eq_rs1_after, t1
    lw      x0, 0(t0)               # a load into x0 still faults

    SECTION misaligned_jumps
    li      s10, 1
    li      ra, 0x5a5a5a5a
    la      t0, 1f + 6
    SHOW    target, t0
1:  jal     ra, 1b + 6              # jal: traps on the jal, rd is not written
    SHOW    ra_after, ra
    la      t0, 2f + 10
    SHOW    target, t0
2:  beq     x0, x0, 2b + 10         # taken branch
    la      t0, 3f - 6
    SHOW    target, t0
3:  bne     s10, x0, 3b - 6         # taken branch backwards
    la      t0, 4f - 2
    SHOW    untaken_target, t0
4:  blt     s10, x0, 4b - 2
    SHOW    not_taken, x0           # a branch not taken never traps
    li      s10, 0                  # QEMU 7.2 is right for jalr: cpu_pc holds the target there
    la      t1, 5f + 2
    li      ra, 0x5a5a5a5a
5:  jalr    ra, 0(t1)
    SHOW    ra_after, ra
    la      t1, 6f + 3              # bit 0 is cleared first: 6f + 2
6:  jalr    ra, 0(t1)
    SHOW    ra_after, ra
    la      t1, 7f - 2
7:  jalr    t1, 4(t1)               # rd == rs1: not written either
    SHOW    rd_after, t1

    SECTION fetch_faults
    jalr    ra, 0(x0)
    li      t0, 0x100
    jalr    ra, 0(t0)
    li      t0, 0x80800000
    jalr    ra, 0(t0)
    li      t0, 0x807ffffc          # write a nop into the last word of RAM and run off the end
    li      t1, 0x00000013
    sw      t1, 0(t0)
    fence.i
    jalr    ra, 0(t0)
    li      t0, 0xfffffffc
    jalr    ra, 0(t0)

    SECTION illegal_16bit           # a low pair != 0b11 is a 16-bit encoding (no C: illegal)
    # mtval holds the 16 bits of that instruction (QEMU), not the 32-bit word around it.
    TRY_WORD 0x12340001
    TRY_WORD 0xabcd0002
    TRY_WORD 0x00008000

    SECTION window_uart             # QEMU maps 8 bytes of UART0 (serial_mm, regshift 0)
    TRY_LOAD lbu, 0x10000008
    TRY_LOAD lw, 0x1000000c
    TRY_LOAD lbu, 0x100000ff
    li      t0, 'u'
    li      s0, 0x10000008
    SHOW    sb_addr, s0
    sb      t0, 0(s0)               # must not reach the transmitter
    li      t0, '\n'
    sb      t0, 0(s0)

    SECTION window_clint            # QEMU's ACLINT covers 0x02000000-0x0200bfff
    TRY_LOAD lw, 0x0200c000
    TRY_LOAD lw, 0x0200fffc
    TRY_STORE sw, 0x0200c000

    SECTION misaligned_cross_fault  # misaligned accesses whose second part is unmapped
    TRY_LOAD lw, 0x807ffffe
    TRY_LOAD lhu, 0x807fffff
    TRY_STORE sw, 0x807ffffd
    TRY_STORE sh, 0x807fffff
    TRY_LOAD lw, 0x0000fffe         # the boot ROM ends at 0x10000

    SECTION cross_fault_no_partial_store
    li      s0, 0x807ffffc          # the faulting stores above wrote nothing
    lw      t0, 0(s0)
    SHOW    last_ram_word, t0

    SECTION misaligned_mmio         # QEMU splits a misaligned I/O access into aligned ones
    TRY_LOAD lw, 0x10000001         # RBR (4-byte read: one register) and MCR, combined
    TRY_LOAD lw, 0x10000003
    TRY_LOAD lhu, 0x10000005        # LSR and MSR through two 2-byte reads
    TRY_LOAD lw, 0x02004002         # mtimecmp low and high halves
    TRY_LOAD lw, 0x00100002         # the finisher reads 0
    TRY_LOAD lw, 0x10000006         # the second part is past the UART: a fault
    TRY_LOAD lh, 0x0200bff9         # 2-byte parts are not CLINT sizes: a fault
    TRY_STORE sw, 0x02000001        # stored byte by byte: bytes fault on the CLINT
    li      s0, UART0
    sb      x0, 7(s0)
    li      t0, 0x4142
    li      s1, 0x10000007
    SHOW    sh_addr, s1
    sh      t0, 0(s1)               # SCR gets the first byte, the second faults
    lbu     t1, 7(s0)
    SHOW    scr_after, t1

    SECTION mtvec
    csrr    s0, mtvec
    la      t0, trap_handler
    SHOW    handler, t0
    .irp mode, 0, 1, 2, 3
    la      t1, 0x80010000 + \mode
    csrw    mtvec, t1
    csrr    t2, mtvec
    SHOW    mtvec_mode_\mode, t2    # modes 2 and 3 are reserved: the write is ignored
    .endr
    li      t1, 0x80010105          # vectored with an unaligned base
    csrw    mtvec, t1
    csrr    t2, mtvec
    SHOW    mtvec_unaligned, t2
    li      t1, 0x80010106
    csrw    mtvec, t1
    csrr    t2, mtvec
    SHOW    mtvec_reserved_kept, t2
    csrw    mtvec, s0
    csrr    t2, mtvec
    SHOW    mtvec_restored, t2

    SECTION machine_csrs
    .irp c, misa, mvendorid, marchid, mimpid, mhartid
    csrr    t0, \c
    SHOW    \c, t0
    .endr
    li      t0, -1
    csrw    misa, t0                # misa is not writable: ignored
    csrr    t0, misa
    SHOW    misa_after_write, t0
    csrw    mscratch, x0
    li      t0, 0x12345678
    csrrw   t1, mscratch, t0
    SHOW    mscratch_old, t1
    csrrs   t1, mscratch, s10       # s10 = 0: reads, sets nothing
    li      t0, 0xf000000f
    csrrs   t1, mscratch, t0
    SHOW    mscratch_before_set, t1
    csrrci  t1, mscratch, 0x1f
    SHOW    mscratch_before_clear, t1
    csrrsi  t1, mscratch, 0x15
    csrr    t1, mscratch
    SHOW    mscratch, t1
    csrrwi  t1, mscratch, 7
    csrr    t1, mscratch
    SHOW    mscratch_imm, t1
    li      t0, -1
    csrw    mscratch, t0
    csrr    t1, mscratch
    SHOW    mscratch_ones, t1
    li      t0, -1                  # mie: only the machine bits are compared (see above)
    csrw    mie, t0
    csrr    t1, mie
    andi    t1, t1, 0x7ff
    li      t0, 0x888
    and     t1, t1, t0
    SHOW    mie_machine_bits, t1
    csrw    mie, x0
    csrr    t1, mie
    SHOW    mie_zero, t1
    li      t0, 0x888
    csrs    mie, t0
    csrci   mie, 0x8
    csrr    t1, mie
    SHOW    mie_set_clear, t1
    csrw    mie, x0
    li      t0, 0x888               # mip's machine bits are read-only: writes are ignored
    csrw    mip, t0
    csrr    t1, mip
    SHOW    mip, t1                 # MTIP: mtimecmp = 0 <= mtime since reset
    csrc    mip, t0
    csrr    t1, mip
    SHOW    mip_after_clear, t1
    .irp v, 0x80001234, 0xfffffffc, 0
    li      t0, \v
    csrw    mepc, t0
    csrr    t1, mepc
    SHOW    mepc, t1
    .endr
    .irp v, 0x8000000b, 0xffffffff, 0x1f, 0
    li      t0, \v
    csrw    mcause, t0
    csrr    t1, mcause
    SHOW    mcause, t1
    csrw    mtval, t0
    csrr    t1, mtval
    SHOW    mtval, t1
    .endr
    li      t0, 0x8                 # mstatus.MIE alone (mie = 0: nothing is taken)
    csrs    mstatus, t0
    csrr    t1, mstatus
    li      t0, ~0x1800
    and     t1, t1, t0
    SHOW    mstatus_mie, t1
    li      t0, 0x80
    csrw    mstatus, t0
    csrr    t1, mstatus
    li      t0, ~0x1800
    and     t1, t1, t0
    SHOW    mstatus_mpie, t1
    csrw    mstatus, x0
    csrr    t1, mstatus
    li      t0, ~0x1800
    and     t1, t1, t0
    SHOW    mstatus_zero, t1

    SECTION end
    call    finish_pass

    .p2align 2
trap_handler:
    addi    sp, sp, -16
    sw      t0, 0(sp)
    sw      t1, 4(sp)
    sw      ra, 8(sp)
    csrr    t0, mcause
    SHOW    mcause, t0
    csrr    t0, mepc
    SHOW    mepc, t0
    csrr    t0, mtval
    beqz    s10, 1f
    SHOW    mtval_qemu_stale, t0
    j       2f
1:  SHOW    mtval, t0
2:  csrr    t0, mstatus             # after a trap MPP is M on both machines
    SHOW    mstatus, t0
    csrr    t0, mcause
    li      t1, 1
    bne     t0, t1, 3f
    lw      t0, 8(sp)               # instruction fetch fault: back to the link
    csrw    mepc, t0
    j       4f
3:  csrr    t0, mepc
    addi    t0, t0, 4
    csrw    mepc, t0
4:  lw      ra, 8(sp)
    lw      t1, 4(sp)
    lw      t0, 0(sp)
    addi    sp, sp, 16
    mret

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
