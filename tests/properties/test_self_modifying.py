"""Self-modifying code: a write over code is seen by the next execution of that code.

detfuzz invalidates translated code (regions and interpreter steps) on every write to a page
that holds code, whoever writes it: a guest store (even one patching the very next
instruction of the block being executed) or the host (`bus.write_bytes`). Compiled code is
shared between machines by instruction words, so machines running different code at the same
addresses must stay independent.

Every scenario runs in each execution mode (see MODES): the block path with its default
policy (cold code interpreted, hot code translated), the block path translating every block
on first entry, single-stepping, and the block path cut into small `run` calls.

The properties at the end compare random self-modifying programs across those modes and,
with a `fence.i` after each patch (which RISC-V requires before fetching modified code),
against Unicorn.
"""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import Phase, given, note, settings

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble, encode

from .programs import (
    CODE_BASE,
    RAM_SIZE,
    Program,
    compare_with_unicorn,
    load_machine,
    machine_state,
    release,
    run_unicorn,
    self_modifying_programs,
    state_diff,
    translate_eagerly,
)

MODES = ("default", "translated", "single-step", "chunked")
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)

WFI = encode("wfi")


def new_machine(code: bytes, mode: str, *, regs: dict[int, int] | None = None) -> Machine:
    m = Machine(MachineConfig(ram_size=RAM_SIZE))
    if mode in ("translated", "chunked"):
        translate_eagerly(m)
    m.bus.write_bytes(CODE_BASE, code)
    for index, value in (regs or {}).items():
        m.cpu.x[index] = value
    m.cpu.pc = CODE_BASE
    return m


def run_to_wfi(m: Machine, mode: str, budget: int = 5000) -> int:
    """Run until the program's `wfi` (nothing enabled: the run stops); return the count."""
    executed = 0
    chunk = 3
    while executed < budget:
        if mode == "single-step":
            result = m.run(budget - executed, single_step=True)
        elif mode == "chunked":
            result = m.run(min(chunk, budget - executed))
            chunk = chunk % 7 + 1  # 3, 4, ..., 7, 1, 2, ...
        else:
            result = m.run(budget - executed)
        executed += result.executed
        if result.reason is StopReason.WFI_IDLE:
            return executed
        assert result.reason is StopReason.BUDGET, result
    pytest.fail(f"no wfi within {budget} instructions (pc {m.cpu.pc:#x})")


def li_word(reg: str, word: int) -> str:
    return f"li {reg}, {word:#x}"


# ---------------------------------------------------------------------------------------
# A guest store over code that already ran


@pytest.mark.parametrize("mode", MODES)
def test_store_over_an_executed_block_changes_what_runs_next(mode: str) -> None:
    """`target` runs 30 times (hot: translated under every policy), is patched by a guest
    store, then runs again: the new instruction must execute."""
    new = encode("addi", rd=10, rs1=10, imm=100)  # was: addi a0, a0, 1
    code = assemble(
        f"""
            li s0, 30
        1:  jal ra, target
            addi s0, s0, -1
            bnez s0, 1b
            mv s1, a0               # 30
            {li_word("t0", new)}
            la t1, target
            sw t0, 0(t1)
            jal ra, target          # +100
            wfi
        target:
            addi a0, a0, 1
            ret
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    assert m.cpu.x[9] == 30
    assert m.cpu.x[10] == 130


@pytest.mark.parametrize("mode", MODES)
def test_store_between_runs_changes_what_runs_next(mode: str) -> None:
    """Run the block, stop; a second run executes a guest store over it; a third run
    executes the block again from the top and must see the patch."""
    new = encode("addi", rd=10, rs1=10, imm=100)
    code = assemble(
        f"""
        block:
            addi a0, a0, 1
            addi a1, a1, 1
            beqz a2, 1f             # first pass: a2 == 0, go patch
            wfi                     # second pass ends here
        1:  addi a2, x0, 1
            {li_word("t0", new)}
            la t1, block
            sw t0, 0(t1)
            j block
        """
    )
    m = new_machine(code, mode)
    first = m.run(3, single_step=mode == "single-step")  # the block, up to the beqz
    assert first.reason is StopReason.BUDGET
    assert m.cpu.x[10] == 1
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == 101  # 1 + 100: the patched first instruction ran
    assert m.cpu.x[11] == 2


@pytest.mark.parametrize("mode", MODES)
def test_store_patching_the_next_instruction_of_the_same_block(mode: str) -> None:
    """The store rewrites the instruction right after it, in the same block; the new word
    executes. The loop makes the block hot (translated) and restores the old word after
    each use, so every iteration patches code that is translated again."""
    old = encode("addi", rd=10, rs1=0, imm=1)
    new = encode("addi", rd=10, rs1=0, imm=2)
    code = assemble(
        f"""
            li s0, 40
            {li_word("t0", new)}
            {li_word("t2", old)}
            la t1, patched
        loop:
            sw t0, 0(t1)            # patch the next instruction
        patched:
            .word {old:#x}          # addi a0, x0, 1  ->  addi a0, x0, 2
            sw t2, 0(t1)            # restore it
            add a1, a1, a0
            addi s0, s0, -1
            bnez s0, loop
            wfi
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    assert m.cpu.x[11] == 80  # 40 * 2: every iteration ran the patched word


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("store", "offset", "value", "expected"),
    [
        ("sb", 3, 0x7F, 0x7F0),  # byte 3 holds imm[11:4]: addi a0, x0, 0x7f0
        ("sh", 2, 0x0030, 0x3),  # bytes 2..3 hold imm[11:0] << 4 | rs1[4:1]: imm = 3
        ("sb", 2, 0x70, 7),  # byte 2 holds imm[3:0] << 4 | rs1[4:1]: imm = 7
    ],
)
def test_partial_store_patching_the_next_instruction(
    mode: str, store: str, offset: int, value: int, expected: int
) -> None:
    """A byte or halfword store over part of the next instruction (its immediate)."""
    old = encode("addi", rd=10, rs1=0, imm=0)
    code = assemble(
        f"""
            li t0, {value:#x}
            auipc t1, 0
            {store} t0, {8 + offset}(t1)
            .word {old:#x}          # addi a0, x0, 0 with its immediate rewritten
            wfi
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == expected


@pytest.mark.parametrize("mode", MODES)
def test_store_over_a_later_block_of_the_same_region(mode: str) -> None:
    """The region from the entry already contains `later` (a jump target), translated
    before the store rewrites it: the jump must reach the new word."""
    new = encode("addi", rd=10, rs1=0, imm=2)
    code = assemble(
        f"""
            {li_word("t0", new)}
            la t1, later
            sw t0, 0(t1)
            j later
            addi a0, x0, 99         # skipped
        later:
            addi a0, x0, 1          # -> addi a0, x0, 2
            wfi
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == 2


@pytest.mark.parametrize("mode", MODES)
def test_loop_rewriting_its_own_body(mode: str) -> None:
    """Each iteration rewrites the loop's first instruction to add the iteration's counter:
    iteration k runs the word stored by iteration k-1 (k = 20..1, hot enough to translate)."""
    code = assemble(
        """
            li s0, 20
            la t1, body
            li t4, 0xfffff          # opcode, rd, funct3, rs1: everything but the immediate
            li a0, 0
        body:
            addi a0, a0, 0          # rewritten: addi a0, a0, s0_previous
            lw t0, 0(t1)
            slli t2, s0, 20         # the new immediate, in place
            and t0, t0, t4
            or t0, t0, t2
            sw t0, 0(t1)
            addi s0, s0, -1
            bnez s0, body
            wfi
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    # The first iteration adds 0; iteration k adds the counter value of iteration k-1.
    assert m.cpu.x[10] == sum(range(2, 21))


@pytest.mark.parametrize("mode", MODES)
def test_misaligned_store_straddling_into_a_code_page(mode: str) -> None:
    """A misaligned word store at the end of a data page whose upper half lands on the
    first instruction of the next page, which holds hot (translated) code: that code must
    be invalidated although the store's address is on the other page."""
    old = encode("addi", rd=10, rs1=10, imm=1)  # f: a0 += 1
    new = encode("addi", rd=11, rs1=10, imm=1)  # f: a1 = a0 + 1 (differs in the low half)
    assert old >> 16 == new >> 16
    function = CODE_BASE + 0x1000  # page 1; page 0 holds data only
    caller = CODE_BASE + 0x2000
    f_code = assemble("addi a0, a0, 1\nret\n", base=function)
    caller_code = assemble(
        f"""
            li s0, 30
        1:  jal ra, {function:#x}
            addi s0, s0, -1
            bnez s0, 1b
            li t1, {function:#x}
            li t0, {(new & 0xFFFF) << 16 | 0xBEEF:#x}
            sw t0, -2(t1)           # bytes 0xfffe..0x1001: data page, then f's low half
            jal ra, {function:#x}
            wfi
        """,
        base=caller,
    )
    m = new_machine(b"", mode)
    m.bus.write_bytes(function, f_code)
    m.bus.write_bytes(caller, caller_code)
    m.cpu.pc = caller
    run_to_wfi(m, mode)
    assert m.bus.read_bytes(function - 2, 2) == (0xBEEF).to_bytes(2, "little")
    assert int.from_bytes(m.bus.read_bytes(function, 4), "little") == new
    assert m.cpu.x[10] == 30
    assert m.cpu.x[11] == 31


# ---------------------------------------------------------------------------------------
# Host writes


@pytest.mark.parametrize("mode", MODES)
def test_host_write_over_code_invalidates(mode: str) -> None:
    """Run a hot loop to its end, overwrite one of its instructions with
    `bus.write_bytes`, run it again from the top: the new instruction executes."""
    code = assemble(
        """
            li s0, 30
            li a0, 0
        loop:
            addi a0, a0, 1          # host rewrites this to addi a0, a0, 3
            addi s0, s0, -1
            bnez s0, loop
            wfi
        """
    )
    m = new_machine(code, mode)
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == 30
    loop = CODE_BASE + code.index(encode("addi", rd=10, rs1=10, imm=1).to_bytes(4, "little"))
    m.bus.write_bytes(loop, encode("addi", rd=10, rs1=10, imm=3).to_bytes(4, "little"))
    m.cpu.pc = CODE_BASE
    m.cpu.halted = False
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == 90


@pytest.mark.parametrize("mode", MODES)
def test_host_write_in_the_middle_of_a_translated_block(mode: str) -> None:
    """A run stops in the middle of a block (budget); the host rewrites the next
    instruction; the next run executes the new one, also on later laps of the loop."""
    code = assemble(
        """
            li s0, 30
        loop:
            addi a0, a0, 1
            addi a1, a1, 1          # host rewrites this to addi a1, a1, 5
            addi s0, s0, -1
            bnez s0, loop
            wfi
        """
    )
    m = new_machine(code, mode)
    # 1 + 4 * 25 instructions: lap 26 begins; run one more so the pc sits at the `a1` add.
    result = m.run(1 + 4 * 25 + 1, single_step=mode == "single-step")
    assert result.reason is StopReason.BUDGET
    target = CODE_BASE + 8
    assert m.cpu.pc == target
    m.bus.write_bytes(target, encode("addi", rd=11, rs1=11, imm=5).to_bytes(4, "little"))
    run_to_wfi(m, mode)
    assert m.cpu.x[10] == 30
    assert m.cpu.x[11] == 25 + 5 * 5


# ---------------------------------------------------------------------------------------
# Machines share compiled code by instruction words, and nothing else


PROGRAM_A = assemble(
    """
        li s0, 30
    loop:
        addi a0, a0, 1
        addi s0, s0, -1
        bnez s0, loop
        wfi
    """
)
PROGRAM_B = assemble(
    """
        li s0, 30
    loop:
        addi a0, a0, 7
        addi s0, s0, -1
        bnez s0, loop
        wfi
    """
)


@pytest.mark.parametrize("mode", MODES)
def test_machines_with_different_code_at_the_same_addresses_are_independent(mode: str) -> None:
    a, b = new_machine(PROGRAM_A, mode), new_machine(PROGRAM_B, mode)
    # Interleave them a few instructions at a time.
    for _ in range(200):
        for m in (a, b):
            if not m.cpu.halted:
                m.run(5, single_step=mode == "single-step")
    assert a.cpu.halted and b.cpu.halted
    assert a.cpu.x[10] == 30
    assert b.cpu.x[10] == 210


@pytest.mark.parametrize("mode", MODES)
def test_a_guest_store_in_one_machine_does_not_affect_another(mode: str) -> None:
    """Two machines with the same code (and so the same shared translations); one patches
    its loop from inside the guest: the other still runs the original."""
    new = encode("addi", rd=10, rs1=10, imm=100)
    code = assemble(
        f"""
            li s0, 30
        loop:
            addi a0, a0, 1
            addi s0, s0, -1
            bnez s0, loop
            beqz a2, 1f
            {li_word("t0", new)}
            la t1, loop
            sw t0, 0(t1)
            li s0, 2
            li a2, 0
            j loop
        1:  wfi
        """
    )
    patcher = new_machine(code, mode, regs={12: 1})
    bystander = new_machine(code, mode)
    for _ in range(100):
        for m in (patcher, bystander):
            if not m.cpu.halted:
                m.run(7, single_step=mode == "single-step")
    assert patcher.cpu.halted and bystander.cpu.halted
    assert patcher.cpu.x[10] == 30 + 200
    assert bystander.cpu.x[10] == 30
    # A machine created after the patch, with the original code, runs the original too.
    late = new_machine(code, mode)
    run_to_wfi(late, mode)
    assert late.cpu.x[10] == 30


@pytest.mark.parametrize("mode", MODES)
def test_a_host_write_in_one_machine_does_not_affect_another(mode: str) -> None:
    a, b = new_machine(PROGRAM_A, mode), new_machine(PROGRAM_A, mode)
    run_to_wfi(a, mode)
    run_to_wfi(b, mode)
    a.bus.write_bytes(CODE_BASE + 4, encode("addi", rd=10, rs1=10, imm=2).to_bytes(4, "little"))
    for m in (a, b):
        m.cpu.pc = CODE_BASE
        m.cpu.halted = False
        m.cpu.x[10] = 0
        run_to_wfi(m, mode)
    assert a.cpu.x[10] == 60
    assert b.cpu.x[10] == 30


# ---------------------------------------------------------------------------------------
# Properties


def run_all_modes(program: Program, budget: int, *, exact_halt: bool = False) -> dict[str, Machine]:
    """A machine per mode after `budget` instructions. `exact_halt`: the budget is the
    count that reaches the final self-loop, which must not be reached one earlier (else
    the self-loop would hide instructions executed but not counted)."""
    machines = {}
    for mode in MODES:
        m = load_machine(program, eager=mode in ("translated", "chunked"))
        left, chunk = budget, 1
        while left:
            part = left
            if mode == "chunked":
                part = min(chunk, left)
                chunk = chunk % 23 + 1  # every chunk start is a fresh region entry
            if exact_halt and left == budget:
                part = min(part, budget - 1) or 1
            result = m.run(part, single_step=mode == "single-step")
            assert result.executed == part, (mode, result)
            left -= part
            if exact_halt and left == 1:
                assert m.cpu.pc != program.end, f"{mode}: halt reached one instruction early"
        machines[mode] = m
    return machines


@settings(phases=PHASES)
@given(self_modifying_programs(fence_i=False))
def test_self_modifying_programs_agree_across_modes(program: Program) -> None:
    """Patches without fence.i (detfuzz makes them visible at once): all modes agree, and
    reach the final self-loop after the same number of instructions."""
    note(program.listing())
    probe = load_machine(program)
    while probe.cpu.pc != program.end:  # straight-line: at most one pass over the code
        assert probe.cpu.icount < len(program.code), "no progress towards the halt"
        probe.step()
    count = probe.cpu.icount
    machines = run_all_modes(program, count, exact_halt=True)
    reference = machines["single-step"]
    for mode, m in machines.items():
        assert m.cpu.pc == program.end, mode
        diff = state_diff(machine_state(reference), machine_state(m), reference.bus.ram, m.bus.ram)
        assert not diff, f"{mode} differs from single-step: {diff}"
    release([probe, *machines.values()])


@pytest.mark.skipif(importlib.util.find_spec("unicorn") is None, reason="unicorn not installed")
@settings(phases=PHASES)
@given(self_modifying_programs(fence_i=True))
def test_self_modifying_programs_match_unicorn(program: Program) -> None:
    """Each patch followed by fence.i: detfuzz in every mode agrees with Unicorn."""
    note(program.listing())
    ref = run_unicorn(program)
    assert ref[1] == program.end
    count = ref[3]
    machines = run_all_modes(program, count, exact_halt=True)
    for mode, m in machines.items():
        assert m.cpu.icount == count, mode
        compare_with_unicorn(program, f"detfuzz {mode}", m, ref)
    release(machines.values())
