"""The campaign engine (fuzzer.campaign): budgets, dedup by signature across workers and
campaigns, the corpus's atomic files and lock, and workers that die or hang.

Campaigns here are small (a few examples, one or two workers) so each takes seconds; the
planted bug used, rtc-unlogged-clock, is found within the first rounds.
"""

from __future__ import annotations

import dataclasses
import textwrap
import time
from pathlib import Path

import pytest

from fuzzer.campaign import (
    Campaign,
    CampaignError,
    CampaignOptions,
    Finding,
    Started,
    Summary,
    derive_seed,
    event_json,
    machine_config,
)
from fuzzer.campaign_corpus import (
    CACHE_DIR,
    Corpus,
    CorpusError,
    EntryState,
    ExampleCache,
    cache_key,
)
from fuzzer.divergence import Divergence, DivergenceKind, Property, Rule
from fuzzer.report import Found, Report, load_report, save_report
from fuzzer.scenario import Scenario
from vm.config import DeviceSpec, MachineConfig, canonical_bytes

RR = (Property.RECORD_REPLAY,)
BUG = "rtc-unlogged-clock"
RTC_SIGNATURE = "record-replay/rtc/logged-input"


def campaign(corpus: Path, **options: object) -> tuple[Summary, list[object]]:
    events: list[object] = []
    settings = {"workers": 1, "seed": 1, "max_shrinks": 20, "progress_every_s": 0.5}
    settings.update(options)
    summary = Campaign(
        CampaignOptions(corpus=corpus, **settings),  # type: ignore[arg-type]
        on_event=events.append,
    ).run()
    return summary, events


def leftovers(directory: Path) -> list[Path]:
    """Anything an interrupted write would leave: temporary files."""
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# -- pure parts ------------------------------------------------------------------------------


def test_round_seeds_are_a_function_of_campaign_worker_and_round():
    assert derive_seed(1, 0, 0) == derive_seed(1, 0, 0)
    seeds = {derive_seed(s, w, r) for s in (1, 2) for w in range(3) for r in range(3)}
    assert len(seeds) == 18
    assert all(0 <= s < 1 << 64 for s in seeds)


@pytest.mark.parametrize(
    "bad",
    [{"time_s": 0}, {"examples": 0}, {"workers": 0}, {"seed": -1}, {"properties": ()}],
)
def test_options_refuse_what_cannot_run(bad, tmp_path):
    with pytest.raises(CampaignError):
        CampaignOptions(corpus=tmp_path, **bad)  # type: ignore[arg-type]


def test_a_bad_machine_is_one_error_before_any_worker_starts(tmp_path):
    spec = DeviceSpec("no_such_module_anywhere:Device", "dev0", 0x1000_4000, irq=5)
    with pytest.raises(CampaignError, match="bad machine: cannot load device"):
        Campaign(CampaignOptions(corpus=tmp_path, user_devices=(spec,))).run()
    overlapping = DeviceSpec("ns16550a", "uart9", 0x1000_0000, irq=12)
    with pytest.raises(CampaignError, match="overlaps"):
        Campaign(CampaignOptions(corpus=tmp_path, user_devices=(overlapping,))).run()


# -- the corpus ------------------------------------------------------------------------------

PROGRAM = "li t0, 0x100000\nli t1, 0x5555\nsw t1, 0(t0)\n"


def report(component: str = "rtc", **found: object) -> Report:
    scenario = Scenario(config=MachineConfig(ram_size=64 << 10), program=PROGRAM, budget=100)
    divergence = Divergence(
        Property.RECORD_REPLAY, DivergenceKind.DIGEST, component, Rule.LOGGED_INPUT, 5, "x"
    )
    return Report(scenario, divergence, {}, Found(**found))  # type: ignore[arg-type]


def test_the_corpus_is_locked_while_a_campaign_uses_it(tmp_path):
    first = Corpus.open(tmp_path)
    with pytest.raises(CorpusError, match="in use by another campaign"):
        Corpus.open(tmp_path)
    first.close()
    Corpus.open(tmp_path).close()


def test_an_unusable_corpus_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(CorpusError, match="cannot use corpus directory"):
        Corpus.open(tmp_path / "file" / "corpus")


def test_opening_clears_interrupted_writes_and_skips_unreadable_reports(tmp_path):
    kept = save_report(report(), tmp_path)
    # What a kill between write_atomic's mkstemp and its rename leaves.
    (tmp_path / f".{kept.name}.k3j2_x.tmp").write_bytes(b"half a rep")
    (tmp_path / "garbage.dfr").write_bytes(b"\x93\x01\x02")
    corpus = Corpus.open(tmp_path)
    try:
        assert leftovers(tmp_path) == []
        assert list(corpus.entries) == [RTC_SIGNATURE]
        assert len(corpus.unreadable) == 1 and "garbage.dfr" in corpus.unreadable[0]
    finally:
        corpus.close()


def test_hits_are_counted_into_the_report_and_shrinking_keeps_how_it_was_found(tmp_path):
    save_report(report("uart0", by="test"), tmp_path)  # a hand-made case: never replaced
    corpus = Corpus.open(tmp_path)
    try:
        hand_made = corpus.entries["record-replay/uart0/logged-input"]
        assert hand_made.state is EntryState.FINAL and not hand_made.new
        first = report(by="campaign", campaign_seed=7, examples=12, elapsed_ms=900)
        entry = corpus.add(first, elapsed_s=0.9, examples=12)
        assert entry is not None and entry.state is EntryState.OPEN
        assert corpus.add(first, elapsed_s=1.0, examples=13) is None  # never twice
        assert load_report(entry.path).found.hits == 1
        corpus.hit(RTC_SIGNATURE, elapsed_s=2.0, examples=20)
        corpus.hit(RTC_SIGNATURE, elapsed_s=3.0, examples=30)
        corpus.flush()
        assert load_report(entry.path).found.hits == 3
        # Only the worker that claimed it may replace it.
        assert corpus.claim(RTC_SIGNATURE, worker=0)
        assert not corpus.claim(RTC_SIGNATURE, worker=1)
        shrunk = report(by="campaign", shrunk=True, classification="deterministic")
        assert corpus.shrunk(shrunk, worker=1) is None
        assert corpus.shrunk(shrunk, worker=0) is entry
        found = load_report(entry.path).found
        assert (found.shrunk, found.classification, found.hits) == (True, "deterministic", 3)
        assert (found.campaign_seed, found.examples, found.elapsed_ms) == (7, 12, 900)
        assert corpus.known() == sorted(corpus.entries)
    finally:
        corpus.close()
    assert leftovers(tmp_path) == []


def test_an_unshrunk_campaign_report_is_open_to_the_next_campaign(tmp_path):
    save_report(report(by="campaign", shrunk=False), tmp_path)
    corpus = Corpus.open(tmp_path)
    try:
        assert corpus.known() == []  # a worker meeting it may lock it and shrink it
        assert corpus.claim(RTC_SIGNATURE, worker=0)
        corpus.release(0)
        assert corpus.entries[RTC_SIGNATURE].state is EntryState.OPEN
    finally:
        corpus.close()


# -- campaigns ---------------------------------------------------------------------------------


def test_the_correct_machine_runs_exactly_its_example_budget(tmp_path):
    summary, events = campaign(tmp_path, examples=8, workers=2)
    assert summary.stopped == "examples"
    assert summary.examples == 8
    assert summary.signatures == () and summary.divergences == 0
    assert not list(tmp_path.glob("*.dfr")) and leftovers(tmp_path) == []
    assert summary.coverage_reached and summary.coverage_known > 0
    assert len(summary.coverage_never) < summary.coverage_known
    assert {p.property for p in summary.properties} == {p.value for p in Property}
    assert event_json(summary)["event"] == "summary"
    assert type(events[0]).__name__ == "Started"


def test_the_time_budget_is_honoured(tmp_path):
    start = time.monotonic()
    summary, events = campaign(tmp_path, time_s=4.0)
    took = time.monotonic() - start
    assert summary.stopped == "time"
    assert 4.0 <= summary.elapsed_s < 7.0 and took < 10.0  # a stop takes at most ~1 s
    assert summary.examples > 0
    assert any(type(e).__name__ == "Progress" for e in events)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Summary, list[object]]:
    corpus = tmp_path_factory.mktemp("corpus")
    summary, events = campaign(
        corpus, examples=30, workers=2, planted_bugs=(BUG,), properties=RR, chunk=10
    )
    return corpus, summary, events


def test_a_planted_bug_is_reported_once_per_signature_with_its_hits(planted):
    corpus, summary, events = planted
    assert RTC_SIGNATURE in {s.signature for s in summary.new_signatures}
    files = sorted(corpus.glob("*.dfr"))
    assert len(files) == len(summary.signatures) == len(summary.new_signatures)
    # Every hit of every signature is counted, once, into its one report.
    assert sum(s.hits for s in summary.signatures) == summary.divergences
    for line in summary.signatures:
        on_disk = load_report(Path(line.path))
        assert str(on_disk.signature) == line.signature
        assert on_disk.found.hits == line.total_hits == line.hits
        assert on_disk.found.by == "campaign" and on_disk.found.campaign_seed == 1
    rtc = next(s for s in summary.signatures if s.signature == RTC_SIGNATURE)
    assert rtc.shrunk and rtc.classification == "deterministic"
    stages = [(e.stage, e.signature) for e in events if isinstance(e, Finding)]
    assert stages.count(("new", RTC_SIGNATURE)) == 1
    assert ("shrunk", RTC_SIGNATURE) in stages
    assert leftovers(corpus) == []


def test_a_second_campaign_on_the_corpus_reports_nothing_twice(planted, tmp_path):
    corpus, first, _ = planted
    again = tmp_path / "corpus"
    again.mkdir()
    for path in corpus.glob("*.dfr"):
        (again / path.name).write_bytes(path.read_bytes())
    before = {s.signature: s.total_hits for s in first.signatures}
    summary, _ = campaign(again, examples=12, planted_bugs=(BUG,), properties=RR, seed=2)
    assert not {s.signature for s in summary.new_signatures} & set(before)
    for line in summary.signatures:
        if line.signature in before:
            assert not line.new and line.total_hits == before[line.signature] + line.hits
            assert load_report(Path(line.path)).found.hits == line.total_hits
    assert summary.signatures and any(s.signature in before for s in summary.signatures)


# -- workers that die or hang ------------------------------------------------------------------

DEVICE_SOURCE = """
import os, signal, time
from pathlib import Path

from vm.devices import Device
from vm.vmstate import U32, VMStateDescription

MARK = Path({mark!r})


class Bad(Device):
    '''Misbehaves once, at its first access by a guest (icount > 0: not the fuzzer's probe).'''

    kind = "bad"
    size = 0x1000
    access_sizes = frozenset({{4}})
    VMSTATE = VMStateDescription("bad", version=1, minimum_version=1, fields=[U32("value")])

    def __init__(self, host, spec):
        super().__init__(host, spec)
        self.value = 0x1234

    def reset(self):
        self.value = 0x1234

    def read(self, offset, size):
        self.misbehave()
        return self.value

    def write(self, offset, size, value):
        self.misbehave()

    def misbehave(self):
        if self.host.io_icount() == 0 or MARK.exists():
            return
        MARK.write_text("done")
        {action}
"""


def bad_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, action: str) -> str:
    source = DEVICE_SOURCE.format(mark=str(tmp_path / f"{name}.mark"), action=action)
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned workers inherit sys.path
    return f"{name}:Bad"


def test_a_worker_that_dies_is_restarted_and_its_example_recorded(tmp_path, monkeypatch):
    kind = bad_device(tmp_path, monkeypatch, "dying_device", "os.kill(os.getpid(), signal.SIGKILL)")
    spec = DeviceSpec(kind, "bad0", 0x1000_4000, irq=5)
    corpus = tmp_path / "corpus"
    summary, events = campaign(corpus, examples=150, user_devices=(spec,))
    assert summary.worker_restarts == 1
    assert summary.examples == 150  # the restarted worker finished the budget
    dead = next(s for s in summary.signatures if s.signature.endswith("/worker/device-exception"))
    assert dead.new and not dead.shrunk
    report = load_report(Path(dead.path))
    assert "died (was killed by SIGKILL)" in report.divergence.detail
    assert report.scenario.config.devices[-1] == spec  # the example it was checking
    assert any("restarted" in getattr(e, "message", "") for e in events)


def test_a_silent_worker_is_killed_and_recorded(tmp_path, monkeypatch):
    # Blocking SIGALRM defeats the in-process wall-clock limit: only the watchdog is left.
    hang = "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM}); time.sleep(120)"
    kind = bad_device(tmp_path, monkeypatch, "hanging_device", hang)
    spec = DeviceSpec(kind, "bad0", 0x1000_4000, irq=5)
    summary, _ = campaign(
        tmp_path / "corpus",
        examples=150,
        user_devices=(spec,),
        example_timeout_s=1.5,
        silence_grace_s=0.5,
    )
    assert summary.worker_restarts == 1
    hung = next(s for s in summary.signatures if s.signature.endswith("/worker/wall-clock"))
    assert "was silent" in load_report(Path(hung.path)).divergence.detail


def test_summary_json_is_plain_data(planted):
    import json

    _, summary, events = planted
    data = json.loads(json.dumps(event_json(summary)))
    assert data["new_signatures"] == len(summary.new_signatures)
    for event in events:
        json.dumps(event_json(event))  # type: ignore[arg-type]


def test_summary_lines_are_frozen(planted):
    _, summary, _ = planted
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.examples = 0  # type: ignore[misc]


# -- the example cache -------------------------------------------------------------------------


def test_the_example_cache_reads_what_was_there_before_and_its_share(tmp_path):
    cache = ExampleCache(tmp_path, max_per_key=4)
    values = [bytes([n]) * 3 for n in range(3)]
    for value in values:
        cache.save(b"key", value)
    cache.save(b"key", values[0])  # saved once
    assert sorted(cache.fetch(b"key")) == sorted(values)
    assert list(cache.fetch(b"other")) == []
    # Nothing written from `readable_before` on is read.
    cutoff = time.time()
    time.sleep(0.02)
    cache.save(b"key", b"later")
    reader = ExampleCache(tmp_path, readable_before=cutoff)
    assert sorted(reader.fetch(b"key")) == sorted(values)
    # Two shares are disjoint and make the whole.
    shares = [set(ExampleCache(tmp_path, part=(i, 2)).fetch(b"key")) for i in range(2)]
    assert not shares[0] & shares[1] and shares[0] | shares[1] == {*values, b"later"}
    # A full key drops its oldest value for a new one.
    cache.save(b"key", b"newest")
    assert set(cache.fetch(b"key")) == {*values[1:], b"later", b"newest"}
    cache.delete(b"key", b"later")
    cache.delete(b"key", b"never saved")
    assert b"later" not in set(cache.fetch(b"key")) and cache.entries([b"key", b"none"]) == 3


def test_the_example_cache_skips_what_is_not_its_own(tmp_path):
    cache = ExampleCache(tmp_path)
    cache.save(b"key", b"value")
    key_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    (key_dir / ".0123456789abcdef.tmp").write_bytes(b"half")  # an interrupted write
    (key_dir / "README").write_text("not a value")
    (key_dir / "0123456789abcdef").mkdir()  # not a file
    assert list(cache.fetch(b"key")) == [b"value"]
    assert cache.entries([b"key"]) == 1


def test_cache_keys_separate_configurations():
    config = canonical_bytes(MachineConfig())
    planted = canonical_bytes(MachineConfig(planted_bugs=(BUG,)))
    assert cache_key(config, RR) == cache_key(config, RR)
    keys = {cache_key(config, RR), cache_key(planted, RR), cache_key(config, tuple(Property))}
    assert len(keys) == 3


def cache_files(corpus: Path) -> list[Path]:
    return [p for p in (corpus / CACHE_DIR).rglob("*") if p.is_file()]


def test_a_second_campaign_replays_the_cache_first(tmp_path):
    first, _ = campaign(tmp_path, examples=10, chunk=5)
    assert first.cached_examples == 0 and cache_files(tmp_path)
    second, events = campaign(tmp_path, examples=10, chunk=5, seed=2)
    assert 0 < second.cached_examples <= 5  # one replay round, of a chunk at most
    assert second.examples == 10
    started = events[0]
    assert isinstance(started, Started) and started.cached > 0 and started.seeds == 0
    assert not list(tmp_path.glob("*.dfr"))  # the cache is not reports
    off, _ = campaign(tmp_path, examples=4, seed=2, cache=False)
    assert off.cached_examples == 0


def test_a_seeded_campaign_without_a_cache_is_reproducible(tmp_path):
    fresh = [campaign(tmp_path / f"fresh{n}", examples=6)[0] for n in range(2)]
    off, _ = campaign(tmp_path / "off", examples=6, cache=False)
    assert fresh[0].coverage_reached == fresh[1].coverage_reached == off.coverage_reached
    assert not cache_files(tmp_path / "off")


def test_a_damaged_cache_costs_only_its_entries(tmp_path):
    campaign(tmp_path, examples=5)
    files = cache_files(tmp_path)
    for path in files[:2]:
        path.write_bytes(b"\x00" * 7)  # truncated
    # Failures of the last campaign (Hypothesis replays all of them) that are garbage.
    config = machine_config(CampaignOptions(corpus=tmp_path))
    key = cache_key(canonical_bytes(config), tuple(Property))
    cache = ExampleCache(tmp_path / CACHE_DIR)
    for garbage in (b"\xff\xfe not a choice sequence", b"", bytes(range(256)) * 4):
        cache.save(key, garbage)
    (files[0].parent / f"{7:016x}").write_bytes(b"\x01")  # a file of another name
    summary, events = campaign(tmp_path, examples=8, chunk=4, seed=2)
    assert summary.examples == 8 and summary.divergences == 0
    assert summary.cached_examples >= 1  # the empty choice sequence is a valid example
    assert not [e for e in events if type(e).__name__ == "Notice"]
    assert list(cache.fetch(key)) == []  # no longer failing, or undecodable: dropped
