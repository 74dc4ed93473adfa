"""Scenarios: plain data that round-trips through msgpack, refuses hostile input with a
clear ScenarioError, never imports a user device, and builds what vm.trace runs."""

from __future__ import annotations

import dataclasses
import sys

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings

from fuzzer.scenario import (
    MAGIC,
    MAX_PAYLOAD,
    MAX_POINTS,
    MAX_PROGRAM_CHARS,
    MAX_STIMULUS,
    SCENARIO_FORMAT,
    Scenario,
    ScenarioError,
)
from fuzzer.strategies import scenarios
from vm import MachineConfig, ReplayMode, StopReason
from vm.backends import Stimulus
from vm.config import DEFAULT_DEVICES, DeviceSpec
from vm.hostmodel import HostProfile
from vm.trace import BuiltinTarget, Stop, TargetRun

PROGRAM = """
    .globl _start
_start:
    li      t0, 0
    li      t1, 50
1:  addi    t0, t0, 1
    blt     t0, t1, 1b
    li      t2, 0x100000
    li      t3, 0x5555
    sw      t3, 0(t2)
2:  j       2b
"""
NEVER_IMPORTED = "detfuzz_scenario_test_never_imported"


def small() -> Scenario:
    return Scenario(
        config=MachineConfig(ram_size=64 << 10),
        program=PROGRAM,
        stimulus=(Stimulus(10, "uart0", b"hi"), Stimulus(500, "nic0", b"\x00" * 20)),
        host_seeds=(3, 4),
        host_profile=HostProfile(block_latency_ns_min=5, block_latency_ns_max=10),
        stops=(Stop(20), Stop(40, host_ns=1_000)),
        snapshots=(30, 60),
        seeks=(50, 10),
        section_order_seed=9,
        budget=10_000,
        samples=(5, 100),
        features=("loops",),
    )


def wire(scenario: Scenario | None = None, **changes: object) -> bytes:
    """`scenario`'s bytes with top-level body keys changed (a key set to ... is removed)."""
    body = (scenario or small()).to_dict()
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return header() + msgpack.packb(body, use_bin_type=True)


def header(**fields: object) -> bytes:
    return msgpack.packb({"magic": MAGIC, "format": SCENARIO_FORMAT, **fields})


# -- round trips -----------------------------------------------------------------------------


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_generated_scenarios_round_trip_through_bytes_and_dicts(scenario):
    data = scenario.to_bytes()
    again = Scenario.from_bytes(data)
    assert again == scenario
    assert again.to_bytes() == data
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert msgpack.unpackb(msgpack.packb(scenario.to_dict())) == scenario.to_dict()


def test_a_hand_made_scenario_round_trips_with_every_field_set():
    scenario = small()
    assert Scenario.from_bytes(scenario.to_bytes()) == scenario
    assert Scenario.from_bytes(bytearray(scenario.to_bytes())) == scenario
    assert set(scenario.to_dict()) == {f.name for f in dataclasses.fields(Scenario)}


def test_the_header_comes_first_with_magic_and_format():
    unpacker = msgpack.Unpacker()
    unpacker.feed(small().to_bytes())
    assert next(unpacker) == {"magic": MAGIC, "format": SCENARIO_FORMAT}


# -- hostile input ---------------------------------------------------------------------------

HOSTILE_BYTES = {
    "empty": b"",
    "garbage": b"\xc1\xc1\xc1",
    "not a map": msgpack.packb([1, 2]),
    "wrong magic": msgpack.packb({"magic": b"detfuzz-rr-log", "format": 1}),
    "format as a string": header(format="1"),
    "newer format": header(format=SCENARIO_FORMAT + 1),
    "older format": header(format=0),
    "extra header key": header(extra=1),
    "no body": header(),
    "truncated body": wire()[:-3],
    "trailing bytes": wire() + b"\x00",
    "body not a map": header() + msgpack.packb([1]),
    "an ext type": header() + msgpack.packb(msgpack.ExtType(1, b"x")),
}


@pytest.mark.parametrize("data", HOSTILE_BYTES.values(), ids=HOSTILE_BYTES.keys())
def test_hostile_bytes_raise_a_scenario_error(data):
    with pytest.raises(ScenarioError):
        Scenario.from_bytes(data)


def test_non_bytes_and_oversized_input_are_refused():
    with pytest.raises(ScenarioError, match="is bytes"):
        Scenario.from_bytes("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="at most"):
        Scenario.from_bytes(b"\0" * (9 << 20))


def test_the_format_error_says_what_it_reads():
    with pytest.raises(ScenarioError, match="newer than this detfuzz supports"):
        Scenario.from_bytes(header(format=SCENARIO_FORMAT + 1))


HOSTILE_BODIES = {
    "missing key": {"budget": ...},
    "extra key": {"extra": 1},
    "budget as a string": {"budget": "100"},
    "budget as a bool": {"budget": True},
    "budget zero": {"budget": 0},
    "program as bytes": {"program": b"nop"},
    "program too long": {"program": "#" * (MAX_PROGRAM_CHARS + 1)},
    "stimulus payload as a string": {"stimulus": [[1, "uart0", "hi"]]},
    "stimulus entry too short": {"stimulus": [[1, "uart0"]]},
    "stimulus channel as bytes": {"stimulus": [[1, b"uart0", b"hi"]]},
    "negative host time": {"stimulus": [[-1, "uart0", b"hi"]]},
    "too many stimulus events": {"stimulus": [[1, "uart0", b"x"]] * (MAX_STIMULUS + 1)},
    "seeds as a map": {"host_seeds": {"a": 1}},
    "three seeds": {"host_seeds": [1, 2, 3]},
    "negative seed": {"host_seeds": [-1, 2]},
    "seed past 64 bits": {"host_seeds": [1 << 64, 2]},
    "stop as an int": {"stops": [5]},
    "stop host time as a float": {"stops": [[5, 1.5]]},
    "two stops at one icount": {"stops": [[5, None], [5, 10]]},
    "too many snapshots": {"snapshots": list(range(MAX_POINTS + 1))},
    "negative sample": {"samples": [-1]},
    "seek as a string": {"seeks": ["10"]},
    "feature as an int": {"features": [1]},
    "feature too long": {"features": ["x" * 1000]},
    "section seed too big": {"section_order_seed": 1 << 64},
    "profile missing a field": {"host_profile": {"quantum_insns_min": 1}},
    "profile min above max": {
        "host_profile": {
            **dataclasses.asdict(HostProfile()),
            "block_latency_ns_min": 10,
            "block_latency_ns_max": 5,
        }
    },
    "profile zero quantum": {
        "host_profile": {**dataclasses.asdict(HostProfile()), "quantum_insns_min": 0}
    },
    "config not a map": {"config": [1]},
    "config ram size as a string": {"config": {**MachineConfig().to_dict(), "ram_size": "8"}},
    "config wrong format": {"config": {**MachineConfig().to_dict(), "format": 99}},
    "config bad ram size": {"config": {**MachineConfig().to_dict(), "ram_size": 12345}},
    "config device kind as an int": {
        "config": {
            **MachineConfig().to_dict(),
            "devices": [{"kind": 1, "name": "x", "base": 0, "irq": None, "options": []}],
        }
    },
    "config device extra key": {
        "config": {
            **MachineConfig().to_dict(),
            "devices": [
                {"kind": "clint", "name": "x", "base": 0, "irq": None, "options": [], "y": 1}
            ],
        }
    },
    "config device option as a list": {
        "config": {
            **MachineConfig().to_dict(),
            "devices": [{"kind": "clint", "name": "x", "base": 0, "irq": None, "options": [[1]]}],
        }
    },
    "config irq out of range": {
        "config": {
            **MachineConfig().to_dict(),
            "devices": [{"kind": "clint", "name": "x", "base": 0, "irq": 5000, "options": []}],
        }
    },
    "config unknown planted bug": {
        "config": {**MachineConfig().to_dict(), "planted_bugs": ["no-such-bug"]}
    },
}


@pytest.mark.parametrize("changes", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_hostile_bodies_raise_a_scenario_error(changes):
    try:
        data = wire(**changes)
    except OverflowError:  # msgpack has no integers past 64 bits: only a dict holds them
        data = None
    if data is not None:
        with pytest.raises(ScenarioError):
            Scenario.from_bytes(data)
    body = small().to_dict()
    body.update({k: v for k, v in changes.items() if v is not ...})
    for key in [k for k, v in changes.items() if v is ...]:
        del body[key]
    with pytest.raises(ScenarioError):
        Scenario.from_dict(body)


def test_an_oversized_payload_is_refused():
    with pytest.raises(ScenarioError):
        Scenario.from_bytes(wire(stimulus=[[1, "uart0", b"x" * (MAX_PAYLOAD + 1)]]))


def test_errors_name_the_field():
    with pytest.raises(ScenarioError, match=r"host_seeds\[0\]"):
        Scenario.from_bytes(wire(host_seeds=[-1, 2]))
    with pytest.raises(ScenarioError, match="missing key 'budget'"):
        Scenario.from_bytes(wire(budget=...))
    with pytest.raises(ScenarioError, match=r"config\.devices\[0\]\.kind"):
        Scenario.from_dict(
            {
                **small().to_dict(),
                "config": {
                    **MachineConfig().to_dict(),
                    "devices": [{"kind": 1, "name": "x", "base": 0, "irq": None, "options": []}],
                },
            }
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"budget": 0},
        {"budget": "5"},
        {"host_seeds": (1,)},
        {"host_seeds": (1, -2)},
        {"stimulus": [Stimulus(1, "uart0", b"x")]},
        {"stops": (Stop(1), Stop(1))},
        {"samples": (True,)},
        {"program": b"nop"},
        {"config": MachineConfig().to_dict()},
        {"host_profile": {"quantum_insns_min": 1}},
    ],
)
def test_constructing_an_invalid_scenario_raises(changes):
    with pytest.raises(ScenarioError):
        dataclasses.replace(small(), **changes)


def test_a_user_device_spec_is_kept_as_data_and_never_imported():
    spec = DeviceSpec(f"{NEVER_IMPORTED}:Boom", "boom0", 0x1000_4000, irq=5)
    evil = DeviceSpec("os:system", "evil0", 0x1000_5000)
    scenario = dataclasses.replace(
        small(), config=MachineConfig(devices=(*DEFAULT_DEVICES, spec, evil))
    )
    again = Scenario.from_bytes(scenario.to_bytes())
    assert again.config.device("boom0").kind == f"{NEVER_IMPORTED}:Boom"
    assert again.config.device("evil0").kind == "os:system"
    again.trace_run(ReplayMode.RECORD)  # building the run imports nothing either
    assert NEVER_IMPORTED not in sys.modules


# -- trace_run -------------------------------------------------------------------------------


def test_trace_run_builds_the_target_run_for_each_mode():
    scenario = small()
    run = scenario.trace_run(ReplayMode.RECORD)
    assert isinstance(run, TargetRun)
    assert run.config == scenario.config
    assert run.program == scenario.image()
    assert run.host_seed == 3 and run.mode is ReplayMode.RECORD
    assert run.host_profile == scenario.host_profile
    assert run.stimulus == scenario.stimulus and run.budget == scenario.budget
    assert run.stops == scenario.stops and run.snapshots == scenario.snapshots
    assert run.samples == scenario.samples and run.section_order_seed == 9
    assert run.seeks == () and run.snapshot_every is None  # seeks need a replay

    replay = scenario.trace_run(ReplayMode.REPLAY, log=b"log")
    assert replay.host_seed == 4 and replay.log == b"log"
    assert replay.seeks == (50, 10) and replay.snapshot_every == scenario.seek_interval()

    assert scenario.trace_run(ReplayMode.NONE, 77, stops=()).host_seed == 77
    with pytest.raises(TypeError, match="no field 'nope'"):
        scenario.trace_run(ReplayMode.NONE, nope=1)


def test_the_image_is_assembled_once():
    scenario = small()
    assert scenario.assembled() is dataclasses.replace(scenario, budget=5).assembled()
    assert scenario.image()[:4] != b"\0\0\0\0"


def test_trace_run_records_and_replays_on_the_builtin_target():
    scenario = small()
    target = BuiltinTarget()
    record = target.run(scenario.trace_run(ReplayMode.RECORD))
    assert record.stop is StopReason.FINISHER_PASS
    assert [s.icount for s in record.samples] == [5, 100]
    assert [s.requested for s in record.snapshots] == [30, 60]
    replay = target.run(scenario.trace_run(ReplayMode.REPLAY, log=record.log))
    assert replay.error is None and replay.replay_complete
    assert replay.samples == record.samples
    assert replay.final is not None and record.final is not None
    assert replay.final.digest == record.final.digest
    assert [s.icount for s in replay.seeks] == [50, 10]
