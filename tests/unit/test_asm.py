"""The assembler: instructions, pseudo-instructions, labels, directives, expressions,
errors that name the line, and differential checks against GNU as."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from vm.asm import AsmError, assemble, assemble_program, encode
from vm.disasm import disassemble
from vm.isa import INSNS, decode

from .helpers import RAM_BASE

MASK32 = 0xFFFF_FFFF


def words(src: str, base: int = RAM_BASE) -> list[int]:
    image = assemble(src, base=base)
    assert len(image) % 4 == 0
    return [int.from_bytes(image[i : i + 4], "little") for i in range(0, len(image), 4)]


def one(src: str, base: int = RAM_BASE) -> int:
    (word,) = words(src, base)
    return word


# -- canonical instructions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "word"),
    [
        ("add a0, a1, a2", 0x00C5_8533),
        ("sub x10, x11, x12", 0x40C5_8533),
        ("addi sp, sp, -16", 0xFF01_0113),
        ("slli a0, a0, 31", 0x01F5_1513),
        ("srai t0, t1, 3", 0x4033_5293),
        ("lui a0, 0x12345", 0x1234_5537),
        ("auipc ra, 0xfffff", 0xFFFF_F097),
        ("lw a0, 12(sp)", 0x00C1_2503),
        ("lbu a1, -1(a0)", 0xFFF5_4583),
        ("sw ra, 28(sp)", 0x0011_2E23),
        ("sb zero, 0(t0)", 0x0002_8023),
        ("jalr ra, 0(t0)", 0x0002_80E7),
        ("ecall", 0x0000_0073),
        ("ebreak", 0x0010_0073),
        ("mret", 0x3020_0073),
        ("wfi", 0x1050_0073),
        ("fence.i", 0x0000_100F),
        ("fence iorw, iorw", 0x0FF0_000F),
        ("fence rw, w", 0x0310_000F),
        ("csrrw t0, mscratch, t1", 0x3403_12F3),
        ("csrrsi zero, mstatus, 8", 0x3004_6073),
        ("csrrc a0, 0x344, a1", 0x3445_B573),
        ("mul a0, a1, a2", 0x02C5_8533),
        ("remu s0, s1, s2", 0x0324_F433),
        ("ADD A0, A1, A2", 0x00C5_8533),  # case-insensitive
        ("add fp, s0, x8", 0x0084_0433),  # fp is s0 is x8
    ],
)
def test_canonical_instructions_assemble_to_the_reference_words(src, word):
    assert one(src) == word


@pytest.mark.parametrize("insn", INSNS, ids=lambda i: i.name)
def test_every_table_row_can_be_assembled_from_its_disassembly(insn):
    assert one(disassemble(insn.match)) == insn.match


def test_branch_and_jump_targets_are_pc_relative():
    w = words("""
    top: nop
         beq a0, a1, top
         jal ra, top
         bne a0, a1, end
    end: nop
    """)
    assert w[1] == encode("beq", rs1=10, rs2=11, imm=-4)
    assert w[2] == encode("jal", rd=1, imm=-8)
    assert w[3] == encode("bne", rs1=10, rs2=11, imm=4)


def test_the_base_address_moves_labels_but_not_relative_code():
    prog = assemble_program("nop\nhere: j here\n", base=0x1000)
    assert prog.base == 0x1000 and prog.address_of("here") == 0x1004
    assert prog.image == assemble("nop\nhere: j here\n")


# -- pseudo-instructions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("nop", [encode("addi")]),
        ("li a0, 0", [encode("addi", rd=10)]),
        ("li a0, -1", [encode("addi", rd=10, imm=-1)]),
        ("li a0, 2047", [encode("addi", rd=10, imm=2047)]),
        ("li a0, -2048", [encode("addi", rd=10, imm=-2048)]),
        (
            "li a0, 2048",
            [encode("lui", rd=10, imm=0x1000), encode("addi", rd=10, rs1=10, imm=-2048)],
        ),
        ("li a0, 0x12345000", [encode("lui", rd=10, imm=0x12345000)]),
        (
            "li a0, 0x12345678",
            [encode("lui", rd=10, imm=0x12345000), encode("addi", rd=10, rs1=10, imm=0x678)],
        ),
        ("li a0, 0x80000000", [encode("lui", rd=10, imm=0x80000000)]),
        ("li a0, 0xffffffff", [encode("addi", rd=10, imm=-1)]),
        (
            "li a0, 0x7fffffff",
            [encode("lui", rd=10, imm=0x80000000), encode("addi", rd=10, rs1=10, imm=-1)],
        ),
        ("li a0, -2147483648", [encode("lui", rd=10, imm=0x80000000)]),
        ("mv a0, a1", [encode("addi", rd=10, rs1=11)]),
        ("not a0, a1", [encode("xori", rd=10, rs1=11, imm=-1)]),
        ("neg a0, a1", [encode("sub", rd=10, rs2=11)]),
        ("seqz a0, a1", [encode("sltiu", rd=10, rs1=11, imm=1)]),
        ("snez a0, a1", [encode("sltu", rd=10, rs2=11)]),
        ("sltz a0, a1", [encode("slt", rd=10, rs1=11)]),
        ("sgtz a0, a1", [encode("slt", rd=10, rs2=11)]),
        ("beqz a0, .+8", [encode("beq", rs1=10, imm=8)]),
        ("bnez a0, .-4", [encode("bne", rs1=10, imm=-4)]),
        ("bltz a0, .+8", [encode("blt", rs1=10, imm=8)]),
        ("bgez a0, .+8", [encode("bge", rs1=10, imm=8)]),
        ("blez a0, .+8", [encode("bge", rs2=10, imm=8)]),
        ("bgtz a0, .+8", [encode("blt", rs2=10, imm=8)]),
        ("bgt a0, a1, .+8", [encode("blt", rs1=11, rs2=10, imm=8)]),
        ("ble a0, a1, .+8", [encode("bge", rs1=11, rs2=10, imm=8)]),
        ("bgtu a0, a1, .+8", [encode("bltu", rs1=11, rs2=10, imm=8)]),
        ("bleu a0, a1, .+8", [encode("bgeu", rs1=11, rs2=10, imm=8)]),
        ("j .+16", [encode("jal", imm=16)]),
        ("jal .+16", [encode("jal", rd=1, imm=16)]),
        ("jr t0", [encode("jalr", rs1=5)]),
        ("jalr t0", [encode("jalr", rd=1, rs1=5)]),
        ("jalr a0, t0, 8", [encode("jalr", rd=10, rs1=5, imm=8)]),
        ("ret", [encode("jalr", rs1=1)]),
        ("fence", [encode("fence", imm=0xFF)]),
        ("csrr a0, mhartid", [encode("csrrs", rd=10, csr=0xF14)]),
        ("csrw mtvec, t0", [encode("csrrw", rs1=5, csr=0x305)]),
        ("csrs mie, t0", [encode("csrrs", rs1=5, csr=0x304)]),
        ("csrc mstatus, t0", [encode("csrrc", rs1=5, csr=0x300)]),
        ("csrwi mstatus, 8", [encode("csrrwi", imm=8, csr=0x300)]),
        ("csrsi mstatus, 8", [encode("csrrsi", imm=8, csr=0x300)]),
        ("csrci mstatus, 31", [encode("csrrci", imm=31, csr=0x300)]),
        ("csrr a0, 0xc00", [encode("csrrs", rd=10, csr=0xC00)]),
    ],
)
def test_pseudo_instructions_expand_like_gnu_as(src, expected):
    assert words(src) == expected


def test_la_call_and_tail_are_pc_relative_pairs():
    prog = assemble_program("""
        la   a0, target
        call target
        tail target
        .space 0x1800
    target: nop
    """)
    w = [int.from_bytes(prog.image[i : i + 4], "little") for i in range(0, 24, 4)]
    target = prog.address_of("target")
    for k, (first, second, rd, link) in enumerate(
        [("auipc", "addi", 10, 10), ("auipc", "jalr", 1, 1), ("auipc", "jalr", 6, 0)]
    ):
        here = RAM_BASE + 8 * k
        offset = target - here
        low = ((offset & 0xFFF) ^ 0x800) - 0x800
        assert w[2 * k] == encode(first, rd=rd, imm=(offset - low) & MASK32)
        assert w[2 * k + 1] == encode(second, rd=link, rs1=rd, imm=low)


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        -1,
        2047,
        2048,
        -2049,
        0x800,
        0xFFF,
        0x7FFF_F800,
        0x8000_0800,
        0xFFFF_F7FF,
        0x1234_5678,
        0xDEAD_BEEF,
    ],
)
def test_li_loads_exactly_the_value(value):
    from .helpers import run_to_wfi

    ran = run_to_wfi(f"li a0, {value}\nwfi\n")
    assert ran.x("a0") == value & MASK32


# -- labels ---------------------------------------------------------------------------------------


def test_numeric_local_labels_resolve_to_the_nearest_definition():
    w = words("""
    1:  nop         # 0
        j 1b        # 4 -> 0
        j 1f        # 8 -> 12
    1:  nop         # 12
        j 1b        # 16 -> 12
    1:  nop         # 20
    """)
    assert w[1] == encode("jal", imm=-4)
    assert w[2] == encode("jal", imm=4)
    assert w[4] == encode("jal", imm=-4)


def test_several_labels_may_share_a_line_and_an_address():
    prog = assemble_program("a: b: c: nop\nd:\n  nop\n")
    assert prog.symbols["a"] == prog.symbols["b"] == prog.symbols["c"] == RAM_BASE
    assert prog.symbols["d"] == RAM_BASE + 4


def test_labels_may_contain_dots_and_dollars():
    prog = assemble_program(".Lloop$1: nop\n_x.y: j .Lloop$1\n")
    assert prog.address_of(".Lloop$1") == RAM_BASE
    assert prog.address_of("_x.y") == RAM_BASE + 4


def test_forward_references_in_branches_jumps_and_words_resolve():
    prog = assemble_program("""
        beq a0, a1, later
        jal later
        .word later, later - .
    later: nop
    """)
    later = prog.address_of("later")
    assert later == RAM_BASE + 16
    w = [int.from_bytes(prog.image[i : i + 4], "little") for i in range(0, 16, 4)]
    assert w[0] == encode("beq", rs1=10, rs2=11, imm=16)
    assert w[1] == encode("jal", rd=1, imm=12)
    assert w[2] == later and w[3] == 4


def test_li_of_a_forward_symbol_keeps_its_long_form():
    prog = assemble_program("li a0, later\nlater: nop\n")
    w = [int.from_bytes(prog.image[i : i + 4], "little") for i in range(0, 8, 4)]
    value = RAM_BASE + 8
    assert w == [encode("lui", rd=10, imm=value & ~0xFFF), encode("addi", rd=10, rs1=10, imm=8)]


# -- directives -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "data"),
    [
        (".word 0x12345678, -1", bytes.fromhex("78563412ffffffff")),
        (".4byte 1\n.long 2", bytes.fromhex("0100000002000000")),
        (".half 0x1234, -2\n.2byte 3\n.short 4", bytes.fromhex("3412feff03000400")),
        (".byte 1, 0xff, -128, 'A'", bytes.fromhex("01ff8041")),
        ('.ascii "ab\\n"', b"ab\n"),
        ('.asciz "hi"', b"hi\0"),
        ('.string "a#b", "c"', b"a#b\0c\0"),
        (".space 3", bytes(3)),
        (".zero 2", bytes(2)),
        (".space 3, 0xAA", b"\xaa" * 3),
        (".skip 1", bytes(1)),
        (".byte 1\n.align 2\n.byte 2", bytes.fromhex("0100000002")),
        (".byte 1\n.p2align 3\n.byte 2", bytes.fromhex("010000000000000002")),
        (".byte 1\n.balign 4\n.byte 2", bytes.fromhex("0100000002")),
        (".equ X, 7\n.set Y, X * 2\n.word X, Y", bytes.fromhex("070000000e000000")),
        (
            ".globl f\n.global f\n.type f, @function\n.section .text\n.option norelax\n"
            "f: .size f, 0\n"
            '.text\n.data\n.bss\n.file "x"\n.ident "y"\n.attribute arch, "rv32im"\n.weak g\n'
            ".local h\n.byte 9",
            b"\x09",
        ),
    ],
)
def test_data_directives_emit_the_expected_bytes(src, data):
    assert assemble(src) == data


def test_alignment_counts_from_the_base_address():
    assert assemble(".byte 1\n.balign 8\n", base=0x1004) == bytes.fromhex("01000000")


def test_sections_are_laid_out_in_source_order():
    prog = assemble_program(".data\nd: .word 1\n.text\nt: nop\n")
    assert prog.address_of("d") == RAM_BASE and prog.address_of("t") == RAM_BASE + 4


# -- expressions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("7 / 2", 3),
        ("-7 / 2", -3),
        ("7 % 3", 1),
        ("1 << 4", 16),
        ("256 >> 4", 16),
        ("0xF0 & 0x3C", 0x30),
        ("0xF0 | 0x0F", 0xFF),
        ("0xFF ^ 0x0F", 0xF0),
        ("~0 & 0xFF", 0xFF),
        ("-(3)", -3),
        ("0b101", 5),
        ("'a'", 97),
        ("'\\n'", 10),
        ("'#'", 35),
        ("'9' + 1", 58),
        ("%hi(0x12345678)", 0x12345),
        ("%lo(0x12345678)", 0x678),
        ("%hi(0x12345800)", 0x12346),
        ("%lo(0x12345800)", -0x800),
    ],
)
def test_expressions_evaluate_as_in_gnu_as(expr, value):
    assert words(f".word {expr}") == [value & MASK32]


def test_dot_is_the_address_of_the_current_statement():
    assert words("nop\n.word .\n.word . + 4") == [encode("addi"), RAM_BASE + 4, RAM_BASE + 12]


def test_hi_lo_pair_rebuilds_an_address():
    from .helpers import run_to_wfi

    ran = run_to_wfi("""
        j    code
    data: .word 0x5eed
    code:
        lui  a0, %hi(data)
        addi a0, a0, %lo(data)
        lui  a2, %hi(data)
        lw   a2, %lo(data)(a2)
        wfi
    """)
    assert ran.x("a0") == RAM_BASE + 4
    assert ran.x("a2") == 0x5EED


# -- comments and statement separators ------------------------------------------------------------


def test_comments_and_semicolons():
    w = words("""
        nop            # a comment
        nop            // another
        /* a block
           comment */ nop
        nop; nop ; nop
        li a0, '#'     # a '#' in a character literal is not a comment
    """)
    assert w[:6] == [encode("addi")] * 6
    assert w[6] == encode("addi", rd=10, imm=ord("#"))


def test_a_semicolon_inside_a_string_is_part_of_the_string():
    assert assemble('.ascii "a;b"') == b"a;b"


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "line", "fragment"),
    [
        ("nop\nfrob a0, a1\n", 2, "unknown instruction"),
        ("nop\nnop\nadd a0, a1, q7\n", 3, "not a register"),
        ("addi a0, a0, 2048\n", 1, "out of range"),
        ("addi a0, a0, -2049\n", 1, "out of range"),
        ("slli a0, a0, 32\n", 1, "out of range"),
        ("nop\nj nowhere\n", 2, "undefined symbol"),
        ("x: nop\nx: nop\n", 2, "defined twice"),
        ("add a0, a1\n", 1, "takes 3 operands"),
        ("nop\n.frobnicate 3\n", 2, "unknown directive"),
        (".balign 3\n", 1, "power of two"),
        (".byte 256\n", 1, "does not fit"),
        (".half 0x10000\n", 1, "does not fit"),
        ("li a0, 0x100000000\n", 1, "does not fit"),
        ("fence rw, x\n", 1, "bad fence set"),
        ("lui a0, 0x100000\n", 1, "20 bits"),
        ("lw a0, a1\n", 1, "memory operand"),
        ("beq a0, a1, .+4096\n", 1, "out of range"),
        ("beq a0, a1, .+3\n", 1, "out of range"),
        ("j 1f\n", 1, "1f"),
        (".word 1 +\n", 1, "expression"),
        (".word (1\n", 1, "expression"),
        (".word 1 / 0\n", 1, "division by zero"),
        ("csrrw a0, 0x1000, a1\n", 1, "out of range"),
        ("csrrwi a0, mstatus, 32\n", 1, "out of range"),
        (".ascii hello\n", 1, "quoted string"),
        (".space -1\n", 1, "negative"),
        ("\n\n\n   mv a0\n", 4, "takes 2 operands"),
    ],
)
def test_errors_raise_asm_error_naming_the_line(src, line, fragment):
    with pytest.raises(AsmError) as info:
        assemble(src)
    message = str(info.value)
    assert message.startswith(f"line {line}:"), message
    assert fragment in message, message


def test_asm_error_is_a_value_error():
    assert issubclass(AsmError, ValueError)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("addi", {"imm": 2048}),
        ("addi", {"rd": 32}),
        ("add", {"rs2": -1}),
        ("beq", {"imm": 3}),
        ("beq", {"imm": 4096}),
        ("jal", {"imm": 1 << 20}),
        ("jal", {"imm": 6 - 1}),
        ("lui", {"imm": 0x123}),
        ("slli", {"imm": 32}),
        ("csrrw", {"csr": 0x1000}),
        ("csrrwi", {"imm": 32}),
        ("fence", {"imm": 256}),
        ("frob", {}),
    ],
)
def test_encode_rejects_fields_out_of_range(name, fields):
    with pytest.raises(AsmError):
        encode(name, **fields)


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("beq", {"imm": -4096}),
        ("beq", {"imm": 4094}),
        ("jal", {"imm": -(1 << 20)}),
        ("jal", {"imm": (1 << 20) - 2}),
        ("lui", {"imm": 0xFFFFF000}),
        ("lui", {"imm": -(1 << 31)}),
        ("sw", {"imm": -2048}),
        ("csrrwi", {"imm": 31, "csr": 0xFFF}),
    ],
)
def test_encode_accepts_the_extremes_of_each_range(name, fields):
    word = encode(name, **fields)
    assert decode(word) is not None and decode(word).name == name


# -- GNU as compatibility (suspected bugs get one test each) -------------------------------------


def test_operator_precedence_follows_gnu_as():
    # GNU as binds << and >> as tightly as * and /, and & | ^ tighter than + and -:
    # `1 + 2 << 3` is 17 and `4 + 1 & 2` is 4 with riscv64-unknown-elf-as 2.40.
    assert words(".word 1 + 2 << 3, 4 + 1 & 2") == [17, 4]


def test_alignment_padding_in_code_is_nops_as_in_gnu_as():
    # GNU as pads code sections with nop instructions, so code may fall through an .align.
    assert words("nop\n.balign 16\nwfi") == [encode("addi")] * 4 + [encode("wfi")]


def test_lo_of_a_label_defined_later_is_accepted():
    # `lui a0, %hi(msg); addi a0, a0, %lo(msg)` with the data after the code: GNU as
    # resolves it, and pass 1 cannot need the value to size an addi.
    prog = assemble_program("""
        lui  a0, %hi(msg)
        addi a0, a0, %lo(msg)
        lw   a1, %lo(msg)(a0)
    msg: .word 7
    """)
    assert len(prog.image) == 16


# -- differential checks against GNU as ------------------------------------------------------------

GAS_SOURCE = r"""
    .equ UART0, 0x10000000
    .set COUNT, 10
    .text
    .globl _start
_start:
    li a0, 0
    li a1, -1
    li a2, 2047
    li a3, -2048
    li a4, 2048
    li a6, 0x12345678
    li a7, 0x80000000
    li t0, 0xFFFFF800
    li t1, 0x7FFFFFFF
    li t2, UART0
    li t3, COUNT * 4 + 1
    li t4, 'A'
    li t5, '\n'
    li t6, (1 << 12) - 1
    la s0, data
    lla s1, data
    lui s2, %hi(_start)
    addi s2, s2, %lo(_start)
    lw s3, %lo(_start)(s2)
    call func
    tail func
1:  addi a0, a0, 1
    bnez a0, 1b
    beqz a0, 1f
    j 1f
1:  nop
    mv a0, a1
    not a0, a1
    neg a0, a1
    seqz a0, a1
    snez a0, a1
    sltz a0, a1
    sgtz a0, a1
    beqz a0, func
    bltz a0, func
    bgez a0, func
    blez a0, func
    bgtz a0, func
    bgt a0, a1, func
    ble a0, a1, func
    bgtu a0, a1, func
    bleu a0, a1, func
    jal func
    jal ra, func
    jr a0
    jalr a0
    jalr ra, a0, 8
    jalr ra, 8(a0)
    ret
    fence
    fence rw, rw
    fence iorw, o
    fence.i
    ecall
    ebreak
    mret
    wfi
    csrr a0, mhartid
    csrw mtvec, a0
    csrs mie, a0
    csrc mstatus, a0
    csrwi mstatus, 8
    csrsi mstatus, 8
    csrci mstatus, 31
    csrrw a0, mscratch, a1
    csrrs a0, 0x340, a1
    csrrci a0, mepc, 3
    sb a0, -1(sp)
    sh a0, 2047(sp)
    sw a0, -2048(sp)
    lb a0, (sp)
    srai a0, a1, 31
    mulhsu a0, a1, a2
    remu x31, x30, x29
    add x0, fp, s0
func:
    ret
data:
    .word 0x12345678, data, . - data, -1
    .half 0x1234, -2
    .byte 1, 2, 0xff, -128
    .ascii "ab\n"
    .asciz "c#d"
    .string "e,f"
    .byte 'x', '#'
    .zero 3
    .space 2, 0xAA
    .byte 0
"""


def gnu_assemble(source: str, tmp_path: Path) -> bytes:
    from conftest import require_tool

    gas = require_tool("riscv64-unknown-elf-as")
    ld = require_tool("riscv64-unknown-elf-ld")
    objcopy = require_tool("riscv64-unknown-elf-objcopy")
    src = tmp_path / "t.S"
    src.write_text(source)
    # zifencei: binutils 2.40 wants it named for fence.i (the brief's rv32im_zicsr rejects it).
    subprocess.run(
        [
            gas,
            "-mno-relax",
            "-march=rv32im_zicsr_zifencei",
            "-mabi=ilp32",
            str(src),
            "-o",
            str(tmp_path / "t.o"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            ld,
            "-N",
            "-m",
            "elf32lriscv",
            "-Ttext=0x80000000",
            str(tmp_path / "t.o"),
            "-o",
            str(tmp_path / "t.elf"),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [objcopy, "-O", "binary", str(tmp_path / "t.elf"), str(tmp_path / "t.bin")],
        check=True,
        capture_output=True,
    )
    return (tmp_path / "t.bin").read_bytes()


def assert_same_image(ours: bytes, theirs: bytes) -> None:
    # GNU as pads the end of .text to its alignment (with zeros or a 2-byte nop): only that
    # padding may follow our image.
    assert 0 <= len(theirs) - len(ours) < 4
    for offset in range(0, len(ours), 4):
        chunk = ours[offset : offset + 4]
        assert chunk == theirs[offset : offset + len(chunk)], hex(RAM_BASE + offset)


def test_a_source_using_every_feature_assembles_like_gnu_as(tmp_path):
    assert_same_image(assemble(GAS_SOURCE), gnu_assemble(GAS_SOURCE, tmp_path))


def test_the_hello_corpus_program_assembles_like_gnu_as(tmp_path):
    source = (Path(__file__).resolve().parents[2] / "corpora/programs/hello.S").read_text()
    assert_same_image(assemble(source), gnu_assemble(source, tmp_path))


def test_disassembled_random_instructions_assemble_identically_with_gnu_as(tmp_path):
    # 1500 random table words, printed by our disassembler; GNU as must accept the text
    # and produce the same words (fences with an empty set are left out: see the
    # disassembler round-trip tests).
    rng = random.Random(20240601)
    sample: list[int] = []
    while len(sample) < 1500:
        insn = rng.choice(INSNS)
        word = (rng.getrandbits(32) & ~insn.mask & MASK32) | insn.match
        if insn.name == "fence.i":
            word = insn.match
        elif insn.name == "fence":
            word &= 0x0FF0_007F
            if (word >> 24) & 0xF == 0 or (word >> 20) & 0xF == 0:
                continue
        sample.append(word)
    source = ".text\n" + "\n".join(disassemble(w) for w in sample) + "\n"
    theirs = gnu_assemble(source, tmp_path)
    ours = assemble(source)
    expected = b"".join(w.to_bytes(4, "little") for w in sample)
    assert ours == expected
    assert_same_image(ours, theirs)


LO_FORWARD = """
    lui  a0, %hi(msg)
    addi a0, a0, %lo(msg)
    lw   a1, %lo(msg)(a0)
msg: .word 7
"""


def _le(*values: int) -> bytes:
    return b"".join((v & MASK32).to_bytes(4, "little") for v in values)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (".word 1 + 2 << 3, 4 + 1 & 2, 8 - 2 >> 1\n", _le(17, 4, 7)),
        ("nop\n.balign 16\nwfi\n", _le(*[encode("addi")] * 4, encode("wfi"))),
        ('.ascii "a;b"\n.byte 1; .byte 2\n', b"a;b\x01\x02"),
        (
            LO_FORWARD,
            _le(
                encode("lui", rd=10, imm=0x8000_0000),
                encode("addi", rd=10, rs1=10, imm=12),
                encode("lw", rd=11, rs1=10, imm=12),
                7,
            ),
        ),
    ],
    ids=["precedence", "code-alignment", "semicolon-in-string", "lo-forward"],
)
def test_gnu_as_reference_for_the_compatibility_tests(tmp_path, source, expected):
    # The expectations of the GNU-as compatibility tests above come from GNU as itself.
    assert gnu_assemble(source, tmp_path)[: len(expected)] == expected


def _generated_programs(count: int, seed: int) -> list[str]:
    """The programs of `count` scenarios of the default strategy (seeded, as
    `fuzzer.engine.hunt` draws them)."""
    from fuzzer.engine import draw_examples
    from fuzzer.strategies import scenarios

    return [scenario.program for scenario in draw_examples(scenarios(), count=count, seed=seed)]


def gnu_symbols(tmp_path: Path) -> dict[str, int]:
    """Label and .equ values of the object `gnu_assemble` left behind (its only section
    is .text, linked at RAM_BASE), without the ISA mapping symbols ($x...)."""
    from conftest import require_tool

    listing = subprocess.run(
        [require_tool("riscv64-unknown-elf-nm"), str(tmp_path / "t.o")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    symbols = {}
    for row in listing.splitlines():
        value, kind, name = row.split()
        if not name.startswith("$"):
            symbols[name] = int(value, 16) + (RAM_BASE if kind in "tT" else 0)
    return symbols


def test_generated_programs_assemble_like_gnu_as(tmp_path):
    # The programs a campaign assembles most (the fast paths of the assembler are for
    # them): image and every symbol as GNU as and ld make them. GNU pads the end of .text
    # to its largest alignment with nops, so only nops may follow our image there.
    programs = _generated_programs(30, seed=7)
    assert len(programs) == 30
    nop = encode("addi").to_bytes(4, "little")
    for source in programs:
        ours = assemble_program(source, base=RAM_BASE)
        theirs = gnu_assemble(source, tmp_path)
        assert theirs[: len(ours.image)] == ours.image
        padding = theirs[len(ours.image) :]
        assert len(ours.image) % 4 == 0 and padding == nop * (len(padding) // 4)
        assert {k: v & MASK32 for k, v in ours.symbols.items()} == gnu_symbols(tmp_path)
