"""CI campaigns, run as CI runs them: the installed `detfuzz` console script in a process of
its own. A one-minute campaign on the correct machine with every property finds nothing;
a short campaign with a planted bug finds it, exits 1 and leaves a report that `detfuzz
repro` reproduces.

Each uses a fresh corpus: dedup is by signature, and the checked-in corpus knows the
planted bugs' signatures already. The seed scenarios (corpora/seeds) are checked first, as
in any campaign started from the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = "20240601"
# The planted-bug campaign: the unlogged entropy device is read by most scenarios that
# touch it, so a few seconds find it (record-replay: a replay reads other bytes).
PLANTED = "entropy-unlogged"
# Rule 3 (host input around the log), first seen by record-replay; the component is where
# the bytes went (RAM, a register), so it is not pinned.
PLANTED_PROPERTY, PLANTED_RULE = "record-replay/", "/logged-input"
# Far below what two workers run in a minute even on a slow, busy machine (about 3-8
# examples/s here), far above what a campaign that stalls runs.
MIN_EXAMPLES_PER_MINUTE = 30


def detfuzz() -> str:
    """The console script pip installed next to this interpreter (else on PATH)."""
    beside = Path(sys.executable).with_name("detfuzz")
    found = str(beside) if beside.exists() else shutil.which("detfuzz")
    if found is None:
        pytest.fail("the detfuzz console script is not installed (pip install -e .)")
    return found


def run_detfuzz(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [detfuzz(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_a_one_minute_campaign_on_the_correct_machine_finds_nothing(tmp_path):
    corpus = tmp_path / "corpus"
    args = ["fuzz", "--time", "60s", "--workers", "2", "--seed", SEED, "--corpus", str(corpus)]
    done = run_detfuzz([*args, "--json", "--interval", "10s"], timeout_s=180)
    assert done.returncode == 0, done.stderr[-2000:]
    stream = events(done.stdout)
    assert stream[0]["event"] == "start" and stream[-1]["event"] == "summary"
    summary = stream[-1]
    assert summary["stopped"] == "time" and 60 <= summary["elapsed_s"] < 75
    assert summary["divergences"] == 0 and summary["signatures"] == []
    assert summary["new_signatures"] == 0 and summary["regressions"] == 0
    assert summary["examples"] >= MIN_EXAMPLES_PER_MINUTE, summary["examples"]
    assert summary["worker_restarts"] == 0 and summary["shrink_checks"] == 0
    assert {p["property"] for p in summary["properties"]} == {
        "record-replay", "record-none", "stop-cont", "snapshot", "seek", "determinism",
    }  # fmt: skip
    assert summary["seed_examples"] == stream[0]["seeds"] > 0  # every seed checked, first
    assert summary["coverage_known"] > 0 and summary["coverage_reached"]
    assert not list(corpus.glob("*.dfr"))
    assert "Traceback" not in done.stderr


def test_a_short_campaign_finds_a_planted_bug_and_exits_1(tmp_path):
    corpus = tmp_path / "corpus"
    args = ["fuzz", "--time", "30s", "--workers", "2", "--seed", SEED, "--corpus", str(corpus)]
    done = run_detfuzz(
        [*args, "--planted", PLANTED, "--max-shrinks", "50", "--json"], timeout_s=180
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    summary = events(done.stdout)[-1]
    assert summary["event"] == "summary" and summary["new_signatures"] >= 1
    found = [
        s
        for s in summary["signatures"]
        if s["new"]
        and s["signature"].startswith(PLANTED_PROPERTY)
        and s["signature"].endswith(PLANTED_RULE)
    ]
    assert found, [s["signature"] for s in summary["signatures"]]
    report = Path(found[0]["path"])
    assert report.parent == corpus and report.suffix == ".dfr"
    repro = run_detfuzz(["repro", str(report)], timeout_s=120)
    assert repro.returncode == 1, repro.stdout[-2000:] + repro.stderr[-2000:]
