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

Beside the reports, `.hypothesis/examples/` (`ExampleCache`) is Hypothesis's example
database for the campaigns on this corpus: a cache, never the truth. A campaign saves the
choice sequences of the examples that broke a property and of the examples that reached
the most features, and the next campaign replays them before it generates anything new
(whatever showed a signature the reports know now is dropped from it). Deleting it loses
nothing a report holds. Its key (`cache_key`) names everything the meaning of a choice
sequence depends on, so campaigns of other configurations never replay each other's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hypothesis.database import ExampleDatabase

from fuzzer.divergence import DivergenceKind, Property
from fuzzer.report import SUFFIX, Report, ReportError, ReportStatus, load_report, write_atomic
from fuzzer.report import report_name as _report_name

LOCK_NAME: Final = ".lock"
CAMPAIGN: Final = "campaign"  # Found.by of the reports campaigns write
WORKER: Final = "worker"  # the component of a finding that killed a worker process
HYPOTHESIS_HOME: Final = ".hypothesis"  # Hypothesis's own files: its constants, the cache
CACHE_DIR: Final = Path(HYPOTHESIS_HOME) / "examples"
# The modules whose code decides what a choice sequence draws: a change to any of them
# gives the cache a new key (a released version would not change while they are edited).
GENERATOR_MODULES: Final = (
    "fuzzer.strategies",
    "fuzzer.guestgen",
    "fuzzer.guestplan",
    "fuzzer.guestchunks",
    "fuzzer.scenario",
)


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


# -- the example cache -----------------------------------------------------------------------


def cache_key(config_wire: bytes, properties: Sequence[Property]) -> bytes:
    """The cache key of campaigns on one machine (`config_wire`: its canonical bytes, with
    devices, user devices and planted bugs) checking `properties`: with detfuzz's and
    Hypothesis's versions and the generators' code, so a choice sequence is only ever
    replayed by the strategy that drew it and judged by the condition that kept it."""
    from importlib import metadata

    import hypothesis

    digest = hashlib.blake2b(digest_size=16)
    try:
        version = metadata.version("detfuzz")
    except metadata.PackageNotFoundError:  # run from a source tree
        version = "unknown"
    for part in (
        b"detfuzz-campaign-cache:1",
        version.encode(),
        hypothesis.__version__.encode(),
        _generator_digest(),
        config_wire,
        ",".join(sorted(p.value for p in properties)).encode(),
    ):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest().encode()


def reuse_keys(key: bytes) -> tuple[bytes, bytes, bytes]:
    """The keys Hypothesis's reuse phase reads under a database key: the failures, their
    larger variants, and the Pareto front of the `target()` scores."""
    return (key, key + b".secondary", key + b".pareto")


def _generator_digest() -> bytes:
    from importlib.util import find_spec

    digest = hashlib.blake2b(digest_size=16)
    for name in GENERATOR_MODULES:
        spec = find_spec(name)
        origin = None if spec is None else spec.origin
        try:
            source = Path(origin).read_bytes() if origin else b""
        except OSError:  # an installation without sources: the version stands for them
            source = b""
        digest.update(name.encode() + b"\0" + hashlib.sha256(source).digest())
    return digest.digest()


class ExampleCache(ExampleDatabase):
    """A directory of Hypothesis examples (`root/KEY/VALUE`, both named by a hash; the file
    holds the value): Hypothesis's DirectoryBasedExampleDatabase's layout, with what a
    campaign of several processes needs.

    - `readable_before`: only files written before that time (the campaign's start) are
      read, so what one worker saves during a campaign never changes what another replays:
      a campaign that starts with an empty cache is reproducible from its seed.
    - `part=(index, count)`: only the values whose name hashes to `index` modulo `count`
      are read, so each worker replays its own share and none twice.
    - `max_per_key`: a key holding that many values drops its oldest for a new one (the
      Pareto front Hypothesis keeps grows with every round of a long campaign).

    Every file is written atomically (a temporary file renamed over it); a file that is
    unreadable or not a choice sequence is Hypothesis's to drop (it deletes a value it
    cannot decode), so a damaged cache costs nothing but its entries."""

    def __init__(
        self,
        root: Path,
        *,
        readable_before: float | None = None,
        part: tuple[int, int] = (0, 1),
        max_per_key: int = 512,
    ) -> None:
        super().__init__()
        self.root = root
        self.readable_before = readable_before
        self.part = part
        self.max_per_key = max_per_key

    def __repr__(self) -> str:
        return f"ExampleCache({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ExampleCache)
            and self.root == other.root
            and self.readable_before == other.readable_before
            and self.part == other.part
        )

    def __hash__(self) -> int:
        return hash((self.root, self.readable_before, self.part))

    def _key_dir(self, key: bytes) -> Path:
        return self.root / _hashed(key)

    def save(self, key: bytes, value: bytes) -> None:
        directory = self._key_dir(key)
        path = directory / _hashed(value)
        if path.exists():
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._make_room(directory)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(value)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError:
            pass  # a cache that cannot be written is no cache: the campaign goes on

    def _make_room(self, directory: Path) -> None:
        entries = list(_entries(directory))
        if len(entries) < self.max_per_key:
            return
        entries.sort(key=lambda entry: entry[1])
        for path, _ in entries[: len(entries) - self.max_per_key + 1]:
            with contextlib.suppress(OSError):
                path.unlink()

    def fetch(self, key: bytes) -> Iterable[bytes]:
        index, count = self.part
        for path, mtime in sorted(_entries(self._key_dir(key))):
            if self.readable_before is not None and mtime >= self.readable_before:
                continue
            if int(path.name, 16) % count != index:
                continue
            try:
                value = path.read_bytes()
            except OSError:
                continue
            yield value

    def delete(self, key: bytes, value: bytes) -> None:
        with contextlib.suppress(OSError):
            (self._key_dir(key) / _hashed(value)).unlink()

    def entries(self, keys: Iterable[bytes]) -> int:
        """The values stored under `keys` (what `detfuzz fuzz` shows at the start)."""
        return sum(len(list(_entries(self._key_dir(key)))) for key in keys)


def _hashed(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def _entries(directory: Path) -> Iterator[tuple[Path, float]]:
    """(value file, mtime) of a key's directory; temporaries and strangers skipped."""
    try:
        with os.scandir(directory) as listing:
            found = list(listing)
    except OSError:
        return
    for entry in found:
        try:
            if len(entry.name) != 16 or not entry.is_file(follow_symlinks=False):
                continue
            int(entry.name, 16)
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except (ValueError, OSError):
            continue
        yield Path(entry.path), mtime
