"""The one call a user's own property test needs.

from hypothesis import given
from fuzzer import check_determinism, scenarios

@given(scenarios(user_devices=[DeviceSpec("mydevice:MyDevice", "mine0", 0x10004000, irq=5)]))
def test_my_device_is_deterministic(scenario):
    check_determinism(scenario)
"""

from __future__ import annotations

from collections.abc import Sequence

from fuzzer.divergence import Divergence, Property
from fuzzer.properties import ALL_PROPERTIES, check
from fuzzer.scenario import Scenario


class DeterminismError(AssertionError):
    """A scenario broke a determinism property; the message is the rendered divergence."""

    def __init__(self, divergences: Sequence[Divergence]) -> None:
        self.divergences = tuple(divergences)
        super().__init__("\n\n".join(d.render() for d in self.divergences))


def check_determinism(
    scenario: Scenario,
    *,
    properties: Sequence[Property] = ALL_PROPERTIES,
    localise: bool = False,
    wall_clock_s: float | None = None,
) -> None:
    """Run every property (or `properties`) on `scenario`; raise DeterminismError with the
    rendered divergences if any breaks. Deterministic, so Hypothesis can shrink a failure.
    `localise` narrows each divergence to the instruction (slower; off while shrinking is
    usually what you want, and `detfuzz` campaigns localise their reports anyway)."""
    result = check(
        scenario,
        properties=properties,
        localise_divergences=localise,
        wall_clock_s=wall_clock_s,
    )
    if result.divergences:
        raise DeterminismError(result.divergences)
