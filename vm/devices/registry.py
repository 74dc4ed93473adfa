"""Device models by kind name; a `module:Class` kind names a user device module."""

from __future__ import annotations

import importlib
from collections.abc import Collection

from vm.config import ConfigError
from vm.devices import Device
from vm.devices.block import BlockDevice
from vm.devices.clint import Clint
from vm.devices.entropy import EntropyDevice
from vm.devices.finisher import SifiveTest
from vm.devices.nic import Nic
from vm.devices.plic import Plic
from vm.devices.rtc import GoldfishRtc
from vm.devices.uart import Uart16550
from vm.planted import planted_variant

BUILTIN_DEVICES: dict[str, type[Device]] = {
    cls.kind: cls
    for cls in (SifiveTest, GoldfishRtc, Clint, Plic, Uart16550, EntropyDevice, BlockDevice, Nic)
}


def device_class(kind: str, *, planted: Collection[str] = ()) -> type[Device]:
    """The class for a device kind: built in, or `package.module:Class` imported on demand;
    a planted bug of `planted` (names from vm.planted) that replaces `kind` wins."""
    if planted:
        variant = planted_variant(kind, planted)
        if variant is not None:
            return variant
    cls = BUILTIN_DEVICES.get(kind)
    if cls is not None:
        return cls
    module_name, _, class_name = kind.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"unknown device kind {kind!r} (built in: {sorted(BUILTIN_DEVICES)})")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load device {kind!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, Device)):
        raise ConfigError(f"{kind!r} is not a vm.devices.Device subclass")
    return found
