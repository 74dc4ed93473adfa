"""Meta-tests of the instruction table: encodings, semantics coverage, encode/decode and
disassemble/assemble round trips."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vm import semantics
from vm.asm import AsmError, assemble
from vm.disasm import disassemble
from vm.interp import build_step
from vm.isa import (
    BY_NAME,
    INSNS,
    Fmt,
    Insn,
    Kind,
    Operands,
    decode,
    operands,
)
from vm.isa import encode as encode_fields
from vm.translate import discover_region, generate_source

MASK32 = 0xFFFF_FFFF

# Rows whose semantics are not a template in vm.semantics but code in the translator.
SPECIAL = {
    "jal", "jalr", "fence", "fence.i", "ecall", "ebreak", "mret", "wfi",
    "csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci",
}  # fmt: skip


def _pair_id(pair: tuple[Insn, Insn]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


# -- the table itself ---------------------------------------------------------------------


def test_names_are_unique():
    names = [insn.name for insn in INSNS]
    assert len(names) == len(set(names))
    assert set(BY_NAME) == set(names)


@pytest.mark.parametrize("insn", INSNS, ids=lambda i: i.name)
def test_every_match_value_lies_inside_its_mask(insn: Insn):
    assert insn.match & ~insn.mask == 0
    assert insn.mask & 0x7F == 0x7F, "the opcode is always decoded"
    assert insn.match & 3 == 3, "32-bit encodings end in 0b11"
    assert 0 <= insn.match <= MASK32 and 0 <= insn.mask <= MASK32


def test_no_two_encodings_overlap():
    # Some word matches both rows exactly when the rows agree on every bit both masks fix.
    overlaps = [
        _pair_id((a, b))
        for a, b in itertools.combinations(INSNS, 2)
        if (a.match ^ b.match) & a.mask & b.mask == 0
    ]
    assert overlaps == []


@pytest.mark.parametrize("insn", INSNS, ids=lambda i: i.name)
def test_every_row_decodes_its_own_match_value(insn: Insn):
    assert decode(insn.match) is insn


def test_table_extensions_are_the_supported_ones():
    assert {insn.extension for insn in INSNS} == {"I", "M", "Zicsr", "Zifencei", "Priv"}
    assert len([i for i in INSNS if i.extension == "M"]) == 8
    assert len([i for i in INSNS if i.extension == "Zicsr"]) == 6


@pytest.mark.parametrize(
    "word",
    [
        0x0000_0000,  # all zeros is defined illegal
        0xFFFF_FFFF,  # all ones too
        0x0000_0013 | 1 << 25 | 1 << 12,  # slli with shamt[5] set: reserved on RV32
        0x0000_0013 | 1 << 25 | 5 << 12,  # srli with shamt[5] set
        0x4000_0013 | 1 << 25 | 5 << 12,  # srai with shamt[5] set
        0x4000_1013,  # "srai" funct7 with slli funct3
        0x0000_2067,  # jalr with funct3 != 0
        0x0000_2063,  # branch funct3 2 is reserved
        0x0000_3063,  # branch funct3 3 is reserved
        0x0000_3003,  # ld (RV64)
        0x0000_6003,  # lwu (RV64)
        0x0000_3023,  # sd (RV64)
        0x0000_401B,  # OP-IMM-32 (RV64)
        0x0000_403B,  # OP-32 (RV64)
        0x0000_4073,  # SYSTEM funct3 4
        0x0020_0073,  # uret-like/reserved SYSTEM encoding
        0x1020_0073,  # sret: no S-mode
        0x0000_0093 | 0x40 << 25 | 0x33 - 0x13,  # add with an undefined funct7
        0x0200_7033 | 0x20 << 25,  # funct7 0x21
        0x0000_2007,  # flw: no F extension
        0x0000_002F,  # AMO: no A extension
        0x0000_0001,  # a compressed encoding: no C extension
        0x0000_200F,  # MISC-MEM funct3 2
    ],
)
def test_words_outside_the_table_do_not_decode(word: int):
    assert decode(word) is None


# -- every row has semantics ------------------------------------------------------------


def test_every_row_has_semantics():
    templated = set(semantics.ALU_EXPR) | set(semantics.BRANCH_COND)
    templated |= set(semantics.LOADS) | set(semantics.STORES)
    missing = [i.name for i in INSNS if i.name not in templated and i.name not in SPECIAL]
    assert missing == []


def test_semantic_templates_name_only_table_rows():
    for table in (semantics.ALU_EXPR, semantics.BRANCH_COND, semantics.LOADS, semantics.STORES):
        assert set(table) <= set(BY_NAME)
    assert set(BY_NAME) >= SPECIAL


@pytest.mark.parametrize(
    ("table", "kind"),
    [
        (semantics.ALU_EXPR, Kind.ALU),
        (semantics.BRANCH_COND, Kind.BRANCH),
        (semantics.LOADS, Kind.LOAD),
        (semantics.STORES, Kind.STORE),
    ],
    ids=["alu", "branch", "load", "store"],
)
def test_each_template_table_covers_exactly_its_kind(table, kind):
    assert set(table) == {i.name for i in INSNS if i.kind is kind}


def test_special_rows_have_the_kinds_the_translator_expects():
    assert {i.name for i in INSNS if i.kind is Kind.JUMP} == {"jal", "jalr"}
    assert {i.name for i in INSNS if i.kind is Kind.FENCE} == {"fence"}
    assert {i.name for i in INSNS if i.kind is Kind.SYSTEM} == {
        "fence.i", "ecall", "ebreak", "mret", "wfi",
    }  # fmt: skip
    assert {i.name for i in INSNS if i.kind is Kind.CSR} == {
        "csrrw", "csrrs", "csrrc", "csrrwi", "csrrsi", "csrrci",
    }  # fmt: skip


@pytest.mark.parametrize("insn", INSNS, ids=lambda i: i.name)
def test_the_translator_generates_compilable_code_for_every_row(insn: Insn):
    # rd = x5, rs1 = x6, rs2 = x7 and a small aligned immediate, followed by a wfi.
    word = encode_fields(insn, _sample_operands(insn))
    words = {0x8000_0000: word, 0x8000_0004: BY_NAME["wfi"].match}
    blocks = discover_region(words.get, 0x8000_0000)
    source = generate_source(blocks)
    compile(source, "<test>", "exec")


@pytest.mark.parametrize("insn", INSNS, ids=lambda i: i.name)
def test_the_interpreter_builds_a_step_for_every_row(insn: Insn):
    from .helpers import new_machine

    m = new_machine()
    word = encode_fields(insn, _sample_operands(insn))
    step, ends_block = build_step(m._env, 0x8000_0000, word)
    assert callable(step)
    assert ends_block == (insn.kind in (Kind.BRANCH, Kind.JUMP, Kind.CSR, Kind.SYSTEM))


def _sample_operands(insn: Insn) -> Operands:
    fmt = insn.fmt
    if fmt is Fmt.U:
        return Operands(rd=5, imm=0x12345000)
    if fmt in (Fmt.B, Fmt.J):
        return Operands(rd=5, rs1=6, rs2=7, imm=8)
    if fmt is Fmt.CSR:
        return Operands(rd=5, rs1=6, csr=0x340)
    if fmt is Fmt.CSRI:
        return Operands(rd=5, imm=3, csr=0x340)
    if fmt is Fmt.FENCE:
        return Operands(imm=0xFF)
    if fmt is Fmt.NONE:
        return Operands()
    if fmt is Fmt.S:
        return Operands(rs1=6, rs2=7, imm=-8)
    if fmt is Fmt.R:
        return Operands(rd=5, rs1=6, rs2=7)
    return Operands(rd=5, rs1=6, imm=3)


# -- encode / operands are inverses -------------------------------------------------------

_reg = st.integers(0, 31)


@st.composite
def row_and_operands(draw, rows=INSNS):  # type: ignore[no-untyped-def]
    """A table row and a valid Operands for it (unused fields zero)."""
    insn = draw(st.sampled_from(rows))
    fmt = insn.fmt
    imm12 = st.integers(-2048, 2047)
    if fmt is Fmt.R:
        ops = Operands(rd=draw(_reg), rs1=draw(_reg), rs2=draw(_reg))
    elif fmt in (Fmt.I, Fmt.LOAD, Fmt.JALR):
        ops = Operands(rd=draw(_reg), rs1=draw(_reg), imm=draw(imm12))
    elif fmt is Fmt.SHIFT:
        ops = Operands(rd=draw(_reg), rs1=draw(_reg), imm=draw(st.integers(0, 31)))
    elif fmt is Fmt.S:
        ops = Operands(rs1=draw(_reg), rs2=draw(_reg), imm=draw(imm12))
    elif fmt is Fmt.B:
        ops = Operands(rs1=draw(_reg), rs2=draw(_reg), imm=2 * draw(st.integers(-2048, 2047)))
    elif fmt is Fmt.U:
        ops = Operands(rd=draw(_reg), imm=draw(st.integers(0, 0xFFFFF)) << 12)
    elif fmt is Fmt.J:
        ops = Operands(rd=draw(_reg), imm=2 * draw(st.integers(-(1 << 19), (1 << 19) - 1)))
    elif fmt is Fmt.CSR:
        ops = Operands(rd=draw(_reg), rs1=draw(_reg), csr=draw(st.integers(0, 0xFFF)))
    elif fmt is Fmt.CSRI:
        ops = Operands(rd=draw(_reg), imm=draw(st.integers(0, 31)), csr=draw(st.integers(0, 0xFFF)))
    elif fmt is Fmt.FENCE:
        ops = Operands(imm=draw(st.integers(0, 0xFF)))
    else:
        ops = Operands()
    return insn, ops


@given(row_and_operands())
@example((BY_NAME["jal"], Operands(rd=1, imm=-(1 << 20))))
@example((BY_NAME["beq"], Operands(rs1=31, rs2=31, imm=-4096)))
@example((BY_NAME["lui"], Operands(rd=31, imm=0xFFFFF000)))
def test_operands_inverts_encode_for_every_row(case):
    insn, ops = case
    word = encode_fields(insn, ops)
    assert 0 <= word <= MASK32
    assert decode(word) is insn
    assert operands(insn, word) == ops


@st.composite
def decodable_word(draw):  # type: ignore[no-untyped-def]
    """A random 32-bit word forced into some row's match bits: it decodes to that row."""
    insn = draw(st.sampled_from(INSNS))
    noise = draw(st.integers(0, MASK32))
    return (noise & ~insn.mask & MASK32) | insn.match


@given(decodable_word())
def test_decode_of_a_word_forced_into_a_row_returns_that_row(word):
    insn = decode(word)
    assert insn is not None
    assert word & insn.mask == insn.match


# Rows with fields the decoder ignores (fence's fm/rs1/rd, fence.i's imm/rs1/rd): encoding
# their operands back cannot restore those don't-care bits, by design.
_IGNORED_FIELDS = {"fence", "fence.i"}


@given(decodable_word())
def test_encode_inverts_operands_on_words_without_ignored_fields(word):
    insn = decode(word)
    if insn.name in _IGNORED_FIELDS:
        return
    assert encode_fields(insn, operands(insn, word)) == word


# -- disassemble / assemble round trip ------------------------------------------------------


def _reassemble(text: str, pc: int = 0x8000_0000) -> int:
    image = assemble(text, base=pc)
    assert len(image) == 4, text
    return int.from_bytes(image, "little")


@given(row_and_operands())
def test_disassembly_of_every_encoded_instruction_assembles_back(case):
    insn, ops = case
    word = encode_fields(insn, ops)
    assert _reassemble(disassemble(word)) == word


@given(row_and_operands(), st.integers(0x8020_0000 >> 2, 0xBFE0_0000 >> 2))
def test_disassembly_with_a_pc_prints_absolute_targets_that_assemble_back(case, pc_words):
    insn, ops = case
    pc = pc_words << 2
    word = encode_fields(insn, ops)
    assert _reassemble(disassemble(word, pc=pc), pc) == word


@given(decodable_word())
def test_disassembly_of_every_decodable_word_assembles_back_to_the_same_word(word):
    # The disassembler promises canonical text that assembles back to the same word.
    assert _reassemble(disassemble(word)) == word


@given(decodable_word())
def test_words_with_ignored_fields_set_disassemble_as_data(word):
    insn = decode(word)
    if encode_fields(insn, operands(insn, word)) != word:
        assert disassemble(word).startswith(f".word {word:#010x}")


def test_fence_with_an_empty_predecessor_set_round_trips():
    word = 0x0000_000F  # fence with pred = succ = 0 (a valid, decodable no-op)
    assert decode(word) is BY_NAME["fence"]
    text = disassemble(word)
    try:
        again = _reassemble(text)
    except AsmError as exc:
        pytest.fail(f"disassembly {text!r} does not assemble: {exc}")
    assert again == word


@pytest.mark.parametrize(
    "word",
    [0x8330_000F, 0x0000_100F | 0x123 << 20],
    ids=["fence.tso", "fence.i-imm"],
)
def test_fence_words_with_reserved_fields_set_round_trip(word):
    assert decode(word) is not None
    assert _reassemble(disassemble(word)) == word


@pytest.mark.parametrize(
    ("word", "text"),
    [
        (0x0000_0013, "addi zero, zero, 0"),
        (0xFFF0_0513, "addi a0, zero, -1"),
        (0x0000_0537, "lui a0, 0x0"),
        (0x4015_5513, "srai a0, a0, 1"),
        (0x0000_0073, "ecall"),
        (0x0010_0073, "ebreak"),
        (0x3020_0073, "mret"),
        (0x1050_0073, "wfi"),
        (0x0000_100F, "fence.i"),
        (0x0FF0_000F, "fence iorw, iorw"),
        (0xF140_2573, "csrrs a0, mhartid, zero"),
        (0x3400_D073 | 3 << 15, "csrrwi zero, mscratch, 3"),
        (0x7C00_2573, "csrrs a0, 0x7c0, zero"),
        (0x0000_0000, ".word 0x00000000"),
        (0xFEB5_0EE3, "beq a0, a1, .-4"),
        (0x0080_00EF, "jal ra, .+8"),
        (0x00C5_A503, "lw a0, 12(a1)"),
        (0xFEA5_AE23, "sw a0, -4(a1)"),
        (0x02B5_4533, "div a0, a0, a1"),
    ],
)
def test_disassembly_text_is_canonical(word, text):
    assert disassemble(word) == text


def test_disassembly_with_pc_prints_the_absolute_target():
    assert disassemble(0xFEB5_0EE3, pc=0x8000_0010) == "beq a0, a1, 0x8000000c"
    assert disassemble(0x0080_00EF, pc=0x8000_0000) == "jal ra, 0x80000008"


@given(st.integers(0, MASK32))
def test_disassembly_never_raises_and_undecodable_words_print_as_data(word):
    text = disassemble(word)
    if decode(word) is None:
        assert text == f".word {word:#010x}"
        assert _reassemble(text) == word
