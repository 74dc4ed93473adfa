"""The machine configuration: one canonical, hashable, serialisable description (pinned).

Logs, snapshots and reports carry `config_hash(config)` and refuse a machine built from
another configuration. The dict form (`to_dict`/`from_dict`, inverses of each other) is
plain msgpack-serialisable data with a format version, so reports can carry it verbatim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

CONFIG_FORMAT_VERSION = 1

DEFAULT_RAM_SIZE = 8 << 20
# QEMU rounds `-m` up to 8 KiB; requiring the same keeps RAM's end (and a1) identical.
RAM_GRANULE = 8 << 10
MAX_ICOUNT_SHIFT = 10  # QEMU's limit for -icount shift=N

OptionValue = int | str | bool


class ConfigError(ValueError):
    """A configuration (or its serialised form) is invalid; the message says which part."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of a machine: which model (`kind`, a registry name or `module:Class` for a
    user device), its instance name, MMIO base, PLIC interrupt source and options."""

    kind: str
    name: str
    base: int
    irq: int | None = None
    options: tuple[tuple[str, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        if not self.kind or not self.name:
            raise ConfigError("a device needs a kind and a name")
        if not 0 <= self.base < 1 << 32:
            raise ConfigError(f"device {self.name}: base {self.base:#x} is not a 32-bit address")
        if self.irq is not None and not 1 <= self.irq <= 1023:
            raise ConfigError(f"device {self.name}: PLIC source {self.irq} is not in 1..1023")
        keys = [key for key, _ in self.options]
        if keys != sorted(set(keys)):
            raise ConfigError(f"device {self.name}: options must be sorted and unique")

    def option(self, key: str, default: OptionValue) -> OptionValue:
        return dict(self.options).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "base": self.base,
            "irq": self.irq,
            "options": [[key, value] for key, value in self.options],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceSpec:
        try:
            options = tuple((str(key), value) for key, value in data["options"])
            return cls(
                kind=str(data["kind"]),
                name=str(data["name"]),
                base=int(data["base"]),
                irq=None if data["irq"] is None else int(data["irq"]),
                options=options,
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed device entry {data!r}: {exc}") from None


# QEMU virt's devices at its addresses and interrupt sources.
FINISHER = DeviceSpec("sifive_test", "finisher", 0x0010_0000)
RTC = DeviceSpec("goldfish_rtc", "rtc", 0x0010_1000, irq=11)
CLINT = DeviceSpec("clint", "clint", 0x0200_0000)
PLIC = DeviceSpec("plic", "plic", 0x0C00_0000)
UART0 = DeviceSpec("ns16550a", "uart0", 0x1000_0000, irq=10)
DEFAULT_DEVICES: tuple[DeviceSpec, ...] = (FINISHER, RTC, CLINT, PLIC, UART0)


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """What a machine is built from; equal configurations build identical machines."""

    ram_size: int = DEFAULT_RAM_SIZE
    icount_shift: int = 0
    devices: tuple[DeviceSpec, ...] = DEFAULT_DEVICES
    # Names of deliberately broken device variants switched on (the fuzzer's planted bugs).
    planted_bugs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.ram_size <= 0 or self.ram_size % RAM_GRANULE or self.ram_size > 0x8000_0000:
            raise ConfigError(f"ram_size must be a multiple of 8 KiB up to 2 GiB: {self.ram_size}")
        if not 0 <= self.icount_shift <= MAX_ICOUNT_SHIFT:
            raise ConfigError(f"icount_shift must be 0..{MAX_ICOUNT_SHIFT}: {self.icount_shift}")
        names = [device.name for device in self.devices]
        if len(names) != len(set(names)):
            raise ConfigError(f"device names must be unique: {names}")
        if list(self.planted_bugs) != sorted(set(self.planted_bugs)):
            raise ConfigError("planted_bugs must be sorted and unique")
        if self.planted_bugs:
            # Imported here: the registry of planted bugs imports the device models, which
            # import this module.
            from vm.planted import check_planted

            check_planted(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain data; `from_dict` is its inverse."""
        return {
            "format": CONFIG_FORMAT_VERSION,
            "ram_size": self.ram_size,
            "icount_shift": self.icount_shift,
            "devices": [device.to_dict() for device in self.devices],
            "planted_bugs": list(self.planted_bugs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MachineConfig:
        """The inverse of `to_dict`; raises ConfigError on anything else."""
        if not isinstance(data, Mapping):
            raise ConfigError("a machine configuration must be a map")
        if data.get("format") != CONFIG_FORMAT_VERSION:
            raise ConfigError(
                f"machine configuration format {data.get('format')!r} is not "
                f"{CONFIG_FORMAT_VERSION}"
            )
        try:
            devices = tuple(DeviceSpec.from_dict(entry) for entry in data["devices"])
            return cls(
                ram_size=int(data["ram_size"]),
                icount_shift=int(data["icount_shift"]),
                devices=devices,
                planted_bugs=tuple(str(name) for name in data["planted_bugs"]),
            )
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed machine configuration: {exc}") from None

    def device(self, name: str) -> DeviceSpec:
        for spec in self.devices:
            if spec.name == name:
                return spec
        raise KeyError(name)


def canonical_bytes(config: MachineConfig) -> bytes:
    """The configuration as canonical msgpack (map keys sorted): equal configs, equal bytes."""
    return msgpack.packb(_sorted(config.to_dict()), use_bin_type=True)


def config_hash(config: MachineConfig) -> str:
    """A short stable identity for logs, snapshots and reports (hex SHA-256 of the bytes)."""
    return hashlib.sha256(canonical_bytes(config)).hexdigest()


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value
