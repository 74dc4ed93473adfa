"""`detfuzz show` and `detfuzz repro` on report files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fuzzer.cli import main
from fuzzer.divergence import Divergence, DivergenceKind, Property, Rule
from fuzzer.properties import check
from fuzzer.report import Found, Report, save_report
from fuzzer.scenario import Scenario
from vm.config import DEFAULT_DEVICES, DeviceSpec, MachineConfig

# Reads the RTC (the HOST clock) twice and keeps the values: with the planted
# rtc-unlogged-clock bug a replay on another host seed reads other values.
PROGRAM = """
    li   t0, 0x101000
    lw   a0, 0(t0)
    lw   a1, 4(t0)
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
"""


def scenario(*bugs: str) -> Scenario:
    config = MachineConfig(ram_size=64 << 10, planted_bugs=bugs)
    return Scenario(config=config, program=PROGRAM, host_seeds=(1, 2), budget=1_000)


@pytest.fixture(scope="module")
def buggy_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = check(scenario("rtc-unlogged-clock"))
    assert found.divergences
    report = Report(scenario("rtc-unlogged-clock"), found.divergences[0], found.coverage)
    return save_report(report, tmp_path_factory.mktemp("reports"))


def test_show_explains_the_report(buggy_report: Path, capsys):
    assert main(["show", str(buggy_report)]) == 0
    out = capsys.readouterr().out
    assert "record-replay/" in out and "rule 3" in out and "program:" in out


def test_repro_exits_1_while_the_bug_is_there(buggy_report: Path, capsys):
    assert main(["repro", str(buggy_report)]) == 1
    assert capsys.readouterr().out.startswith("reproduced: record-replay/")


def test_repro_exits_0_when_the_signature_is_gone(tmp_path: Path, capsys):
    divergence = Divergence(
        Property.RECORD_REPLAY, DivergenceKind.DIGEST, "rtc", Rule.LOGGED_INPUT, 5, "x"
    )
    path = save_report(Report(scenario(), divergence, {}, Found()), tmp_path)
    assert main(["repro", str(path)]) == 0
    assert capsys.readouterr().out.startswith("not reproduced")


def test_repro_loads_a_user_device_only_when_given(tmp_path: Path, capsys):
    spec = DeviceSpec("no_such_module_anywhere:Device", "dev0", 0x1000_4000, irq=5)
    config = MachineConfig(ram_size=64 << 10, devices=(*DEFAULT_DEVICES, spec))
    divergence = Divergence(
        Property.RECORD_REPLAY, DivergenceKind.DIGEST, "dev0", Rule.LOGGED_INPUT, 5, "x"
    )
    report = Report(dataclasses.replace(scenario(), config=config), divergence)
    path = save_report(report, tmp_path)
    assert main(["repro", str(path)]) == 2
    assert "--device" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["show", "repro"])
def test_bad_files_exit_2_with_one_line(command: str, tmp_path: Path, capsys):
    bad = tmp_path / "bad.dfr"
    bad.write_bytes(b"\x93\x01\x02")
    for path in (bad, tmp_path / "missing.dfr"):
        assert main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
