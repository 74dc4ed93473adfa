"""Divergence reports (fuzzer.report): round trips, hostile files, atomic writes, rendering,
and reproduction without importing what a report names."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzzer.divergence import Divergence, DivergenceKind, Localisation, Property, Rule
from fuzzer.report import (
    MAGIC,
    REPORT_FORMAT,
    Found,
    Report,
    ReportError,
    ReportStatus,
    load_report,
    render,
    reproduce,
    save_report,
    write_atomic,
)
from fuzzer.scenario import Scenario
from vm.config import DEFAULT_DEVICES, DeviceSpec, MachineConfig

PROGRAM = """
    li   t0, 0x10000000
    li   t1, 'k'
    sb   t1, 0(t0)
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
"""
SCENARIO = Scenario(config=MachineConfig(ram_size=64 << 10), program=PROGRAM, budget=1_000)
DIVERGENCE = Divergence(
    property=Property.RECORD_REPLAY,
    kind=DivergenceKind.REPLAY_ERROR,
    component="uart0",
    rule=Rule.VIRTUAL_TIMERS,
    icount=7,
    detail="the states differ at sample icount 7 (uart0)",
    expected=b"\x01" * 32,
    observed=b"\x02" * 32,
    error={
        "kind": "divergence",
        "message": "the machine did X",
        "icount": 7,
        "event_index": 3,
        "expected": "INTERRUPT",
        "found": "a HOST clock read",
        "recent": [[1, 3, "INSTRUCTION 3"], [2, 3, "CHAR_WRITE result=1 accepted=1"]],
    },
    localisation=Localisation(
        icount=5,
        last_equal=4,
        in_main_loop=False,
        pc=0x8000_0008,
        components=("uart0", "cpu"),
        differences=("uart0.lsr: 96 != 97",),
        activity=("[checked] @4 host: timer of uart0 realtime timer, changed uart0",),
        events=("#2 @3: CHAR_WRITE result=1 accepted=1",),
        runs=8,
    ),
    notes=("a note",),
)
REPORT = Report(
    scenario=SCENARIO,
    divergence=DIVERGENCE,
    coverage={"uart0.thr.write": 1, "irq.uart0": 0},
    found=Found(by="test", campaign_seed=3, examples=12, elapsed_ms=450, hits=2, shrunk=True),
)


def test_a_report_round_trips_exactly():
    back = Report.from_bytes(REPORT.to_bytes())
    assert back == REPORT
    assert back.signature == DIVERGENCE.signature
    assert str(back.signature) == "record-replay/uart0/virtual-timers"
    assert back.stale_because() is None


def test_save_names_the_file_by_signature_and_writes_atomically(tmp_path: Path):
    path = save_report(REPORT, tmp_path)
    assert path.name == "record-replay--uart0--virtual-timers.dfr"
    assert load_report(path) == REPORT
    fixed = REPORT.with_status(ReportStatus.FIXED)
    save_report(fixed, tmp_path)
    assert load_report(path).status is ReportStatus.FIXED
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.dfr"
    write_atomic(path, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fire"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.dfr"]


def _wire(body: object, *, magic: bytes = MAGIC, version: int = REPORT_FORMAT) -> bytes:
    header = msgpack.packb({"magic": magic, "format": version}, use_bin_type=True)
    return header + msgpack.packb(body, use_bin_type=True)


def _body() -> dict:
    return msgpack.unpackb(REPORT.to_bytes()[len(msgpack.packb({"magic": MAGIC, "format": 1})) :])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated header"),
        (b"\xc1", "undecodable header"),
        (_wire({}, magic=b"nope"), "bad magic"),
        (_wire({}, version=REPORT_FORMAT + 1), "newer than this detfuzz"),
        (_wire({}, version=0), "migrate"),
        (_wire([1, 2]), "report must be a map"),
        (_wire({"scenario": b""}), "missing key"),
    ],
)
def test_malformed_reports_are_refused_with_a_clear_message(data, message):
    with pytest.raises(ReportError, match=message):
        Report.from_bytes(data)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("status",), "closed", "status must be one of"),
        (("divergence", "rule"), "made-up", "rule must be one of"),
        (("divergence", "icount"), -1, "icount must be in"),
        (("divergence", "detail"), 3, "detail must be a string"),
        (("divergence", "expected"), b"x" * 65, "65 bytes"),
        (("divergence", "error", "recent"), [[1, 2]], "recent"),
        (("divergence", "localisation", "pc"), 1 << 40, "pc must be in"),
        (("found", "shrunk"), 1, "shrunk must be a bool"),
        (("coverage",), {"x": -3}, "must be in"),
        (("versions",), {"digest": [1]}, "must be an int or a string"),
        (("scenario",), b"garbage", "not a detfuzz scenario"),
        (("divergence", "extra"), 1, "unknown key"),
    ],
)
def test_hostile_fields_are_refused(path, value, message):
    body = _body()
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ReportError, match=message):
        Report.from_bytes(_wire(body))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_corrupted_bytes_give_a_report_error_or_a_report(data):
    raw = bytearray(REPORT.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with contextlib.suppress(ReportError):  # any other exception fails the test
        Report.from_bytes(bytes(raw[:cut]))


def test_an_oversized_file_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "big.dfr"
    with path.open("wb") as out:
        out.truncate(64 << 20)
    with pytest.raises(ReportError, match="at most"):
        load_report(path)
    with pytest.raises(ReportError, match="cannot read"):
        load_report(tmp_path / "missing.dfr")


def test_an_old_digest_format_makes_the_report_stale():
    old = dataclasses.replace(REPORT, versions={**REPORT.versions, "digest": 0})
    back = Report.from_bytes(old.to_bytes())
    assert "digest format is 0" in (back.stale_because() or "")
    assert "STALE" in render(back)


def test_render_says_what_where_which_rule_and_shows_the_program():
    text = render(REPORT)
    for expected in (
        "record-replay/uart0/virtual-timers",
        "rule 1: timers that change guest state run on the VIRTUAL clock",
        "uart0.lsr: 96 != 97",
        "=> 0x80000008",
        "CHAR_WRITE",
        "changed uart0",
        "host seeds",
    ):
        assert expected in text, expected


def test_a_user_device_is_never_loaded_unless_the_caller_allows_it():
    spec = DeviceSpec("evil_module_that_must_not_load:Device", "evil", 0x1000_4000, irq=5)
    scenario = dataclasses.replace(
        SCENARIO, config=MachineConfig(ram_size=64 << 10, devices=(*DEFAULT_DEVICES, spec))
    )
    report = Report.from_bytes(dataclasses.replace(REPORT, scenario=scenario).to_bytes())
    assert report.user_devices() == ("evil_module_that_must_not_load:Device",)
    assert "needs user devices" in render(report)
    with pytest.raises(ReportError, match="--device"):
        reproduce(report)


def test_reproduce_says_when_a_signature_is_gone():
    result = reproduce(REPORT)  # the program is clean: nothing diverges
    assert not result.reproduced
    assert result.verdict.startswith("not reproduced")
