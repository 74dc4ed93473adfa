"""A campaign's corpus directory: the reports in it are everything a campaign remembers.

A signature with a report here is known: a campaign never reports it again, it only bumps
the report's hit counter. So a campaign killed at any moment and run again on the same
directory carries on: every report is written atomically (`fuzzer.report.write_atomic`),
and a report written unshrunk (a new signature is written the moment it is seen, before
shrinking starts) is shrunk by whichever campaign meets its signature next.

Only the campaign's parent process writes here, under an exclusive lock on `.lock`
(flock: the kernel releases it however the process ends, even on SIGKILL), so two
campaigns never count into one file. Hit counters are written every few seconds and at
the end, not on every hit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fuzzer.divergence import DivergenceKind
from fuzzer.report import SUFFIX, Report, ReportError, ReportStatus, load_report, write_atomic
from fuzzer.report import report_name as _report_name

LOCK_NAME: Final = ".lock"
CAMPAIGN: Final = "campaign"  # Found.by of the reports campaigns write
WORKER: Final = "worker"  # the component of a finding that killed a worker process


class CorpusError(Exception):
    """The corpus directory cannot be used; the message says why, in one line."""


class EntryState(enum.Enum):
    FINAL = "final"  # shrunk, or not to be shrunk (a timeout, a dead worker, a hand-made case)
    OPEN = "open"  # written unshrunk by a campaign: the next worker to meet it shrinks it
    SHRINKING = "shrinking"  # a worker is shrinking it now


@dataclass
class Entry:
    """One signature's report, as this campaign knows it."""

    signature: str
    path: Path
    report: Report
    new: bool  # first reported by this campaign
    state: EntryState
    hits_at_start: int = 0
    owner: int | None = None  # the worker shrinking it
    dirty: bool = False  # hits not written yet
    first_seen_s: float | None = None  # this campaign's first hit: seconds from its start
    first_seen_examples: int | None = None  # ... and examples run by then

    @property
    def hits(self) -> int:
        return self.report.found.hits

    @property
    def campaign_hits(self) -> int:
        return self.hits - self.hits_at_start

    @property
    def regression(self) -> bool:
        """A report marked fixed whose signature this campaign hit again."""
        return self.report.status is ReportStatus.FIXED and self.campaign_hits > 0


@dataclass
class Corpus:
    directory: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)  # one line per file skipped
    _lock_fd: int | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path) -> Corpus:
        """Lock the directory (creating it), clear what an interrupted write left and read
        its reports. CorpusError if it cannot be used."""
        corpus = cls(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            corpus._lock()
        except OSError as exc:
            raise CorpusError(
                f"cannot use corpus directory {directory}: {exc.strerror or exc}"
            ) from None
        try:
            corpus._clear_temporaries()
            corpus._load()
        except BaseException:
            corpus.close()
            raise
        return corpus

    def _lock(self) -> None:
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise CorpusError(
                f"corpus directory {self.directory} is in use by another campaign (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _clear_temporaries(self) -> None:
        # write_atomic's temporary files (".NAME.dfr.XXXX.tmp"): a write that a kill
        # interrupted before its rename. The report it was replacing is intact.
        for leftover in self.directory.glob(f".*{SUFFIX}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _load(self) -> None:
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                report = load_report(path)
            except ReportError as exc:
                self.unreadable.append(f"skipped {exc}")
                continue
            key = str(report.signature)
            if key in self.entries:
                self.unreadable.append(
                    f"skipped {path}: signature {key} is also in {self.entries[key].path}"
                )
                continue
            self.entries[key] = Entry(
                key,
                path,
                report,
                new=False,
                state=EntryState.OPEN if _shrinkable(report) else EntryState.FINAL,
                hits_at_start=report.found.hits,
            )

    # -- what workers may lock ---------------------------------------------------------------

    def known(self) -> list[str]:
        """Signatures a worker must not lock (a worker may lock an OPEN one to shrink it)."""
        return sorted(k for k, e in self.entries.items() if e.state is not EntryState.OPEN)

    def claim(self, signature: str, worker: int) -> bool:
        """A worker locked `signature` to shrink it: False if it must drop it."""
        entry = self.entries.get(signature)
        if entry is None or entry.state is EntryState.FINAL:
            return entry is None  # unknown: its "new" message comes first, so never here
        if entry.state is EntryState.SHRINKING and entry.owner != worker:
            return False
        entry.state, entry.owner = EntryState.SHRINKING, worker
        return True

    def release(self, worker: int) -> None:
        """The worker's round ended (or it died): what it was shrinking is open again."""
        for entry in self.entries.values():
            if entry.state is EntryState.SHRINKING and entry.owner == worker:
                entry.state, entry.owner = EntryState.OPEN, None

    # -- recording ---------------------------------------------------------------------------

    def add(self, report: Report, *, elapsed_s: float, examples: int) -> Entry | None:
        """Write a report for a signature not in the corpus; None if it is there already."""
        key = str(report.signature)
        if key in self.entries:
            return None
        path = self.directory / _report_name(report.signature)
        entry = Entry(
            key,
            path,
            report,
            new=True,
            state=EntryState.OPEN if _shrinkable(report) else EntryState.FINAL,
            first_seen_s=elapsed_s,
            first_seen_examples=examples,
        )
        self.entries[key] = entry
        self._write(entry)
        return entry

    def hit(self, signature: str, *, elapsed_s: float, examples: int) -> Entry | None:
        entry = self.entries.get(signature)
        if entry is None:
            return None
        entry.report = _with_found(entry.report, hits=entry.hits + 1)
        entry.dirty = True
        if entry.first_seen_s is None:
            entry.first_seen_s, entry.first_seen_examples = elapsed_s, examples
        return entry

    def shrunk(self, report: Report, worker: int) -> Entry | None:
        """Replace a signature's unshrunk report with the worker's shrunk one (keeping how
        and when it was first found, and its hits). None if it is not the worker's to do."""
        entry = self.entries.get(str(report.signature))
        if entry is None or entry.state is not EntryState.SHRINKING or entry.owner != worker:
            return None
        first = entry.report.found
        entry.report = dataclasses.replace(
            report,
            found=dataclasses.replace(
                report.found,
                by=first.by,
                campaign_seed=first.campaign_seed,
                examples=first.examples,
                elapsed_ms=first.elapsed_ms,
                hits=first.hits,
            ),
            status=entry.report.status,
        )
        entry.state, entry.owner = EntryState.FINAL, None
        self._write(entry)
        return entry

    def flush(self) -> None:
        """Write the hit counters that changed since the last flush."""
        for entry in self.entries.values():
            if entry.dirty:
                self._write(entry)

    def _write(self, entry: Entry) -> None:
        # A status changed on disk meanwhile (a report marked fixed) is kept.
        with contextlib.suppress(ReportError):
            on_disk = load_report(entry.path)
            if on_disk.signature == entry.report.signature:
                entry.report = dataclasses.replace(entry.report, status=on_disk.status)
        write_atomic(entry.path, entry.report.to_bytes())
        entry.dirty = False


def _shrinkable(report: Report) -> bool:
    """A report a campaign wrote before shrinking it. A hand-made or test-made report is a
    chosen case, never replaced; a timeout or a dead worker is not shrunk."""
    return (
        report.found.by == CAMPAIGN
        and not report.found.shrunk
        and report.divergence.kind is not DivergenceKind.TIMEOUT
        and report.divergence.component != WORKER
    )


def _with_found(report: Report, **changes: object) -> Report:
    return dataclasses.replace(report, found=dataclasses.replace(report.found, **changes))
