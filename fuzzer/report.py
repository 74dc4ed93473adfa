"""Divergence reports: one msgpack file per finding, readable without Hypothesis or the
campaign that found it (format pinned by REPORT_FORMAT).

A report carries the (shrunk) scenario, the divergence with its signature, the expected
and observed digests, the localisation, the feature coverage of the run, how it was found,
its status (open or fixed) and the versions of everything it depends on (the detfuzz
package, the state digest, the replay log and snapshot formats), so a report that a later
format change would misjudge is reported as stale instead.

Loading a report never executes anything from it: no pickle, no eval, and no import of a
user device module it names (`reproduce` builds a machine only with the user devices the
caller allows explicitly). Sizes are capped; a malformed or hostile file raises
ReportError with a clear message.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from fuzzer.divergence import (
    Divergence,
    DivergenceKind,
    Localisation,
    Property,
    Rule,
    Signature,
)
from fuzzer.scenario import Scenario, ScenarioError
from fuzzer.wire import (
    WireError,
    pack_file,
    read_bytes,
    read_enum,
    read_int,
    read_list,
    read_map,
    read_optional,
    read_str,
    read_strs,
    unpack_file,
)
from vm import replaylog, snapshot
from vm.asm import AsmError
from vm.devices.registry import BUILTIN_DEVICES
from vm.digest import DIGEST_FORMAT
from vm.disasm import disassemble

REPORT_FORMAT: Final = 1
MAGIC: Final = b"detfuzz-report"
SUFFIX: Final = ".dfr"
MAX_BYTES: Final = 16 << 20
MAX_TEXT: Final = 1 << 16  # characters of one text field
MAX_LINES: Final = 512  # entries of a list of lines
MAX_COVERAGE: Final = 4096
_I64: Final = 1 << 63


class ReportError(ValueError):
    """A report file that cannot be read, written or used; the message says why."""


class ReportStatus(enum.Enum):
    OPEN = "open"  # the divergence is expected to reproduce
    FIXED = "fixed"  # marked fixed: it is expected not to


@dataclass(frozen=True, slots=True)
class Found:
    """How the finding was made."""

    by: str = "check"  # "campaign", "test", "check"
    campaign_seed: int | None = None
    examples: int = 0  # examples run before it was found
    elapsed_ms: int = 0  # from the start of the campaign
    hits: int = 1  # times its signature was hit
    classification: str = "unclassified"  # "deterministic", "host-flaky"
    shrunk: bool = False


def versions() -> dict[str, object]:
    """Everything a report's verdict depends on."""
    try:
        package = metadata.version("detfuzz")
    except metadata.PackageNotFoundError:
        package = "unknown"
    return {
        "detfuzz": package,
        "report": REPORT_FORMAT,
        "digest": DIGEST_FORMAT,
        "log": replaylog.FORMAT_VERSION,
        "snapshot": snapshot.FORMAT_VERSION,
    }


@dataclass(frozen=True)
class Report:
    scenario: Scenario
    divergence: Divergence
    coverage: Mapping[str, int] = field(default_factory=dict)
    found: Found = field(default_factory=Found)
    status: ReportStatus = ReportStatus.OPEN
    versions: Mapping[str, object] = field(default_factory=versions)

    @property
    def signature(self) -> Signature:
        return self.divergence.signature

    def stale_because(self) -> str | None:
        """Why this report's digests and formats no longer match this detfuzz (None if
        they do): its expected digests cannot be compared, only re-checked."""
        current = versions()
        for key in ("digest", "log", "snapshot"):
            theirs = self.versions.get(key)
            if theirs != current[key]:
                return f"its {key} format is {theirs}, this detfuzz's is {current[key]}"
        return None

    def user_devices(self) -> tuple[str, ...]:
        """The `module:Class` device kinds the scenario needs (never imported here)."""
        return tuple(
            sorted({d.kind for d in self.scenario.config.devices if d.kind not in BUILTIN_DEVICES})
        )

    # -- serialisation -------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        return pack_file(magic=MAGIC, version=REPORT_FORMAT, body=self._to_wire())

    def _to_wire(self) -> dict[str, object]:
        return {
            "scenario": self.scenario.to_bytes(),
            "divergence": _divergence_to_wire(self.divergence),
            "coverage": dict(sorted(self.coverage.items())),
            "found": dataclasses.asdict(self.found),
            "status": self.status.value,
            "versions": dict(self.versions),
        }

    @classmethod
    def from_bytes(cls, data: object) -> Report:
        try:
            version, body = unpack_file(data, what="report", magic=MAGIC, max_bytes=MAX_BYTES)
            if version != REPORT_FORMAT:
                newer = "newer than this detfuzz supports" if version > REPORT_FORMAT else "old"
                raise WireError(
                    f"report format {version} is {newer} ({REPORT_FORMAT}); "
                    "`detfuzz corpus migrate` converts old reports"
                )
            return _report_from_wire(body)
        except (WireError, ScenarioError) as exc:
            raise ReportError(str(exc)) from None

    def with_status(self, status: ReportStatus) -> Report:
        return dataclasses.replace(self, status=status)


# -- files ------------------------------------------------------------------------------------


def report_name(signature: Signature) -> str:
    return signature.slug + SUFFIX


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader (or a crash) sees the old file or the new
    one, never a part: a temporary file in the same directory, synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; a report is for everyone to read
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def save_report(report: Report, directory: Path) -> Path:
    path = directory / report_name(report.signature)
    write_atomic(path, report.to_bytes())
    return path


def read_report_bytes(path: Path) -> bytes:
    """A report file's bytes, refused before reading if it is larger than any report."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ReportError(f"{path}: {size} bytes, at most {MAX_BYTES} allowed")
        return path.read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from None


def load_report(path: Path) -> Report:
    data = read_report_bytes(path)
    try:
        return Report.from_bytes(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


# -- showing ----------------------------------------------------------------------------------


def render(report: Report) -> str:
    """The report for a person: what diverged, where, the diff, the events, the rule, and
    the program around the diverging instruction, disassembled."""
    div = report.divergence
    scenario = report.scenario
    lines = [
        f"detfuzz report {div.signature}  [{report.status.value}]",
        f"property: {div.property.value}: {div.property.summary}",
        f"rule:     {_rule_line(div.rule)}",
        f"found:    by {report.found.by}, {report.found.hits} hit(s), "
        f"{report.found.classification}{', shrunk' if report.found.shrunk else ''}",
    ]
    stale = report.stale_because()
    if stale:
        lines.append(f"STALE:    {stale}")
    lines += ["", div.render(), ""]
    if div.expected is not None and div.observed is not None:
        lines.append(
            f"digests:  expected {div.expected.hex()[:32]}, observed {div.observed.hex()[:32]}"
        )
    config = scenario.config
    devices = ", ".join(f"{d.name}({d.kind})" for d in config.devices)
    lines += [
        f"machine:  {config.ram_size // 1024} KiB RAM, icount shift {config.icount_shift}, "
        f"devices {devices}",
        f"planted:  {', '.join(config.planted_bugs) or 'none'}",
        f"scenario: host seeds {scenario.host_seeds}, budget {scenario.budget}, "
        f"{len(scenario.stimulus)} stimulus event(s), stops {[s.icount for s in scenario.stops]}, "
        f"snapshots {list(scenario.snapshots)}, seeks {list(scenario.seeks)}",
    ]
    if scenario.features:
        lines.append(f"features: {', '.join(scenario.features)}")
    if report.user_devices():
        lines.append(f"needs user devices: {', '.join(report.user_devices())} (repro --device)")
    lines += ["", "program:", *_program_listing(scenario, _divergent_pc(div))]
    if report.coverage:
        reached = sorted(k for k, v in report.coverage.items() if v)
        lines += ["", f"coverage: {len(reached)} feature(s) reached: {', '.join(reached[:40])}"]
    return "\n".join(lines)


def _rule_line(rule: Rule) -> str:
    number = f"rule {rule.number}: " if rule.number is not None else ""
    return f"{number}{rule.text} ({rule.value})"


def _divergent_pc(div: Divergence) -> int | None:
    return div.localisation.pc if div.localisation is not None else None


def _program_listing(scenario: Scenario, pc: int | None, *, context: int = 12) -> list[str]:
    """The assembled program, disassembled: around `pc` if known, else its start."""
    try:
        program = scenario.assembled()
    except (AsmError, ValueError) as exc:
        return [f"  (the program does not assemble: {exc})"]
    image, base = program.image, program.base
    count = len(image) // 4
    at = (pc - base) // 4 if pc is not None and base <= pc < base + len(image) else 0
    first, last = max(0, at - context), min(count, at + context + 1)
    out = [f"  {count} instructions/words at {base:#010x}; showing {first}..{last - 1}"]
    for index in range(first, last):
        word = int.from_bytes(image[index * 4 : index * 4 + 4], "little")
        address = base + index * 4
        mark = "=>" if pc is not None and address == pc else "  "
        out.append(f"  {mark} {address:#010x}: {word:08x}  {disassemble(word, pc=address)}")
    return out


# -- wire forms of the divergence -------------------------------------------------------------

_DIVERGENCE_KEYS: Final = (
    "property",
    "kind",
    "component",
    "rule",
    "icount",
    "detail",
    "expected",
    "observed",
    "error",
    "localisation",
    "notes",
)
_ERROR_KEYS: Final = ("kind", "message", "icount", "event_index", "expected", "found", "recent")
_LOCALISATION_KEYS: Final = tuple(f.name for f in dataclasses.fields(Localisation))
_FOUND_KEYS: Final = tuple(f.name for f in dataclasses.fields(Found))
_REPORT_KEYS: Final = ("scenario", "divergence", "coverage", "found", "status", "versions")


def _divergence_to_wire(div: Divergence) -> dict[str, object]:
    loc = div.localisation
    return {
        "property": div.property.value,
        "kind": div.kind.value,
        "component": div.component,
        "rule": div.rule.value,
        "icount": div.icount,
        "detail": div.detail,
        "expected": div.expected,
        "observed": div.observed,
        "error": div.error,
        "localisation": None if loc is None else _plain(dataclasses.asdict(loc)),
        "notes": list(div.notes),
    }


def _plain(value: Any) -> Any:
    """Tuples as lists (what msgpack gives back), so a round trip compares equal."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _report_from_wire(body: object) -> Report:
    wire = read_map(body, "report", _REPORT_KEYS)
    scenario = Scenario.from_bytes(read_bytes(wire["scenario"], "scenario", MAX_BYTES))
    coverage_wire = wire["coverage"]
    if not isinstance(coverage_wire, dict) or len(coverage_wire) > MAX_COVERAGE:
        raise WireError(f"coverage must be a map of at most {MAX_COVERAGE} counters")
    coverage = {
        read_str(k, "coverage key", 256): read_int(v, f"coverage[{k!r:.40}]", 0, _I64)
        for k, v in coverage_wire.items()
    }
    found = _found_from_wire(wire["found"])
    versions_wire = wire["versions"]
    if not isinstance(versions_wire, dict) or len(versions_wire) > 32:
        raise WireError("versions must be a small map")
    for key, value in versions_wire.items():
        read_str(key, "versions key", 64)
        if not isinstance(value, int | str) or isinstance(value, bool):
            raise WireError(f"versions[{key!r:.40}] must be an int or a string")
    return Report(
        scenario=scenario,
        divergence=_divergence_from_wire(wire["divergence"]),
        coverage=coverage,
        found=found,
        status=read_enum(wire["status"], "status", ReportStatus),
        versions=dict(versions_wire),
    )


def _found_from_wire(value: object) -> Found:
    wire = read_map(value, "found", _FOUND_KEYS)
    shrunk = wire["shrunk"]
    if type(shrunk) is not bool:
        raise WireError("found.shrunk must be a bool")
    return Found(
        by=read_str(wire["by"], "found.by", 64),
        campaign_seed=read_optional(
            wire["campaign_seed"], lambda v: read_int(v, "found.campaign_seed", 0, 2**64 - 1)
        ),
        examples=read_int(wire["examples"], "found.examples", 0, _I64),
        elapsed_ms=read_int(wire["elapsed_ms"], "found.elapsed_ms", 0, _I64),
        hits=read_int(wire["hits"], "found.hits", 0, _I64),
        classification=read_str(wire["classification"], "found.classification", 64),
        shrunk=shrunk,
    )


def _divergence_from_wire(value: object) -> Divergence:
    wire = read_map(value, "divergence", _DIVERGENCE_KEYS)
    digest = lambda v, w: read_optional(v, lambda x: read_bytes(x, w, 64))  # noqa: E731
    return Divergence(
        property=read_enum(wire["property"], "divergence.property", Property),
        kind=read_enum(wire["kind"], "divergence.kind", DivergenceKind),
        component=read_str(wire["component"], "divergence.component", 256),
        rule=read_enum(wire["rule"], "divergence.rule", Rule),
        icount=read_optional(wire["icount"], lambda v: read_int(v, "divergence.icount", 0, _I64)),
        detail=read_str(wire["detail"], "divergence.detail", MAX_TEXT),
        expected=digest(wire["expected"], "divergence.expected"),
        observed=digest(wire["observed"], "divergence.observed"),
        error=read_optional(wire["error"], _error_from_wire),
        localisation=read_optional(wire["localisation"], _localisation_from_wire),
        notes=read_strs(wire["notes"], "divergence.notes", count=MAX_LINES, chars=MAX_TEXT),
    )


def _error_from_wire(value: object) -> dict[str, object]:
    wire = read_map(value, "divergence.error", _ERROR_KEYS)
    recent = []
    for i, item in enumerate(read_list(wire["recent"], "error.recent", 64)):
        entry = read_list(item, f"error.recent[{i}]", 3)
        if len(entry) != 3:
            raise WireError(f"error.recent[{i}] must be [index, icount, event]")
        recent.append(
            [
                read_int(entry[0], f"error.recent[{i}].index", 0, _I64),
                read_int(entry[1], f"error.recent[{i}].icount", 0, _I64),
                read_str(entry[2], f"error.recent[{i}].event", MAX_TEXT),
            ]
        )
    return {
        "kind": read_str(wire["kind"], "error.kind", 64),
        "message": read_str(wire["message"], "error.message", MAX_TEXT),
        "icount": read_int(wire["icount"], "error.icount", 0, _I64),
        "event_index": read_int(wire["event_index"], "error.event_index", 0, _I64),
        "expected": read_optional(
            wire["expected"], lambda v: read_str(v, "error.expected", MAX_TEXT)
        ),
        "found": read_str(wire["found"], "error.found", MAX_TEXT),
        "recent": recent,
    }


def _localisation_from_wire(value: object) -> Localisation:
    wire = read_map(value, "divergence.localisation", _LOCALISATION_KEYS)
    where = "localisation"
    in_main_loop = wire["in_main_loop"]
    if type(in_main_loop) is not bool:
        raise WireError(f"{where}.in_main_loop must be a bool")

    def lines(key: str) -> tuple[str, ...]:
        return read_strs(wire[key], f"{where}.{key}", count=MAX_LINES, chars=MAX_TEXT)

    return Localisation(
        icount=read_int(wire["icount"], f"{where}.icount", 0, _I64),
        last_equal=read_int(wire["last_equal"], f"{where}.last_equal", 0, _I64),
        in_main_loop=in_main_loop,
        pc=read_optional(wire["pc"], lambda v: read_int(v, f"{where}.pc", 0, 2**32 - 1)),
        components=lines("components"),
        differences=lines("differences"),
        activity=lines("activity"),
        events=lines("events"),
        runs=read_int(wire["runs"], f"{where}.runs", 0, _I64),
    )


# -- reproducing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reproduction:
    reproduced: bool  # the same signature came back
    divergences: tuple[Divergence, ...]  # everything the re-check found
    verdict: str  # one line


def reproduce(report: Report, *, allow_devices: Sequence[str] = ()) -> Reproduction:
    """Re-run the report's property on its scenario. A user device module is used only if
    the caller lists its `module:Class` in `allow_devices`; otherwise ReportError."""
    from fuzzer.properties import check  # the properties import vm's whole machine

    missing = [kind for kind in report.user_devices() if kind not in allow_devices]
    if missing:
        raise ReportError(
            f"the report needs user device(s) {', '.join(missing)}: pass them explicitly "
            "(--device module:Class) to load their code"
        )
    result = check(report.scenario, properties=(report.divergence.property,))
    wanted = report.signature
    again = any(d.signature == wanted for d in result.divergences)
    if again:
        verdict = f"reproduced: {wanted}"
    elif result.divergences:
        others = ", ".join(str(d.signature) for d in result.divergences)
        verdict = f"not reproduced: {wanted} is gone, but the check found {others}"
    else:
        verdict = f"not reproduced: {wanted} is gone, the scenario checks clean"
    return Reproduction(again, result.divergences, verdict)
