# icount.S: which instructions the instruction counter counts, observed through CLINT mtime.
#
# With `-icount shift=7` every instruction is 128 ns and mtime ticks every 100 ns, so a `lw`
# of mtime (which sees its own count, pinned) identifies the icount exactly:
# mtime = floor(icount * 128 / 100)  <=>  icount = (mtime * 100 + 127) >> 7.
# Each case sits between two such loads and prints the icount difference ("d_..."): the
# instructions of the case, the trap handler's instructions and the closing load. At shift 0
# the same output is printed (mtime = icount / 100 there, so the differences are coarse, but
# both machines must still agree byte for byte).
#
# Expected at shift 7 (README "Time and counting"): ECALL, EBREAK, an instruction illegal at
# decode and a jump to a misaligned target count (d = 1 + 5 handler + 1 = 7); a load/store
# access fault and an illegal CSR access do not (d = 6); an instruction fetch fault executes
# nothing (d = jalr 1 + 3 handler + 1 = 5). minstret and mcycle are read but not printed:
# detfuzz deliberately counts retired instructions in minstret and instructions in mcycle,
# while QEMU reads its virtual clock (icount << shift, in ns) for both (README, "Where detfuzz
# deliberately differs").
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

    # CASE name: close a measurement opened by `lw s0, 0(s11)`: print mtime at both ends and
    # the icount difference.
    .macro CASE name
    lw      s1, 0(s11)
    SHOW    \name\()_mtime0, s0
    SHOW    \name\()_mtime1, s1
    mv      a0, s0
    call    icount_of
    mv      s2, a0
    mv      a0, s1
    call    icount_of
    sub     s2, a0, s2
    SHOW    d_\name, s2
    .endm

    .text
    .globl _start
_start:
    li      s11, CLINT_MTIME        # lui + addi: the 7th and 8th instructions after reset
    lw      s0, 0(s11)              # the 9th
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0

    SECTION boot                    # the reset vector is 6 instructions: icount 9 here
    SHOW    mtime_at_entry, s0
    mv      a0, s0
    call    icount_of
    SHOW    icount_at_entry, a0

    SECTION plain
    lw      s0, 0(s11)
    .rept 10
    addi    t0, t0, 1
    .endr
    CASE    ten_addi
    lw      s0, 0(s11)
    csrr    t0, minstret            # legal reads of the counters count as one each
    csrr    t0, mcycle
    csrr    t0, instret
    csrr    t0, cycle
    CASE    counter_reads
    lw      s0, 0(s11)
    fence
    fence.i
    csrr    t0, mhartid
    CASE    fence_csr
    lw      s0, 0(s11)
    li      t0, UART0
    li      t1, '.'
    sb      t1, 0(t0)               # an MMIO store
    CASE    mmio_store
    call    putnl

    SECTION counted_traps
    lw      s0, 0(s11)
    ecall
    CASE    ecall
    lw      s0, 0(s11)
    ebreak
    CASE    ebreak
    lw      s0, 0(s11)
    .word   0                       # illegal at decode
    CASE    illegal_zero
    lw      s0, 0(s11)
    .word   0xffffffff
    CASE    illegal_ones
    lw      s0, 0(s11)
    .word   0x0000200f              # MISC-MEM with funct3 2: illegal at decode
    CASE    illegal_miscmem
    lw      s0, 0(s11)
1:  jal     ra, 1b + 6              # misaligned target: traps, rd is not written
    CASE    jal_misaligned
    lw      s0, 0(s11)
1:  bne     s11, x0, 1b + 10
    CASE    branch_misaligned
    la      t1, 2f + 2
    lw      s0, 0(s11)
    jalr    ra, 0(t1)
2:  CASE    jalr_misaligned

    SECTION uncounted_traps
    lw      s0, 0(s11)
    lw      t0, 0(x0)               # load access fault
    CASE    load_fault
    lw      s0, 0(s11)
    sw      t0, 0(x0)               # store access fault
    CASE    store_fault
    li      t1, 0x80800000          # just past the end of RAM
    lw      s0, 0(s11)
    lb      t0, 0(t1)
    CASE    load_fault_ram_end
    lw      s0, 0(s11)
    csrr    t0, 0x7c0               # no such CSR
    CASE    illegal_csr
    lw      s0, 0(s11)
    csrw    mhartid, t0             # a read-only CSR
    CASE    csr_write_read_only
    lw      s0, 0(s11)
    csrrs   t0, cycle, s11          # rs1 != x0: a write, even of a read-only CSR
    CASE    csr_set_read_only

    SECTION fetch_fault
    la      t0, fetch_handler
    csrw    mtvec, t0
    lw      s0, 0(s11)
    jalr    ra, 0(x0)               # counted; the fetch at 0 executes nothing
    CASE    fetch_fault_zero
    li      t1, 0x80800000
    lw      s0, 0(s11)
    jalr    ra, 0(t1)
    CASE    fetch_fault_ram_end
    la      t0, trap_handler
    csrw    mtvec, t0

    SECTION wfi_pending             # WFI with an enabled interrupt pending but MIE clear:
    li      t0, CLINT_MTIMECMP      # it does not halt (mtimecmp = 0 <= mtime: MTIP is high)
    sw      x0, 4(t0)
    sw      x0, 0(t0)
    li      t0, 0x80
    csrw    mie, t0
    # QEMU 7.2 does not end the translation block at WFI and leaves the block's whole
    # icount charged when helper_wfi exits the CPU loop, so the instructions after a WFI
    # in the same block are counted twice. A block never crosses a page, so a WFI in the
    # last word of a page is counted exactly once there; detfuzz counts it once anywhere.
    j       1f
    .p2align 12
    .space  4096 - 8
1:  lw      s0, 0(s11)
    wfi                             # the last word of the page
    CASE    wfi_no_sleep
    csrw    mie, x0

    SECTION mret
    li      t0, 0x1800              # MPP = M: QEMU 7.2's MRET leaves MPP = U even with u=off,
    csrs    mstatus, t0             # so a second MRET without a trap in between would drop
    la      t0, 1f                  # to U-mode there (detfuzz hard-wires MPP to M)
    csrw    mepc, t0
    lw      s0, 0(s11)
    mret
1:  CASE    mret

    SECTION end
    lw      s0, 0(s11)
    SHOW    mtime_end, s0
    call    finish_pass

# icount_of: a0 = mtime -> a0 = icount, exact at shift 7 ((mtime * 100 + 127) >> 7).
icount_of:
    li      t0, 100
    mul     a0, a0, t0
    addi    a0, a0, 127
    srli    a0, a0, 7
    ret

    .p2align 2
trap_handler:                       # 5 instructions, mret included
    csrr    s9, mcause
    csrr    t6, mepc
    addi    t6, t6, 4
    csrw    mepc, t6
    mret

    .p2align 2
fetch_handler:                      # 3 instructions: back to the caller of the bad jump
    csrr    s9, mcause
    csrw    mepc, ra
    mret

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
