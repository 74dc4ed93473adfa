"""`detfuzz corpus ls|check|mark-fixed|reopen|migrate`: the regression corpus of
divergence reports (fuzzer.report) kept in `corpora/divergences`.

Every report carries an expectation in its status: an OPEN report's signature must still
reproduce on its scenario, a FIXED one's must not. `check` re-runs each report and judges
it against that expectation; `mark-fixed` and `reopen` change it.

Formats and migration
---------------------
A report records the versions its verdict depends on (`fuzzer.report.versions()`): its
own file format (REPORT_FORMAT) and the state digest, replay log and snapshot formats.
Two things can make a report old:

* its digest/log/snapshot format differs from this detfuzz's (`Report.stale_because()`):
  the file still loads, but its recorded digests mean something else now. `ls` and
  `check` show it as stale and never judge it; `migrate` re-checks its scenario and, if
  the same signature comes back, rewrites it with the fresh divergence, digests and
  versions (keeping how it was found, its hits and its status).
* its file format is older than REPORT_FORMAT: `fuzzer.report.load_report` refuses it
  (pointing here), and `migrate` is the single place that reads it. The file's body is
  passed through CONVERTERS, one step per format, then read by the current reader and
  re-checked like a stale report.

Bumping REPORT_FORMAT from N to N+1 therefore means: keep nothing of format N in
fuzzer.report (it reads only the current format), and add here a function that turns a
format-N body (the plain msgpack map `fuzzer.wire.unpack_file` returns) into a format-N+1
body, as CONVERTERS[N]. A chain of them upgrades any older file; a format with no
converter is reported as such (exit 2), never guessed at. A scenario format change inside
a report body is converted the same way, by the converter rewriting `body["scenario"]`.

Writers (`mark-fixed`, `reopen`, `migrate`) take the corpus directory's campaign lock
(fuzzer.campaign_corpus, flock on `.lock`) for the whole command, so they never race a
running campaign (which rewrites the reports whose signatures it hits): while a campaign
holds it they refuse with exit 2. Every write is atomic (`fuzzer.report.write_atomic`).

Only the standard library is imported at module level; the report code and the machine
are imported when a command runs, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from fuzzer.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_allow_device_option,
    note,
)

if TYPE_CHECKING:
    from fuzzer.report import Report, ReportStatus, Reproduction

DEFAULT_DIR: Final = "corpora/divergences"
SUFFIX: Final = ".dfr"  # fuzzer.report.SUFFIX (a unit test keeps them equal)
LOCK_NAME: Final = ".lock"  # fuzzer.campaign_corpus.LOCK_NAME (likewise)

# Body converters, keyed by the format they read: CONVERTERS[n](body) is the format n+1
# body. Empty while REPORT_FORMAT is 1, the first format (see the module docstring).
Converter = Callable[[object], object]
CONVERTERS: Mapping[int, Converter] = MappingProxyType({})


class Verdict(enum.Enum):
    """What `check` concluded about one report."""

    OK = "ok"  # as expected
    REGRESSION = "REGRESSION"  # marked fixed, and its signature is back
    UNEXPECTED = "UNEXPECTED"  # open, and its signature no longer reproduces
    STALE = "stale"  # its formats are not this detfuzz's: not judged

    @property
    def exit_status(self) -> int:
        return _VERDICT_STATUS[self]


_VERDICT_STATUS: Final = {
    Verdict.OK: EXIT_OK,
    Verdict.REGRESSION: EXIT_FAILED,
    Verdict.UNEXPECTED: EXIT_FAILED,
    Verdict.STALE: EXIT_FAILED,  # unless --allow-stale
}


# -- help -----------------------------------------------------------------------------------

CORPUS_DESCRIPTION = """\
Look after a corpus of divergence reports (default corpora/divergences): list it, check
every report against its expectation, mark reports fixed or open again, and migrate
reports that an older detfuzz wrote.

Each report's status is its expectation: an open report's signature must still reproduce
on its scenario; a fixed one's must not. A report whose digest, replay-log or snapshot
format is not this detfuzz's is stale: it is never judged, only migrated.
"""
CORPUS_EPILOG = """\
exit status: that of the action (see `detfuzz corpus ACTION --help`); 2 for bad usage.

examples:
  detfuzz corpus ls
  detfuzz corpus check
  detfuzz corpus mark-fixed corpora/divergences/snapshot--clint--save-every-field.dfr
  detfuzz corpus migrate corpora/divergences
"""

LS_DESCRIPTION = """\
List the reports (*.dfr) in each DIR or FILE, one line each: signature, status (open or
fixed), whether it is stale (and why, on the next line), hits, how it was found and its
classification, the size of its (shrunk) program in source lines and its stimulus
events, and the file name. A file that cannot be read as a report is listed as
unreadable with the reason. Nothing is executed.

Exit status: 0; 2 for bad usage, a path that does not exist, or a file that is
unreadable (it is listed).
"""
LS_EPILOG = """\
examples:
  detfuzz corpus ls                          # corpora/divergences
  detfuzz corpus ls /tmp/campaign            # a campaign's --corpus
  detfuzz corpus ls --json | jq .signature   # one JSON object per line
"""

CHECK_DESCRIPTION = """\
Re-run every report in each DIR or FILE (default corpora/divergences) under the property
that found it and judge it against its expectation, one verdict line each:
  ok          as expected: an open report reproduces, a fixed one does not
  REGRESSION  a report marked fixed reproduces again
  UNEXPECTED  an open report no longer reproduces (fixed? then `corpus mark-fixed` it)
  stale       its formats are not this detfuzz's: not judged (`corpus migrate` it)
Every file is read first: one that is not a report, or one that needs a user device not
given with --device, stops the command before anything runs (one line, exit 2).

Exit status: 0 every report as expected; 1 a regression or unexpected result, or a
stale report without --allow-stale; 2 bad usage, a missing path, an unreadable report.
"""
CHECK_EPILOG = """\
examples:
  detfuzz corpus check                               # the regression corpus
  detfuzz corpus check --allow-stale /tmp/campaign   # skip what an old detfuzz wrote
  detfuzz corpus check --device countdown:Countdown R.dfr
"""

MARK_DESCRIPTION = """\
Mark each REPORT fixed: from now on `corpus check` expects its signature not to
reproduce, and a campaign that hits it again reports a regression. The file is rewritten
atomically, under the corpus directory's campaign lock: while a campaign runs on that
directory the command refuses (exit 2) and changes nothing.

Exit status: 0; 2 for a bad or missing file or a locked corpus (nothing is changed).
"""
MARK_EPILOG = """\
examples:
  detfuzz corpus mark-fixed corpora/divergences/snapshot--clint--save-every-field.dfr
  detfuzz corpus check corpora/divergences/snapshot--clint--save-every-field.dfr
"""

REOPEN_DESCRIPTION = """\
Mark each REPORT open again: `corpus check` expects its signature to reproduce. The
file is rewritten atomically under the corpus directory's campaign lock, as mark-fixed.

Exit status: 0; 2 for a bad or missing file or a locked corpus (nothing is changed).
"""
REOPEN_EPILOG = """\
examples:
  detfuzz corpus reopen corpora/divergences/snapshot--clint--save-every-field.dfr
"""

MIGRATE_DESCRIPTION = """\
Bring reports written by an older detfuzz up to date. Each REPORT (or every report in a
DIR) that is stale (its digest, replay-log or snapshot format is not this detfuzz's) or in
an older report file format (converted one format step at a time) has its scenario
re-checked here:
  * the same signature reproduces: the report is rewritten with the fresh divergence,
    digests and versions, keeping how it was found, its hits and its status;
  * a fixed report whose signature does not reproduce (as expected of it): rewritten with
    fresh versions; its old digests, which no longer compare, are dropped (a note says so);
  * an open report whose signature does not reproduce: not migrated, left untouched.
A report already up to date is left as it is. Writes are atomic and taken under the
corpus directory's campaign lock (refused, exit 2, while a campaign runs there).

Exit status: 0 every report migrated or up to date; 1 some could not be migrated; 2 bad
usage, a missing or unreadable file, a format with no converter, or a locked corpus.
"""
MIGRATE_EPILOG = """\
examples:
  detfuzz corpus migrate corpora/divergences
  detfuzz corpus migrate old.dfr && detfuzz corpus check old.dfr
"""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks (the verdict table)."""


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    corpus = commands.add_parser(
        "corpus",
        help="list, check, mark fixed and migrate divergence reports",
        description=CORPUS_DESCRIPTION,
        epilog=CORPUS_EPILOG,
        formatter_class=_Help,
    )
    actions = corpus.add_subparsers(
        dest="corpus_command", metavar="ACTION", required=True, parser_class=type(corpus)
    )
    _add_ls(actions)
    _add_check(actions)
    _add_status(actions, "mark-fixed", "mark reports fixed", MARK_DESCRIPTION, MARK_EPILOG)
    _add_status(actions, "reopen", "mark reports open again", REOPEN_DESCRIPTION, REOPEN_EPILOG)
    _add_migrate(actions)


def _paths_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        default=[DEFAULT_DIR],
        metavar="DIR|FILE",
        help=f"a corpus directory or a report file (default {DEFAULT_DIR})",
    )


def _add_ls(actions: Any) -> None:
    ls = actions.add_parser(
        "ls",
        help="list reports",
        description=LS_DESCRIPTION,
        epilog=LS_EPILOG,
        formatter_class=_Help,
    )
    _paths_argument(ls)
    ls.add_argument("--json", action="store_true", help="one JSON object per report per line")


def _add_check(actions: Any) -> None:
    check = actions.add_parser(
        "check",
        help="re-run every report and check its expectation",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_EPILOG,
        formatter_class=_Help,
    )
    _paths_argument(check)
    check.add_argument(
        "--allow-stale",
        action="store_true",
        help="a stale report is listed but does not make the exit status non-zero",
    )
    add_allow_device_option(check)


def _add_status(actions: Any, name: str, summary: str, description: str, epilog: str) -> None:
    parser = actions.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=_Help
    )
    parser.add_argument("reports", nargs="+", metavar="REPORT", help="a report file (.dfr)")


def _add_migrate(actions: Any) -> None:
    migrate = actions.add_parser(
        "migrate",
        help="re-check and rewrite reports an older detfuzz wrote",
        description=MIGRATE_DESCRIPTION,
        epilog=MIGRATE_EPILOG,
        formatter_class=_Help,
    )
    migrate.add_argument(
        "paths", nargs="+", metavar="REPORT|DIR", help="a report file, or a corpus directory"
    )
    add_allow_device_option(migrate)


# -- finding and locking report files ------------------------------------------------------


def report_files(targets: Sequence[str]) -> list[Path]:
    """The report files named by `targets`: a file as given, a directory's *.dfr sorted.
    CliError for a path that does not exist or cannot be listed."""
    files: list[Path] = []
    for target in targets:
        path = Path(target)
        if path.is_dir():
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                raise CliError(f"cannot list {target}: {exc.strerror or exc}") from None
            files += [path / n for n in names if n.endswith(SUFFIX) and not n.startswith(".")]
        elif path.exists():
            files.append(path)
        else:
            raise CliError(f"no such report file or corpus directory: {target}")
    return files


@contextlib.contextmanager
def corpus_lock(directory: Path) -> Iterator[None]:
    """Hold the campaign lock of `directory` (fuzzer.campaign_corpus takes the same flock
    on the same file), or CliError at once if a campaign holds it."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CliError(f"cannot lock corpus directory {directory}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            raise CliError(
                f"corpus directory {directory} is in use by a campaign (pid {holder}): "
                "nothing changed; run this again once it has ended"
            ) from None
        # The holder's pid, as a campaign writes it, for the message of whoever waits.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


@contextlib.contextmanager
def locked(paths: Sequence[Path]) -> Iterator[None]:
    """Every directory of `paths` locked, all taken before anything is changed."""
    with contextlib.ExitStack() as stack:
        for directory in sorted({p.parent.resolve() for p in paths}):
            stack.enter_context(corpus_lock(directory))
        yield


def _load(path: Path) -> Report:
    from fuzzer.report import ReportError, load_report

    try:
        return load_report(path)
    except ReportError as exc:
        raise CliError(str(exc)) from None


# -- ls ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One report as `ls` lists it."""

    file: str
    signature: str
    status: str
    stale: str | None  # why, or None
    hits: int
    found_by: str
    classification: str
    shrunk: bool
    program_lines: int
    stimulus: int

    def line(self, width: int) -> str:
        found = f"{self.found_by}/{self.classification}"
        stale = "stale" if self.stale else "current"
        text = (
            f"{self.signature:<{width}}  {self.status:<5}  {stale:<7}  {self.hits:>5}  "
            f"{found:<24}  {self.program_lines:>4} lines  {self.stimulus:>3} stim  {self.file}"
        )
        return text + (f"\n    stale: {self.stale}" if self.stale else "")


def program_lines(source: str) -> int:
    """Lines of assembly that are not blank or only a comment. Most of a generated program
    is its fixed harness (trap handler, device service routines, data): shrinking cuts the
    body's chunks and the devices it sets up, so compare sizes between reports, not to 0."""
    code = (line.split("#", 1)[0].strip() for line in source.splitlines())
    return sum(1 for line in code if line)


def row(loaded: Loaded) -> Row:
    report = loaded.report
    found = report.found
    return Row(
        file=loaded.path.name,
        signature=str(report.signature),
        status=report.status.value,
        stale=loaded.why_old(),
        hits=found.hits,
        found_by=found.by,
        classification=found.classification,
        shrunk=found.shrunk,
        program_lines=program_lines(report.scenario.program),
        stimulus=len(report.scenario.stimulus),
    )


def cmd_ls(args: argparse.Namespace) -> int:
    rows: list[Row] = []
    unreadable: list[tuple[str, str]] = []
    files = report_files(args.paths)
    if not files:
        note(f"no reports (*{SUFFIX}) in {', '.join(args.paths)}")
    for path in files:
        try:
            rows.append(row(read_any_format(path)))
        except CliError as exc:
            unreadable.append((path.name, str(exc).removeprefix(f"{path}: ")))
    if args.json:
        for item in rows:
            print(json.dumps(dataclasses.asdict(item), sort_keys=True))
        for name, why in unreadable:
            print(json.dumps({"file": name, "error": why}, sort_keys=True))
    else:
        width = max((len(r.signature) for r in rows), default=0)
        for item in rows:
            print(item.line(width))
        for name, why in unreadable:
            print(f"unreadable  {name}: {why}")
    if unreadable:
        note(f"{len(unreadable)} file(s) could not be read as reports (listed)")
    return EXIT_USAGE if unreadable else EXIT_OK


# -- check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    detail: str

    def line(self, name: str) -> str:
        return f"{name}: {self.verdict.value}: {self.detail}"


def judge(loaded: Loaded, allow_devices: Sequence[str]) -> Judgement:
    """Re-run the report and compare the outcome with its status (a stale one is not)."""
    from fuzzer.report import ReportError, ReportStatus, reproduce

    report, path = loaded.report, loaded.path
    stale = loaded.why_old()
    if stale:
        return Judgement(Verdict.STALE, f"{stale}; `detfuzz corpus migrate {path}` re-checks it")
    try:
        result = reproduce(report, allow_devices=allow_devices)
    except ReportError as exc:  # _check_devices came first: not expected
        raise CliError(f"{path}: {exc}") from None
    fixed = report.status is ReportStatus.FIXED
    if result.reproduced == fixed:
        verdict = Verdict.REGRESSION if fixed else Verdict.UNEXPECTED
    else:
        verdict = Verdict.OK
    return Judgement(verdict, f"{report.status.value}, {result.verdict}")


def cmd_check(args: argparse.Namespace) -> int:
    files = report_files(args.paths)
    if not files:
        note(f"no reports (*{SUFFIX}) in {', '.join(args.paths)}")
        return EXIT_OK
    # Bad input stops the command before the first (slow) re-run, not in the middle.
    loaded = [read_any_format(path) for path in files]
    for item in loaded:
        _check_devices(item, args.device)
    counts = dict.fromkeys(Verdict, 0)
    for item in loaded:
        judgement = judge(item, tuple(args.device))
        counts[judgement.verdict] += 1
        print(judgement.line(item.path.name), flush=True)  # one line per report as it is done
    print(", ".join(f"{n} {v.value}" for v, n in counts.items() if n) + f" of {len(files)}")
    if args.allow_stale:
        counts[Verdict.STALE] = 0
    return max((v.exit_status for v, n in counts.items() if n), default=EXIT_OK)


# -- mark-fixed / reopen -------------------------------------------------------------------


def set_status(paths: Sequence[str], status: ReportStatus) -> int:
    from fuzzer.report import write_atomic

    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise CliError(f"no such report file: {path}")
    with locked(files):
        # Everything is read (and refused if bad) before the first write.
        reports = [(path, _load(path)) for path in files]
        for path, report in reports:
            if report.status is status:
                print(f"{path}: already {status.value}: {report.signature}")
                continue
            write_atomic(path, report.with_status(status).to_bytes())
            print(f"{path}: {report.status.value} -> {status.value}: {report.signature}")
    return EXIT_OK


def cmd_mark_fixed(args: argparse.Namespace) -> int:
    from fuzzer.report import ReportStatus

    return set_status(args.reports, ReportStatus.FIXED)


def cmd_reopen(args: argparse.Namespace) -> int:
    from fuzzer.report import ReportStatus

    return set_status(args.reports, ReportStatus.OPEN)


# -- migrate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A report read by `migrate`, whatever its file format."""

    path: Path
    report: Report
    file_format: int  # the format the file was written in

    def why_old(self) -> str | None:
        from fuzzer.report import REPORT_FORMAT

        if self.file_format != REPORT_FORMAT:
            return f"its report format is {self.file_format}, this detfuzz's is {REPORT_FORMAT}"
        return self.report.stale_because()


def read_any_format(path: Path) -> Loaded:
    """Read a report of this format or an older one (converted by CONVERTERS)."""
    from fuzzer.report import (
        MAGIC,
        MAX_BYTES,
        REPORT_FORMAT,
        Report,
        ReportError,
        read_report_bytes,
    )
    from fuzzer.wire import WireError, pack_file, unpack_file

    try:
        data = read_report_bytes(path)
        version, body = unpack_file(data, what="report", magic=MAGIC, max_bytes=MAX_BYTES)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    except WireError as exc:
        raise CliError(f"{path}: {exc}") from None
    if version > REPORT_FORMAT:
        raise CliError(
            f"{path}: report format {version} is newer than this detfuzz supports "
            f"({REPORT_FORMAT}): use a newer detfuzz"
        )
    for step in range(version, REPORT_FORMAT):
        convert = CONVERTERS.get(step)
        if convert is None:
            raise CliError(f"{path}: report format {step} has no converter to format {step + 1}")
        try:
            body = convert(body)
        except (WireError, KeyError, TypeError, ValueError) as exc:
            raise CliError(f"{path}: cannot convert from report format {step}: {exc}") from None
    try:
        report = Report.from_bytes(pack_file(magic=MAGIC, version=REPORT_FORMAT, body=body))
    except ReportError as exc:
        raise CliError(f"{path}: {exc}") from None
    return Loaded(path, report, version)


def refreshed(report: Report, result: Reproduction) -> Report:
    """`report` with this detfuzz's versions and, when its signature reproduced, the
    fresh divergence; a fixed report that did not reproduce loses its old digests."""
    from fuzzer.report import versions

    if result.reproduced:
        fresh = next(d for d in result.divergences if d.signature == report.signature)
    else:
        old = report.versions.get("digest")
        fresh = dataclasses.replace(
            report.divergence,
            expected=None,
            observed=None,
            notes=(
                *report.divergence.notes,
                f"migrated while fixed: the digests of digest format {old} were dropped",
            ),
        )
    return dataclasses.replace(report, divergence=fresh, versions=versions())


def migrate_one(loaded: Loaded, allow_devices: Sequence[str]) -> bool:
    """Re-check and rewrite one old report; False if it could not be migrated."""
    from fuzzer.report import ReportError, ReportStatus, reproduce, write_atomic

    why = loaded.why_old()
    report, path = loaded.report, loaded.path
    if why is None:
        print(f"{path}: up to date: {report.signature}")
        return True
    try:
        result = reproduce(report, allow_devices=allow_devices)
    except ReportError as exc:
        raise CliError(f"{path}: {exc}") from None
    if not result.reproduced and report.status is not ReportStatus.FIXED:
        print(f"{path}: not migrated ({why}): {result.verdict}; the file is unchanged")
        return False
    new = refreshed(report, result)
    write_atomic(path, new.to_bytes())
    print(f"{path}: migrated ({why}): {report.status.value}, {result.verdict}")
    return True


def _check_devices(loaded: Loaded, allowed: Sequence[str]) -> None:
    missing = [kind for kind in loaded.report.user_devices() if kind not in allowed]
    if missing:
        raise CliError(
            f"{loaded.path}: needs user device(s) {', '.join(missing)}: pass them "
            "explicitly (--device module:Class) to load their code; nothing was changed"
        )


def cmd_migrate(args: argparse.Namespace) -> int:
    files = report_files(args.paths)
    if not files:
        note(f"no reports (*{SUFFIX}) in {', '.join(args.paths)}")
        return EXIT_OK
    with locked(files):
        loaded = [read_any_format(path) for path in files]  # all readable, or nothing done
        for item in loaded:
            _check_devices(item, args.device)
        results = [migrate_one(item, tuple(args.device)) for item in loaded]
    return EXIT_OK if all(results) else EXIT_FAILED


# -- dispatch ---------------------------------------------------------------------------------

CORPUS_COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "ls": cmd_ls,
    "check": cmd_check,
    "mark-fixed": cmd_mark_fixed,
    "reopen": cmd_reopen,
    "migrate": cmd_migrate,
}


def cmd_corpus(args: argparse.Namespace) -> int:
    return CORPUS_COMMANDS[args.corpus_command](args)


COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {"corpus": cmd_corpus}
__all__ = ["COMMANDS", "CONVERTERS", "add_parsers"]
