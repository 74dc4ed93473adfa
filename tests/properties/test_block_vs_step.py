"""Translation equivalence: however a run is cut into calls, and whether instructions run in
translated regions or one per frame, the machine ends in the same state.

For random programs (ALU, M, loads/stores, forward branches, bounded loops, CSRs, traps
through a handler, MMIO, self-modifying stores, timer interrupts) and a random budget N:

(a) one `run(N)` on the block path,
(b) one `run(N, single_step=True)`,
(c) the block path split into `run(k_i)` calls with sum(k_i) = N (zeros included),
(d) `step()` N times,
(e) a split run whose chunks alternate at random between the block and single-step paths,
(f) the block path with a breakpoint set somewhere never executed (which changes how
    regions are formed: one block each),

all stop for the same reason after the same number of instructions, with identical
registers, pc, counters, trap CSRs, RAM, console output and device state. Calls (c)-(e)
stop early once a call returns anything but BUDGET, as (a) would have.
"""

from __future__ import annotations

import contextlib

from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

from vm import Machine, MachineConfig, StopReason
from vm.asm import assemble
from vm.isa import Kind, decode, operands

from .programs import (
    CODE_BASE,
    HANDLER_BASE,
    RAM_SIZE,
    Program,
    eager_translation,
    guest_programs,
    load_machine,
    machine_state,
    state_diff,
)

# Hypothesis's explain phase re-runs a failing case many times to annotate it: too slow
# here (a whole machine per run), and the listing in the notes says more.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)

# Each mode runs on its own fresh machine; `eager` ones translate blocks on first entry.
MODES = (
    "a:block",
    "a:block-eager",
    "b:single",
    "c:split",
    "c:split-eager",
    "d:step",
    "e:mixed-eager",
    "f:bp-blocks-eager",
)

# A pc inside RAM that no generated program ever executes (between the body and handler).
NEVER_EXECUTED = HANDLER_BASE - 4


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Program, int, list[int], list[bool]]:
    program = draw(guest_programs())
    budget = draw(st.one_of(st.integers(0, 40), st.integers(0, 1200)))
    cuts = sorted(draw(st.lists(st.integers(0, budget), max_size=8)))
    bounds = [0, *cuts, budget]
    chunks = [b - a for a, b in zip(bounds, bounds[1:], strict=False)]
    single = draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    return program, budget, chunks, single


def run_chunks(m: Machine, chunks: list[tuple[int, bool]]) -> tuple[StopReason, int]:
    """Run the chunks in order, stopping after the first call that does not hit its budget."""
    executed = 0
    reason = StopReason.BUDGET
    for budget, single in chunks:
        result = m.run(budget, single_step=single)
        executed += result.executed
        reason = result.reason
        if reason is not StopReason.BUDGET:
            break
        assert result.executed == budget, f"BUDGET after {result.executed} of {budget}"
    return reason, executed


def run_steps(m: Machine, n: int) -> tuple[StopReason, int]:
    executed = 0
    reason = StopReason.BUDGET
    for _ in range(n):
        result = m.step()
        executed += result.executed
        reason = result.reason
        if reason is not StopReason.BUDGET:
            break
        assert result.executed == 1
    return reason, executed


def check_same(
    program: Program,
    results: dict[str, tuple[StopReason, int]],
    machines: dict[str, Machine],
    reference: str,
) -> None:
    ref_m = machines[reference]
    ref_state = machine_state(ref_m)
    for name, m in machines.items():
        if name == reference:
            continue
        state = machine_state(m)
        diff = state_diff(ref_state, state, ref_m.bus.ram, m.bus.ram)
        assert results[name] == results[reference] and not diff, (
            f"{name} differs from {reference}: results {results[name]} vs "
            f"{results[reference]}; {diff}\n{program.listing()}"
        )


@settings(phases=PHASES)
@given(scenarios())
def test_block_step_split_and_single_step_agree(
    scenario: tuple[Program, int, list[int], list[bool]],
) -> None:
    program, budget, chunks, single = scenario
    note(program.listing())
    note(f"budget {budget}, chunks {chunks}, single {single}")
    machines = {name: load_machine(program) for name in MODES}
    results: dict[str, tuple[StopReason, int]] = {}

    def whole(name: str, *, single_step: bool = False) -> None:
        result = machines[name].run(budget, single_step=single_step)
        results[name] = (result.reason, result.executed)

    whole("a:block")
    whole("b:single", single_step=True)
    results["c:split"] = run_chunks(machines["c:split"], [(k, False) for k in chunks])
    results["d:step"] = run_steps(machines["d:step"], budget)
    with eager_translation():
        whole("a:block-eager")
        results["c:split-eager"] = run_chunks(
            machines["c:split-eager"], [(k, False) for k in chunks]
        )
        results["e:mixed-eager"] = run_chunks(
            machines["e:mixed-eager"], list(zip(chunks, single, strict=True))
        )
        machines["f:bp-blocks-eager"].set_breakpoints({NEVER_EXECUTED})
        whole("f:bp-blocks-eager")

    reason, executed = results["a:block"]
    assert reason is not StopReason.BUDGET or executed == budget
    assert machines["a:block"].cpu.icount == executed
    check_same(program, results, machines, reference="d:step")


# ---------------------------------------------------------------------------------------
# Breakpoints: the block path must stop wherever the single-step path stops.


def _breakpoint_trace(
    m: Machine, budget: int, *, single_step: bool
) -> list[tuple[StopReason, int, int]]:
    """Resume after each breakpoint until the budget is spent or the program stops."""
    trace = []
    left = budget
    while left > 0:
        result = m.run(left, single_step=single_step)
        trace.append((result.reason, result.executed, m.cpu.pc))
        left -= result.executed
        if result.reason is not StopReason.BREAKPOINT:
            break
    return trace


@st.composite
def breakpoint_scenarios(draw: st.DrawFn) -> tuple[Program, frozenset[int], int]:
    program = draw(guest_programs(wfi=False))
    n = len(program.code)
    # Loop heads (targets of backward branches) are where a region keeps running without
    # returning to the run loop; bias the breakpoints towards them.
    heads = [i + (ops.imm >> 2) for i, w in enumerate(program.code)
             if (insn := decode(w)) is not None and insn.kind is Kind.BRANCH
             and (ops := operands(insn, w)).imm < 0]
    index = st.integers(0, n - 1)
    if heads:
        index = st.one_of(st.sampled_from(heads), index)
    pcs = draw(st.sets(index, min_size=1, max_size=3))
    budget = draw(st.integers(1, 600))
    return program, frozenset(CODE_BASE + 4 * i for i in pcs), budget


@settings(phases=PHASES)
@given(breakpoint_scenarios())
def test_breakpoints_stop_block_and_single_step_alike(
    scenario: tuple[Program, frozenset[int], int],
) -> None:
    program, breakpoints, budget = scenario
    note(program.listing())
    note(f"breakpoints {sorted(hex(b) for b in breakpoints)}, budget {budget}")
    traces = {}
    states = {}
    for mode in ("step", "block", "block-eager"):
        m = load_machine(program)
        m.set_breakpoints(breakpoints)
        with eager_translation() if mode == "block-eager" else contextlib.nullcontext():
            traces[mode] = _breakpoint_trace(m, budget, single_step=mode == "step")
        states[mode] = (machine_state(m), m.bus.ram)
    for mode in ("block", "block-eager"):
        assert traces[mode] == traces["step"], mode
        diff = state_diff(states["step"][0], states[mode][0], states["step"][1], states[mode][1])
        assert not diff, f"{mode}: {diff}"


def test_breakpoint_at_loop_head_stops_on_every_iteration() -> None:
    """Minimal: a breakpoint on the head of a one-block loop that runs 60 times (hot enough
    to be translated). The single-step path stops there on every iteration; so must the
    block path, with or without eager translation."""
    code = assemble(
        """
            li t0, 60
        loop:
            addi t0, t0, -1
            bnez t0, loop
            j .
        """
    )
    expected = [(StopReason.BREAKPOINT, 1, CODE_BASE + 4, 60)]  # li, then at the loop head
    expected += [(StopReason.BREAKPOINT, 2, CODE_BASE + 4, n) for n in range(59, 0, -1)]
    expected += [(StopReason.BUDGET, 10, CODE_BASE + 12, 0)]  # the last lap, then `j .`
    for mode in ("step", "block", "block-eager"):
        m = Machine(MachineConfig(ram_size=RAM_SIZE))
        m.bus.write_bytes(CODE_BASE, code)
        m.cpu.pc = CODE_BASE
        m.set_breakpoints({CODE_BASE + 4})
        trace = []
        with eager_translation() if mode == "block-eager" else contextlib.nullcontext():
            for _ in range(len(expected)):
                result = m.run(10, single_step=mode == "step")
                trace.append((result.reason, result.executed, m.cpu.pc, m.cpu.x[5]))
        assert trace == expected, f"{mode}: first divergence at stop " + str(
            next(i for i, (a, b) in enumerate(zip(trace, expected, strict=True)) if a != b)
        )
