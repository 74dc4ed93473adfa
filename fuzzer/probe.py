"""Probe the devices the guest generator knows nothing about (user devices): which offsets
of their MMIO windows look live, which widths they take, which host input channels they
listen on. One probe per configuration (cached by its hash), on throwaway machines.

An offset is live if it reads non-zero on a fresh machine, or reads back something else
after a write of a pattern. Writes have side effects (a command register, a doorbell), so
each pass runs on its own fresh machine, and a device that raises on an access counts
that offset as live: the fuzzer should go there.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from fuzzer.guestplan import BUILTIN_KINDS, generic_specs
from vm.backends import CharBackend, NetBackend
from vm.config import MachineConfig, config_hash
from vm.machine import Machine

PROBE_BYTES = 0x1000  # the part of a window probed (a PLIC-sized window would take long)
PATTERN = 0xA5C3_5A3C
WIDTHS = (1, 2, 4)


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str  # "char" | "net"


@dataclass(frozen=True)
class DeviceProbe:
    name: str
    base: int
    size: int
    irq: int | None
    widths: tuple[int, ...]  # access widths the device takes
    live: tuple[int, ...]  # offsets that looked live


@dataclass(frozen=True)
class ConfigProbe:
    devices: tuple[DeviceProbe, ...]
    channels: tuple[Channel, ...]  # host input channels of devices outside BUILTIN_KINDS


def probe(config: MachineConfig) -> ConfigProbe:
    """What the generic exerciser needs to know about `config`'s other devices (this
    builds machines, so it imports user device modules)."""
    return _probe_cached(config_hash(config), config)


@functools.lru_cache(maxsize=64)
def _probe_cached(key: str, config: MachineConfig) -> ConfigProbe:
    del key  # the cache key: equal configurations hash equal
    specs = generic_specs(config)
    reference = Machine(config)
    devices = []
    for spec in specs:
        device = reference.devices[spec.name]
        widths = tuple(w for w in WIDTHS if w in device.access_sizes) or (4,)
        width = max(widths)
        offsets = range(0, min(device.size, PROBE_BYTES) - width + 1, width)
        first = {offset: _read(reference, spec.base + offset, width) for offset in offsets}
        written = Machine(config)
        live = []
        for offset in offsets:
            before = first[offset]
            if before != 0:
                live.append(offset)
                continue
            address = spec.base + offset
            try:
                written.bus.write(address, width, PATTERN)
            except Exception:
                live.append(offset)
                continue
            if _read(written, address, width) != before:
                live.append(offset)
        devices.append(
            DeviceProbe(spec.name, spec.base, device.size, spec.irq, widths, tuple(live))
        )
    builtin_names = {spec.name for spec in config.devices if spec.kind in BUILTIN_KINDS}
    channels = tuple(
        Channel(name, "char" if isinstance(backend, CharBackend) else "net")
        for name, backend in reference.backends.items()
        if name not in builtin_names and isinstance(backend, CharBackend | NetBackend)
    )
    return ConfigProbe(tuple(devices), channels)


def _read(machine: Machine, address: int, width: int) -> int | None:
    """A read through the bus; None if the device raised (live, for the caller)."""
    try:
        return machine.bus.read(address, width)
    except Exception:
        return None
