"""`detfuzz fuzz`: option parsing, exit statuses, the JSON event stream, the text summary,
Ctrl-C, and a campaign killed with SIGKILL then run again on its corpus."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from fuzzer.cli import main
from fuzzer.cli_fuzz import device_specs, parse_device, parse_duration
from fuzzer.report import load_report

ROOT = Path(__file__).resolve().parents[2]
BUG = "rtc-unlogged-clock"
# No seed scenarios: these campaigns' few examples are all generated (the seeds' own
# tests are in tests/ci).
QUICK = ["--workers", "1", "--seed", "1", "--no-seeds", "--max-shrinks", "20"]


# -- option types ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("8h", 8 * 3600), ("2m30s", 150), ("1.5h", 5400), ("45", 45), ("0.5", 0.5)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5s", "5x", "s", "1h 2m", "m30", "5s5"])
def test_bad_durations(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_devices():
    arg = parse_device("pkg.mod:Countdown@0x1000_4000,irq=7,name=cd,period=0x10,fast=true,x=a")
    assert (arg.kind, arg.base, arg.irq, arg.name) == ("pkg.mod:Countdown", 0x1000_4000, 7, "cd")
    assert arg.options == (("fast", True), ("period", 16), ("x", "a"))
    specs = device_specs(
        [parse_device("m:Countdown@0x10004000"), parse_device("m:Countdown@0x10005000,irq=8")]
    )
    assert [s.name for s in specs] == ["countdown0", "countdown1"]
    assert specs[1].irq == 8 and specs[0].irq is None


@pytest.mark.parametrize(
    "text",
    ["countdown", "m:C", "m:C@", "m:C@zz", "m:C@0x1000,irq", "m:C@0x1000,irq=x", "1m:C@0x0",
     "m:C@0x1000,irq=1,irq=2"],
)  # fmt: skip
def test_bad_devices(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_device(text)


# -- bad input: one line, exit 2 ---------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--time", "0"],
        ["--time", "ten"],
        ["--examples", "0"],
        ["--workers", "0"],
        ["--property", "nope"],
        ["--planted", "no-such-bug"],
        ["--device", "not a device"],
        ["--device", "no_such_module_anywhere:Dev@0x10004000,irq=5"],
        ["--device", "m:Dev@0x1_0000_0000"],
        ["--device-file", "/no/such/file"],
        ["--seed", "-1"],
        ["--seeds", "/no/such/directory"],
        ["--seeds", ".", "--no-seeds"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv, tmp_path, capsys):
    assert run(["fuzz", "--examples", "1", "--corpus", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("detfuzz: ") and "Traceback" not in err
    assert not list(tmp_path.glob("*.dfr"))


def run(argv: list[str]) -> int | str | None:
    """main's status, or argparse's (usage errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def test_an_unusable_corpus_exits_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    for corpus in (blocker, blocker / "corpus"):
        assert main(["fuzz", "--examples", "1", "--corpus", str(corpus)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(blocker) in err


def test_a_bad_device_file_line_is_named(tmp_path, capsys):
    devices = tmp_path / "devices.txt"
    devices.write_text("# user devices\n\nm:Dev@0x10004000 # ok\nbroken line\n")
    assert main(["fuzz", "--device-file", str(devices), "--corpus", str(tmp_path)]) == 2
    assert f"{devices}:4:" in capsys.readouterr().err


def test_help_documents_the_exit_statuses(capsys):
    assert run(["fuzz", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--time", "--examples", "--workers", "--seed", "--corpus", "--json", "130"):
        assert text in out
    for text in ("--seeds", "--no-seeds", "--no-cache", ".hypothesis", "reproducible"):
        assert text in out


# -- campaigns ---------------------------------------------------------------------------------


def test_the_correct_machine_exits_0_with_a_summary(tmp_path, capsys, monkeypatch):
    where = tmp_path / "cwd"
    where.mkdir()
    monkeypatch.chdir(where)
    corpus = tmp_path / "corpus"
    assert main(["fuzz", "--examples", "5", "--corpus", str(corpus), *QUICK]) == 0
    out = capsys.readouterr().out
    assert "example budget reached" in out and "examples: 5 " in out
    assert "coverage:" in out and "per property" in out
    assert not list(corpus.glob("*.dfr"))
    assert not list(where.iterdir())  # Hypothesis's own cache went into the corpus


def test_a_planted_bug_exits_1_and_json_parses_line_by_line(tmp_path, capsys):
    argv = ["fuzz", "--json", "--examples", "15", "--corpus", str(tmp_path), "--planted", BUG]
    assert main([*argv, "--property", "record-replay", *QUICK]) == 1
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "summary" and "finding" in kinds
    summary = events[-1]
    assert summary["new_signatures"] >= 1 and summary["examples"] == 15
    for finding in (e for e in events if e["event"] == "finding"):
        assert load_report(Path(finding["path"])).found.by == "campaign"
    # Again on the same corpus: what it found is known now.
    assert main([*argv, "--property", "record-replay", *QUICK[:-2]]) in (0, 1)
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
    first = {s["signature"] for s in summary["signatures"]}
    assert not first & {s["signature"] for s in again["signatures"] if s["new"]}


def test_seed_scenarios_are_checked_first_and_the_cache_can_be_off(tmp_path, capsys):
    from fuzzer.scenario import Scenario
    from vm.config import MachineConfig

    seeds = tmp_path / "seeds"
    seeds.mkdir()
    program = "li t0, 0x100000\nli t1, 0x5555\nsw t1, 0(t0)\n"
    for number in range(3):
        scenario = Scenario(config=MachineConfig(), program=program, budget=100 + number)
        (seeds / f"s{number}.dfs").write_bytes(scenario.to_bytes())
    (seeds / "broken.dfs").write_bytes(b"not a scenario")
    corpus = tmp_path / "corpus"
    argv = ["fuzz", "--json", "--examples", "4", "--corpus", str(corpus), "--no-cache"]
    assert main([*argv, "--seeds", str(seeds), *QUICK[:4]]) == 0
    captured = capsys.readouterr()
    stream = [json.loads(line) for line in captured.out.splitlines()]
    assert stream[0]["seeds"] == 3 and stream[0]["cache"] is None
    assert stream[-1]["seed_examples"] == 3 and stream[-1]["examples"] == 4
    notices = [e["message"] for e in stream if e["event"] == "notice"]
    assert any("skipped seed" in n and "broken.dfs" in n for n in notices)
    assert not (corpus / ".hypothesis" / "examples").exists()


# -- signals (a real process) ------------------------------------------------------------------


def spawn(argv: list[str], **options: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fuzzer", "fuzz", *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,  # type: ignore[call-overload]
    )


def wait_for_event(stream: IO[str], kind: str, limit_s: float = 60.0) -> dict[str, object]:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break
        event = json.loads(line)
        if event["event"] == kind:
            return event
    pytest.fail(f"no {kind} event")


def test_ctrl_c_stops_cleanly_with_the_summary(tmp_path):
    # As a terminal sends it: to the whole process group (the workers ignore it).
    process = spawn(
        ["--json", "--interval", "1s", "--corpus", str(tmp_path), *QUICK],
        start_new_session=True,
    )
    try:
        wait_for_event(process.stdout, "progress")  # type: ignore[arg-type]
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    summary = json.loads(out.splitlines()[-1])
    assert summary["event"] == "summary" and summary["stopped"] == "interrupted"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_sigkill_loses_no_report_and_a_rerun_carries_on(tmp_path):
    rr = ["--planted", BUG, "--property", "record-replay"]
    process = spawn(["--json", "--corpus", str(tmp_path), *rr, *QUICK])
    try:
        finding = wait_for_event(process.stdout, "finding")  # type: ignore[arg-type]
        workers = children(process.pid)
        time.sleep(0.3)  # into the shrink
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert workers and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    reports = {str(load_report(p).signature): load_report(p) for p in tmp_path.glob("*.dfr")}
    assert finding["signature"] in reports
    hits = {key: report.found.hits for key, report in reports.items()}
    rerun = spawn(["--json", "--examples", "10", "--corpus", str(tmp_path), *rr, *QUICK])
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode in (0, 1), err
    summary = json.loads(out.splitlines()[-1])
    for line in summary["signatures"]:
        if line["signature"] in hits:
            assert not line["new"]
            assert line["total_hits"] == hits[line["signature"]] + line["hits"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # The orphaned workers noticed that their parent was gone, and left.
    assert all(not alive(pid) for pid in workers)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        found = [int(p) for p in path.read_text().split()]
        if found:
            return found
        time.sleep(0.05)
    return []


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not ours to be does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_the_property_names_are_the_properties():
    from fuzzer.cli_fuzz import PROPERTY_NAMES
    from fuzzer.divergence import Property

    assert tuple(p.value for p in Property) == PROPERTY_NAMES
