"""The search: generate scenarios until a property breaks, then shrink with Hypothesis.

`hunt` draws scenarios from a strategy and checks each (fuzzer.properties.check, without
localisation: the signature does not depend on it). The first divergence locks its
signature; Hypothesis's shrinker then keeps only scenarios that show that same signature,
checking only the property that found it, so a shrink never turns one bug into another.
The minimal scenario is checked once more, localised, for the report.

Every check is deterministic for a given scenario (all host behaviour comes from the
seeded host model), as Hypothesis requires of a shrinkable condition. Feature coverage of
each example goes to Hypothesis (`target`, `event`) to steer generation.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from hypothesis import HealthCheck, Phase, event, find, settings, target
from hypothesis.database import ExampleDatabase
from hypothesis.errors import NoSuchExample, Unsatisfiable
from hypothesis.strategies import SearchStrategy

from fuzzer.divergence import Divergence, Property, Signature
from fuzzer.properties import ALL_PROPERTIES, CheckResult, check
from fuzzer.scenario import Scenario

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """A divergence found by `hunt`, on its shrunk scenario."""

    scenario: Scenario
    divergence: Divergence
    signature: Signature
    examples: int  # examples checked up to and including the first hit
    seconds_to_first: float
    seconds_total: float
    shrunk: bool
    coverage: dict[str, int] = field(default_factory=dict)  # of the shrunk scenario


@dataclass
class _State:
    properties: tuple[Property, ...]
    wall_clock_s: float | None
    examples: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_at: float | None = None
    examples_at_first: int = 0
    locked: Signature | None = None
    locked_property: Property | None = None
    locked_divergence: Divergence | None = None  # the latest divergence with that signature
    best: Scenario | None = None  # the smallest scenario with the locked signature so far
    shrink_checks: int = 0
    max_shrink_checks: int = 500
    coverage: Counter[str] = field(default_factory=Counter)
    on_example: Callable[[Scenario, CheckResult], None] | None = None

    def check(self, scenario: Scenario) -> bool:
        self.examples += 1
        props = self.properties if self.locked_property is None else (self.locked_property,)
        result = check(
            scenario, properties=props, localise_divergences=False, wall_clock_s=self.wall_clock_s
        )
        self.coverage.update(result.coverage)
        if self.on_example is not None:
            self.on_example(scenario, result)
        if self.locked is None:
            _steer(result)
            if not result.divergences:
                return False
            first = result.divergences[0]
            self.locked, self.locked_property = first.signature, first.property
            self.locked_divergence = first
            self.first_at = time.perf_counter() - self.started
            self.examples_at_first = self.examples
            self.best = scenario
            return True
        self.shrink_checks += 1
        same = [d for d in result.divergences if d.signature == self.locked]
        if same:
            self.best = scenario  # the shrinker only ever tries smaller ones
            self.locked_divergence = same[0]
            return True
        if self.shrink_checks >= self.max_shrink_checks:
            raise _ShrinkBudgetSpent
        return False


class _ShrinkBudgetSpent(Exception):
    """Ends a long shrink: the smallest failing scenario so far is kept."""


def _steer(result: CheckResult) -> None:
    """Tell Hypothesis what this example reached, so it favours examples reaching more."""
    target(float(len(result.coverage)), label="features reached")
    for name in result.coverage:
        event(f"feature {name.split('.', 1)[-1]}")


def search_settings(
    *, max_examples: int, phases: Sequence[Phase], database: ExampleDatabase | None = None
) -> settings:
    """The settings of a seeded search: from Hypothesis's own defaults, not the loaded
    profile, so a search is reproducible from its seed wherever it runs (pytest loads a
    profile, a campaign does not). No deadline or health check: a check takes tens of
    milliseconds to seconds, and drawing a scenario is slow by design."""
    return settings(
        settings.get_profile("default"),
        max_examples=max_examples,
        phases=list(phases),
        database=database,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


def draw_examples(strategy: SearchStrategy[T], *, count: int, seed: int) -> list[T]:
    """The first `count` examples a seeded search of `strategy` draws, checking nothing
    (the same ones for a seed, as `hunt` would meet them)."""
    drawn: list[T] = []

    def keep(example: T) -> bool:
        drawn.append(example)
        return False  # never satisfied: Hypothesis keeps generating

    with contextlib.suppress(NoSuchExample, Unsatisfiable):
        config = search_settings(max_examples=count, phases=[Phase.generate])
        find(strategy, keep, settings=config, random=random.Random(seed))
    return drawn[:count]


def hunt(
    strategy: SearchStrategy[Scenario],
    *,
    properties: Sequence[Property] = ALL_PROPERTIES,
    max_examples: int = 200,
    seed: int = 0,
    shrink: bool = True,
    max_shrinks: int = 500,
    wall_clock_s: float | None = 60.0,
    on_example: Callable[[Scenario, CheckResult], None] | None = None,
) -> Finding | None:
    """Search `strategy` for a scenario that breaks one of `properties`; None if none of
    `max_examples` does. Reproducible for a given `seed`."""
    state = _State(
        tuple(properties), wall_clock_s, on_example=on_example, max_shrink_checks=max_shrinks
    )
    config = search_settings(
        max_examples=max_examples, phases=[Phase.generate, *([Phase.shrink] if shrink else [])]
    )
    try:
        scenario = find(strategy, state.check, settings=config, random=random.Random(seed))
    except (NoSuchExample, Unsatisfiable):
        return None
    except _ShrinkBudgetSpent:
        assert state.best is not None
        scenario = state.best
    assert state.locked is not None and state.locked_property is not None
    final = check(scenario, properties=(state.locked_property,), wall_clock_s=wall_clock_s)
    same = [d for d in final.divergences if d.signature == state.locked]
    # The localised check of the minimal scenario has the report's details; if it did not
    # come back (a host-flaky finding), the search's own divergence stands.
    divergence = same[0] if same else state.locked_divergence
    assert divergence is not None
    return Finding(
        scenario=scenario,
        divergence=divergence,
        signature=state.locked,
        examples=state.examples_at_first,
        seconds_to_first=state.first_at or 0.0,
        seconds_total=time.perf_counter() - state.started,
        shrunk=shrink,
        coverage=dict(final.coverage),
    )
