"""The M extension: MUL/MULH/MULHSU/MULHU/DIV/DIVU/REM/REMU, including the spec's
division-by-zero and overflow results (no traps)."""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm.asm import encode

from .helpers import INT_MAX, INT_MIN, MASK32, InsnRunner, exec_insn, exec_words, s32, u32

A0, A1, A2 = 10, 11, 12
M_OPS = ["mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu"]
EDGES = [0, 1, 2, 3, 7, MASK32, MASK32 - 1, INT_MIN, INT_MIN + 1, INT_MAX, 0x1_0000, 0xFFFF]


def ref_m(name: str, a: int, b: int) -> int:
    """An independent model of the M extension (truncating division via Fraction)."""
    sa, sb = s32(a), s32(b)
    if name == "mul":
        return u32(a * b)
    if name == "mulh":
        return u32((sa * sb) >> 32)
    if name == "mulhsu":
        return u32((sa * b) >> 32)
    if name == "mulhu":
        return u32((a * b) >> 32)
    if name == "divu":
        return MASK32 if b == 0 else a // b
    if name == "remu":
        return a if b == 0 else a % b
    if name == "div":
        if b == 0:
            return MASK32
        return u32(int(Fraction(sa, sb))) if (sa, sb) != (-(1 << 31), -1) else INT_MIN
    if name == "rem":
        if b == 0:
            return a
        q = int(Fraction(sa, sb)) if (sa, sb) != (-(1 << 31), -1) else -(1 << 31)
        return u32(sa - q * sb)
    raise AssertionError(name)


@functools.cache
def runner(name: str) -> InsnRunner:
    return InsnRunner(encode(name, rd=A0, rs1=A1, rs2=A2))


def run_m(name: str, a: int, b: int) -> int:
    return runner(name)({A1: a, A2: b})[A0]


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    [
        ("mul", 6, 7, 42),
        ("mul", MASK32, MASK32, 1),
        ("mul", INT_MIN, MASK32, INT_MIN),
        ("mul", 0x1_0000, 0x1_0000, 0),
        ("mul", INT_MAX, 2, 0xFFFF_FFFE),
        ("mulh", MASK32, MASK32, 0),
        ("mulh", INT_MIN, INT_MIN, 0x4000_0000),
        ("mulh", INT_MIN, 1, MASK32),
        ("mulh", INT_MAX, INT_MAX, 0x3FFF_FFFF),
        ("mulh", INT_MIN, INT_MAX, 0xC000_0000),
        ("mulh", 0x1_0000, 0x1_0000, 1),
        ("mulhu", MASK32, MASK32, 0xFFFF_FFFE),
        ("mulhu", INT_MIN, 2, 1),
        ("mulhu", 0x1_0000, 0x1_0000, 1),
        ("mulhsu", MASK32, MASK32, MASK32),  # -1 * (2**32 - 1)
        ("mulhsu", 1, MASK32, 0),
        ("mulhsu", INT_MIN, MASK32, 0x8000_0000),  # -2**31 * (2**32 - 1)
        ("mulhsu", INT_MAX, MASK32, 0x7FFF_FFFE),
        ("mulhsu", MASK32, 1, MASK32),
        ("div", 7, 2, 3),
        ("div", u32(-7), 2, u32(-3)),  # truncates toward zero, not floor
        ("div", 7, u32(-2), u32(-3)),
        ("div", u32(-7), u32(-2), 3),
        ("div", INT_MIN, MASK32, INT_MIN),  # overflow: the dividend
        ("div", INT_MIN, 1, INT_MIN),
        ("div", INT_MIN, 2, 0xC000_0000),
        ("divu", 7, 2, 3),
        ("divu", MASK32, 2, INT_MAX),
        ("divu", INT_MIN, MASK32, 0),
        ("divu", MASK32, MASK32, 1),
        ("rem", 7, 2, 1),
        ("rem", u32(-7), 2, u32(-1)),  # the sign follows the dividend
        ("rem", 7, u32(-2), 1),
        ("rem", u32(-7), u32(-2), u32(-1)),
        ("rem", INT_MIN, MASK32, 0),  # overflow: zero
        ("rem", INT_MIN, 3, u32(-2)),
        ("remu", 7, 2, 1),
        ("remu", MASK32, 10, 5),
        ("remu", INT_MIN, MASK32, INT_MIN),
    ],
)
def test_multiply_and_divide_give_the_spec_results(name, a, b, expected):
    assert run_m(name, a, b) == expected


@pytest.mark.parametrize("dividend", [0, 1, MASK32, INT_MIN, INT_MAX, 0x1234_5678])
def test_div_by_zero_returns_all_ones(dividend):
    assert run_m("div", dividend, 0) == MASK32


@pytest.mark.parametrize("dividend", [0, 1, MASK32, INT_MIN, INT_MAX, 0x1234_5678])
def test_divu_by_zero_returns_all_ones(dividend):
    assert run_m("divu", dividend, 0) == MASK32


@pytest.mark.parametrize("dividend", [0, 1, MASK32, INT_MIN, INT_MAX, 0x1234_5678])
def test_rem_by_zero_returns_the_dividend(dividend):
    assert run_m("rem", dividend, 0) == dividend


@pytest.mark.parametrize("dividend", [0, 1, MASK32, INT_MIN, INT_MAX, 0x1234_5678])
def test_remu_by_zero_returns_the_dividend(dividend):
    assert run_m("remu", dividend, 0) == dividend


def test_signed_division_overflow_returns_int_min_and_remainder_zero():
    assert run_m("div", INT_MIN, MASK32) == INT_MIN
    assert run_m("rem", INT_MIN, MASK32) == 0


def test_division_by_zero_does_not_trap():
    m = exec_words(
        [
            encode("div", rd=A0, rs1=A1, rs2=0),
            encode("remu", rd=A2, rs1=A1, rs2=0),
        ],
        regs={A1: 99},
    )
    assert m.cpu.x[A0] == MASK32 and m.cpu.x[A2] == 99
    assert m.cpu.mcause == 0 and m.cpu.icount == 3


@pytest.mark.parametrize("name", M_OPS)
def test_m_operation_matches_the_model_on_all_edge_pairs(name):
    for a, b in itertools.product(EDGES, repeat=2):
        assert run_m(name, a, b) == ref_m(name, a, b), (name, hex(a), hex(b))


u32s = st.one_of(st.sampled_from(EDGES), st.integers(0, MASK32))


@given(st.sampled_from(M_OPS), u32s, u32s)
def test_m_operations_match_the_model(name, a, b):
    assert run_m(name, a, b) == ref_m(name, a, b)


@given(u32s, u32s)
def test_division_identity_holds_for_signed_and_unsigned(a, b):
    q, r = run_m("div", a, b), run_m("rem", a, b)
    assert u32(q * b + r) == a
    qu, ru = run_m("divu", a, b), run_m("remu", a, b)
    assert u32(qu * b + ru) == a


@given(u32s, u32s)
def test_mul_and_mulhu_give_the_full_unsigned_product(a, b):
    assert run_m("mulhu", a, b) << 32 | run_m("mul", a, b) == a * b


@pytest.mark.parametrize("name", M_OPS)
def test_m_operation_with_rd_equal_to_both_sources_reads_before_writing(name):
    m = exec_insn(name, rd=A0, rs1=A0, rs2=A0, regs={A0: u32(-6)})
    assert m.cpu.x[A0] == ref_m(name, u32(-6), u32(-6))


@pytest.mark.parametrize("name", M_OPS)
def test_m_operation_with_x0_sources_uses_zero(name):
    m = exec_insn(name, rd=A0, rs1=0, rs2=A1, regs={A1: 5, A0: 0xDEAD})
    assert m.cpu.x[A0] == ref_m(name, 0, 5)
    m = exec_insn(name, rd=A0, rs1=A1, rs2=0, regs={A1: 5, A0: 0xDEAD})
    assert m.cpu.x[A0] == ref_m(name, 5, 0)
