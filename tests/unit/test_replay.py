"""Record/replay engine (vm.replay): what is logged, what a replay does with it, how it fails.

The guest here reads the HOST clock (RTC) and entropy, echoes UART input that arrives as
host stimulus, takes CLINT timer interrupts, traps on ECALL (counted by icount) and on a
load access fault (not counted), and ends through the finisher: every kind of event a
log holds but the block/NIC ones, which the whole-machine guest covers
(test_replay_guest.py).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import time

import pytest

from vm import Machine, MachineConfig, StopReason
from vm.activity import ActivityKind, Side
from vm.asm import assemble
from vm.backends import Stimulus
from vm.clock import ClockKind
from vm.config import DEFAULT_DEVICES
from vm.devices import entropy
from vm.digest import digest
from vm.loader import load_program
from vm.replay import (
    REPLAY_WAIT_MAX,
    ReplayDivergence,
    ReplayError,
    ReplayLogEnded,
    ReplayMode,
    ReplayStall,
)
from vm.replaylog import (
    AsyncKind,
    Event,
    EventKind,
    LogCheckpoint,
    LogError,
    ShutdownCause,
    encode_event,
    encode_header,
    read_log,
)
from vm.session import SeekError, Session
from vm.snapshot import SnapshotError, loadvm, savevm

CONFIG = MachineConfig(ram_size=64 << 10, devices=(*DEFAULT_DEVICES, entropy.default_spec()))
BUDGET = 200_000
ITERATIONS = 400

GUEST = f"""
    .equ UART0, 0x10000000
    .equ FINISHER, 0x100000
    .equ RTC, 0x101000
    .equ ENTROPY, {entropy.DEFAULT_BASE:#x}
    .equ MTIMECMP, 0x2004000
    .equ MTIME, 0x200bff8
_start:
    la      t0, handler
    csrw    mtvec, t0
    li      s1, UART0
    li      s2, ENTROPY
    li      t0, 1
    sw      t0, 4(s2)           # entropy on
    li      s3, RTC
    jal     ra, arm
    li      t0, 0x80
    csrs    mie, t0             # MTIE
    csrsi   mstatus, 8          # MIE
    li      s5, {ITERATIONS}
    la      s6, buffer
loop:
    lw      t0, 0xc(s2)         # entropy word
    lw      t1, 0(s3)           # HOST clock, low word
    xor     t0, t0, t1
    sw      t0, 0(s6)
    lbu     t2, 5(s1)           # LSR: a device read, never logged
    andi    t2, t2, 1
    beqz    t2, 1f
    lbu     t2, 0(s1)           # RBR
    sb      t2, 0(s1)           # echo it
    sb      t2, 4(s6)
1:  ecall
    addi    s6, s6, 8
    addi    s5, s5, -1
    bnez    s5, loop
    li      t0, 0x40000000
    lw      t1, 0(t0)           # a load access fault: icount does not count it
    li      t0, FINISHER
    li      t1, 0x5555
    sw      t1, 0(t0)
2:  j       2b

arm:                            # mtimecmp = mtime + 10 ticks (1 us)
    li      a0, MTIME
    lw      a1, 0(a0)
    addi    a1, a1, 10
    li      a0, MTIMECMP
    sw      zero, 4(a0)
    sw      a1, 0(a0)
    ret

handler:
    csrr    a2, mcause
    bltz    a2, 3f
    csrr    a3, mepc            # an exception: step over the instruction
    addi    a3, a3, 4
    csrw    mepc, a3
    addi    s7, s7, 1
    mret
3:  addi    s8, s8, 1           # the timer: count it and re-arm
    mv      a4, ra
    jal     ra, arm
    mv      ra, a4
    mret

    .balign 8
buffer:
"""
IMAGE = assemble(GUEST)
STIMULUS = (
    Stimulus(1_000, "uart0", b"hello"),
    Stimulus(4_000, "uart0", b", world"),
    Stimulus(9_000, "uart0", b"!"),
)


def machine(mode: ReplayMode = ReplayMode.NONE, *, seed: int = 0, log: bytes | None = None, **kw):  # type: ignore[no-untyped-def]
    m = Machine(CONFIG, host_seed=seed, stimulus=STIMULUS, mode=mode, replay_log=log, **kw)
    load_program(m, IMAGE)
    return m


@pytest.fixture(scope="module")
def recorded() -> tuple[bytes, bytes, int, bytes]:
    """(log, final digest, final icount, console) of one recording with host seed 1."""
    m = machine(ReplayMode.RECORD, seed=1)
    result = m.run(BUDGET)
    assert result.reason is StopReason.FINISHER_PASS
    return m.recorded_log(), digest(m), m.cpu.icount, m.console_output()


def replay(log: bytes, *, seed: int = 2, budget: int = BUDGET) -> Machine:
    m = machine(ReplayMode.REPLAY, seed=seed, log=log)
    result = m.run(budget)
    assert result.reason is StopReason.FINISHER_PASS
    assert m.replay_at_end()
    assert m.run(budget).reason is StopReason.LOG_END
    return m


def rebuild(events: list[Event], data: bytes) -> bytes:
    return encode_header(read_log(data).header) + b"".join(encode_event(e) for e in events)


# -- what the log holds ---------------------------------------------------------------------------


def test_the_log_holds_every_host_input_and_each_gated_point(recorded):
    log = read_log(recorded[0])
    kinds = {e.kind for e in log.events}
    assert {
        EventKind.CLOCK,
        EventKind.RANDOM,
        EventKind.EXCEPTION,
        EventKind.INTERRUPT,
        EventKind.CHAR_WRITE,
        EventKind.SHUTDOWN,
        EventKind.ASYNC,
    } <= kinds
    assert log.events[0] == Event(EventKind.CHECKPOINT, (LogCheckpoint.INIT,))
    assert log.events[-1].kind is EventKind.END
    assert log.events[-2] == Event(EventKind.SHUTDOWN, (ShutdownCause.GUEST_PASS,))
    assert not log.truncated
    # One CLOCK and one RANDOM per iteration, one EXCEPTION per ECALL plus the fault.
    counts = {k: sum(e.kind is k for e in log.events) for k in EventKind}
    assert counts[EventKind.CLOCK] == ITERATIONS
    assert counts[EventKind.RANDOM] == ITERATIONS
    assert counts[EventKind.EXCEPTION] == ITERATIONS + 1
    reads = [e for e in log.events if e.kind is EventKind.ASYNC]
    assert all(e.args[0] is AsyncKind.CHAR_READ for e in reads)
    assert (
        b"".join(e.args[2] for e in reads) == b"hello, world!"[: sum(len(e.args[2]) for e in reads)]
    )


def test_instruction_counts_add_up_to_the_icount_and_never_repeat(recorded):
    events = read_log(recorded[0]).events
    counts = [e.args[0] for e in events if e.kind is EventKind.INSTRUCTION]
    assert sum(counts) == recorded[2]
    assert all(c > 0 for c in counts)
    for a, b in itertools.pairwise(events):
        assert not (a.kind is b.kind is EventKind.INSTRUCTION)


def test_device_reads_and_guest_state_are_never_logged():
    # A guest that polls the UART's LSR and reads the CLINT's mtime in a loop: device reads
    # (however many) add no event; only the finisher's shutdown and END do.
    image = assemble(
        """
        li   s1, 0x10000000
        li   s2, 0x200bff8
        li   s3, 500
    1:  lbu  t0, 5(s1)
        lw   t1, 0(s2)
        addi s3, s3, -1
        bnez s3, 1b
        li   t0, 0x100000
        li   t1, 0x5555
        sw   t1, 0(t0)
        """
    )
    m = Machine(CONFIG, mode=ReplayMode.RECORD)
    load_program(m, image)
    assert m.run(10_000).reason is StopReason.FINISHER_PASS
    kinds = [e.kind for e in read_log(m.recorded_log()).events]
    assert kinds == [
        EventKind.CHECKPOINT,
        EventKind.INSTRUCTION,
        EventKind.SHUTDOWN,
        EventKind.END,
    ]


def test_the_log_is_streamed_while_recording():
    # After every run slice the stream already holds every event written so far.
    stream = io.BytesIO()
    m = Machine(CONFIG, stimulus=STIMULUS, mode=ReplayMode.RECORD, record_to=stream)
    load_program(m, IMAGE)
    m.run(5_000)
    partial = read_log(stream.getvalue())
    assert not partial.ended and not partial.truncated
    assert len(partial.events) == m.rr.writer.count  # type: ignore[union-attr]
    m.run(BUDGET)
    m.finish_recording()
    full = read_log(stream.getvalue())
    assert full.ended and full.events[: len(partial.events)] == partial.events


# -- replay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 99])
def test_replay_with_any_host_seed_reaches_the_recorded_state(recorded, seed):
    log, final, icount, console = recorded
    m = replay(log, seed=seed)
    assert m.cpu.icount == icount
    assert digest(m) == final
    assert m.console_output() == console


def test_replay_drops_live_host_input(recorded):
    # The replaying machine's host has different stimulus: none of it reaches the guest.
    log, final, _, console = recorded
    m = Machine(
        CONFIG,
        host_seed=5,
        stimulus=[Stimulus(10, "uart0", b"XXXXXXXXXXXXXXXX")],
        mode=ReplayMode.REPLAY,
        replay_log=log,
    )
    load_program(m, IMAGE)
    m.run(BUDGET)
    assert digest(m) == final and m.console_output() == console


def test_record_does_not_perturb_the_guest(recorded):
    m = machine(ReplayMode.NONE, seed=1)
    assert m.run(BUDGET).reason is StopReason.FINISHER_PASS
    assert digest(m) == recorded[1]
    assert m.console_output() == recorded[3]


def test_two_recordings_with_one_seed_are_byte_identical(recorded):
    m = machine(ReplayMode.RECORD, seed=1)
    m.run(BUDGET)
    assert m.recorded_log() == recorded[0]


def test_interrupts_are_taken_only_where_the_log_says(recorded):
    # A replay of the recording, run in many small budgets (each a slice boundary the
    # recording did not have, where the pending timer interrupt could be taken early).
    log, final, icount, _ = recorded
    m = machine(ReplayMode.REPLAY, seed=3, log=log)
    while m.run(37).reason is StopReason.BUDGET:
        pass
    assert m.cpu.icount == icount and digest(m) == final


def test_a_replay_in_single_steps_matches(recorded):
    log, final, _, _ = recorded
    m = machine(ReplayMode.REPLAY, seed=4, log=log)
    while m.cpu.icount < 3_000:
        m.step()
    m.run(BUDGET)
    assert digest(m) == final


# -- header checks --------------------------------------------------------------------------------


def test_a_log_of_another_configuration_is_rejected(recorded):
    other = dataclasses.replace(CONFIG, icount_shift=3)
    with pytest.raises(LogError, match="shift"):
        Machine(other, mode=ReplayMode.REPLAY, replay_log=recorded[0])
    other = dataclasses.replace(CONFIG, ram_size=128 << 10)
    with pytest.raises(LogError, match="configuration"):
        Machine(other, mode=ReplayMode.REPLAY, replay_log=recorded[0])


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x81\xa5magic\xa3bad"])
def test_bytes_that_are_no_log_are_rejected(data):
    with pytest.raises(LogError):
        Machine(CONFIG, mode=ReplayMode.REPLAY, replay_log=data)


def test_mode_options_must_fit_the_mode():
    with pytest.raises(ValueError, match="replay log"):
        Machine(CONFIG, replay_log=b"x")
    with pytest.raises(ValueError, match="record stream"):
        Machine(CONFIG, mode=ReplayMode.REPLAY, record_to=io.BytesIO())
    with pytest.raises(ValueError, match="needs a replay_log"):
        Machine(CONFIG, mode=ReplayMode.REPLAY)


# -- tampering: reported at the right event, fast -------------------------------------------------


def expect_failure(log: bytes, cls: type[ReplayError] = ReplayError) -> ReplayError:
    start = time.perf_counter()
    m = machine(ReplayMode.REPLAY, seed=2, log=log)
    with pytest.raises(cls) as info:
        for _ in range(10):
            m.run(BUDGET)
    # Bounded: the replay fails within a couple of recording lengths of work.
    assert time.perf_counter() - start < 20
    error = info.value
    assert error.render().startswith(str(error))
    return error


def indices(log: bytes, kind: EventKind) -> list[int]:
    return [i for i, e in enumerate(read_log(log).events) if e.kind is kind]


@pytest.mark.parametrize(
    "kind", [EventKind.CLOCK, EventKind.RANDOM, EventKind.EXCEPTION, EventKind.CHAR_WRITE]
)
def test_a_dropped_event_is_reported_where_it_was(recorded, kind):
    log = recorded[0]
    events = list(read_log(log).events)
    at = indices(log, kind)[3]
    dropped = events[:at] + events[at + 1 :]
    error = expect_failure(rebuild(dropped, log), ReplayDivergence)
    assert error.event_index == at
    assert error.icount == sum(e.args[0] for e in events[:at] if e.kind is EventKind.INSTRUCTION)
    assert error.recent and error.recent[-1][0] < at


def test_a_dropped_interrupt_is_a_divergence_not_a_hang(recorded):
    log = recorded[0]
    events = list(read_log(log).events)
    at = indices(log, EventKind.INTERRUPT)[2]
    error = expect_failure(rebuild(events[:at] + events[at + 1 :], log))
    assert at - 1 <= error.event_index <= at + 2


def test_swapped_events_are_reported_at_the_swap(recorded):
    log = recorded[0]
    events = list(read_log(log).events)
    at = indices(log, EventKind.RANDOM)[5]  # RANDOM then (INSTRUCTION or CLOCK)
    events[at], events[at + 1] = events[at + 1], events[at]
    error = expect_failure(rebuild(events, log))
    assert error.event_index in (at, at + 1)


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        (EventKind.INSTRUCTION, lambda e: Event(e.kind, (e.args[0] + 1,))),
        (EventKind.CHAR_WRITE, lambda e: Event(e.kind, (2, 2))),
        (EventKind.SHUTDOWN, lambda e: Event(e.kind, (ShutdownCause.GUEST_FAIL,))),
        (
            EventKind.CHECKPOINT,
            lambda e: Event(e.kind, (LogCheckpoint.RESET,)),
        ),
    ],
)
def test_a_changed_payload_is_reported_at_its_event(recorded, kind, change):
    log = recorded[0]
    events = list(read_log(log).events)
    at = indices(log, kind)[-1 if kind is EventKind.SHUTDOWN else 1]
    events[at] = change(events[at])
    error = expect_failure(rebuild(events, log))
    assert at <= error.event_index <= at + 1, error.render()


def test_a_changed_host_value_replays_into_a_different_state(recorded):
    # A well-formed value is the host's to choose: the replay goes on, and the state it
    # reaches differs (the properties compare digests to see that).
    log, final, _, _ = recorded
    events = list(read_log(log).events)
    at = indices(log, EventKind.RANDOM)[0]
    events[at] = Event(EventKind.RANDOM, (b"\xde\xad\xbe\xef",))
    m = replay(rebuild(events, log))
    assert digest(m) != final


def test_a_truncated_log_ends_the_replay_with_an_error(recorded):
    log = recorded[0]
    for cut in (len(log) // 3, len(log) // 2, len(log) - 3):
        error = expect_failure(log[:cut], ReplayLogEnded)
        assert error.event_index == len(read_log(log[:cut]).events)


def test_an_event_nothing_produces_stalls_with_its_name(recorded):
    # A virtual-timer checkpoint inserted where no virtual timer is due: nothing can
    # consume it, and the replay says so instead of hanging.
    log = recorded[0]
    events = list(read_log(log).events)
    at = next(i for i in indices(log, EventKind.INSTRUCTION)[4:] if events[i].args[0] > 1)
    count = events[at].args[0]
    events[at : at + 1] = [
        Event(EventKind.INSTRUCTION, (1,)),
        Event(EventKind.CHECKPOINT, (LogCheckpoint.CLOCK_HOST,)),
        Event(EventKind.INSTRUCTION, (count - 1,)),
    ]
    error = expect_failure(rebuild(events, log), ReplayStall)
    assert error.event_index == at + 1
    assert "CLOCK_HOST" in str(error)
    assert REPLAY_WAIT_MAX > 0


# -- stop and continue ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", list(ReplayMode))
def test_stop_lets_host_time_pass_and_changes_no_guest_state(recorded, mode, monkeypatch):
    log = recorded[0] if mode is ReplayMode.REPLAY else None
    plain = machine(mode, seed=1, log=log)
    stopped = machine(mode, seed=1, log=log)
    calls: list[tuple[str, bool]] = []
    uart = type(stopped.devices["uart0"])
    monkeypatch.setattr(
        uart, "runstate_changed", lambda self, *, running: calls.append((self.name, running))
    )
    fired: list[int] = []
    timer = stopped.new_timer(ClockKind.REALTIME, lambda: fired.append(1))
    for k in (1_000, 4_321, 9_000):
        plain.run(k - plain.cpu.icount)
        stopped.run(k - stopped.cpu.icount)
        before = digest(stopped)
        realtime = stopped.host_time.realtime_ns
        stopped.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            stopped.run(1)
        timer.mod(realtime + 10)
        stopped.pass_host_time()
        stopped.cont()
        assert stopped.host_time.realtime_ns > realtime
        assert digest(stopped) == before
        if mode is ReplayMode.REPLAY:
            # Only a replay is independent of host timing: without a log, the host time
            # that passed while stopped moves where later host input arrives.
            assert before == digest(plain)
    assert fired == [1, 1, 1]
    assert calls == [("uart0", False), ("uart0", True)] * 3
    if mode is ReplayMode.REPLAY:
        plain.run(BUDGET)
        stopped.run(BUDGET)
        assert digest(stopped) == digest(plain)


def test_host_time_passes_only_while_stopped():
    m = machine()
    with pytest.raises(RuntimeError, match="stop"):
        m.pass_host_time(10)


# -- snapshots inside record/replay ---------------------------------------------------------------


def test_a_snapshot_taken_while_recording_starts_a_replay_of_the_tail():
    # Two recordings stopped at the same icount (a stop is a slice boundary the host sees),
    # one of them taking a snapshot there.
    logs = []
    for take in (False, True):
        m = machine(ReplayMode.RECORD, seed=1)
        m.run(4_000)
        if take:
            snapshot = savevm(m)
        m.run(BUDGET)
        logs.append(m.recorded_log())
    assert logs[0] == logs[1]  # taking the snapshot changed nothing
    log, final, icount = logs[1], digest(m), m.cpu.icount
    tail = Machine(CONFIG, host_seed=8, mode=ReplayMode.REPLAY, replay_log=log)
    loadvm(tail, snapshot)
    assert tail.run(BUDGET).reason is StopReason.FINISHER_PASS
    assert tail.cpu.icount == icount and digest(tail) == final


def test_record_and_replay_save_the_same_position_at_the_same_point():
    points = (500, 2_000, 5_555)
    rec = machine(ReplayMode.RECORD, seed=1)
    recorded = []
    for k in points:
        rec.run(k - rec.cpu.icount)
        recorded.append((rec.rr.position(), digest(rec)))  # type: ignore[union-attr]
    rec.run(BUDGET)
    rep = machine(ReplayMode.REPLAY, seed=6, log=rec.recorded_log())
    for k, (position, state) in zip(points, recorded, strict=True):
        rep.run(k - rep.cpu.icount)
        assert rep.rr.position() == position  # type: ignore[union-attr]
        assert digest(rep) == state


def test_snapshots_that_do_not_fit_the_replay_are_refused(recorded):
    log = recorded[0]
    plain = machine()
    plain.run(3_000)
    rep = Machine(CONFIG, mode=ReplayMode.REPLAY, replay_log=log)
    with pytest.raises(SnapshotError, match="no replay position"):
        loadvm(rep, savevm(plain))
    rec = machine(ReplayMode.RECORD)
    rec.run(3_000)
    with pytest.raises(SnapshotError, match="recording machine"):
        loadvm(rec, savevm(rec))
    # A snapshot from a recording whose log this is not: its position lies elsewhere.
    other = Machine(CONFIG, host_seed=1, mode=ReplayMode.RECORD)
    load_program(other, IMAGE)
    other.run(50_000)
    short = read_log(log)
    cut = rebuild(list(short.events[:40]), log)
    with pytest.raises(SnapshotError, match="replay position"):
        loadvm(Machine(CONFIG, mode=ReplayMode.REPLAY, replay_log=cut), savevm(other))


# -- seek -----------------------------------------------------------------------------------------


def straight_digests(log: bytes, targets: list[int]) -> dict[int, bytes]:
    m = machine(ReplayMode.REPLAY, seed=11, log=log)
    session = Session(m)
    out = {}
    for t in sorted(set(targets)):
        session.run_to(t)
        out[t] = digest(m)
    return out


def test_seek_backward_and_forward_lands_on_the_straight_replays_state(recorded):
    log, _, icount, _ = recorded
    targets = [icount - 5, 100, 6_000, 6_000, 5_999, 0, icount // 2, icount * 2 // 3]
    expected = straight_digests(log, targets)
    m = machine(ReplayMode.REPLAY, seed=12, log=log)
    session = Session(m, snapshot_every=2_000)
    session.run_to(icount - 1)
    for t in targets:
        session.seek(t)
        assert m.cpu.icount == t
        assert digest(m) == expected[t], t


def test_seek_replays_at_most_k_instructions(recorded):
    log, _, icount, _ = recorded
    k = 1_500
    m = machine(ReplayMode.REPLAY, seed=12, log=log)
    session = Session(m, snapshot_every=k)
    session.run_to(icount - 1)
    for t in (icount - 2, 10, 6_000, 4_400, icount // 3):
        executed = session.seek(t).executed
        assert executed <= k


def test_seek_needs_a_replay_and_a_snapshot_behind_the_target(recorded):
    m = machine()
    with pytest.raises(SeekError, match="replay"):
        Session(m).seek(10)
    rep = machine(ReplayMode.REPLAY, log=recorded[0])
    session = Session(rep)
    session.run_to(500)
    with pytest.raises(SeekError, match="no snapshot"):
        session.seek(100)


def test_savevm_while_a_bottom_half_is_queued_is_refused_and_the_session_retries(recorded):
    log = recorded[0]
    m = machine(ReplayMode.REPLAY, log=log)
    session = Session(m, snapshot_every=1_000)
    m.bottom_halves.schedule_oneshot(lambda: None, replay=False)
    session.run_to(2_500)
    # icount 0 was refused (the bottom half runs after the first slice): retried at 1.
    assert session.snapshot_icounts == [1, 1_000, 2_000]


def test_a_guest_exception_that_does_not_happen_is_a_divergence_at_once(recorded):
    # An EXCEPTION moved one instruction later than the fault: the replay runs past the
    # faulting point without the trap the log expects there.
    log = recorded[0]
    events = list(read_log(log).events)
    at = indices(log, EventKind.EXCEPTION)[4]
    before, after = events[at - 1], events[at + 1]
    assert before.kind is after.kind is EventKind.INSTRUCTION and after.args[0] > 1
    events[at - 1] = Event(EventKind.INSTRUCTION, (before.args[0] + 1,))
    events[at + 1] = Event(EventKind.INSTRUCTION, (after.args[0] - 1,))
    error = expect_failure(rebuild(events, log), ReplayDivergence)
    assert at - 1 <= error.event_index <= at


RESET_GUEST = """
    li      t0, 0x80008000      # outside the program image: survives a guest reset
    lw      t1, 0(t0)
    addi    t1, t1, 1
    sw      t1, 0(t0)
    li      t2, 3
    li      t0, 0x100000
    blt     t1, t2, 1f
    li      t1, 0x5555          # the third boot passes
    sw      t1, 0(t0)
1:  li      t1, 0x7777          # the first two reset the machine
    sw      t1, 0(t0)
"""


def test_guest_resets_are_recorded_and_replayed():
    image = assemble(RESET_GUEST)
    rec = Machine(CONFIG, mode=ReplayMode.RECORD)
    load_program(rec, image)
    assert Session(rec).run_to(BUDGET).reason is StopReason.FINISHER_PASS
    log = rec.recorded_log()
    events = read_log(log).events
    resets = [e for e in events if e == Event(EventKind.CHECKPOINT, (LogCheckpoint.RESET,))]
    shutdowns = [e.args[0] for e in events if e.kind is EventKind.SHUTDOWN]
    assert len(resets) == 2
    assert shutdowns == [ShutdownCause.GUEST_RESET] * 2 + [ShutdownCause.GUEST_PASS]
    rep = Machine(CONFIG, host_seed=4, mode=ReplayMode.REPLAY, replay_log=log)
    load_program(rep, image)
    assert Session(rep).run_to(BUDGET).reason is StopReason.FINISHER_PASS
    assert rep.replay_at_end() and digest(rep) == digest(rec)


# -- observing without perturbing, and what ran around the guest --------------------------------


def test_observing_a_recording_changes_nothing_and_a_replay_sees_the_same_states(recorded):
    log, _, icount, _ = recorded
    points = range(0, icount, 97)
    seen: dict[str, dict[int, bytes]] = {}
    for name, m in (
        ("record", machine(ReplayMode.RECORD, seed=1)),
        ("replay", machine(ReplayMode.REPLAY, seed=5, log=log)),
    ):
        states = seen[name] = {}
        m.observe(points, lambda mm, states=states: states.setdefault(mm.cpu.icount, digest(mm)))
        m.run(BUDGET)
        if name == "record":
            assert m.recorded_log() == log  # no slice ended at an observation point
    assert list(seen["record"]) == list(points)
    assert seen["record"] == seen["replay"]


def test_activity_names_each_timer_and_bottom_half_with_its_clock_and_side():
    m = machine(ReplayMode.NONE, seed=1)
    log = m.trace_activity()
    m.new_timer(ClockKind.REALTIME, lambda: None).mod(500)
    m.bottom_halves.schedule_oneshot(lambda: None, replay=False)
    m.run(BUDGET)
    m.stop()
    m.cont()
    kinds = {(e.kind, e.side, e.detail) for e in log.entries}
    assert (ActivityKind.TIMER, Side.GUEST, "virtual timer") in kinds  # the CLINT's
    assert (ActivityKind.TIMER, Side.HOST, "realtime timer") in kinds
    assert (ActivityKind.BOTTOM_HALF, Side.HOST, "plain") in kinds
    assert (ActivityKind.STIMULUS, Side.HOST, "5 bytes") in kinds
    assert [e.detail for e in log.entries if e.kind is ActivityKind.RUNSTATE] == ["stop", "cont"]
    clint = [e for e in log.entries if e.kind is ActivityKind.TIMER and e.side is Side.GUEST]
    assert clint[0].owner == "clint" and str(clint[0]).startswith(f"@{clint[0].icount} ")


def test_activity_says_which_components_a_host_side_callback_changed():
    m = machine(ReplayMode.NONE, seed=1)
    log = m.trace_activity()
    m.new_timer(ClockKind.REALTIME, lambda: m.bus.write(0x8000_8000, 4, 0xBAD)).mod(500)
    m.run(BUDGET)
    host = [e for e in log.entries if e.side is Side.HOST and e.kind is ActivityKind.TIMER]
    assert [e.changed for e in host] == [("ram[0x80008000..0x80008fff]",)]
    assert "changed ram[" in str(host[0])
    others = [e for e in log.entries if e.side is Side.HOST and e not in host]
    assert all(e.changed == () for e in others)  # stimulus arriving changes nothing


def test_step_stops_after_an_uncounted_fault_with_the_trap_entered():
    m = Machine(CONFIG)
    load_program(
        m,
        assemble(
            """
            la   t0, handler
            csrw mtvec, t0
            li   t1, 0x40000000
            lw   t2, 0(t1)          # an access fault: not counted
            nop
        handler:
            li   t3, 1
            """
        ),
    )
    while m.cpu.pc != 0x8000_0010:
        m.step()
    icount = m.cpu.icount
    result = m.step()
    assert result.executed == 0 and m.cpu.icount == icount
    assert m.cpu.pc == 0x8000_0018 and m.cpu.x[28] == 0  # in the handler, t3 not yet set
    m.step()
    assert m.cpu.x[28] == 1


def test_a_host_quit_is_logged_at_the_boundary_and_the_replay_stops_there():
    rec = machine(ReplayMode.RECORD, seed=1)
    rec.run(1_234)
    rec.request_quit()
    assert rec.run(BUDGET).reason is StopReason.HOST_QUIT
    assert rec.cpu.icount == 1_234
    events, size = rec.recording_stats()
    log = rec.recorded_log()
    parsed = read_log(log)
    assert parsed.events[-2] == Event(EventKind.SHUTDOWN, (ShutdownCause.HOST_QUIT,))
    assert events == len(parsed.events) - 1 and size < len(log)  # END came after
    rep = machine(ReplayMode.REPLAY, seed=3, log=log)
    assert rep.run(BUDGET).reason is StopReason.HOST_QUIT
    assert rep.cpu.icount == 1_234 and rep.replay_at_end()
    assert digest(rep) == digest(rec)
