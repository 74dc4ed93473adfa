"""detfuzz's fuzzer: strategies, properties, campaigns and the command line."""

from __future__ import annotations

from typing import Any

# Public names, imported on first use: `detfuzz run` imports this package and must not pay
# for Hypothesis (module name -> names it exports).
_LAZY: dict[str, tuple[str, ...]] = {
    "fuzzer.api": ("DeterminismError", "check_determinism"),
    "fuzzer.divergence": ("Divergence", "Property", "Rule", "Signature"),
    "fuzzer.properties": ("check",),
    "fuzzer.scenario": ("SCENARIO_FORMAT", "Scenario", "ScenarioError"),
    "fuzzer.strategies": (
        "guest_programs",
        "machine_configs",
        "scenarios",
        "stimulus_schedules",
    ),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "SCENARIO_FORMAT",
    "DeterminismError",
    "Divergence",
    "Property",
    "Rule",
    "Scenario",
    "ScenarioError",
    "Signature",
    "check",
    "check_determinism",
    "guest_programs",
    "machine_configs",
    "scenarios",
    "stimulus_schedules",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fuzzer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
