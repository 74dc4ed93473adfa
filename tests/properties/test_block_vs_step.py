"""Translation equivalence: however a run is cut into calls, and whether instructions run in
translated regions or one per frame, the machine ends in the same state.

For random programs (ALU, M, loads/stores, forward branches, bounded loops, CSRs, traps
through a handler, MMIO, self-modifying stores, timer interrupts) and a random budget N:

(a) one `run(N)` on the block path (default policy: cold blocks interpreted, hot blocks
    translated), and again with every block translated on first entry ("eager"),
(b) one `run(N, single_step=True)`,
(c) the block path split into `run(k_i)` calls with sum(k_i) = N (zeros included), default
    and eager,
(d) `step()` N times (the reference),
(e) an eager split run whose chunks alternate at random between the block and
    single-step paths,
(f) the eager block path with a breakpoint set at a pc the program never reaches (which
    changes how regions are formed: one block each),
(g) the block path translating a block on its third entry (so loops switch from the
    interpreter to the translator mid-run),

all stop for the same reason after the same number of instructions, with identical
registers, pc, counters (icount, nonretired, minstret, mcycle), trap CSRs, RAM, console
output and CLINT state. Split runs stop early once a call returns anything but BUDGET, as
(a) would have.

A second property sets breakpoints (biased to loop heads) and checks the block path stops
at exactly the same places as the single-step path, every time it resumes.
"""

from __future__ import annotations

import itertools

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
    guest_programs,
    load_machine,
    machine_state,
    release,
    state_diff,
    translate_eagerly,
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
    "g:hot-after-3",  # interpreted at first, translated from the third entry of a block
)

# A pc inside RAM that no generated program ever executes (between the body and handler).
NEVER_EXECUTED = HANDLER_BASE - 4


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Program, int, list[int], list[bool]]:
    program = draw(guest_programs())
    budget = draw(st.one_of(st.integers(0, 40), st.integers(0, 1200)))
    cuts = sorted(draw(st.lists(st.integers(0, budget), max_size=8)))
    bounds = [0, *cuts, budget]
    chunks = [b - a for a, b in itertools.pairwise(bounds)]
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
    while executed < n:
        result = m.step()
        executed += result.executed
        reason = result.reason
        if reason is not StopReason.BUDGET:
            break
        # One instruction a step: an uncounted fault (an access fault) is a step of 0.
        assert result.executed in (0, 1)
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
    machines = {name: load_machine(program, eager="eager" in name) for name in MODES}
    machines["g:hot-after-3"].hot_block_entries = 3
    machines["f:bp-blocks-eager"].set_breakpoints({NEVER_EXECUTED})
    results: dict[str, tuple[StopReason, int]] = {}
    split = [(k, False) for k in chunks]
    for name, m in machines.items():
        if name.startswith("b:"):
            result = m.run(budget, single_step=True)
        elif name.startswith("c:"):
            results[name] = run_chunks(m, split)
            continue
        elif name.startswith("d:"):
            results[name] = run_steps(m, budget)
            continue
        elif name.startswith("e:"):
            results[name] = run_chunks(m, list(zip(chunks, single, strict=True)))
            continue
        else:
            result = m.run(budget)
        results[name] = (result.reason, result.executed)

    reason, executed = results["a:block"]
    assert reason is not StopReason.BUDGET or executed == budget
    assert machines["a:block"].cpu.icount == executed
    check_same(program, results, machines, reference="d:step")
    release(machines.values())


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
    heads = [
        i + (ops.imm >> 2)
        for i, w in enumerate(program.code)
        if (insn := decode(w)) is not None
        and insn.kind is Kind.BRANCH
        and (ops := operands(insn, w)).imm < 0
    ]
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
        m = load_machine(program, eager=mode == "block-eager")
        m.set_breakpoints(breakpoints)
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
        if mode == "block-eager":
            translate_eagerly(m)
        m.bus.write_bytes(CODE_BASE, code)
        m.cpu.pc = CODE_BASE
        m.set_breakpoints({CODE_BASE + 4})
        trace = []
        for _ in range(len(expected)):
            result = m.run(10, single_step=mode == "step")
            trace.append((result.reason, result.executed, m.cpu.pc, m.cpu.x[5]))
        assert trace == expected, f"{mode}: first divergence at stop " + str(
            next(i for i, (a, b) in enumerate(zip(trace, expected, strict=True)) if a != b)
        )
