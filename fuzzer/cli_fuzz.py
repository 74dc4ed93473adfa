"""`detfuzz fuzz`: a campaign (fuzzer.campaign) from the command line, with its progress
display (tqdm on a terminal, a plain line per interval otherwise, or a JSON-lines event
stream), its summary and its exit status.

Only the standard library is imported at module level: the campaign (Hypothesis, the
machine) is imported when the command runs, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from fuzzer.cli_common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliError,
    parse_count,
    parse_int,
)

if TYPE_CHECKING:
    from fuzzer.campaign import Event, Progress, Summary
    from vm.config import DeviceSpec

EXIT_TERMINATED = 143  # 128 + SIGTERM
SIGTERM = 15
DEFAULT_CORPUS = "corpora/divergences"
DEFAULT_SEEDS = "corpora/seeds"  # fuzzer.seeds.DEFAULT_DIR (not imported: start-up time)
DEFAULT_INTERVAL_S = 10.0
TTY_REFRESH_S = 0.5
# fuzzer.divergence.Property's values, spelled out (a test keeps them equal): importing
# it here would slow every detfuzz command's start.
PROPERTY_NAMES = ("record-replay", "record-none", "stop-cont", "snapshot", "seek", "determinism")

DESCRIPTION = """\
Run a fuzzing campaign on the built-in machine. Worker processes draw scenarios (guest
programs, host input, stops, snapshots and seeks on every built-in device, plus the
--device user devices and the --planted bugs) and check the determinism properties on
each. A divergence whose signature (property/component/rule) the corpus has no report for
is written to the corpus at once, then shrunk, re-checked --reruns times to classify it
deterministic or host-flaky, and written again; a signature the corpus knows only bumps
its report's hit counter. Reports are written atomically, so a campaign killed at any
moment loses no report, and running again on the same corpus carries on.

A campaign checks, in this order: the seed scenarios (--seeds: hand-picked cases that
reach every device feature), the examples cached in the corpus (CORPUS/.hypothesis/
examples: what earlier campaigns with the same configuration saw fail or reach the most
features, replayed through Hypothesis's example database), then new examples; all count
as examples. The cache only speeds the next campaign up; the reports are what it knows.
Reproducibility: a campaign is reproducible from its --seed when its cache is empty (a new
corpus) or off (--no-cache); with a cache, the cached examples it replays first are what
earlier campaigns left, so its outcome can differ from a run on a fresh corpus.

The campaign ends at its budget (--time and/or --examples; without either, at Ctrl-C) and
prints a summary: signatures with hits and report paths, examples run, throughput (per
property: an estimate from the time of the runs each one needs) and feature coverage,
reached and never reached.

Exit status: 0 no new divergence; 1 new divergence(s), or a report marked fixed hit
again; 2 bad usage or input (one line on stderr); 130 after Ctrl-C (143 after SIGTERM),
once the summary is printed.
"""

EPILOG = """\
examples:
  detfuzz fuzz --time 60s                              # all properties, correct machine
  detfuzz fuzz --time 2m --planted rtc-unlogged-clock  # must find it: exit 1
  detfuzz fuzz --time 8h --json > campaign.jsonl       # a nightly campaign for CI logs
  detfuzz fuzz --device countdown:Countdown@0x10004000,irq=5 --time 10m
"""


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    fuzz = commands.add_parser(
        "fuzz",
        help="run a fuzzing campaign",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    budget = fuzz.add_argument_group("budget")
    budget.add_argument(
        "--time",
        type=parse_duration,
        metavar="DURATION",
        help="stop after this much wall time: 90s, 2m30s, 8h, 1.5h (a bare number is seconds)",
    )
    budget.add_argument(
        "--examples",
        type=_positive,
        metavar="N",
        help="stop after N examples (with --time too: whichever comes first)",
    )
    search = fuzz.add_argument_group("what to fuzz")
    search.add_argument(
        "--property",
        action="append",
        choices=(*PROPERTY_NAMES, "all"),
        metavar="PROPERTY",
        help=f"check this property; repeatable (default all: {', '.join(PROPERTY_NAMES)})",
    )
    search.add_argument(
        "--planted",
        action="append",
        default=[],
        metavar="BUG",
        help="switch on a planted bug (vm.planted.PLANTED_BUGS); repeatable",
    )
    search.add_argument(
        "--device",
        action="append",
        default=[],
        type=parse_device,
        metavar="SPEC",
        help="add a user device, MODULE:CLASS@BASE[,irq=N][,name=NAME][,OPTION=VALUE...] "
        "(the module is imported; the current directory is searched too); repeatable",
    )
    search.add_argument(
        "--device-file",
        metavar="FILE",
        help="add the user devices listed in FILE, one SPEC per line (# comments)",
    )
    run = fuzz.add_argument_group("campaign")
    run.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes (default: the cores this process may use)",
    )
    run.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="seed of a reproducible campaign (default: a random one, shown at the start)",
    )
    run.add_argument(
        "--corpus",
        default=DEFAULT_CORPUS,
        metavar="DIR",
        help=f"the reports directory: known signatures, new reports (default {DEFAULT_CORPUS})",
    )
    run.add_argument(
        "--seeds",
        metavar="DIR",
        help=f"check the seed scenarios (*.dfs) in DIR first (default {DEFAULT_SEEDS}, when "
        "it exists)",
    )
    run.add_argument(
        "--no-seeds",
        action="store_true",
        help="check no seed scenarios",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="neither replay nor save examples in CORPUS/.hypothesis/examples (a seeded "
        "campaign is then reproducible whatever earlier campaigns left)",
    )
    run.add_argument(
        "--example-timeout",
        type=parse_duration,
        default=60.0,
        metavar="DURATION",
        help="wall-clock limit of one example's check; an overrun is a finding (default 60s)",
    )
    run.add_argument(
        "--max-shrinks",
        type=parse_count,
        default=500,
        metavar="N",
        help="checks one shrink may take (default 500)",
    )
    run.add_argument(
        "--reruns",
        type=_positive,
        default=3,
        metavar="N",
        help="re-checks that classify a shrunk finding (default 3)",
    )
    run.add_argument(
        "--chunk",
        type=_positive,
        default=100,
        metavar="N",
        help="examples per worker round (default 100)",
    )
    output = fuzz.add_argument_group("output")
    output.add_argument(
        "--json",
        action="store_true",
        help="print JSON lines on stdout: start, progress, finding, notice and summary events",
    )
    output.add_argument(
        "--interval",
        type=parse_duration,
        default=DEFAULT_INTERVAL_S,
        metavar="DURATION",
        help="progress every DURATION when stdout is not a terminal or with --json (default 10s)",
    )


# -- option types ------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds from 90s, 2m30s, 8h, 1.5h or a bare number of seconds."""
    clean = text.strip().lower()
    try:
        seconds = float(clean)
    except ValueError:
        parts = _DURATION_PART.findall(clean)
        if not parts or "".join(n + u for n, u in parts) != clean:
            raise argparse.ArgumentTypeError(
                f"not a duration: {text!r} (e.g. 90s, 2m30s, 8h)"
            ) from None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not 0 < seconds < 10**9:
        raise argparse.ArgumentTypeError(f"a duration must be positive: {text!r}")
    return seconds


def _positive(text: str) -> int:
    value = parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seed(text: str) -> int:
    value = parse_int(text)
    if not 0 <= value < 1 << 64:
        raise argparse.ArgumentTypeError(f"a seed must be in 0..2**64-1: {text!r}")
    return value


class DeviceArg(NamedTuple):
    """A --device as given; its instance name is settled once all are known."""

    kind: str
    base: int
    irq: int | None
    name: str | None
    options: tuple[tuple[str, int | str | bool], ...]


_KIND = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_KEY = re.compile(r"[A-Za-z_][\w-]*")


def parse_device(text: str) -> DeviceArg:
    """MODULE:CLASS@BASE[,irq=N][,name=NAME][,OPTION=VALUE...]"""
    kind, at, rest = text.strip().partition("@")
    if not at or not _KIND.fullmatch(kind):
        raise argparse.ArgumentTypeError(
            f"not a device: {text!r} (MODULE:CLASS@BASE[,irq=N][,name=NAME][,OPTION=VALUE])"
        )
    base_text, *fields = rest.split(",")
    try:
        base = int(base_text.replace("_", ""), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"device {kind}: not an address: {base_text!r}") from None
    irq: int | None = None
    name: str | None = None
    options: dict[str, int | str | bool] = {}
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not _KEY.fullmatch(key) or not value:
            raise argparse.ArgumentTypeError(f"device {kind}: not KEY=VALUE: {item!r}")
        if key in options or (key == "irq" and irq is not None) or (key == "name" and name):
            raise argparse.ArgumentTypeError(f"device {kind}: {key} given twice")
        if key == "irq":
            try:
                irq = int(value, 0)
            except ValueError:
                raise argparse.ArgumentTypeError(
                    f"device {kind}: irq must be an integer: {value!r}"
                ) from None
        elif key == "name":
            name = value
        else:
            options[key] = _option_value(value)
    return DeviceArg(kind, base, irq, name, tuple(sorted(options.items())))


def _option_value(text: str) -> int | str | bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        return text


def device_specs(args: list[DeviceArg]) -> tuple[DeviceSpec, ...]:
    """DeviceSpecs for the --device arguments; unnamed ones are named after their class
    (`countdown0`, `countdown1`, ...)."""
    from vm.config import ConfigError, DeviceSpec

    specs = []
    counts: dict[str, int] = {}
    for arg in args:
        name = arg.name
        if name is None:
            stem = arg.kind.rpartition(":")[2].lower()
            name = f"{stem}{counts.get(stem, 0)}"
            counts[stem] = counts.get(stem, 0) + 1
        try:
            specs.append(DeviceSpec(arg.kind, name, arg.base, arg.irq, arg.options))
        except ConfigError as exc:
            raise CliError(f"bad --device: {exc}") from None
    return tuple(specs)


def read_device_file(path: str) -> list[DeviceArg]:
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    devices = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                devices.append(parse_device(text))
            except argparse.ArgumentTypeError as exc:
                raise CliError(f"{path}:{number}: {exc}") from None
    return devices


# -- the command -------------------------------------------------------------------------------


def _options(args: argparse.Namespace) -> Any:
    from fuzzer.campaign import CampaignOptions, default_workers
    from fuzzer.divergence import Property
    from vm.planted import PLANTED_BUGS

    unknown = [name for name in args.planted if name not in PLANTED_BUGS]
    if unknown:
        raise CliError(
            f"unknown planted bug {unknown[0]!r} (known: {', '.join(sorted(PLANTED_BUGS))})"
        )
    chosen = args.property or ["all"]
    properties = tuple(Property) if "all" in chosen else tuple(dict.fromkeys(map(Property, chosen)))
    devices = list(args.device)
    if args.device_file is not None:
        devices += read_device_file(args.device_file)
    if devices and os.getcwd() not in sys.path:
        # `--device mydevice:MyDevice` finds mydevice.py where the user stands, as
        # `python -m` would; the workers inherit the path.
        sys.path.append(os.getcwd())
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "big")
    return CampaignOptions(
        seeds=_seeds_path(args),
        cache=not args.no_cache,
        corpus=_corpus_path(args.corpus),
        time_s=args.time,
        examples=args.examples,
        workers=args.workers or default_workers(),
        seed=seed,
        properties=properties,
        planted_bugs=tuple(sorted(set(args.planted))),
        user_devices=device_specs(devices),
        chunk=args.chunk,
        max_shrinks=args.max_shrinks,
        example_timeout_s=args.example_timeout,
        reruns=args.reruns,
        progress_every_s=args.interval if args.json or not _is_tty() else TTY_REFRESH_S,
    )


def _corpus_path(text: str) -> Any:
    from pathlib import Path

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise CliError(f"--corpus {text}: not a directory")
    return path


def _seeds_path(args: argparse.Namespace) -> Any:
    from pathlib import Path

    if args.no_seeds:
        if args.seeds is not None:
            raise CliError("--seeds and --no-seeds contradict each other")
        return None
    if args.seeds is None:
        default = Path(DEFAULT_SEEDS)
        return default if default.is_dir() else None
    path = Path(args.seeds)
    if not path.is_dir():
        raise CliError(f"--seeds {args.seeds}: not a directory")
    return path


def _is_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def cmd_fuzz(args: argparse.Namespace) -> int:
    from fuzzer.campaign import Campaign, CampaignError

    display = _display(args)
    try:
        campaign = Campaign(_options(args), on_event=display.event)
    except CampaignError as exc:
        raise CliError(str(exc)) from None
    with _stop_on_signals(campaign) as received:
        try:
            summary = campaign.run()
        except CampaignError as exc:
            display.close()
            raise CliError(str(exc)) from None
    display.close()
    display.summary(summary)
    if received:
        return EXIT_TERMINATED if received[0] == SIGTERM else EXIT_INTERRUPTED
    return EXIT_FAILED if summary.new_signatures or summary.regressions else EXIT_OK


@contextmanager
def _stop_on_signals(campaign: Any) -> Iterator[list[int]]:
    """Ctrl-C or SIGTERM ends the campaign at its next tick, with the summary; a second
    Ctrl-C interrupts at once."""
    import signal

    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)
        campaign.request_stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- displays ----------------------------------------------------------------------------------


class _Display:
    """Where the campaign's events go; the summary at the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, event: Event) -> None:
        from fuzzer.campaign import Finding, Notice, Progress, Started

        if isinstance(event, Started):
            self.line(_started_text(event))
        elif isinstance(event, Progress):
            self.progress(event)
        elif isinstance(event, Finding):
            self.line(_finding_text(event))
        elif isinstance(event, Notice):
            self.notice(event.message)

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        print(f"detfuzz: {text}", file=sys.stderr, flush=True)

    def progress(self, progress: Progress) -> None:
        self.line(f"[{_clock(progress.elapsed_s)}] {_progress_text(progress)}")

    def close(self) -> None:
        pass

    def summary(self, summary: Summary) -> None:
        self.line(render_summary(summary))


class _JsonDisplay(_Display):
    def event(self, event: Event) -> None:
        import json

        from fuzzer.campaign import event_json

        self.line(json.dumps(event_json(event), sort_keys=True))

    def summary(self, summary: Summary) -> None:
        import json

        from fuzzer.campaign import event_json

        self.line(json.dumps(event_json(summary), sort_keys=True))


class _BarDisplay(_Display):
    """tqdm on a terminal: the bar is the budget spent (time or examples, whichever is
    further); the counters follow it."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self.bar: Any = None

    def _bar(self, *, bounded: bool) -> Any:
        if self.bar is None:
            from tqdm import tqdm

            # The counters are the description: tqdm would put ", " before a postfix.
            fmt = "fuzz {percentage:3.0f}%|{bar}| {desc}" if bounded else "fuzz: {desc}"
            self.bar = tqdm(
                total=1000 if bounded else None,
                bar_format=fmt,
                file=self.out,
                dynamic_ncols=True,
                leave=True,
            )
        return self.bar

    def line(self, text: str) -> None:
        if self.bar is None:
            super().line(text)
        else:
            self.bar.write(text, file=self.out)

    def notice(self, text: str) -> None:
        self.line(f"detfuzz: {text}")

    def progress(self, progress: Progress) -> None:
        bar = self._bar(bounded=progress.fraction is not None)
        if progress.fraction is not None:
            bar.n = int(progress.fraction * 1000)
        bar.set_description_str(_progress_text(progress), refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _display(args: argparse.Namespace) -> _Display:
    if args.json:
        return _JsonDisplay(sys.stdout)
    if _is_tty():
        return _BarDisplay(sys.stdout)
    return _Display(sys.stdout)


# -- text --------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _started_text(event: Any) -> str:
    budget = []
    if event.time_s is not None:
        budget.append(f"{_clock(event.time_s)} of wall time")
    if event.examples is not None:
        budget.append(_plural(event.examples, "example"))
    every = len(event.properties) == len(PROPERTY_NAMES)
    properties = "all properties" if every else ", ".join(event.properties)
    extra = ""
    if event.planted_bugs:
        extra += f", planted {', '.join(event.planted_bugs)}"
    if event.user_devices:
        extra += f", devices {', '.join(event.user_devices)}"
    first = [_plural(event.seeds, "seed scenario")] if event.seeds else []
    if event.cached:
        first.append(f"the example cache ({_plural(event.cached, 'example')} in it)")
    return (
        f"detfuzz fuzz: seed {event.seed}, {_plural(event.workers, 'worker')}, {properties}"
        f"{extra}; budget {' or '.join(budget) or 'none (Ctrl-C ends it)'}; corpus "
        f"{event.corpus} ({_plural(event.known_signatures, 'known signature')})"
        + (f"; checks first: {', '.join(first)}" if first else "")
        + ("; example cache off" if event.cache is None else "")
    )


def _progress_text(progress: Progress) -> str:
    left = "" if progress.remaining_s is None else f", {_clock(progress.remaining_s)} left"
    return (
        f"{progress.examples} examples ({progress.examples_per_s:.1f}/s), "
        f"{_plural(progress.divergences, 'divergence')}, "
        f"{_plural(progress.signatures, 'signature')} ({progress.new_signatures} new), "
        f"{_clock(progress.elapsed_s)} elapsed{left}"
    )


def _finding_text(event: Any) -> str:
    if event.stage == "new":
        return (
            f"new divergence {event.signature} after {event.examples} examples, "
            f"{event.elapsed_s:.1f} s: {event.path}{' (shrinking)' if event.shrinking else ''}"
        )
    return f"shrunk {event.signature} ({event.classification}): {event.path}"


_STOPPED = {
    "time": "time budget reached",
    "examples": "example budget reached",
    "interrupted": "interrupted",
    "workers-failing": "workers kept dying",
}


def render_summary(summary: Summary) -> str:
    """The summary for a person."""
    import textwrap

    lines = [
        f"detfuzz fuzz: stopped after {summary.elapsed_s:.1f} s "
        f"({_STOPPED.get(summary.stopped, summary.stopped)}); seed {summary.seed}",
        f"  examples: {summary.examples} ({summary.examples_per_s:.2f}/s with "
        f"{_plural(summary.workers, 'worker')}, {_plural(summary.worker_restarts, 'restart')}; "
        f"{summary.seed_examples} seeds, {summary.cached_examples} from the cache), "
        f"{summary.shrink_checks} shrink checks",
        f"  divergences: {summary.divergences} in {_plural(len(summary.signatures), 'signature')}"
        f", {len(summary.new_signatures)} new"
        + (f", {len(summary.regressions)} marked fixed" if summary.regressions else ""),
    ]
    for sig in summary.signatures:
        tag = "NEW  " if sig.new else "FIXED" if sig.regression else "known"
        state = f"{sig.classification}, {'shrunk' if sig.shrunk else 'not shrunk'}"
        first = ""
        if sig.first_s is not None:
            first = f", first after {sig.first_examples} examples ({sig.first_s:.1f} s)"
        lines.append(
            f"    {tag} {sig.signature}: {_plural(sig.hits, 'hit')} ({sig.total_hits} in all)"
            f", {state}{first}"
        )
        lines.append(f"          {sig.path}")
    lines.append(
        "  per property (ms per example of the runs only it needs; examples/s per worker "
        "checking it alone, estimated):"
    )
    for prop in summary.properties:
        alone = "-" if prop.alone_per_s is None else f"~{prop.alone_per_s:.1f}/s"
        lines.append(
            f"    {prop.property:<14} {prop.own_ms:8.1f} ms  {alone:>9}  "
            f"{_plural(prop.divergent_examples, 'divergent example')}"
        )
    shared = ", ".join(f"{k} {v:.1f} ms" for k, v in summary.shared_ms.items())
    lines.append(f"  shared per example: {shared}")
    reached_known = summary.coverage_known - len(summary.coverage_never)
    lines.append(
        f"  coverage: {_plural(len(summary.coverage_reached), 'feature')} reached "
        f"({reached_known} of {summary.coverage_known} known)"
    )
    if summary.coverage_never:
        never = ", ".join(summary.coverage_never)
        lines += textwrap.wrap(
            f"never reached ({len(summary.coverage_never)}): {never}",
            width=96,
            initial_indent="    ",
            subsequent_indent="      ",
        )
    return "\n".join(lines)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"fuzz": cmd_fuzz}
__all__ = ["COMMANDS", "add_parsers", "parse_device", "parse_duration", "render_summary"]
