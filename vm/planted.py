"""The registry of planted bugs: deliberately broken variants of the machine (pinned names).

A planted bug breaks exactly one of detfuzz's replay rules (`REPLAY_RULES`, the numbering
of vm/DEVICES.md); the fuzzer must catch each, and must never report the correct machine.
A configuration switches bugs on by name (`MachineConfig.planted_bugs`, part of the config
hash): a device bug replaces one device kind with its variant (vm/devices/planted.py,
picked by `vm.devices.registry.device_class`), a machine-level bug swaps in a broken part
of the machine when it is built (`install_machine_bugs`). With no bug configured nothing
here runs: the machine is exactly the correct one.

Names are persisted (configurations, reports and corpora carry them): never rename one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from vm.config import ConfigError, MachineConfig
from vm.devices import Device
from vm.devices.planted import (
    BlockPlainBh,
    ClintUnsavedTimer,
    EntropyUnlogged,
    NicIrqExternalTimer,
    RtcRunstateWrite,
    RtcUnloggedClock,
    UartPostLoadIrq,
    UartRxTimeoutRealtime,
)

if TYPE_CHECKING:
    from vm.machine import Machine

# The replay rules, as vm/DEVICES.md numbers them (what a divergence report names).
REPLAY_RULES: Mapping[int, str] = MappingProxyType(
    {
        1: "timers that change guest state run on the VIRTUAL clock",
        2: "bottom halves that change guest state are replay-scheduled",
        3: "host input reaches the guest only through the log (the choke point)",
        4: "loadvm restores every field that savevm should have saved",
        5: "post_load touches only its own device",
        6: "stopping and continuing the VM do not change guest state",
        7: "a device observes the exact icount of the instruction that touches it",
    }
)

_KEBAB = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")

MachineSwitch = Callable[["Machine"], None]


@dataclass(frozen=True, slots=True)
class PlantedBug:
    """One planted bug: either a device variant replacing every device of kind `replaces`,
    or (`replaces` None) a machine-level `switch` applied to the machine as it is built.

    Invariant: exactly one of `variant` and `switch` is set, and a variant is a subclass of
    the device it replaces, with the same registry kind."""

    name: str
    rule: int
    replaces: str | None
    summary: str
    variant: type[Device] | None = None
    switch: MachineSwitch | None = None

    def __post_init__(self) -> None:
        if not _KEBAB.fullmatch(self.name):
            raise ValueError(f"planted bug name {self.name!r} is not kebab-case")
        if self.rule not in REPLAY_RULES:
            raise ValueError(f"{self.name}: rule {self.rule} is not one of {list(REPLAY_RULES)}")
        if (self.variant is None) == (self.switch is None):
            raise ValueError(f"{self.name}: give a device variant or a machine switch, not both")
        if self.variant is not None and self.variant.kind != self.replaces:
            raise ValueError(f"{self.name}: the variant's kind is not {self.replaces!r}")
        if self.switch is not None and self.replaces is not None:
            raise ValueError(f"{self.name}: a machine switch replaces no device")


def _stale_io_icount(machine: Machine) -> None:
    """BUG (rule 7), a "translation bug": an MMIO access sees the icount of the first
    instruction of the CPU slice it runs in, not its own.

    As if the translated code synced the icount only on entry: every device read or write
    made while a slice runs (`Machine._cpu_exec`) sees the slice's first instruction's
    count, and VIRTUAL time (mtime, timer deadlines) from it. Slice boundaries are the
    host's choice (its quantum) or, in replay, the log's next event, so what a guest reads
    from mtime depends on the host. Only this machine's `io_icount` and `_cpu_exec` are
    replaced (instance attributes): a machine without the bug runs the exact code."""
    cpu = machine.cpu
    exact_cpu_exec = machine._cpu_exec
    slice_first: list[int | None] = [None]  # the icount the slice's first instruction sees

    def cpu_exec(*args: Any, **kwargs: Any) -> Any:
        slice_first[0] = cpu.icount + 1
        try:
            return exact_cpu_exec(*args, **kwargs)
        finally:
            slice_first[0] = None

    def io_icount() -> int:
        first = slice_first[0]
        return cpu.icount if first is None else min(first, cpu.icount)  # BUG

    machine._cpu_exec = cpu_exec  # type: ignore[method-assign]
    machine.io_icount = io_icount  # type: ignore[method-assign]


PLANTED_BUGS: Mapping[str, PlantedBug] = MappingProxyType(
    {
        bug.name: bug
        for bug in (
            PlantedBug(
                "uart-rx-timeout-realtime",
                1,
                "ns16550a",
                "the UART's RX character timeout runs on the REALTIME clock",
                variant=UartRxTimeoutRealtime,
            ),
            PlantedBug(
                "nic-irq-external-timer",
                1,
                "nic",
                "the NIC raises its interrupt from an EXTERNAL virtual timer",
                variant=NicIrqExternalTimer,
            ),
            PlantedBug(
                "block-plain-bh",
                2,
                "block",
                "the block device raises its completion interrupt from a plain bottom half",
                variant=BlockPlainBh,
            ),
            PlantedBug(
                "rtc-unlogged-clock",
                3,
                "goldfish_rtc",
                "the RTC reads the host model's HOST clock directly, not through the log",
                variant=RtcUnloggedClock,
            ),
            PlantedBug(
                "entropy-unlogged",
                3,
                "entropy",
                "the entropy device reads the host's entropy directly, not through the log",
                variant=EntropyUnlogged,
            ),
            PlantedBug(
                "clint-unsaved-timer",
                4,
                "clint",
                "the CLINT's vmstate leaves out mtimecmp, its timer's compare value",
                variant=ClintUnsavedTimer,
            ),
            PlantedBug(
                "uart-post-load-irq",
                5,
                "ns16550a",
                "the UART's post_load drives its interrupt line into the PLIC",
                variant=UartPostLoadIrq,
            ),
            PlantedBug(
                "rtc-runstate-write",
                6,
                "goldfish_rtc",
                "the RTC clears its pending alarm interrupt when the VM stops",
                variant=RtcRunstateWrite,
            ),
            PlantedBug(
                "stale-io-icount",
                7,
                None,
                "MMIO sees the icount of its CPU slice's first instruction, not its own",
                switch=_stale_io_icount,
            ),
        )
    }
)


def check_planted(config: MachineConfig) -> None:
    """Raise ConfigError unless every planted bug of `config` is known and has something
    to replace: a bug whose device the configuration lacks would be switched on (and
    hashed) without changing the machine."""
    unknown = [name for name in config.planted_bugs if name not in PLANTED_BUGS]
    if unknown:
        raise ConfigError(f"unknown planted bugs {unknown} (known: {sorted(PLANTED_BUGS)})")
    kinds = {spec.kind for spec in config.devices}
    for name in config.planted_bugs:
        replaces = PLANTED_BUGS[name].replaces
        if replaces is not None and replaces not in kinds:
            raise ConfigError(
                f"planted bug {name!r} replaces the {replaces!r} device, "
                "which the configuration does not have"
            )


def planted_variant(kind: str, planted: Iterable[str]) -> type[Device] | None:
    """The class a machine with bugs `planted` builds for device `kind`, or None for the
    real one. Several bugs of one kind combine into one class that has all of them."""
    variants = tuple(
        bug.variant
        for name in planted
        if (bug := PLANTED_BUGS[name]).replaces == kind and bug.variant is not None
    )
    if not variants:
        return None
    return variants[0] if len(variants) == 1 else _combined(variants)


@functools.cache
def _combined(variants: tuple[type[Device], ...]) -> type[Device]:
    # Each variant overrides a different part of the same device, so their MRO composes.
    name = "".join(cls.__name__ for cls in variants)
    doc = "Planted bugs combined: " + ", ".join(cls.__name__ for cls in variants) + "."
    return type(name, variants, {"__doc__": doc, "__module__": __name__})


def install_machine_bugs(machine: Machine) -> None:
    """Apply the machine-level planted bugs of the machine's configuration (its devices
    are built already)."""
    for name in machine.config.planted_bugs:
        switch = PLANTED_BUGS[name].switch
        if switch is not None:
            switch(machine)
