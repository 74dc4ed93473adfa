# memory.S: loads and stores of every width with sign and zero extension, misaligned
# lh/lhu/lw/sh/sw in RAM (QEMU completes them in M-mode without trapping), accesses that
# cross a page boundary, stores of x0, loads into x0, negative offsets, writes to the boot
# ROM (ignored) and the MMIO registers both machines model (UART0, CLINT, finisher). The
# buffers are dumped after every group.
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

    # DUMP n: print the first n words of `buf`, 4 per line.
    .macro DUMP n
    la      a1, buf
    li      a2, \n
    call    dump_words
    .endm

    # LOADS base, off: every load width of base+off on one line (lb lbu lh lhu lw).
    .macro LOADS base, off
    la      s0, \base
    li      a0, \off
    call    puthex_sp
    lb      a0, \off(s0)
    call    puthex_sp
    lbu     a0, \off(s0)
    call    puthex_sp
    lh      a0, \off(s0)
    call    puthex_sp
    lhu     a0, \off(s0)
    call    puthex_sp
    lw      a0, \off(s0)
    call    puthex_sp
    call    putnl
    .endm

    .text
    .globl _start
_start:
    la      sp, stack_top
    la      t0, trap_handler
    csrw    mtvec, t0

    SECTION aligned_stores
    la      s0, buf
    li      t0, 0x80
    sb      t0, 0(s0)
    li      t0, 0x7f
    sb      t0, 1(s0)
    li      t0, 0xfff
    sb      t0, 2(s0)               # only the low byte is stored
    li      t0, 0x1ff
    sb      t0, 3(s0)
    li      t0, 0x18000
    sh      t0, 4(s0)               # only the low half
    li      t0, 0x7ffe
    sh      t0, 6(s0)
    li      t0, 0x89abcdef
    sw      t0, 8(s0)
    li      t0, -1
    sw      t0, 12(s0)
    sb      x0, 13(s0)              # stores of x0
    sh      x0, 14(s0)
    li      t0, 0x55aa55aa
    sw      t0, 16(s0)
    sw      x0, 20(s0)
    addi    s1, s0, 32
    li      t0, 0x13579bdf
    sw      t0, -8(s1)              # negative offsets
    li      t0, 0xc3
    sb      t0, -4(s1)
    li      t0, 0x8765
    sh      t0, -2(s1)
    DUMP    8

    SECTION aligned_loads           # offset lb lbu lh lhu lw (lh/lw only where aligned)
    .irp off, 0, 4, 8, 12, 16, 20, 24, 28
    LOADS   buf, \off
    .endr
    .irp off, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15
    la      s0, buf
    li      a0, \off
    call    puthex_sp
    lb      a0, \off(s0)
    call    puthex_sp
    lbu     a0, \off(s0)
    call    puthex
    .endr
    la      s0, buf
    lh      a0, 2(s0)
    SHOW    lh_2, a0
    lhu     a0, 6(s0)
    SHOW    lhu_6, a0
    lh      a0, 10(s0)
    SHOW    lh_10, a0
    lh      a0, 30(s0)
    SHOW    lh_30, a0
    addi    s1, s0, 32
    lw      a0, -8(s1)
    SHOW    lw_neg8, a0
    lb      a0, -4(s1)
    SHOW    lb_neg4, a0
    lhu     a0, -2(s1)
    SHOW    lhu_neg2, a0

    SECTION loads_into_x0
    la      s0, buf
    lw      x0, 0(s0)
    lb      x0, 1(s0)
    lhu     x0, 2(s0)
    SHOW    x0, x0

    SECTION misaligned_loads        # offset lb lbu lh lhu lw
    .irp off, 1, 2, 3, 5, 6, 7, 9, 10, 11
    LOADS   buf, \off
    .endr

    SECTION misaligned_stores
    la      s0, buf
    li      t0, -1
    .irp off, 0, 4, 8, 12, 16, 20, 24, 28
    sw      t0, \off(s0)
    .endr
    li      t0, 0x11223344
    sw      t0, 1(s0)
    li      t0, 0x55667788
    sw      t0, 6(s0)
    li      t0, 0x99aabbcc
    sw      t0, 11(s0)
    li      t0, 0x1234dead
    sh      t0, 17(s0)
    li      t0, 0xbeef
    sh      t0, 19(s0)
    li      t0, 0xcafe
    sh      t0, 22(s0)
    sh      x0, 27(s0)
    sw      x0, 29(s0)
    DUMP    9
    SECTION misaligned_reload
    .irp off, 1, 6, 11, 17, 19, 22, 27, 29
    LOADS   buf, \off
    .endr

    SECTION page_crossing           # buf_page_end is the last word of a page
    la      s0, buf_page_end
    li      t0, 0x01234567
    sw      t0, 0(s0)
    li      t0, 0x89abcdef
    sw      t0, 4(s0)
    lw      a0, 2(s0)
    SHOW    lw_cross, a0
    lh      a0, 3(s0)
    SHOW    lh_cross, a0
    lhu     a0, 3(s0)
    SHOW    lhu_cross, a0
    li      t0, 0xa5b6c7d8
    sw      t0, 1(s0)
    li      t0, 0xe9fa
    sh      t0, 3(s0)
    lw      a0, 0(s0)
    SHOW    word0, a0
    lw      a0, 4(s0)
    SHOW    word1, a0

    SECTION rom
    li      s0, 0x1000
    lw      a0, 0(s0)
    SHOW    rom0, a0
    li      t0, 0x12345678
    sw      t0, 0(s0)               # the boot ROM ignores writes
    sb      t0, 5(s0)
    sh      t0, 10(s0)
    lw      a0, 0(s0)
    SHOW    rom0_after, a0
    lw      a0, 4(s0)
    SHOW    rom4_after, a0
    lw      a0, 8(s0)
    SHOW    rom8_after, a0
    lh      a0, 2(s0)
    SHOW    rom_lh2, a0
    lbu     a0, 7(s0)
    SHOW    rom_lbu7, a0
    lw      a0, 2(s0)               # misaligned in the ROM
    SHOW    rom_lw2, a0
    li      s1, 0x1000 + 0xeffc     # the last ROM word (zero-filled)
    lw      a0, 0(s1)
    SHOW    rom_last, a0

    SECTION uart_mcr_reset          # QEMU's serial_reset sets MCR = OUT2 (0x08)
    li      s0, UART0
    lbu     a0, 4(s0)
    SHOW    mcr_reset, a0

    SECTION uart
    li      s0, UART0
    lbu     a0, 5(s0)
    SHOW    lsr, a0
    lbu     a0, 2(s0)
    SHOW    iir, a0
    lbu     a0, 6(s0)
    SHOW    msr, a0
    lbu     a0, 3(s0)
    SHOW    lcr_reset, a0
    lbu     a0, 1(s0)
    SHOW    ier_reset, a0
    li      t0, 0x5a
    sb      t0, 7(s0)
    lbu     a0, 7(s0)
    SHOW    scr, a0
    li      t0, 0x83                # DLAB
    sb      t0, 3(s0)
    li      t0, 0x34
    sb      t0, 0(s0)
    li      t0, 0x12
    sb      t0, 1(s0)
    lbu     a1, 0(s0)
    lbu     a2, 1(s0)
    lbu     a3, 3(s0)
    li      t0, 0x03
    sb      t0, 3(s0)
    SHOW    dll, a1
    SHOW    dlm, a2
    SHOW    lcr_dlab, a3
    lbu     a0, 3(s0)
    SHOW    lcr, a0
    li      t0, 0x0f
    sb      t0, 1(s0)
    lbu     a0, 1(s0)
    SHOW    ier_written, a0         # no interrupt line: only the register is checked
    sb      x0, 1(s0)
    li      t0, 0x0f                # not 0x10: loopback would divert the output on QEMU
    sb      t0, 4(s0)
    lbu     a0, 4(s0)
    SHOW    mcr_written, a0
    lw      a0, 4(s0)               # a 4-byte read of a byte register: that register
    SHOW    mcr_word, a0
    sb      x0, 4(s0)
    lbu     a0, 5(s0)
    SHOW    lsr_again, a0
    li      t0, 'W'                 # word and half stores move the low byte
    sw      t0, 0(s0)
    li      t0, 'H'
    sh      t0, 0(s0)
    li      t0, '\n'
    sb      t0, 0(s0)
    lh      a0, 6(s0)               # a 2-byte read of MSR
    SHOW    msr_half, a0
    lw      a0, 0(s0)               # RBR: nothing received
    SHOW    rbr_word, a0

    SECTION clint
    li      s0, CLINT_MSIP
    lw      a0, 0(s0)
    SHOW    msip_reset, a0
    li      t0, 0xffffffff
    sw      t0, 0(s0)
    lw      a0, 0(s0)
    SHOW    msip_set, a0            # only bit 0 is kept
    csrr    a0, mip
    andi    a0, a0, 0x8
    SHOW    mip_msip, a0
    sw      x0, 0(s0)
    lw      a0, 0(s0)
    SHOW    msip_clear, a0
    csrr    a0, mip
    andi    a0, a0, 0x8
    SHOW    mip_msip_clear, a0
    li      s0, CLINT_MTIMECMP
    lw      a0, 0(s0)
    SHOW    mtimecmp_lo_reset, a0
    lw      a0, 4(s0)
    SHOW    mtimecmp_hi_reset, a0
    li      t0, 0x89abcdef
    sw      t0, 4(s0)
    li      t0, 0x01234567
    sw      t0, 0(s0)
    lw      a0, 0(s0)
    SHOW    mtimecmp_lo, a0
    lw      a0, 4(s0)
    SHOW    mtimecmp_hi, a0
    csrr    a0, mip
    andi    a0, a0, 0x80
    SHOW    mip_mtip_far, a0        # mtimecmp far in the future: MTIP low
    sw      x0, 4(s0)
    sw      x0, 0(s0)
    csrr    a0, mip
    andi    a0, a0, 0x80
    SHOW    mip_mtip_zero, a0       # mtimecmp = 0 <= mtime: MTIP high
    li      s0, CLINT_MTIME
    lw      a0, 4(s0)
    SHOW    mtime_hi, a0

    SECTION finisher
    li      s0, FINISHER
    lw      a0, 0(s0)
    SHOW    finisher_read, a0
    lhu     a0, 0(s0)
    SHOW    finisher_read_half, a0
    li      t0, 0x1234              # neither pass, fail nor reset: ignored
    sw      t0, 0(s0)
    li      t0, 0x5555
    sw      t0, 4(s0)               # not offset 0: ignored
    SHOW    still_running, x0

    call    finish_pass

dump_words:                         # a1 -> words, a2 = count; 4 per line
    addi    sp, sp, -16
    sw      ra, 0(sp)
    sw      s0, 4(sp)
    li      s0, 0
1:  lw      a0, 0(a1)
    call    puthex_sp
    addi    a1, a1, 4
    addi    s0, s0, 1
    andi    t0, s0, 3
    bnez    t0, 2f
    call    putnl
2:  addi    a2, a2, -1
    bnez    a2, 1b
    andi    t0, s0, 3
    beqz    t0, 3f
    call    putnl
3:  lw      s0, 4(sp)
    lw      ra, 0(sp)
    addi    sp, sp, 16
    ret

    .p2align 2
trap_handler:                       # not expected: print the trap and stop with code 1
    csrr    t0, mcause
    SHOW    unexpected_mcause, t0
    csrr    t0, mepc
    SHOW    unexpected_mepc, t0
    csrr    t0, mtval
    SHOW    unexpected_mtval, t0
    li      t0, FINISHER
    li      t1, (1 << 16) | 0x3333
    sw      t1, 0(t0)
1:  j       1b

    .data
    .p2align 2
buf:
    .space  64
    .p2align 12
    .space  4096 - 4
buf_page_end:                       # the last word of a page; the next page follows
    .space  16

# ---- output routines (clobber nothing but a0; puts/puthex*/putnl need a stack) ----------

    .include "runtime.inc"
