"""The regression corpus: every divergence report kept in corpora/divergences still meets
its expectation on this detfuzz (an open report reproduces its signature, a report marked
fixed does not), and every planted bug has a report there.

A stale report (its digest, log or snapshot format is not this detfuzz's) fails here with
the command that brings it up to date, instead of being judged on digests that no longer
compare: see corpora/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzzer.report import SUFFIX, ReportStatus, load_report, reproduce
from vm.planted import PLANTED_BUGS

CORPUS = Path(__file__).resolve().parents[2] / "corpora" / "divergences"
REPORTS = sorted(CORPUS.glob(f"*{SUFFIX}"))


def test_the_corpus_is_there():
    assert REPORTS, f"no reports in {CORPUS}"


@pytest.mark.parametrize("path", REPORTS, ids=lambda path: path.stem)
def test_report_meets_its_expectation(path: Path):
    report = load_report(path)
    stale = report.stale_because()
    assert stale is None, f"{path.name} is stale ({stale}): run `detfuzz corpus migrate {path}`"
    result = reproduce(report)
    expected = report.status is ReportStatus.OPEN
    assert result.reproduced == expected, f"{path.name} [{report.status.value}]: {result.verdict}"


def test_every_planted_bug_has_an_open_report():
    # A new planted bug needs its report here (corpora/README.md says how to make one), so
    # the fuzzer's ability to find it stays pinned.
    covered = set()
    for path in REPORTS:
        report = load_report(path)
        if report.status is ReportStatus.OPEN:
            covered.update(report.scenario.config.planted_bugs)
    missing = sorted(set(PLANTED_BUGS) - covered)
    assert not missing, f"planted bug(s) with no open report in {CORPUS}: {', '.join(missing)}"
