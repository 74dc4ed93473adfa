"""Record/replay of the whole-machine guest (every device, host stimulus), through the trace
API (vm.trace), as part 4's properties will use it.

The guest (test_virt32_guest's full guest) programs the CLINT, PLIC, UART, RTC (HOST clock
and its alarm), the block device (DMA, completions the host times) and the NIC (echo
packets from the host network); host stimulus types into the UART on top. What the log
then holds: interrupts, checkpoints of both timer clocks, HOST clock reads, character
reads and writes, packets, block completions and the guest's shutdown.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vm.backends import Stimulus
from vm.hostmodel import HostProfile
from vm.replay import ReplayMode, ReplayStall
from vm.replaylog import AsyncKind, Event, EventKind, encode_event, encode_header, read_log
from vm.stop import StopReason
from vm.trace import BuiltinTarget, Stop, TargetRun, Trace

from .test_virt32_guest import CONFIG, FAST_DISK, FULL_PROGRAM

TARGET = BuiltinTarget()
PROFILE = dataclasses.replace(HostProfile(), **FAST_DISK)
STIMULUS = (
    Stimulus(2_000, "uart0", b"typed "),
    Stimulus(9_000, "uart0", b"into the "),
    Stimulus(30_000, "uart0", b"console"),
)
BASE = TargetRun(
    config=CONFIG,
    program=FULL_PROGRAM.image,
    mode=ReplayMode.RECORD,
    host_seed=1,
    host_profile=PROFILE,
    stimulus=STIMULUS,
    budget=200_000,
)


def run(**changes: object) -> Trace:
    trace = TARGET.run(dataclasses.replace(BASE, **changes))  # type: ignore[arg-type]
    assert trace.error is None, trace.error.render()
    return trace


@pytest.fixture(scope="module")
def recording() -> Trace:
    trace = run()
    assert trace.stop is StopReason.FINISHER_PASS
    return trace


def event_icounts(log: bytes) -> list[int]:
    """The icount of every event in `log`."""
    icount, out = 0, []
    for event in read_log(log).events:
        if event.kind is EventKind.INSTRUCTION:
            icount += event.args[0]  # type: ignore[operator]
        else:
            out.append(icount)
    return out


def test_the_guest_exercises_every_kind_of_host_input(recording):
    events = read_log(recording.log).events
    kinds = {e.kind for e in events}
    assert {
        EventKind.INTERRUPT,
        EventKind.CLOCK,
        EventKind.CHAR_WRITE,
        EventKind.CHECKPOINT,
    } <= kinds
    subkinds = {e.args[0] for e in events if e.kind is EventKind.ASYNC}
    assert {AsyncKind.CHAR_READ, AsyncKind.NET, AsyncKind.BLOCK} <= subkinds


def test_replays_with_other_host_seeds_agree_at_every_logged_event(recording):
    # The last events (the guest's shutdown, END) are where the run stops: `final` is there.
    end = recording.final.icount
    points = tuple(sorted({k for k in event_icounts(recording.log) if k < end}))
    first = run(mode=ReplayMode.REPLAY, log=recording.log, host_seed=7, samples=points)
    second = run(mode=ReplayMode.REPLAY, log=recording.log, host_seed=8, samples=points)
    assert first.stop is second.stop is StopReason.FINISHER_PASS
    assert first.replay_complete and second.replay_complete
    assert len(first.samples) == len(points)
    assert first.samples == second.samples
    assert first.final.digest == second.final.digest == recording.final.digest
    assert first.console == recording.console


@settings(max_examples=12, deadline=None)
@given(
    seeds=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)),
    samples=st.lists(st.integers(0, 24_000), min_size=1, max_size=6),
    stops=st.lists(st.integers(0, 24_000), max_size=4),
    snapshot=st.integers(1, 20_000),
)
def test_record_replay_stops_snapshots_and_seeks_agree(seeds, samples, stops, snapshot):
    samples_t = tuple(sorted(set(samples)))
    record = run(host_seed=seeds[0], samples=samples_t, snapshots=(snapshot,))
    assert record.error is None and record.final is not None
    # 1: replay with another host seed (and random stops: host time passes, host timers
    # fire) matches the recording at every sample and at the end, and uses the whole log.
    replay = run(
        mode=ReplayMode.REPLAY,
        log=record.log,
        host_seed=seeds[1],
        samples=samples_t,
        stops=tuple(Stop(k) for k in sorted(set(stops))),
    )
    assert replay.samples == record.samples
    assert replay.final.digest == record.final.digest
    assert replay.stop is record.stop and replay.replay_complete
    # 2: recording does not perturb: mode none with the recording's host seed.
    plain = run(mode=ReplayMode.NONE, host_seed=seeds[0], samples=samples_t, snapshots=(snapshot,))
    assert plain.samples == record.samples and plain.final == record.final
    # 4: the snapshot reloads to the same digest; a replay from it matches the tail.
    for taken in record.snapshots:
        assert taken.reloaded_digest == taken.digest
    if record.snapshots:
        start = record.snapshots[0]
        tail = run(
            mode=ReplayMode.REPLAY,
            log=record.log,
            host_seed=seeds[1] ^ 1,
            samples=samples_t,
            start_snapshot=start.data,
        )
        assert tail.samples == tuple(s for s in record.samples if s.icount >= start.icount)
        assert tail.final.digest == record.final.digest
    # 5: seeks (backward and forward) land on the straight replay's samples.
    seeks = tuple(reversed(samples_t)) + samples_t
    sought = run(
        mode=ReplayMode.REPLAY,
        log=record.log,
        host_seed=seeds[1],
        snapshot_every=3_000,
        seeks=seeks,
    )
    by_icount = {s.icount: s for s in replay.samples}
    for s in sought.seeks:
        if s.icount in by_icount:  # a sample past the guest's end is not taken
            assert s == by_icount[s.icount]


def test_two_recordings_with_one_host_seed_are_byte_identical(recording):
    again = run()
    assert again.log == recording.log
    assert again.final == recording.final


def test_a_block_completion_the_guest_never_submitted_stalls_at_its_event(recording):
    log = read_log(recording.log)
    events = list(log.events)
    at = next(
        i
        for i, e in enumerate(events)
        if e.kind is EventKind.ASYNC and e.args[0] is AsyncKind.BLOCK
    )
    _, backend, request_id = events[at].args
    events[at] = Event(EventKind.ASYNC, (AsyncKind.BLOCK, backend, request_id + 1000))
    tampered = encode_header(log.header) + b"".join(encode_event(e) for e in events)
    trace = TARGET.run(dataclasses.replace(BASE, mode=ReplayMode.REPLAY, log=tampered))
    assert isinstance(trace.error, ReplayStall)
    assert trace.error.event_index == at
    assert "BLOCK" in trace.error.render()
    assert trace.stop is None and trace.final is None


def test_observations_dumps_and_activity_come_back_in_the_trace(recording):
    end = recording.final.icount
    points = tuple(range(0, end, end // 10))
    trace = run(
        mode=ReplayMode.REPLAY,
        log=recording.log,
        host_seed=3,
        observe=points,
        dump_at=points[4],
        dump_components=("cpu", "uart0"),
        trace_activity=True,
    )
    again = run(observe=points)
    assert again.log == recording.log  # observing the recording did not change it
    assert [s.icount for s in trace.observations] == list(points)
    assert trace.observations == again.observations
    assert trace.dump is not None and set(trace.dump) == {"cpu", "uart0"}
    assert any(path == "cpu.pc" for path, _ in trace.dump["cpu"])
    assert any(a.owner == "clint" for a in trace.activity)


def test_a_stop_that_runs_the_host_dry_does_not_stall_a_replay_before_its_guest_side():
    """The log has two characters at one icount with an interrupt entered between them,
    and a stop earlier let host time run past everything the host had scheduled: the
    replay must let its guest side take the second character before it calls the wait a
    stall (it stalled at once; found by the fuzzer on the correct machine, see
    corpora/README.md, Fixed reports)."""
    from pathlib import Path

    from fuzzer.report import load_report

    report = load_report(
        Path(__file__).parents[2] / "corpora/divergences/stop-cont--replay--logged-input.dfr"
    )
    scenario = report.scenario
    assert scenario.stops and not scenario.config.planted_bugs
    target = BuiltinTarget()
    points = tuple(sorted({*scenario.samples, *(stop.icount for stop in scenario.stops)}))
    plain = {"samples": points, "snapshots": (), "seeks": (), "snapshot_every": None}
    record = target.run(scenario.trace_run(ReplayMode.RECORD, stops=(), **plain))
    replay = scenario.trace_run(ReplayMode.REPLAY, scenario.host_seeds[1], **plain)
    for stops in ((), scenario.stops):
        run = target.run(dataclasses.replace(replay, log=record.log, stops=stops))
        assert run.error is None, run.error.render()
        assert run.replay_complete and run.final == record.final
