"""The checked-in seed scenarios (corpora/seeds, picked by `python -m fuzzer.seeds pick`):
they load, pass every property on the correct machine, and together reach every feature
of `known_features` that the default strategy reaches; a campaign checks them first."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzzer import seeds
from fuzzer.campaign import Campaign, CampaignOptions
from fuzzer.coverage import known_features
from fuzzer.properties import check
from fuzzer.report import load_report
from fuzzer.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / seeds.DEFAULT_DIR
# Known features no seed reaches, each with the reason the generator cannot reach it (a
# feature listed here that a seed does reach fails the test: the list only shrinks).
UNREACHABLE: dict[str, str] = {
    "stop.halted": "a stop lands at the pinned sample point, which vm.machine's run loop "
    "reaches only with the hart awake (asleep in WFI it idles or wakes first)",
    "uart0.lsr.write": "UartWrite writes only guestchunks.UART_WRITABLE: LSR is status",
    "uart0.msr.write": "UartWrite writes only guestchunks.UART_WRITABLE: MSR is status",
}


@pytest.fixture(scope="module")
def loaded() -> list[seeds.Seed]:
    found, skipped = seeds.load(SEEDS)
    assert not skipped
    return found


@pytest.fixture(scope="module")
def coverage(loaded: list[seeds.Seed]) -> dict[str, set[str]]:
    """Every seed checked with every property: its features (and no divergence)."""
    reached = {}
    for seed in loaded:
        result = check(seed.scenario)
        assert not result.divergences, (seed.path.name, result.divergences)
        reached[seed.path.name] = set(result.coverage)
    return reached


def test_the_seeds_are_a_small_set_of_scenarios(loaded):
    assert 5 <= len(loaded) <= 15
    for seed in loaded:
        assert Scenario.from_bytes(seed.path.read_bytes()) == seed.scenario
        assert seed.scenario.config.planted_bugs == ()


def test_the_seeds_pass_every_property_on_the_correct_machine(coverage):
    assert all(coverage.values())  # each reaches something


def test_together_the_seeds_reach_every_known_feature(coverage):
    known = known_features(seeds.full_machine())
    reached = set().union(*coverage.values())
    missing = known - reached - set(UNREACHABLE)
    assert not missing, f"no seed reaches {sorted(missing)}: run python -m fuzzer.seeds pick"
    assert not set(UNREACHABLE) & reached, "reached now: take it off UNREACHABLE"
    # Each seed adds something the others do not reach (a cover, not a pile).
    for name, features in coverage.items():
        others = set().union(*(f for n, f in coverage.items() if n != name))
        assert features - others, f"{name} adds nothing"


def test_a_campaign_checks_the_seeds_first(tmp_path, loaded):
    count = len(loaded)
    options = CampaignOptions(
        corpus=tmp_path, seeds=SEEDS, examples=count, workers=2, seed=1, cache=False
    )
    events: list[object] = []
    summary = Campaign(options, on_event=events.append).run()
    assert getattr(events[0], "seeds", None) == count
    assert summary.examples == summary.seed_examples == count
    assert summary.divergences == 0
    assert summary.coverage_reached  # their coverage is counted as any example's


def test_a_seed_finding_is_reported_like_any_other(tmp_path, loaded):
    # On a machine with a planted bug the seeds run with it switched on; the RTC's clock
    # read around the log shows in the seeds that read the RTC.
    options = CampaignOptions(
        corpus=tmp_path,
        seeds=SEEDS,
        examples=len(loaded),
        workers=1,
        seed=1,
        planted_bugs=("rtc-unlogged-clock",),
        cache=False,
    )
    summary = Campaign(options).run()
    assert summary.examples == summary.seed_examples == len(loaded)
    new = {line.signature: line for line in summary.new_signatures}
    assert "record-replay/rtc/logged-input" in new
    report = load_report(Path(new["record-replay/rtc/logged-input"].path))
    assert report.found.by == "campaign" and not report.found.shrunk
    assert report.scenario.config.planted_bugs == ("rtc-unlogged-clock",)
