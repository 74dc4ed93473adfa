"""Seed scenarios: a small hand-picked set that campaigns check before anything else.

`corpora/seeds/*.dfs` holds scenarios in their wire form (`Scenario.to_bytes`), one per
file, that together reach every feature of `fuzzer.coverage.known_features` the default
strategy reaches on the default full machine. A campaign (`detfuzz fuzz`, `--seeds DIR`)
checks them first, on its own machine (its planted bugs and user devices added), so every
campaign touches every device feature at least once whatever its budget.

They are picked afl-cmin style, with no hand-editing: candidates are drawn with the default
strategy (`scenarios()`, the generator a campaign uses), steered towards coverage; those
that pass every property on the correct machine are kept; then a greedy set cover takes,
each time, the candidate reaching the most known features not yet reached (ties: the most
features of any kind, then the smallest scenario), and once the known features are all
reached, candidates adding other features, up to `--max`; last, any seed whose features
the others all reach is dropped. To regenerate them after the generator or the machine
changed:

    python -m fuzzer.seeds pick --out corpora/seeds --candidates 400 --jobs 2 --seed 1

(`--candidates` draws per job; it prints the features it covered and those no candidate
reached). `python -m fuzzer.seeds show corpora/seeds` lists the seeds and what each reaches.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import multiprocessing
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fuzzer.scenario import Scenario, ScenarioError
from vm.config import ConfigError, MachineConfig

SUFFIX: Final = ".dfs"  # a detfuzz scenario (reports are .dfr)
DEFAULT_DIR: Final = Path("corpora/seeds")
DEFAULT_MAX: Final = 12


class SeedError(Exception):
    """The seeds directory cannot be read; the message is one line."""


@dataclass(frozen=True)
class Seed:
    path: Path
    scenario: Scenario


def load(directory: Path) -> tuple[list[Seed], list[str]]:
    """The seeds of `directory` in name order, and one line per file skipped (unreadable
    or not a scenario: a seed is input like any report). SeedError if the directory
    cannot be listed."""
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))
    except OSError as exc:
        raise SeedError(f"cannot read seeds directory {directory}: {exc.strerror or exc}") from None
    seeds: list[Seed] = []
    skipped: list[str] = []
    for path in paths:
        if path.name.startswith("."):
            continue
        try:
            seeds.append(Seed(path, Scenario.from_bytes(path.read_bytes())))
        except (OSError, ScenarioError) as exc:
            skipped.append(f"skipped seed {path}: {getattr(exc, 'strerror', None) or exc}")
    return seeds, skipped


def on_machine(scenario: Scenario, machine: MachineConfig) -> Scenario:
    """The seed on a campaign's machine: its own RAM, icount shift and device options (its
    program was drawn for them), plus the campaign's user devices and planted bugs.
    ScenarioError if they do not fit together (a user device over a seed's device)."""
    own = scenario.config
    names = {spec.name for spec in own.devices}
    extra = tuple(spec for spec in machine.devices if spec.name not in names)
    try:
        config = MachineConfig(
            ram_size=own.ram_size,
            icount_shift=own.icount_shift,
            devices=(*own.devices, *extra),
            planted_bugs=tuple(sorted({*own.planted_bugs, *machine.planted_bugs})),
        )
    except (ConfigError, ValueError) as exc:
        raise ScenarioError(f"does not fit the campaign's machine: {exc}") from None
    return dataclasses.replace(scenario, config=config)


# -- picking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    scenario: Scenario
    features: frozenset[str]
    size: int  # of its wire form: the tie-break towards small seeds


def draw_candidates(count: int, seed: int) -> list[Candidate]:
    """`count` scenarios from the default strategy (a seeded, coverage-steered search, as
    a campaign's), each checked with every property; those with a divergence are left out
    (a seed must pass on the correct machine)."""
    from fuzzer.divergence import Property
    from fuzzer.engine import hunt
    from fuzzer.properties import CheckResult
    from fuzzer.strategies import scenarios

    found: list[Candidate] = []

    def keep(scenario: Scenario, result: CheckResult) -> None:
        if not result.divergences:
            features = frozenset(result.coverage)
            found.append(Candidate(scenario, features, len(scenario.to_bytes())))

    attempt = 0
    while len(found) < count:
        # hunt stops at a divergence (a bug of the machine): carry on with another seed.
        before = len(found)
        hunt(
            scenarios(),
            properties=tuple(Property),
            max_examples=count - len(found),
            seed=seed * 1000 + attempt,
            shrink=False,
            on_example=keep,
        )
        attempt += 1
        if len(found) == before and attempt > 3:
            break
    return found


def _draw_job(job: tuple[int, int]) -> list[Candidate]:
    return draw_candidates(*job)


def cover(
    candidates: Sequence[Candidate], required: Iterable[str], maximum: int = DEFAULT_MAX
) -> list[Candidate]:
    """A greedy cover: the required features the candidates reach, all of them, then any
    other features they reach while there is room (at most `maximum` seeds, unless the
    required ones need more)."""
    required_left = set(required) & set().union(*(c.features for c in candidates))
    others_left = set().union(*(c.features for c in candidates)) - required_left
    chosen: list[Candidate] = []
    pool = list(candidates)
    while pool and (required_left or (others_left and len(chosen) < maximum)):
        best = max(
            pool,
            key=lambda c: (
                len(c.features & required_left),
                len(c.features & others_left),
                -c.size,
            ),
        )
        if not best.features & (required_left | others_left):
            break
        chosen.append(best)
        pool.remove(best)
        required_left -= best.features
        others_left -= best.features
    return prune(chosen)


def prune(chosen: Sequence[Candidate]) -> list[Candidate]:
    """Without the seeds whose every feature the others reach (an early greedy pick can
    end up covered by later ones), the largest tried first: a cover, not a pile."""
    kept = list(chosen)
    for candidate in sorted(chosen, key=lambda c: -c.size):
        others = [c.features for c in kept if c is not candidate]
        if others and candidate.features <= frozenset().union(*others):
            kept.remove(candidate)
    return kept


def full_machine() -> MachineConfig:
    """The machine a default campaign runs (every built-in device)."""
    from fuzzer.strategies import FULL_DEVICES

    return MachineConfig(devices=FULL_DEVICES)


def pick(args: argparse.Namespace) -> int:
    from fuzzer.coverage import known_features

    jobs = [(args.candidates, args.seed + job) for job in range(args.jobs)]
    if args.jobs == 1:
        batches = [_draw_job(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            batches = pool.map(_draw_job, jobs)
    candidates = [c for batch in batches for c in batch]
    known = known_features(full_machine())
    chosen = cover(candidates, known, args.max)
    reached = set().union(*(c.features for c in chosen)) if chosen else set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"*{SUFFIX}"):
        old.unlink()
    for number, candidate in enumerate(chosen):
        (out / f"seed-{number:02d}{SUFFIX}").write_bytes(candidate.scenario.to_bytes())
    print(f"{len(candidates)} candidates, {len(chosen)} seeds written to {out}")
    print(f"known features reached: {len(known & reached)} of {len(known)}")
    print(f"all features reached: {len(reached)}")
    missing = sorted(known - reached)
    if missing:
        print(f"never reached by any candidate ({len(missing)}): {', '.join(missing)}")
    return 0


def show(args: argparse.Namespace) -> int:
    from fuzzer.coverage import known_features
    from fuzzer.properties import check

    seeds, skipped = load(Path(args.directory))
    for line in skipped:
        print(line, file=sys.stderr)
    known = known_features(full_machine())
    reached: set[str] = set()
    for seed in seeds:
        result = check(seed.scenario)
        features = set(result.coverage)
        reached |= features
        verdict = "passes" if not result.divergences else f"{len(result.divergences)} divergences"
        print(
            f"{seed.path.name}: {len(features)} features ({len(features & known)} known), {verdict}"
        )
    print(f"together: {len(reached & known)} of {len(known)} known features, {len(reached)} all")
    missing = sorted(known - reached)
    if missing:
        print(f"not reached: {', '.join(missing)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzzer.seeds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    picker = commands.add_parser("pick", help="draw candidates and write a covering set")
    picker.add_argument("--out", default=str(DEFAULT_DIR), help="where the seeds go")
    picker.add_argument("--candidates", type=int, default=400, help="candidates per job")
    picker.add_argument("--jobs", type=int, default=1, help="processes drawing candidates")
    picker.add_argument("--seed", type=int, default=1, help="seed of the first job's search")
    picker.add_argument(
        "--max",
        type=int,
        default=DEFAULT_MAX,
        help="seeds at most, once the known features are covered",
    )
    shower = commands.add_parser("show", help="check the seeds and list what they reach")
    shower.add_argument("directory", nargs="?", default=str(DEFAULT_DIR))
    args = parser.parse_args(argv)
    return pick(args) if args.command == "pick" else show(args)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
