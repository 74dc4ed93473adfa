"""The host model and the nondeterminism choke point."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vm.hostmodel import HostModel, HostProfile
from vm.nondet import Nondet, NondetKind

seeds = st.integers(0, (1 << 64) - 1)
streams = st.text("abcdefgh/-", min_size=1, max_size=12)
indices = st.integers(0, 1 << 40)


@given(seeds, streams, indices)
def test_a_draw_is_a_pure_function_of_seed_stream_and_index(seed, stream, index):
    assert HostModel(seed).draw(stream, index) == HostModel(seed).draw(stream, index)


@given(seeds, st.lists(st.tuples(streams, indices), min_size=2, max_size=20))
def test_the_order_of_questions_does_not_change_the_answers(seed, questions):
    forward = HostModel(seed)
    answers = {q: forward.draw(*q) for q in questions}
    backward = HostModel(seed)
    assert {q: backward.draw(*q) for q in reversed(questions)} == answers


def test_different_seeds_give_different_hosts():
    draws = {HostModel(seed).draw("quantum", 0) for seed in range(64)}
    assert len(draws) == 64


@given(seeds, indices, st.integers(1, 10**9), st.integers(0, 10**9))
def test_between_stays_in_range(seed, index, low, width):
    value = HostModel(seed).between("s", index, low, low + width)
    assert low <= value <= low + width


@given(seeds, indices, st.integers(1, 10**6), st.integers(0, 10**8))
def test_log_between_stays_in_range(seed, index, low, width):
    value = HostModel(seed).log_between("s", index, low, low + width)
    assert low <= value <= low + width


def test_log_between_reaches_every_order_of_magnitude():
    host = HostModel(7)
    magnitudes = {host.log_between("q", i, 1, 1 << 20).bit_length() for i in range(2000)}
    assert magnitudes == set(range(1, 22))


@given(seeds, indices)
def test_host_decisions_respect_the_profile(seed, index):
    host, p = HostModel(seed), HostProfile()
    assert p.quantum_insns_min <= host.quantum_insns(index) <= p.quantum_insns_max
    assert p.stop_ns_min <= host.stop_ns(index) <= p.stop_ns_max
    assert p.block_latency_ns_min <= host.block_latency_ns(index) <= p.block_latency_ns_max
    assert abs(host.host_clock_drift_ppm()) <= p.host_clock_drift_ppm_max
    assert host.slice_host_ns(index, 1000) >= 1
    assert len(host.entropy(index, 13)) == 13


def test_entropy_requests_are_independent_of_their_length_prefix():
    host = HostModel(3)
    assert host.entropy(5, 20)[:8] == host.entropy(5, 8)
    assert host.entropy(5, 8) != host.entropy(6, 8)


@pytest.mark.parametrize("seed", [-1, 1 << 64])
def test_seeds_must_be_64_bit(seed):
    with pytest.raises(ValueError):
        HostModel(seed)


def test_without_a_port_the_choke_point_passes_values_through_and_counts_them():
    nondet = Nondet()
    assert nondet.value(NondetKind.RANDOM, lambda: b"xy") == b"xy"
    assert nondet.counts[NondetKind.RANDOM] == 1


def test_an_installed_port_sees_every_value_and_may_replace_it():
    seen = []

    class Replayer:
        def value(self, kind, channel, produce):
            seen.append((kind, channel))
            return 42  # a replay never asks the live host

    nondet = Nondet()
    nondet.port = Replayer()
    assert nondet.value(NondetKind.CLOCK_HOST, lambda: pytest.fail("live host"), channel=2) == 42
    assert seen == [(NondetKind.CLOCK_HOST, 2)]


# Modules and attributes through which the real host leaks in. vm/ takes host behaviour from
# the seeded host model only.
FORBIDDEN_MODULES = {"time", "random", "secrets", "datetime", "uuid", "socket", "select"}
FORBIDDEN_ATTRIBUTES = {("os", "urandom"), ("os", "environ"), ("os", "getenv"), ("os", "getrandom")}


def test_nothing_in_vm_reads_the_real_clock_randomness_or_environment():
    offences = []
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("vm").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                names = set()
            offences += [f"{path.name}: imports {name}" for name in names & FORBIDDEN_MODULES]
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES
            ):
                offences.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offences
