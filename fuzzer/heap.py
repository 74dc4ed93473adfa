"""The garbage collector's settings for the processes that check scenarios.

A check allocates many short-lived objects (samples, digests, log events, snapshot bytes)
while the process holds a large long-lived heap (modules, compiled regions and decoded
steps, Hypothesis's engine and strategies). With CPython's default thresholds, young
collections run every 700 allocations and a full collection, which walks that whole
long-lived heap, every 100 young ones: measured with bench/fuzz_bench.py, about a tenth
of a check's time went to the collector.

`settle_heap` is called once a process has built what it keeps (a campaign worker after
its strategy, a benchmark after drawing its scenarios): it collects, moves everything
still alive to the permanent generation (`gc.freeze`: never scanned again, never freed;
only objects that live as long as the process belong there) and makes collections rarer.
Reference counting still frees almost everything at once; the collector only finds
cycles, and a run's cycles are small.
"""

from __future__ import annotations

import gc
from typing import Final

# Young collections every 20,000 net allocations instead of 700; a full one after 20
# middle ones instead of 10 (measured: 26 -> 29 checks/s on bench/fuzz_bench.py).
THRESHOLDS: Final = (20_000, 20, 20)


def settle_heap() -> None:
    """Freeze what the process holds now and make collections rarer (see the module)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
