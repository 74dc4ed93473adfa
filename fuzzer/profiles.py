"""Hypothesis settings profiles for detfuzz properties, in detfuzz's tests and in yours.

    import fuzzer.profiles                      # registers them
    settings.load_profile("ci")                 # or "dev", "nightly", "repro"

- `dev`: quick local runs (30 examples).
- `ci`: every CI job (100 examples).
- `nightly`: a long search (2,000 examples).
- `repro`: replay the failures kept in the example database and shrink them, generating
  nothing new (after a CI or nightly failure, with that database).

A scenario check takes tens of milliseconds to seconds, so no profile has a deadline, and
slow data generation is not a health problem here.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}

settings.register_profile("dev", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("ci", max_examples=100, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("nightly", max_examples=2000, **_COMMON)  # type: ignore[arg-type]
settings.register_profile(
    "repro",
    phases=[Phase.explicit, Phase.reuse, Phase.shrink],
    print_blob=True,
    **_COMMON,  # type: ignore[arg-type]
)

PROFILES = ("dev", "ci", "nightly", "repro")
