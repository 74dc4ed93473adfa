"""Snapshot and seek findings: the fields a reload got wrong, and rule 5 told from rule 4 by
loading the device sections in the other order.

The guest claims the UART's THR-empty interrupt and never completes it: the UART's line is
high, the PLIC's pending bit clear. A UART whose post_load re-drives its line (the planted
uart-post-load-irq) pends source 10 again, and whether that survives depends on whether
the PLIC's section loads before or after the UART's.
"""

from __future__ import annotations

import dataclasses

import pytest

from fuzzer.divergence import DivergenceKind, Property, Rule
from fuzzer.properties import check
from fuzzer.scenario import Scenario
from vm import MachineConfig, ReplayMode
from vm.trace import BuiltinTarget

UART0, UART_IRQ, PLIC_CLAIM = 0x1000_0000, 10, 0x0C20_0004
CLAIMED_AND_HELD = f"""
    li   t0, {0x0C00_0000 + 4 * UART_IRQ:#x}
    li   t1, 1
    sw   t1, 0(t0)             # priority 1
    li   t0, 0x0c002000
    li   t1, {1 << UART_IRQ:#x}
    sw   t1, 0(t0)             # the M context's enable
    li   s1, {UART0:#x}
    li   t0, 2
    sb   t0, 1(s1)             # IER.THRI: the line rises (THR is empty)
    li   t0, {PLIC_CLAIM:#x}
    lw   a0, 0(t0)             # claim source 10, never complete it
    li   s2, 0
1:  addi s2, s2, 1
    j    1b
"""
HELD_FROM = 30  # the claim has happened by then


def scenario(*, planted: tuple[str, ...], **points: object) -> Scenario:
    return Scenario(
        config=MachineConfig(planted_bugs=planted),
        program=CLAIMED_AND_HELD,
        budget=400,
        **points,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("order_seed", range(4))
def test_a_reload_finding_lists_the_fields_each_order_got_wrong(order_seed):
    buggy = scenario(planted=("uart-post-load-irq",), snapshots=(HELD_FROM,))
    found = check(
        dataclasses.replace(buggy, section_order_seed=order_seed), properties=(Property.SNAPSHOT,)
    )
    (divergence,) = found.divergences
    assert divergence.kind is DivergenceKind.RELOAD
    assert divergence.rule is Rule.POST_LOAD_OWN_DEVICE and divergence.component == "plic"
    assert divergence.observed != divergence.expected  # the digest of the load that differs
    loc = divergence.localisation
    assert loc is not None and loc.icount == HELD_FROM
    # One of the two orders loads the PLIC first and the UART's push survives.
    assert [d.split(": ", 1)[1] for d in loc.differences] == ["plic.pending[0]: 0x0 != 0x400"]
    assert "savevm/loadvm" in divergence.render()


def test_a_correct_uart_reloads_whole_in_any_order():
    assert not check(scenario(planted=(), snapshots=(HELD_FROM,))).divergences


def _replay_from_snapshot(planted: tuple[str, ...], *, reverse: bool) -> bytes:
    base = scenario(planted=planted)
    target = BuiltinTarget()
    record = target.run(dataclasses.replace(base.trace_run(ReplayMode.RECORD), snapshots=(50,)))
    (taken,) = record.snapshots
    replay = dataclasses.replace(
        base.trace_run(ReplayMode.REPLAY),
        log=record.log,
        start_snapshot=taken.data,
        reverse_sections=reverse,
        samples=(200,),
    )
    return target.run(replay).samples[0].digest


def test_a_run_can_load_its_snapshots_in_the_reverse_section_order():
    # The experiment the rule inference makes: only a post_load reaching into another
    # device tells the two orders apart.
    planted = ("uart-post-load-irq",)
    assert _replay_from_snapshot(planted, reverse=False) != _replay_from_snapshot(
        planted, reverse=True
    )
    assert _replay_from_snapshot((), reverse=False) == _replay_from_snapshot((), reverse=True)


def test_a_seek_through_a_post_load_that_reaches_the_plic_names_rule_5():
    # Seeks load the periodic snapshots; the replay after one differs from the straight
    # replay only in the section order the buggy post_load wins in.
    found = check(
        scenario(planted=("uart-post-load-irq",), seeks=(300, 120)),
        properties=(Property.SEEK,),
        localise_divergences=False,
    )
    assert found.divergences, "the seek did not meet the planted post_load"
    assert {d.rule for d in found.divergences} == {Rule.POST_LOAD_OWN_DEVICE}
