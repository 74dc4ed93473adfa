"""A campaign worker process: searches in rounds the parent assigns, and tells the parent
about every check, every signature it has not seen and every finding it has shrunk.

One round is one Hypothesis `find` over the default swarm strategy with a seed the parent
derives from (campaign seed, worker, round). Unlike `fuzzer.engine.hunt`, a round does not
stop at the first divergence: a divergence whose signature the corpus already has is only
counted (a hit) and the search goes on, so a bug that the simplest scenario shows (every
`find` starts from it) cannot stall a campaign. The first divergence with a signature
still open locks the search; Hypothesis's shrinker then keeps only scenarios showing that
signature (checking only its property), the minimal one is checked again with
localisation and re-checked a few times to classify it, and the report goes to the parent.

Rounds come in three kinds, all counted as examples: "seeds" checks the seed scenarios the
parent hands out (hand-picked cases, not shrinkable: a new signature is reported unshrunk
and shrunk by whoever meets it next); "replay" replays this worker's share of the example
cache (`fuzzer.campaign_corpus.ExampleCache`) through Hypothesis's reuse phase, which
tries the examples that failed last time and then the Pareto front of the feature scores
(what reached the most features), dropping what no longer fails; "generate" draws new
examples. Generating rounds never read the cache (they only save to it), so what they
draw depends on their seed alone.

Messages both ways are msgpack maps (never pickle): the parent decodes reports with the
hostile-input reader `Report.from_bytes`. Everything this process knows is also in the
parent or on disk, so the parent can kill it at any moment.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Any, Final

import msgpack

from fuzzer.divergence import Divergence, DivergenceKind, Property
from fuzzer.heap import settle_heap
from fuzzer.report import Found, Report
from fuzzer.scenario import Scenario
from vm.config import DeviceSpec
from vm.replay import ReplayMode
from vm.trace import BuiltinTarget, TargetRun, Trace

if TYPE_CHECKING:
    from fuzzer.properties import CheckResult

MAX_MESSAGE: Final = 64 << 20  # a report carries a scenario (at most 8 MiB) and a little more
PHASE_GENERATE: Final = "generate"  # a fresh example: counted, its hits counted
PHASE_SHRINK: Final = "shrink"  # a smaller variant of a locked example
PHASE_CLASSIFY: Final = "classify"  # the shrunk example checked again
# Where a generate-phase example came from (its round's kind).
ORIGIN_SEED: Final = "seed"
ORIGIN_CACHE: Final = "cache"
ORIGIN_GENERATED: Final = "generated"
ROUND_KINDS: Final = {"seeds": ORIGIN_SEED, "replay": ORIGIN_CACHE, "generate": ORIGIN_GENERATED}

# What the time of each target run is charged to (see _TimedTarget.kind_of).
RUN_KINDS: Final = (
    "recording",
    "replay",
    Property.DETERMINISM.value,
    Property.RECORD_NONE.value,
    Property.STOP_CONT.value,
    Property.SNAPSHOT.value,
    Property.SEEK.value,
    "diagnosis",
)


# -- messages --------------------------------------------------------------------------------


def send(conn: Connection, op: str, **fields: Any) -> None:
    conn.send_bytes(msgpack.packb({"op": op, **fields}, use_bin_type=True))


def receive(conn: Connection) -> dict[str, Any]:
    """The next message; EOFError once the other end is gone (or died mid-message)."""
    data = conn.recv_bytes(MAX_MESSAGE)
    try:
        message = msgpack.unpackb(data, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise EOFError(f"malformed message: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise EOFError("malformed message")
    return message


@dataclass(frozen=True)
class WorkerOptions:
    """What every round of a worker shares (sent once, as plain data)."""

    properties: tuple[Property, ...]
    planted_bugs: tuple[str, ...] = ()
    user_devices: tuple[DeviceSpec, ...] = ()
    max_shrinks: int = 500
    example_timeout_s: float = 60.0
    reruns: int = 3
    # Hypothesis's own storage (its cache of constants): in the corpus, not in the cwd.
    hypothesis_home: str | None = None
    # The example cache (None: off) and its key; what was written from `cache_since` on
    # (the campaign's start, wall-clock time) is never read.
    cache_dir: str | None = None
    cache_key: bytes = b""
    cache_since: float = 0.0

    def to_wire(self) -> bytes:
        return msgpack.packb(
            {
                "properties": [p.value for p in self.properties],
                "planted_bugs": list(self.planted_bugs),
                "user_devices": [d.to_dict() for d in self.user_devices],
                "max_shrinks": self.max_shrinks,
                "example_timeout_s": self.example_timeout_s,
                "reruns": self.reruns,
                "hypothesis_home": self.hypothesis_home,
                "cache_dir": self.cache_dir,
                "cache_key": self.cache_key,
                "cache_since": self.cache_since,
            },
            use_bin_type=True,
        )

    @classmethod
    def from_wire(cls, data: bytes) -> WorkerOptions:
        wire = msgpack.unpackb(data, raw=False)
        return cls(
            properties=tuple(Property(p) for p in wire["properties"]),
            planted_bugs=tuple(wire["planted_bugs"]),
            user_devices=tuple(DeviceSpec.from_dict(d) for d in wire["user_devices"]),
            max_shrinks=wire["max_shrinks"],
            example_timeout_s=wire["example_timeout_s"],
            reruns=wire["reruns"],
            hypothesis_home=wire["hypothesis_home"],
            cache_dir=wire["cache_dir"],
            cache_key=wire["cache_key"],
            cache_since=wire["cache_since"],
        )


# -- the process -----------------------------------------------------------------------------


def worker_main(options: bytes, commands: Connection, results: Connection) -> None:
    """The worker process's entry point (multiprocessing target)."""
    # Ctrl-C reaches the whole process group: the parent alone decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # stdout belongs to the parent's display (and --json stream); nothing here may print.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        worker = Worker(WorkerOptions.from_wire(options), commands, results)
        worker.send("ready", pid=os.getpid())
        worker.serve()
    except _ParentGone:
        pass  # nobody to report to: the campaign ended (or was killed)


class _ParentGone(BaseException):
    """The parent closed the pipes or died. A BaseException, so that Hypothesis (which
    catches Exception as a failing example, and would shrink it) lets it through."""


class _Abandon(BaseException):
    """Leaves a search from inside Hypothesis, which catches only Exception: the parent
    asked the worker to stop, or gave the locked signature to another worker."""


class _ShrinkSpent(BaseException):
    """The shrink budget is spent: the smallest failing scenario so far is the result."""


class _QuotaSpent(BaseException):
    """The round has checked all the examples it was given (Hypothesis's reuse phase
    replays every failure it has, whatever max_examples says)."""


class Worker:
    def __init__(self, options: WorkerOptions, commands: Connection, results: Connection) -> None:
        from hypothesis.configuration import set_hypothesis_home_dir

        from fuzzer.strategies import scenarios  # imports Hypothesis and the generators

        if options.hypothesis_home is not None:
            set_hypothesis_home_dir(options.hypothesis_home)

        self.options = options
        self.commands = commands
        self.results = results
        self.strategy = scenarios(
            planted_bugs=options.planted_bugs, user_devices=options.user_devices
        )
        self.known: set[str] = set()  # signatures not to lock (the parent's list, and ours)
        self.announced: set[str] = set()  # signatures we sent a provisional report for
        self.dropped: set[str] = set()  # signatures another worker shrinks
        self.rounds = 0
        self.stopping = False
        self.current: _Search | None = None
        self.origin = ORIGIN_GENERATED  # of the examples the current round checks
        self.last_check = time.perf_counter()
        settle_heap()  # what the worker keeps is built: see fuzzer.heap

    def send(self, op: str, **fields: Any) -> None:
        try:
            send(self.results, op, **fields)
        except OSError:
            raise _ParentGone from None

    def receive(self) -> dict[str, Any]:
        try:
            return receive(self.commands)
        except (EOFError, OSError):
            raise _ParentGone from None

    def serve(self) -> None:
        while not self.stopping:
            message = self.receive()
            self._command(message)
            if message["op"] == "round":
                self._round(message)

    def _command(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "stop":
            self.stopping = True
        elif op == "drop":
            self.dropped.add(message["signature"])
            self.known.add(message["signature"])

    def poll_commands(self) -> None:
        """Called before every check: act on what the parent sent meanwhile."""
        while self.commands.poll():
            self._command(self.receive())
        search = self.current
        if self.stopping or (search is not None and search.locked_signature in self.dropped):
            raise _Abandon

    def _round(self, message: dict[str, Any]) -> None:
        self.known |= set(message["known"])
        self.last_check = time.perf_counter()
        kind = message.get("kind", "generate")
        self.origin = ROUND_KINDS[kind]
        search = _Search(self, limit=message["examples"])
        self.current = search
        try:
            if kind == "seeds":
                self._check_seeds(search, message["seeds"])
            else:
                found = self._find(
                    search,
                    seed=message["seed"],
                    examples=message["examples"],
                    replay=message.get("part") if kind == "replay" else None,
                )
                if found is not None and search.locked is not None:
                    self._finish(search, found)
        except (_Abandon, _QuotaSpent):
            pass
        except Exception as exc:  # a bug of detfuzz's own, not of the machine: say so, go on
            self.send("error", message=_one_line(exc), details=traceback.format_exc()[-4000:])
        finally:
            self.current = None
            self.rounds += 1
            self.send("done", examples=search.examples)

    def _check_seeds(self, search: _Search, seeds: Sequence[bytes]) -> None:
        """Seed scenarios, checked as they are (the parent has read them already)."""
        for data in seeds:
            search.check_example(Scenario.from_bytes(data))

    def _database(self, replay: Sequence[int] | None) -> Any:
        """The example database of a round. A replay round reads this worker's share of
        what the cache held when the campaign started; a generating round only writes.
        Without a cache, a fresh in-memory database: Hypothesis keeps its Pareto front
        only with a database, and drawing with one and without differs, so a campaign
        with an empty cache and one with none draw the same examples."""
        from hypothesis.database import InMemoryExampleDatabase

        from fuzzer.campaign_corpus import ExampleCache

        if self.options.cache_dir is None:
            return InMemoryExampleDatabase()
        part = (0, 1) if replay is None else (int(replay[0]), int(replay[1]))
        return ExampleCache(
            Path(self.options.cache_dir), readable_before=self.options.cache_since, part=part
        )

    def _find(
        self, search: _Search, *, seed: int, examples: int, replay: Sequence[int] | None = None
    ) -> Scenario | None:
        from hypothesis import Phase, find
        from hypothesis.errors import Flaky, NoSuchExample, Unsatisfiable

        from fuzzer.engine import search_settings

        database = self._database(replay)
        if replay is not None:
            if self.options.cache_dir is None or not _has_entries(database, self.cache_keys):
                return None
            # No generate phase: Hypothesis then replays up to max_examples cached
            # examples (with one it keeps a tenth of them for replays).
            phases = [Phase.reuse, Phase.shrink]
        else:
            phases = [Phase.generate, Phase.shrink]
        # Reproducible from its seed wherever it runs, as `hunt` is.
        config = search_settings(max_examples=max(1, examples), phases=phases, database=database)
        try:
            with _seeded(seed):
                return find(self.strategy, search, settings=config, database_key=self.cache_keys[0])
        except (NoSuchExample, Unsatisfiable):
            return None
        except _ShrinkSpent:
            return search.best
        except Flaky:
            # The locked example did not fail again when Hypothesis replayed it: keep the
            # smallest one that did (the re-checks will call it host-flaky).
            return search.best

    def _finish(self, search: _Search, scenario: Scenario) -> None:
        """The shrunk scenario: checked with localisation, re-checked to classify it, and
        sent as a report."""
        locked = search.locked
        assert locked is not None
        signature = locked.signature
        final = self.check(scenario, (locked.property,), PHASE_CLASSIFY, localise=True)
        same = [d for d in final.divergences if d.signature == signature]
        showed = int(bool(same))
        for _ in range(self.options.reruns):
            again = self.check(scenario, (locked.property,), PHASE_CLASSIFY)
            showed += any(d.signature == signature for d in again.divergences)
        runs = self.options.reruns + 1
        # The check is a pure function of the scenario (the host comes from seeded models):
        # a signature that does not come back every time depends on the real host.
        classification = "deterministic" if showed == runs else "host-flaky"
        report = Report(
            scenario,
            same[0] if same else locked,
            dict(final.coverage),
            Found(by="campaign", classification=classification, shrunk=True),
        )
        self.known.add(str(signature))
        self.send(
            "found",
            report=report.to_bytes(),
            showed=showed,
            runs=runs,
            shrink_checks=search.shrink_checks,
        )

    @property
    def cache_keys(self) -> tuple[bytes, ...]:
        from fuzzer.campaign_corpus import reuse_keys

        return reuse_keys(self.options.cache_key or b"detfuzz-campaign")

    def check(
        self,
        scenario: Scenario,
        properties: Sequence[Property],
        phase: str,
        *,
        localise: bool = False,
    ) -> CheckResult:
        """One check, announced first (so the parent knows what a dead worker was doing) and
        reported after in one message; the time of each run is charged to what needed it."""
        from fuzzer.properties import check

        self.poll_commands()
        self.send("begin", scenario=scenario.to_bytes(), phase=phase)
        target = _TimedTarget()
        result = check(
            scenario,
            properties=properties,
            target=target,
            localise_divergences=localise,
            wall_clock_s=self.options.example_timeout_s,
        )
        now = time.perf_counter()
        wall, self.last_check = now - self.last_check, now
        fields: dict[str, Any] = {"phase": phase}
        if phase == PHASE_GENERATE:
            fields.update(
                origin=self.origin,
                signatures=[str(d.signature) for d in result.divergences],
                new=self._provisional(scenario, result),
                coverage=dict(result.coverage),
                seconds=dict(target.seconds),
                wall=wall,
            )
        self.send("checked", **fields)
        return result

    def _provisional(self, scenario: Scenario, result: CheckResult) -> list[bytes]:
        """Reports for the signatures this worker has not told the parent about, written by
        the parent at once (unshrunk): a campaign killed while shrinking loses nothing.
        They travel with the check that found them, so its hits are counted with them."""
        reports = []
        for divergence in result.divergences:
            key = str(divergence.signature)
            if key not in self.known and key not in self.announced:
                report = Report(scenario, divergence, dict(result.coverage), Found(by="campaign"))
                reports.append(report.to_bytes())
                self.announced.add(key)
        return reports


class _Search:
    """The condition of one round's `find`: True for the first example showing a signature
    not yet known (which locks it), then for the smaller examples that keep showing it."""

    def __init__(self, worker: Worker, *, limit: int) -> None:
        self.worker = worker
        self.limit = limit  # examples this round may check
        self.last_coverage: dict[str, int] = {}
        self.locked: Divergence | None = None
        self.best: Scenario | None = None
        self.examples = 0
        self.shrink_checks = 0

    @property
    def locked_signature(self) -> str | None:
        return None if self.locked is None else str(self.locked.signature)

    def __call__(self, scenario: Scenario) -> bool:
        if self.locked is not None:
            return self._shrink_step(scenario)
        lockable = self.check_example(scenario)
        _steer(self.last_coverage)
        if not lockable:
            return False
        self.locked, self.best = lockable[0], scenario
        self.worker.send("lock", signature=str(lockable[0].signature))
        return True

    def check_example(self, scenario: Scenario) -> list[Divergence]:
        """Check one example of the round (counted); the divergences it may lock."""
        worker = self.worker
        if self.examples >= self.limit:
            raise _QuotaSpent
        result = worker.check(scenario, worker.options.properties, PHASE_GENERATE)
        self.examples += 1
        self.last_coverage = dict(result.coverage)
        fresh = [d for d in result.divergences if str(d.signature) not in worker.known]
        # A timeout is a fact about the host's speed: reported as it is, never shrunk (each
        # shrink step could take the whole per-example limit).
        return [d for d in fresh if d.kind is not DivergenceKind.TIMEOUT]

    def _shrink_step(self, scenario: Scenario) -> bool:
        locked = self.locked
        assert locked is not None
        if self.shrink_checks >= self.worker.options.max_shrinks:
            raise _ShrinkSpent
        self.shrink_checks += 1
        result = self.worker.check(scenario, (locked.property,), PHASE_SHRINK)
        if any(d.signature == locked.signature for d in result.divergences):
            self.best = scenario  # the shrinker only ever tries smaller ones
            return True
        return False


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Hypothesis's searches seeded with `seed`, keeping the example database. find()'s
    `random=` goes through @seed, which turns the database off; the seed that pytest's
    --hypothesis-seed sets (hypothesis.core.global_force_seed) does not, and find() names
    the database key itself. The value is what find(random=Random(seed)) would use."""
    import hypothesis.core

    previous = hypothesis.core.global_force_seed
    hypothesis.core.global_force_seed = Random(seed).getrandbits(64)
    try:
        yield
    finally:
        hypothesis.core.global_force_seed = previous


def _has_entries(database: Any, keys: Sequence[bytes]) -> bool:
    """Whether the replay round has anything to replay (saves starting Hypothesis)."""
    return any(next(iter(database.fetch(key)), None) is not None for key in keys)


def _steer(coverage: Any) -> None:
    """Tell Hypothesis what the example reached, as `hunt` does, so it favours examples
    reaching more."""
    from hypothesis import event, target

    target(float(len(coverage)), label="features reached")
    for name in coverage:
        event(f"feature {name.split('.', 1)[-1]}")


class _TimedTarget:
    """The built-in target, timing each run and charging it to what needed it: the
    recording and the straight replay are shared (several properties compare them); every
    other run belongs to one property; runs that explain a divergence are diagnosis."""

    name = "detfuzz"

    def __init__(self) -> None:
        self.inner = BuiltinTarget()
        self.seconds: Counter[str] = Counter()
        self.recorded = False

    def run(self, spec: TargetRun) -> Trace:
        kind = self.kind_of(spec)
        start = time.perf_counter()
        try:
            return self.inner.run(spec)
        finally:
            self.seconds[kind] += time.perf_counter() - start

    def kind_of(self, spec: TargetRun) -> str:
        explaining = spec.observe or spec.trace_activity or spec.audit_icount or spec.single_step
        if explaining:
            return "diagnosis"
        if spec.mode is ReplayMode.RECORD:
            # The determinism property records the same spec again: the first is shared.
            kind = Property.DETERMINISM.value if self.recorded else "recording"
            self.recorded = True
            return kind
        if spec.mode is ReplayMode.NONE:
            return Property.RECORD_NONE.value
        if spec.start_snapshot is not None:
            return Property.SNAPSHOT.value
        if spec.seeks:
            return Property.SEEK.value
        if spec.stops:
            return Property.STOP_CONT.value
        return "replay"


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())[:500]
