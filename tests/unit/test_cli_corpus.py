"""`detfuzz corpus ls|check|mark-fixed|reopen|migrate` on temporary report files."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzer import cli_corpus
from fuzzer.campaign_corpus import LOCK_NAME, Corpus
from fuzzer.cli import main
from fuzzer.properties import check
from fuzzer.report import (
    MAGIC,
    REPORT_FORMAT,
    SUFFIX,
    Found,
    Report,
    ReportStatus,
    load_report,
    save_report,
    versions,
)
from fuzzer.scenario import Scenario
from fuzzer.wire import pack_file, unpack_file
from vm.config import DEFAULT_DEVICES, DeviceSpec, MachineConfig

# Two reads of the RTC (the HOST clock), then the finisher: with rtc-unlogged-clock
# switched on, a replay on another host seed reads other values and diverges.
PROGRAM = """
    li   t0, 0x101000
    lw   a0, 0(t0)
    lw   a1, 4(t0)
    li   t0, 0x100000
    li   t1, 0x5555
    sw   t1, 0(t0)
"""
BUG = "rtc-unlogged-clock"


def scenario(*bugs: str) -> Scenario:
    config = MachineConfig(ram_size=64 << 10, planted_bugs=bugs)
    return Scenario(config=config, program=PROGRAM, host_seeds=(1, 2), budget=1_000)


@pytest.fixture(scope="module")
def buggy() -> Report:
    """A report of the planted bug (its divergence found by a real check)."""
    result = check(scenario(BUG))
    assert result.divergences
    found = Found(by="campaign", hits=7, classification="deterministic", shrunk=True)
    return Report(scenario(BUG), result.divergences[0], result.coverage, found)


@pytest.fixture
def corpus(tmp_path: Path, buggy: Report) -> Path:
    save_report(buggy, tmp_path)
    return tmp_path


def only_report(directory: Path) -> Path:
    (path,) = directory.glob(f"*{SUFFIX}")
    return path


def cured(report: Report) -> Report:
    """The same report on a machine without the bug: its signature no longer comes back."""
    return dataclasses.replace(report, scenario=scenario())


def with_versions(report: Report, **changes: object) -> Report:
    return dataclasses.replace(report, versions={**report.versions, **changes})


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["corpus", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_constants_match_the_modules_they_mirror():
    assert cli_corpus.SUFFIX == SUFFIX
    assert cli_corpus.LOCK_NAME == LOCK_NAME


@pytest.mark.parametrize("action", [[], ["ls"], ["check"], ["mark-fixed"], ["reopen"], ["migrate"]])
def test_help_is_complete(action: list[str], capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["corpus", *action, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "detfuzz corpus" in out
    if action:
        assert "Exit status" in out


# -- ls -----------------------------------------------------------------------------------------


def test_ls_lists_each_report(corpus: Path, buggy: Report, capsys):
    status, out, _ = run(capsys, "ls", str(corpus))
    assert status == 0
    line = out.strip()
    assert str(buggy.signature) in line and " open " in line and " current " in line
    assert "campaign/deterministic" in line and " 7 " in line
    assert f"{cli_corpus.program_lines(PROGRAM)} lines" in line
    assert line.endswith(only_report(corpus).name)


def test_ls_json(corpus: Path, buggy: Report, capsys):
    status, out, _ = run(capsys, "ls", "--json", str(corpus))
    assert status == 0
    (item,) = [json.loads(line) for line in out.splitlines()]
    assert item["signature"] == str(buggy.signature)
    assert item["status"] == "open" and item["stale"] is None and item["hits"] == 7
    assert item["program_lines"] == 6 and item["stimulus"] == 0


def test_ls_lists_unreadable_files_as_such(corpus: Path, capsys):
    (corpus / "junk.dfr").write_bytes(b"not a report")
    status, out, err = run(capsys, "ls", str(corpus))
    assert status == 2
    assert "unreadable  junk.dfr: not a detfuzz report: bad magic" in out
    assert "open" in out  # the good report is still listed
    assert err.count("\n") == 1 and "Traceback" not in err


# -- check, mark-fixed, reopen ----------------------------------------------------------------


def test_check_passes_an_open_report_that_reproduces(corpus: Path, capsys):
    status, out, _ = run(capsys, "check", str(corpus))
    assert status == 0
    assert ": ok: open, reproduced: record-replay/" in out
    assert out.splitlines()[-1] == "1 ok of 1"


def test_mark_fixed_makes_check_fail_while_it_reproduces(corpus: Path, capsys):
    path = only_report(corpus)
    status, out, _ = run(capsys, "mark-fixed", str(path))
    assert status == 0 and "open -> fixed" in out
    assert load_report(path).status is ReportStatus.FIXED
    status, out, _ = run(capsys, "check", str(corpus))
    assert status == 1 and ": REGRESSION: fixed, reproduced" in out
    status, out, _ = run(capsys, "reopen", str(path))
    assert status == 0 and "fixed -> open" in out
    assert run(capsys, "check", str(corpus))[0] == 0


def test_marking_twice_says_so(corpus: Path, capsys):
    path = only_report(corpus)
    assert run(capsys, "reopen", str(path))[1].startswith(f"{path}: already open")


def test_check_of_a_fixed_report_that_is_gone_passes(tmp_path: Path, buggy: Report, capsys):
    save_report(cured(buggy).with_status(ReportStatus.FIXED), tmp_path)
    status, out, _ = run(capsys, "check", str(tmp_path))
    assert status == 0 and ": ok: fixed, not reproduced" in out


def test_check_flags_an_open_report_that_no_longer_reproduces(
    tmp_path: Path, buggy: Report, capsys
):
    save_report(cured(buggy), tmp_path)
    status, out, _ = run(capsys, "check", str(tmp_path))
    assert status == 1 and ": UNEXPECTED: open, not reproduced" in out


# -- stale reports and migration ----------------------------------------------------------------


def test_a_stale_report_is_listed_and_not_judged_then_migrated(
    tmp_path: Path, buggy: Report, capsys
):
    stale = with_versions(buggy, digest=-1)
    path = save_report(stale, tmp_path)
    status, out, _ = run(capsys, "ls", str(tmp_path))
    assert status == 0 and " stale " in out and "stale: its digest format is -1" in out
    status, out, _ = run(capsys, "check", str(tmp_path))
    assert status == 1 and ": stale: its digest format is -1" in out and "migrate" in out
    assert run(capsys, "check", "--allow-stale", str(tmp_path))[0] == 0

    status, out, _ = run(capsys, "migrate", str(tmp_path))
    assert status == 0 and ": migrated (its digest format is -1" in out
    migrated = load_report(path)
    assert migrated.stale_because() is None and dict(migrated.versions) == versions()
    assert migrated.found == buggy.found and migrated.status is ReportStatus.OPEN
    assert migrated.signature == buggy.signature and migrated.divergence.observed
    assert run(capsys, "check", str(tmp_path))[0] == 0
    status, out, _ = run(capsys, "migrate", str(path))
    assert status == 0 and ": up to date:" in out


def test_an_open_report_that_does_not_reproduce_is_not_migrated(
    tmp_path: Path, buggy: Report, capsys
):
    path = save_report(with_versions(cured(buggy), snapshot=-1), tmp_path)
    before = path.read_bytes()
    status, out, _ = run(capsys, "migrate", str(path))
    assert status == 1 and ": not migrated (its snapshot format is -1" in out
    assert path.read_bytes() == before


def test_a_fixed_report_that_stays_gone_is_migrated_without_old_digests(
    tmp_path: Path, buggy: Report, capsys
):
    old = with_versions(cured(buggy).with_status(ReportStatus.FIXED), digest=-1)
    path = save_report(old, tmp_path)
    assert run(capsys, "migrate", str(path))[0] == 0
    migrated = load_report(path)
    assert migrated.status is ReportStatus.FIXED and migrated.stale_because() is None
    assert migrated.divergence.expected is None and migrated.divergence.observed is None
    assert "digest format -1 were dropped" in migrated.divergence.notes[-1]
    assert run(capsys, "check", str(path))[0] == 0


def rewrite_format(path: Path, version: int) -> None:
    _, body = unpack_file(path.read_bytes(), what="report", magic=MAGIC, max_bytes=1 << 24)
    path.write_bytes(pack_file(magic=MAGIC, version=version, body=body))


def test_an_older_report_format_needs_a_converter(corpus: Path, capsys, monkeypatch):
    path = only_report(corpus)
    rewrite_format(path, REPORT_FORMAT - 1)
    status, _, err = run(capsys, "migrate", str(path))
    assert status == 2 and f"has no converter to format {REPORT_FORMAT}" in err
    status, _, err = run(capsys, "check", str(path))
    assert status == 2 and err.count("\n") == 1

    # A format bump plugs its converter in here; this one upgrades an identical body.
    monkeypatch.setattr(cli_corpus, "CONVERTERS", {REPORT_FORMAT - 1: lambda body: body})
    status, out, _ = run(capsys, "ls", str(path))
    assert status == 0 and f"stale: its report format is {REPORT_FORMAT - 1}" in out
    assert run(capsys, "check", str(path))[1].count(": stale: its report format") == 1
    status, out, _ = run(capsys, "migrate", str(path))
    assert status == 0 and ": migrated (its report format is" in out
    assert load_report(path).found.hits == 7  # readable by the current reader again


def test_a_newer_report_format_is_refused(corpus: Path, capsys):
    path = only_report(corpus)
    rewrite_format(path, REPORT_FORMAT + 1)
    status, _, err = run(capsys, "migrate", str(path))
    assert status == 2 and "newer than this detfuzz supports" in err


# -- bad input and the campaign lock ----------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"\x93\x01\x02", b"\x82\xa5magic\xaedetfuzz-report"]
)
@pytest.mark.parametrize("action", ["check", "mark-fixed", "reopen", "migrate"])
def test_bad_files_exit_2_with_one_line(action: str, content: bytes, tmp_path: Path, capsys):
    bad = tmp_path / "bad.dfr"
    bad.write_bytes(content)
    status, out, err = run(capsys, action, str(bad))
    assert status == 2, out
    assert err.startswith("detfuzz: ") and err.count("\n") == 1 and "Traceback" not in err
    assert bad.read_bytes() == content


def test_a_truncated_report_exits_2(corpus: Path, capsys):
    path = only_report(corpus)
    path.write_bytes(path.read_bytes()[:-40])
    for action in ("check", "mark-fixed", "migrate"):
        status, _, err = run(capsys, action, str(path))
        assert status == 2 and "truncated" in err and err.count("\n") == 1


@pytest.mark.parametrize("action", ["ls", "check", "mark-fixed", "reopen", "migrate"])
def test_missing_paths_exit_2(action: str, tmp_path: Path, capsys):
    status, _, err = run(capsys, action, str(tmp_path / "nowhere"))
    assert status == 2 and "nowhere" in err and err.count("\n") == 1


def test_a_directory_is_not_a_report_to_mark(tmp_path: Path, capsys):
    status, _, err = run(capsys, "mark-fixed", str(tmp_path))
    assert status == 2 and "no such report file" in err


def test_writers_refuse_while_a_campaign_holds_the_corpus(corpus: Path, capsys):
    path = only_report(corpus)
    before = path.read_bytes()
    campaign = Corpus.open(corpus)  # what a running campaign holds
    try:
        for action in ("mark-fixed", "reopen", "migrate"):
            status, _, err = run(capsys, action, str(path))
            assert status == 2 and "in use by a campaign" in err and err.count("\n") == 1
        assert run(capsys, "check", str(corpus))[0] == 0  # reading needs no lock
    finally:
        campaign.close()
    assert path.read_bytes() == before
    assert run(capsys, "mark-fixed", str(path))[0] == 0


def test_a_campaign_cannot_start_while_a_writer_holds_the_lock(corpus: Path):
    from fuzzer.campaign_corpus import CorpusError

    with cli_corpus.corpus_lock(corpus), pytest.raises(CorpusError, match="in use"):
        Corpus.open(corpus)


def test_the_command_line_prints_no_traceback(tmp_path: Path):
    bad = tmp_path / "bad.dfr"
    bad.write_bytes(b"\xc1")
    done = subprocess.run(
        [sys.executable, "-m", "fuzzer", "corpus", "ls", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "unreadable  bad.dfr" in done.stdout


@pytest.mark.parametrize("action", ["check", "migrate"])
def test_a_user_device_is_needed_explicitly(action: str, tmp_path: Path, buggy: Report, capsys):
    spec = DeviceSpec("no_such_module_anywhere:Device", "dev0", 0x1000_4000, irq=5)
    config = MachineConfig(ram_size=64 << 10, devices=(*DEFAULT_DEVICES, spec))
    report = dataclasses.replace(buggy, scenario=dataclasses.replace(scenario(), config=config))
    path = save_report(with_versions(report, digest=-1), tmp_path)
    before = path.read_bytes()
    status, out, err = run(capsys, action, str(path))
    assert status == 2 and "--device" in err and err.count("\n") == 1 and not out
    assert path.read_bytes() == before
