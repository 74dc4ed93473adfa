"""A fuzzing campaign: worker processes search, this process keeps the books.

    options = CampaignOptions(time_s=90, workers=2, planted_bugs=("rtc-unlogged-clock",))
    summary = Campaign(options, on_event=print).run()
    summary.new_signatures  # signatures first reported by this campaign

Workers (`fuzzer.campaign_worker`, started with the 'spawn' method: a fresh interpreter
each, sharing nothing) run rounds of a Hypothesis search that this process assigns: a
number of examples and a seed derived from (campaign seed, worker, round), so a campaign is
reproducible from its seed. Rounds are short (`chunk` examples) so that an example budget
is met exactly and the list of known signatures reaches workers often.

This process alone writes the corpus (`fuzzer.campaign_corpus`): a signature is written
the moment a worker first sees it (unshrunk, so a kill loses nothing), again when the
worker has shrunk and classified it, and a known signature only bumps its report's hit
counter. Dedup is by signature: two workers that meet one new signature at once give one
report; the second is told to drop its shrink.

Robustness: a check that overruns its wall-clock limit is a finding (`check`); a worker
that dies (a signal, MemoryError out of the interpreter) or goes silent for twice that limit
is killed, restarted, and the scenario it was checking recorded as a finding of component
`worker`. `request_stop` (from a signal handler) ends the campaign at the next tick with
the summary, as the budget does.

What a campaign checks first: the seed scenarios (`seeds`, `fuzzer.seeds`: hand-picked
cases that reach every device feature), then each worker's share of the example cache
(`<corpus>/.hypothesis/examples`, `fuzzer.campaign_corpus.ExampleCache`: what earlier
campaigns on this corpus found failing or reaching the most features), then new examples.
All are counted as examples and their divergences reported alike.

Reproducibility: what the generating rounds draw depends on (seed, worker, round) alone,
never on the cache (they write to it, never read it), and what workers write during a
campaign is never read back by it. So a seeded campaign with an empty cache (a new corpus)
or none (`cache=False`) is reproducible from its seed; with a cache, the replayed examples
come first and their outcome depends on what earlier campaigns left. The reports are the
memory that counts: the cache only makes the next run start from interesting cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from fuzzer.campaign_corpus import (
    CACHE_DIR,
    HYPOTHESIS_HOME,
    WORKER,
    Corpus,
    CorpusError,
    Entry,
    EntryState,
    ExampleCache,
    cache_key,
    reuse_keys,
)
from fuzzer.campaign_worker import (
    ORIGIN_CACHE,
    ORIGIN_SEED,
    RUN_KINDS,
    WorkerOptions,
    receive,
    send,
    worker_main,
)
from fuzzer.coverage import known_features
from fuzzer.divergence import Divergence, DivergenceKind, Property, Rule
from fuzzer.report import Found, Report, ReportError
from fuzzer.scenario import Scenario, ScenarioError
from vm.config import ConfigError, DeviceSpec, MachineConfig, canonical_bytes

DEFAULT_CORPUS: Final = Path("corpora/divergences")
ALL_PROPERTIES: Final = tuple(Property)
# Properties that compare against the straight replay (they share its run).
_NEEDS_REPLAY: Final = frozenset(
    {Property.RECORD_REPLAY, Property.STOP_CONT, Property.SNAPSHOT, Property.SEEK}
)
_TICK_S: Final = 0.2  # how often the loop looks at budgets, stop requests and the watchdog
_STOP_GRACE_S: Final = 1.0  # what a worker gets to finish its check when the campaign ends
_STARTUP_LIMIT_S: Final = 120.0
_MAX_STARTUP_FAILURES: Final = 3
_MAX_DEATHS_WITHOUT_PROGRESS: Final = 5
_MAX_FAILED_ROUNDS: Final = 3


class CampaignError(Exception):
    """The campaign cannot run as asked (bad options, unusable corpus, workers that cannot
    start); the message is one line."""


@dataclass(frozen=True)
class CampaignOptions:
    corpus: Path = DEFAULT_CORPUS
    time_s: float | None = None  # wall-time budget (None: no limit)
    examples: int | None = None  # example budget (None: no limit); neither: until stopped
    workers: int = 1
    seed: int = 0
    properties: tuple[Property, ...] = ALL_PROPERTIES
    planted_bugs: tuple[str, ...] = ()
    user_devices: tuple[DeviceSpec, ...] = ()
    chunk: int = 100  # examples per round
    max_shrinks: int = 500  # checks one shrink may take
    example_timeout_s: float = 60.0  # wall-clock limit of one check
    reruns: int = 3  # checks of a shrunk finding that classify it
    progress_every_s: float = 1.0
    flush_every_s: float = 5.0  # hit counters written at most this often
    # A worker silent for twice the example timeout plus this is stuck beyond what the
    # in-process limit can interrupt (C code, a blocked signal): it is killed.
    silence_grace_s: float = 10.0
    seeds: Path | None = None  # a directory of seed scenarios (*.dfs) checked first
    cache: bool = True  # replay and feed the corpus's example cache

    def __post_init__(self) -> None:
        if self.time_s is not None and not self.time_s > 0:
            raise CampaignError(f"the time budget must be positive: {self.time_s}")
        if self.examples is not None and self.examples < 1:
            raise CampaignError(f"the example budget must be at least 1: {self.examples}")
        if self.workers < 1:
            raise CampaignError(f"at least one worker is needed: {self.workers}")
        if not 0 <= self.seed < 1 << 64:
            raise CampaignError(f"the seed must be in 0..2**64-1: {self.seed}")
        if not self.properties:
            raise CampaignError("no property to check")
        for name, value in (("chunk", self.chunk), ("reruns", self.reruns)):
            if value < 1:
                raise CampaignError(f"{name} must be at least 1: {value}")
        if self.max_shrinks < 0:
            raise CampaignError(f"max_shrinks must be >= 0: {self.max_shrinks}")
        if not self.example_timeout_s > 0:
            raise CampaignError(f"the example timeout must be positive: {self.example_timeout_s}")


def default_workers() -> int:
    """The cores this process may run on."""
    count = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if count is not None:
        return count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity on this platform
        return os.cpu_count() or 1


def derive_seed(seed: int, worker: int, round_: int) -> int:
    """The seed of worker `worker`'s round `round_` in a campaign seeded `seed`."""
    text = f"detfuzz-campaign:{seed}:{worker}:{round_}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def machine_config(options: CampaignOptions) -> MachineConfig:
    """The machine campaigns draw from (RAM and icount shift vary per scenario; the devices
    and their names do not): every built-in device, the user devices, the planted bugs."""
    from fuzzer.strategies import FULL_DEVICES

    return MachineConfig(
        devices=(*FULL_DEVICES, *options.user_devices),
        planted_bugs=tuple(sorted(set(options.planted_bugs))),
    )


def check_setup(options: CampaignOptions) -> MachineConfig:
    """Build the campaign's machine once here, so a bad device, a bad planted bug or an
    overlap is one clear error before any worker starts (this imports user devices)."""
    from vm.machine import Machine

    try:
        config = machine_config(options)
        Machine(config)
    except (ConfigError, ValueError) as exc:
        raise CampaignError(f"bad machine: {exc}") from None
    except Exception as exc:  # a user device's constructor may raise anything
        raise CampaignError(
            f"bad machine: building it raised {type(exc).__name__}: {exc}"
        ) from None
    return config


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    seed: int
    workers: int
    properties: tuple[str, ...]
    planted_bugs: tuple[str, ...]
    user_devices: tuple[str, ...]
    corpus: str
    time_s: float | None
    examples: int | None
    known_signatures: int
    seeds: int  # seed scenarios to check first
    cache: str | None  # the example cache's directory (None: off)
    cached: int  # examples in it for this configuration (0 when off)


@dataclass(frozen=True)
class Progress:
    elapsed_s: float
    examples: int
    examples_per_s: float
    shrink_checks: int
    divergences: int  # hits of any signature
    signatures: int  # distinct signatures hit
    new_signatures: int  # first reported by this campaign
    remaining_s: float | None  # None: no budget, or not estimable yet
    fraction: float | None  # of the budget spent


@dataclass(frozen=True)
class Finding:
    """A report written: "new" (first seen, unshrunk), "shrunk" (shrunk and classified)."""

    stage: str
    signature: str
    path: str
    classification: str
    shrunk: bool
    shrinking: bool  # a worker will shrink it (a timeout or a dead worker is not shrunk)
    elapsed_s: float
    examples: int


@dataclass(frozen=True)
class Notice:
    message: str


Event = Started | Progress | Finding | Notice


def event_json(event: Event | Summary) -> dict[str, Any]:
    """The event as a JSON object (the `--json` stream)."""
    name = {Started: "start", Progress: "progress", Finding: "finding", Notice: "notice"}
    if isinstance(event, Summary):
        return {"event": "summary", **event.to_json()}
    return {"event": name[type(event)], **dataclasses.asdict(event)}


# -- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureLine:
    signature: str
    path: str
    new: bool  # first reported by this campaign
    regression: bool  # its report is marked fixed, and this campaign hit it
    hits: int  # in this campaign
    total_hits: int  # in the report, over every campaign
    classification: str
    shrunk: bool
    first_s: float | None  # this campaign's first hit, seconds from its start
    first_examples: int | None  # ... and examples run by then


@dataclass(frozen=True)
class PropertyLine:
    property: str
    divergent_examples: int  # examples that broke it
    signatures: int  # distinct signatures of it hit
    own_ms: float  # per example: the runs only this property needs
    alone_per_s: float | None  # estimated examples/s per worker checking it alone


@dataclass(frozen=True)
class Summary:
    seed: int
    stopped: str  # "time", "examples", "interrupted", "workers-failing"
    elapsed_s: float
    workers: int
    worker_restarts: int
    examples: int
    seed_examples: int  # of the examples: seed scenarios
    cached_examples: int  # ... replayed from the example cache
    shrink_checks: int
    examples_per_s: float
    divergences: int
    signatures: tuple[SignatureLine, ...]
    properties: tuple[PropertyLine, ...]
    shared_ms: dict[str, float]  # per example: recording, replay, generation, diagnosis
    coverage_reached: dict[str, int]
    coverage_known: int
    coverage_never: tuple[str, ...]  # known features no example reached
    corpus: str

    @property
    def new_signatures(self) -> tuple[SignatureLine, ...]:
        return tuple(s for s in self.signatures if s.new)

    @property
    def regressions(self) -> tuple[SignatureLine, ...]:
        return tuple(s for s in self.signatures if s.regression)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["new_signatures"] = len(self.new_signatures)
        data["regressions"] = len(self.regressions)
        return data


# -- the campaign ------------------------------------------------------------------------------


@dataclass
class _Slot:
    """Worker `index` and the process running it now (restarted as needed)."""

    index: int
    process: BaseProcess | None = None
    commands: Connection | None = None  # this process -> worker
    results: Connection | None = None  # worker -> this process
    rounds: int = 0  # rounds assigned to this index so far (they seed the next)
    ready: bool = False
    busy: bool = False
    quota: int = 0  # examples of the current round
    round_examples: int = 0
    started_at: float = 0.0
    last_heard: float = 0.0
    last_scenario: bytes | None = None  # what it was checking (for a finding if it dies)
    replayed: bool = False  # its share of the example cache was handed out
    startup_failures: int = 0
    deaths: int = 0  # in a row, without a check in between
    failed_rounds: int = 0  # in a row: rounds that raised before a single check
    round_failed: bool = False


@dataclass
class _Books:
    """What the campaign counts."""

    examples: int = 0
    shrink_checks: int = 0
    divergences: int = 0
    divergent: Counter[str] = field(default_factory=Counter)  # by property
    origins: Counter[str] = field(default_factory=Counter)  # examples by where they came from
    coverage: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)  # run time by kind
    wall: float = 0.0  # worker time spent on generated examples, generation included
    restarts: int = 0


class Campaign:
    def __init__(
        self, options: CampaignOptions, *, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.options = options
        self.on_event = on_event or (lambda event: None)
        self.books = _Books()
        self.slots = [_Slot(index) for index in range(options.workers)]
        self.corpus: Corpus | None = None
        self.started = 0.0
        self.deadline: float | None = None
        self.stopped: str | None = None
        self._stop_requested = False
        self._shutting_down = False
        self._worker_options = b""
        self._last_error = ""
        self.pending_seeds: list[bytes] = []  # seed scenarios no worker was given yet
        self.seeds_per_round = 1

    def request_stop(self) -> None:
        """End the campaign at the next tick (safe from a signal handler)."""
        self._stop_requested = True

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Summary:
        options = self.options
        config = check_setup(options)
        try:
            self.corpus = Corpus.open(options.corpus)
        except CorpusError as exc:
            raise CampaignError(str(exc)) from None
        try:
            notices = self._load_seeds(config)
            cache_since = time.time()  # what workers write from now on is not replayed
            worker_options = self._make_worker_options(config, cache_since)
            self._worker_options = worker_options.to_wire()
            cached = ExampleCache(self._cache_dir()).entries(reuse_keys(worker_options.cache_key))
            self.started = time.monotonic()
            if options.time_s is not None:
                self.deadline = self.started + options.time_s
            self._emit(
                Started(
                    seed=options.seed,
                    workers=options.workers,
                    properties=tuple(p.value for p in options.properties),
                    planted_bugs=options.planted_bugs,
                    user_devices=tuple(_device_text(d) for d in options.user_devices),
                    corpus=str(options.corpus),
                    time_s=options.time_s,
                    examples=options.examples,
                    known_signatures=len(self.corpus.entries),
                    seeds=len(self.pending_seeds),
                    cache=str(self._cache_dir()) if options.cache else None,
                    cached=cached if options.cache else 0,
                )
            )
            for line in [*self.corpus.unreadable, *notices]:
                self._emit(Notice(line))
            try:
                for slot in self.slots:
                    self._spawn(slot)
                self._loop()
            finally:
                self._shutdown()
                self.corpus.flush()
            self._emit(self._progress())  # the final counts
            return self._summary(config)
        finally:
            self.corpus.close()

    def _cache_dir(self) -> Path:
        return (self.options.corpus / CACHE_DIR).absolute()

    def _load_seeds(self, config: MachineConfig) -> list[str]:
        """Read the seed scenarios and put them on the campaign's machine; one notice per
        seed skipped."""
        from fuzzer import seeds

        directory = self.options.seeds
        if directory is None:
            return []
        try:
            found, notices = seeds.load(directory)
        except seeds.SeedError as exc:
            raise CampaignError(str(exc)) from None
        for seed in found:
            try:
                self.pending_seeds.append(seeds.on_machine(seed.scenario, config).to_bytes())
            except ScenarioError as exc:
                notices.append(f"skipped seed {seed.path}: {exc}")
        # Spread over the workers: each checks its share in its first round.
        self.seeds_per_round = max(1, math.ceil(len(self.pending_seeds) / self.options.workers))
        return notices

    def _make_worker_options(self, config: MachineConfig, cache_since: float) -> WorkerOptions:
        options = self.options
        return WorkerOptions(
            properties=options.properties,
            planted_bugs=config.planted_bugs,
            user_devices=options.user_devices,
            max_shrinks=options.max_shrinks,
            example_timeout_s=options.example_timeout_s,
            reruns=options.reruns,
            hypothesis_home=str((options.corpus / HYPOTHESIS_HOME).absolute()),
            cache_dir=str(self._cache_dir()) if options.cache else None,
            cache_key=cache_key(canonical_bytes(config), options.properties),
            cache_since=cache_since,
        )

    def _emit(self, event: Event) -> None:
        self.on_event(event)

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    def _loop(self) -> None:
        options = self.options
        next_progress = self.started + options.progress_every_s
        next_flush = self.started + options.flush_every_s
        while True:
            now = time.monotonic()
            if self._stop_requested:
                self.stopped = "interrupted"
                return
            if self.deadline is not None and now >= self.deadline:
                self.stopped = "time"
                return
            if self.stopped is not None:  # set by a failure below
                return
            examples_done = options.examples is not None and self._examples_left() <= 0
            if examples_done and not any(slot.busy for slot in self.slots):
                self.stopped = "examples"
                return
            self._assign()
            timeout = _TICK_S
            if self.deadline is not None:
                timeout = max(0.0, min(timeout, self.deadline - now))
            self._wait(timeout)
            now = time.monotonic()
            self._watchdog(now)
            if now >= next_progress:
                self._emit(self._progress())
                next_progress = now + options.progress_every_s
            if now >= next_flush:
                self._require_corpus().flush()
                next_flush = now + options.flush_every_s

    def _require_corpus(self) -> Corpus:
        assert self.corpus is not None
        return self.corpus

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        context = multiprocessing.get_context("spawn")
        command_end, commands = context.Pipe(duplex=False)
        results, result_end = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main,
            args=(self._worker_options, command_end, result_end),
            name=f"detfuzz-worker-{slot.index}",
            daemon=True,  # never outlives this process's normal exit
        )
        with _sigint_ignored():  # the child starts with Ctrl-C ignored: no traceback
            process.start()
        command_end.close()
        result_end.close()
        now = time.monotonic()
        slot.process, slot.commands, slot.results = process, commands, results
        slot.ready = slot.busy = False
        slot.quota = slot.round_examples = 0
        slot.started_at = slot.last_heard = now
        slot.last_scenario = None

    def _examples_left(self) -> float:
        if self.options.examples is None:
            return math.inf
        in_flight = sum(max(0, s.quota - s.round_examples) for s in self.slots if s.busy)
        return self.options.examples - self.books.examples - in_flight

    def _assign(self) -> None:
        idle = [s for s in self.slots if s.ready and not s.busy and s.commands is not None]
        corpus = self._require_corpus()
        for position, slot in enumerate(idle):
            left = self._examples_left()
            if left <= 0:
                return
            # Spread the last examples over the idle workers rather than giving one all.
            share = math.ceil(left / (len(idle) - position)) if left != math.inf else math.inf
            quota = int(min(self.options.chunk, share))
            round_ = self._next_round(slot, quota)
            assert slot.commands is not None
            try:
                send(slot.commands, "round", known=corpus.known(), **round_)
            except OSError:
                continue  # it is dying: its sentinel says so next
            slot.busy, slot.quota, slot.round_examples = True, round_["examples"], 0
            slot.last_heard = time.monotonic()

    def _next_round(self, slot: _Slot, quota: int) -> dict[str, Any]:
        """What the worker does next: seed scenarios while some are left, then its share
        of the example cache (once), then generating rounds. Only generating rounds count
        towards the (worker, round) seeds, so what they draw does not depend on the
        seeds or the cache."""
        if self.pending_seeds:
            take = min(quota, self.seeds_per_round)
            chosen, self.pending_seeds = self.pending_seeds[:take], self.pending_seeds[take:]
            return {"kind": "seeds", "seeds": chosen, "seed": 0, "examples": len(chosen)}
        if self.options.cache and not slot.replayed:
            slot.replayed = True
            return {
                "kind": "replay",
                "part": [slot.index, self.options.workers],
                "seed": derive_seed(self.options.seed, slot.index, -1),
                "examples": quota,
            }
        seed = derive_seed(self.options.seed, slot.index, slot.rounds)
        slot.rounds += 1
        return {"kind": "generate", "seed": seed, "examples": quota}

    def _wait(self, timeout: float) -> None:
        waitables: list[Any] = []
        for slot in self.slots:
            if slot.results is not None:
                waitables.append(slot.results)
            if slot.process is not None:
                waitables.append(slot.process.sentinel)
        if not waitables:  # every worker is gone (the campaign is about to end)
            time.sleep(timeout)
            return
        ready = set(wait(waitables, timeout))
        for slot in self.slots:
            if slot.results is not None and slot.results in ready:
                self._drain(slot)
            process = slot.process
            if process is not None and (process.sentinel in ready or slot.results is None):
                process.join(_STOP_GRACE_S)
                if process.exitcode is not None:
                    self._on_exit(slot)

    def _drain(self, slot: _Slot) -> None:
        """Handle every message the worker has sent; a broken pipe means it is ending."""
        results = slot.results
        try:
            while results is not None and results.poll():
                message = receive(results)
                slot.last_heard = time.monotonic()
                self._handle(slot, message)
        except (EOFError, OSError):
            if slot.results is not None:
                slot.results.close()
            slot.results = None

    def _handle(self, slot: _Slot, message: dict[str, Any]) -> None:
        op = message["op"]
        corpus = self._require_corpus()
        if op == "ready":
            slot.ready = True
            slot.startup_failures = 0
        elif op == "begin":
            slot.last_scenario = message.get("scenario")
        elif op == "checked":
            self._checked(slot, message)
        elif op == "lock":
            if not corpus.claim(message["signature"], slot.index):
                self._send(slot, "drop", signature=message["signature"])
        elif op == "found":
            report = self._report(message.get("report"), slot)
            entry = None if report is None else corpus.shrunk(report, slot.index)
            if entry is not None:
                self._emit(self._finding("shrunk", entry))
        elif op == "done":
            failed = slot.round_failed and not slot.round_examples
            slot.failed_rounds = slot.failed_rounds + 1 if failed else 0
            slot.busy, slot.quota, slot.round_examples = False, 0, 0
            slot.round_failed = False
            corpus.release(slot.index)
            if slot.failed_rounds >= _MAX_FAILED_ROUNDS and not self._shutting_down:
                # detfuzz cannot generate or check anything here: no use going on.
                raise CampaignError(f"worker {slot.index}: {self._last_error}")
        elif op == "error":
            slot.round_failed = True
            text = f"internal error: {message.get('message')}"
            if text != self._last_error:
                self._emit(Notice(f"worker {slot.index}: {text}"))
            self._last_error = text

    def _checked(self, slot: _Slot, message: dict[str, Any]) -> None:
        books = self.books
        slot.deaths = 0
        if message.get("phase") != "generate":
            books.shrink_checks += 1
            return
        books.examples += 1
        books.origins[str(message.get("origin"))] += 1
        slot.round_examples += 1
        books.wall += float(message.get("wall", 0.0))
        for kind, seconds in message.get("seconds", {}).items():
            if kind in RUN_KINDS:
                books.seconds[kind] += float(seconds)
        books.coverage.update(message.get("coverage", {}))
        corpus = self._require_corpus()
        new: dict[str, Report] = {}
        for data in message.get("new", []):
            report = self._report(data, slot)
            if report is not None:
                new[str(report.signature)] = report
        for signature in message.get("signatures", []):
            books.divergences += 1
            books.divergent[signature.split("/", 1)[0]] += 1
            report = new.pop(signature, None)
            if report is None or self._add(report) is None:  # written with this hit
                corpus.hit(signature, elapsed_s=self._elapsed(), examples=books.examples)

    def _report(self, data: object, slot: _Slot) -> Report | None:
        try:
            return Report.from_bytes(data)
        except ReportError as exc:  # a worker of ours wrote it: a detfuzz bug, said aloud
            self._emit(Notice(f"worker {slot.index} sent an unreadable report: {exc}"))
            return None

    def _add(self, report: Report) -> Entry | None:
        """A signature first seen: its report written at once with one hit, stamped with
        when and how (None if the corpus has it already)."""
        examples = self.books.examples
        found = dataclasses.replace(
            report.found,
            by="campaign",
            campaign_seed=self.options.seed,
            examples=examples,
            elapsed_ms=int(self._elapsed() * 1000),
            hits=1,
        )
        entry = self._require_corpus().add(
            dataclasses.replace(report, found=found), elapsed_s=self._elapsed(), examples=examples
        )
        if entry is not None:
            self._emit(self._finding("new", entry))
        return entry

    def _finding(self, stage: str, entry: Entry) -> Finding:
        found = entry.report.found
        return Finding(
            stage=stage,
            signature=entry.signature,
            path=str(entry.path),
            classification=found.classification,
            shrunk=found.shrunk,
            shrinking=entry.state is not EntryState.FINAL,
            elapsed_s=round(self._elapsed(), 3),
            examples=entry.first_seen_examples if stage == "new" else self.books.examples,
        )

    def _send(self, slot: _Slot, op: str, **fields: Any) -> None:
        if slot.commands is None:
            return
        with contextlib.suppress(OSError):  # it is dying: its sentinel says so next
            send(slot.commands, op, **fields)

    def _watchdog(self, now: float) -> None:
        # A check overrunning its limit is interrupted inside the worker; silence for twice
        # the limit means the interpreter itself is stuck (C code, a lost signal).
        silent_limit = 2 * self.options.example_timeout_s + self.options.silence_grace_s
        for slot in self.slots:
            process = slot.process
            if process is None or process.exitcode is not None:
                continue
            if not slot.ready and now - slot.started_at > _STARTUP_LIMIT_S:
                process.kill()
            elif slot.busy and now - slot.last_heard > silent_limit:
                process.kill()
                process.join(_STOP_GRACE_S)
                self._drain(slot)
                self._worker_finding(
                    slot,
                    DivergenceKind.TIMEOUT,
                    Rule.WALL_CLOCK,
                    f"worker {slot.index} was silent for {now - slot.last_heard:.0f} s while "
                    f"checking this scenario (limit {silent_limit:.0f} s) and was killed",
                )
                slot.busy = False  # recorded: its exit is not a second finding
                self._on_exit(slot)

    def _on_exit(self, slot: _Slot) -> None:
        """The worker process ended: count what it sent, record its death, restart it."""
        process = slot.process
        assert process is not None
        self._drain(slot)
        if slot.commands is not None:
            slot.commands.close()
        slot.commands = None
        if slot.results is not None:
            slot.results.close()
        slot.results, slot.process = None, None
        self._require_corpus().release(slot.index)
        if self._shutting_down:
            return
        how = _exit_text(process.exitcode)
        if not slot.ready:
            slot.startup_failures += 1
            if slot.startup_failures >= _MAX_STARTUP_FAILURES:
                raise CampaignError(f"worker {slot.index} cannot start: its process {how}")
        elif slot.busy:
            self._worker_finding(
                slot,
                DivergenceKind.CRASH,
                Rule.DEVICE_EXCEPTION,
                f"worker {slot.index} died ({how}) while checking this scenario",
            )
        slot.deaths += 1
        if slot.deaths >= _MAX_DEATHS_WITHOUT_PROGRESS:
            self._emit(Notice(f"worker {slot.index} died {slot.deaths} times without a check"))
            self.stopped = "workers-failing"
            return
        self.books.restarts += 1
        self._emit(Notice(f"worker {slot.index} {how}; restarted"))
        self._spawn(slot)

    def _worker_finding(self, slot: _Slot, kind: DivergenceKind, rule: Rule, detail: str) -> None:
        if slot.last_scenario is None:
            return
        try:
            scenario = Scenario.from_bytes(slot.last_scenario)
        except ScenarioError as exc:
            self._emit(Notice(f"worker {slot.index}: its last scenario is unreadable: {exc}"))
            return
        # The recording is the run every check starts with; what the worker was running
        # when it died is unknown, so the finding names the first.
        divergence = Divergence(Property.RECORD_REPLAY, kind, WORKER, rule, None, detail)
        report = Report(scenario, divergence, {}, Found(by="campaign"))
        corpus = self._require_corpus()
        if self._add(report) is None:
            corpus.hit(
                str(divergence.signature), elapsed_s=self._elapsed(), examples=self.books.examples
            )
        self.books.divergences += 1
        self.books.divergent[divergence.property.value] += 1
        slot.last_scenario = None

    def _shutdown(self) -> None:
        """Stop every worker, keeping what they sent until they ended."""
        self._shutting_down = True
        for slot in self.slots:
            self._send(slot, "stop")
        grace_end = time.monotonic() + _STOP_GRACE_S
        while any(s.process is not None for s in self.slots):
            left = grace_end - time.monotonic()
            if left <= 0:
                for slot in self.slots:
                    if slot.process is not None and slot.process.exitcode is None:
                        slot.process.terminate()
                for slot in self.slots:
                    if slot.process is not None:
                        slot.process.join(_STOP_GRACE_S)
                        if slot.process.exitcode is None:
                            slot.process.kill()
                            slot.process.join()
                        self._on_exit(slot)
                break
            self._wait(min(left, _TICK_S))

    # -- reporting ----------------------------------------------------------------------------

    def _progress(self) -> Progress:
        options, books = self.options, self.books
        elapsed = self._elapsed()
        rate = books.examples / elapsed if elapsed > 0 else 0.0
        remaining: list[float] = []
        fractions: list[float] = []
        if self.deadline is not None and options.time_s is not None:
            remaining.append(max(0.0, self.deadline - time.monotonic()))
            fractions.append(min(1.0, elapsed / options.time_s))
        if options.examples is not None:
            left = max(0, options.examples - books.examples)
            if rate > 0:
                remaining.append(left / rate)
            fractions.append(min(1.0, books.examples / options.examples))
        entries = self._require_corpus().entries.values()
        return Progress(
            elapsed_s=round(elapsed, 3),
            examples=books.examples,
            examples_per_s=round(rate, 3),
            shrink_checks=books.shrink_checks,
            divergences=books.divergences,
            signatures=sum(1 for e in entries if e.campaign_hits > 0 or e.new),
            new_signatures=sum(1 for e in entries if e.new),
            remaining_s=round(min(remaining), 3) if remaining else None,
            fraction=max(fractions) if fractions else None,
        )

    def _summary(self, config: MachineConfig) -> Summary:
        options, books = self.options, self.books
        elapsed = self._elapsed()
        entries = sorted(
            (e for e in self._require_corpus().entries.values() if e.new or e.campaign_hits),
            key=lambda e: (not e.new, e.signature),
        )
        signatures = tuple(
            SignatureLine(
                signature=e.signature,
                path=str(e.path),
                new=e.new,
                regression=e.regression,
                hits=e.campaign_hits,
                total_hits=e.hits,
                classification=e.report.found.classification,
                shrunk=e.report.found.shrunk,
                first_s=None if e.first_seen_s is None else round(e.first_seen_s, 3),
                first_examples=e.first_seen_examples,
            )
            for e in entries
        )
        per_example = 1000.0 / books.examples if books.examples else 0.0
        runs = sum(books.seconds.values())
        shared_ms = {
            "recording": books.seconds["recording"] * per_example,
            "replay": books.seconds["replay"] * per_example,
            "diagnosis": books.seconds["diagnosis"] * per_example,
            # Drawing the scenario, assembling it, Hypothesis's bookkeeping, messages.
            "generation": max(0.0, books.wall - runs) * per_example,
        }
        properties = []
        for prop in options.properties:
            own_ms = books.seconds[prop.value] * per_example
            alone_ms = shared_ms["generation"] + shared_ms["recording"] + own_ms
            if prop in _NEEDS_REPLAY:
                alone_ms += shared_ms["replay"]
            properties.append(
                PropertyLine(
                    property=prop.value,
                    divergent_examples=books.divergent[prop.value],
                    signatures=sum(
                        1 for s in signatures if s.signature.split("/", 1)[0] == prop.value
                    ),
                    own_ms=round(own_ms, 3),
                    alone_per_s=round(1000.0 / alone_ms, 2) if alone_ms > 0 else None,
                )
            )
        known = known_features(config)
        return Summary(
            seed=options.seed,
            stopped=self.stopped or "interrupted",
            elapsed_s=round(elapsed, 3),
            workers=options.workers,
            worker_restarts=books.restarts,
            examples=books.examples,
            seed_examples=books.origins[ORIGIN_SEED],
            cached_examples=books.origins[ORIGIN_CACHE],
            shrink_checks=books.shrink_checks,
            examples_per_s=round(books.examples / elapsed, 3) if elapsed > 0 else 0.0,
            divergences=books.divergences,
            signatures=signatures,
            properties=tuple(properties),
            shared_ms={k: round(v, 3) for k, v in shared_ms.items()},
            coverage_reached=dict(sorted(books.coverage.items())),
            coverage_known=len(known),
            coverage_never=tuple(sorted(known - set(books.coverage))),
            corpus=str(options.corpus),
        )


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while a child starts: it inherits that (Python keeps an ignored
    SIGINT ignored at start-up), so a Ctrl-C during its imports prints no traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _device_text(spec: DeviceSpec) -> str:
    irq = "" if spec.irq is None else f",irq={spec.irq}"
    options = "".join(f",{key}={value}" for key, value in spec.options)
    return f"{spec.kind}@{spec.base:#x}{irq},name={spec.name}{options}"
