"""Differential test of the CPU core against Unicorn (QEMU's RISC-V TCG, packaged).

Hypothesis generates straight-line RV32IM programs of at least 100 instructions: every ALU
and M instruction over registers seeded with edge values (0, 1, -1, INT_MIN, INT_MAX,
0x7FF, 0x800, shift amounts with low five bits 31/0/1, ...), loads and stores of every width
(signed and unsigned, aligned and misaligned: Unicorn completes misaligned RAM accesses as
QEMU does in M-mode, and so does detfuzz) into a data page addressed off x31, and forward
branches and jumps over real instructions. The program ends in `jal x0, 0` at a known
address: Unicorn runs to it (`until`), counting instructions with a code hook; detfuzz runs
exactly that many (`run(count)` must stop there with BUDGET) and, on another machine, a
generous budget that leaves it spinning in the self-loop. All 32 registers, the pc and the
whole RAM (code page and data page included) must agree.

detfuzz runs each program three times: with its default policy (cold code interpreted, hot
code translated: for straight-line code that is the interpreter), and twice with every block
translated on first entry (exact count, and past the halt), so the translator is compared
too.

Pinned examples cover each M-extension corner case of the spec's table (division by zero,
INT_MIN / -1, signed truncation, high products of extreme values) and register shift amounts
31/32/33; `test_m_extension_matches_the_spec_table` checks the same corners against the
spec's own values on both sides, so a disagreement also says who is wrong.
"""

from __future__ import annotations

import pytest
from hypothesis import Phase, example, given, note, settings

from vm import Machine, StopReason
from vm.asm import encode

try:
    from properties.programs import (
        DATA_PTR,
        DATA_SIZE,
        INT_MIN,
        MASK32,
        Program,
        compare_with_unicorn,
        li,
        load_machine,
        release,
        run_unicorn,
        straight_line_programs,
    )
except ImportError:  # tests/ itself is a package (rootdir on sys.path instead)
    from tests.properties.programs import (  # type: ignore[no-redef]
        DATA_PTR,
        DATA_SIZE,
        INT_MIN,
        MASK32,
        Program,
        compare_with_unicorn,
        li,
        load_machine,
        release,
        run_unicorn,
        straight_line_programs,
    )

pytest.importorskip("unicorn")

# Hypothesis's explain phase re-runs failures dozens of times; the listing says more.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)


# ---------------------------------------------------------------------------------------
# The two engines (Unicorn's side lives in programs.py, shared with the SMC properties)


def run_detfuzz(
    program: Program,
    budget: int,
    *,
    eager: bool = False,
    single_step: bool = False,
    exact_halt: bool = False,
) -> Machine:
    """A machine with `program` after running `budget` instructions (which must all run).

    `exact_halt` (budget = Unicorn's count): the halt must be first reached by the last of
    them, so the run is split there and the pc checked in between; otherwise the final
    self-loop would hide instructions executed but not counted."""
    m = load_machine(program, eager=eager)
    parts = (budget - 1, 1) if exact_halt and budget else (budget,)
    for i, part in enumerate(parts):
        result = m.run(part, single_step=single_step)
        if result.reason is not StopReason.BUDGET or result.executed != part:
            pytest.fail(f"detfuzz stopped with {result} instead of running {part} instructions")
        if exact_halt and i == 0 and len(parts) == 2 and m.cpu.pc == program.end:
            pytest.fail(f"detfuzz reached the halt after {part} instructions, not {budget}")
    return m


def check_program(program: Program) -> None:
    note(program.listing())
    ref = run_unicorn(program)
    count = ref[3]
    assert ref[1] == program.end, f"unicorn stopped at {ref[1]:#x}, not at the halt"
    assert count <= len(program.code) - 1
    # Default policy: exactly `count` instructions (mostly interpreted: cold code).
    exact = run_detfuzz(program, count, exact_halt=True)
    assert exact.cpu.icount == count
    compare_with_unicorn(program, "detfuzz run(count)", exact, ref)
    # Every block translated: exactly `count`, and a generous budget spinning at the end.
    eager = run_detfuzz(program, count, eager=True, exact_halt=True)
    compare_with_unicorn(program, "detfuzz translated run(count)", eager, ref)
    spin = run_detfuzz(program, count + 37, eager=True)
    compare_with_unicorn(program, "detfuzz translated run(count + 37)", spin, ref)
    # The single-step path (the reference of the translation-equivalence properties).
    single = run_detfuzz(program, count, single_step=True, exact_halt=True)
    compare_with_unicorn(program, "detfuzz single-step run(count)", single, ref)
    release((exact, eager, spin, single))


# ---------------------------------------------------------------------------------------
# Pinned corner cases


def pinned(*ops: tuple[str, int, int]) -> Program:
    """A program computing `name rd, x5, x6` for each (name, a, b), also with rd aliasing
    rs1, rd aliasing rs2 and rd = x0, storing each result to the data page, then halting."""
    code: list[int] = []
    for k, (name, a, b) in enumerate(ops):
        rd = 7 + k % 20  # x7..x26
        code += [*li(5, a), *li(6, b), encode(name, rd=rd, rs1=5, rs2=6)]
        code += [encode("sw", rs1=31, rs2=rd, imm=(4 * k) % 2048 - 2048)]
        code += [encode(name, rd=5, rs1=5, rs2=6)]  # rd aliasing rs1
        code += [*li(5, a), encode(name, rd=6, rs1=5, rs2=6)]  # rd aliasing rs2
        code += [encode(name, rd=0, rs1=5, rs2=6)]  # rd = x0: discarded
    code.append(encode("jal", imm=0))
    regs = [0] * 32
    regs[31] = DATA_PTR
    return Program(code=tuple(code), regs=tuple(regs), data=bytes(DATA_SIZE))


NEG1 = MASK32
INT_MAX = 0x7FFF_FFFF
DIV_BY_ZERO = pinned(
    ("div", 0x1234_5678, 0), ("div", INT_MIN, 0), ("div", 0, 0), ("div", NEG1, 0),
    ("divu", 0x1234_5678, 0), ("divu", NEG1, 0), ("divu", 0, 0),
    ("rem", 0x1234_5678, 0), ("rem", INT_MIN, 0), ("rem", NEG1, 0),
    ("remu", 0x1234_5678, 0), ("remu", NEG1, 0), ("remu", 0, 0),
)  # fmt: skip
SIGNED_OVERFLOW = pinned(
    ("div", INT_MIN, NEG1), ("rem", INT_MIN, NEG1), ("divu", INT_MIN, NEG1),
    ("remu", INT_MIN, NEG1), ("mul", INT_MIN, NEG1), ("div", INT_MIN, 1), ("rem", INT_MIN, 1),
    ("div", INT_MIN + 1, NEG1), ("div", INT_MAX, NEG1),
)  # fmt: skip
TRUNCATION = pinned(
    ("div", (-7) & MASK32, 2), ("rem", (-7) & MASK32, 2), ("div", 7, (-2) & MASK32),
    ("rem", 7, (-2) & MASK32), ("div", (-7) & MASK32, (-2) & MASK32),
    ("rem", (-7) & MASK32, (-2) & MASK32), ("divu", (-7) & MASK32, 2), ("remu", (-7) & MASK32, 2),
    ("div", INT_MIN, 2), ("rem", INT_MIN, 3), ("div", INT_MAX, INT_MIN),
)  # fmt: skip
HIGH_PRODUCTS = pinned(
    ("mulh", INT_MIN, INT_MIN), ("mulh", NEG1, NEG1), ("mulh", INT_MIN, INT_MAX),
    ("mulh", INT_MAX, INT_MAX), ("mulhsu", NEG1, NEG1), ("mulhsu", INT_MIN, NEG1),
    ("mulhsu", INT_MAX, NEG1), ("mulhsu", NEG1, 1), ("mulhu", NEG1, NEG1),
    ("mulhu", INT_MIN, INT_MIN), ("mul", NEG1, NEG1), ("mul", 0x10000, 0x10000),
)  # fmt: skip
REGISTER_SHIFTS = pinned(
    *((name, value, amount)
      for name in ("sll", "srl", "sra")
      for value in (INT_MIN | 1, NEG1)
      for amount in (31, 32, 33, NEG1, 0xFFFF_FFE0, 0xFFFF_FFE1))
)  # fmt: skip


@settings(phases=PHASES)
@given(straight_line_programs())
@example(DIV_BY_ZERO)
@example(SIGNED_OVERFLOW)
@example(TRUNCATION)
@example(HIGH_PRODUCTS)
@example(REGISTER_SHIFTS)
def test_straight_line_programs_match_unicorn(program: Program) -> None:
    check_program(program)


# ---------------------------------------------------------------------------------------
# The spec's values, so a disagreement also says who is right


def _signed(v: int) -> int:
    return v - (1 << 32) if v & INT_MIN else v


# RISC-V unprivileged spec, M extension, "Semantics for division by zero and division
# overflow": x/0 gives all ones (div: -1, divu: 2^32-1), x%0 gives x; INT_MIN/-1 gives
# INT_MIN and INT_MIN%-1 gives 0. Division truncates towards zero; remainder takes the
# dividend's sign. mulh/mulhsu/mulhu are the high words of the exact 64-bit products.
SPEC_CASES = [
    ("div", 0x1234_5678, 0, MASK32),
    ("div", INT_MIN, 0, MASK32),
    ("divu", 0x1234_5678, 0, MASK32),
    ("divu", 0, 0, MASK32),
    ("rem", 0x1234_5678, 0, 0x1234_5678),
    ("rem", INT_MIN, 0, INT_MIN),
    ("remu", NEG1, 0, NEG1),
    ("div", INT_MIN, NEG1, INT_MIN),
    ("rem", INT_MIN, NEG1, 0),
    ("divu", INT_MIN, NEG1, 0),
    ("remu", INT_MIN, NEG1, INT_MIN),
    ("div", (-7) & MASK32, 2, (-3) & MASK32),
    ("rem", (-7) & MASK32, 2, (-1) & MASK32),
    ("div", 7, (-2) & MASK32, (-3) & MASK32),
    ("rem", 7, (-2) & MASK32, 1),
    ("mulh", INT_MIN, INT_MIN, (INT_MIN * INT_MIN >> 32) & MASK32),  # 0x40000000
    ("mulh", NEG1, NEG1, 0),
    ("mulhsu", NEG1, NEG1, (-1 * MASK32 >> 32) & MASK32),  # 0xffffffff
    ("mulhsu", INT_MIN, NEG1, (_signed(INT_MIN) * MASK32 >> 32) & MASK32),
    ("mulhu", NEG1, NEG1, (MASK32 * MASK32) >> 32),  # 0xfffffffe
    ("sll", 1, 33, 2),
    ("srl", INT_MIN, 32, INT_MIN),
    ("sra", INT_MIN, 31, NEG1),
]


@pytest.mark.parametrize(
    ("name", "a", "b", "expected"),
    SPEC_CASES,
    ids=[f"{c[0]}-{c[1]:#x}-{c[2]:#x}" for c in SPEC_CASES],
)
def test_m_extension_matches_the_spec_table(name: str, a: int, b: int, expected: int) -> None:
    code = (*li(5, a), *li(6, b), encode(name, rd=7, rs1=5, rs2=6), encode("jal", imm=0))
    regs = [0] * 32
    regs[31] = DATA_PTR
    program = Program(code=code, regs=tuple(regs))
    uc_regs = run_unicorn(program)[0]
    assert uc_regs[7] == expected, f"unicorn: {uc_regs[7]:#x}"
    for eager in (False, True):
        m = run_detfuzz(program, 5, eager=eager, exact_halt=True)
        assert m.cpu.x[7] == expected, f"detfuzz (eager={eager}): {m.cpu.x[7]:#x}"
        m = load_machine(program)
        for _ in range(5):
            m.step()
        assert m.cpu.x[7] == expected, f"detfuzz step(): {m.cpu.x[7]:#x}"
