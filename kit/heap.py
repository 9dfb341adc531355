"""The garbage collector of a long-running process, kept off the latency path.

A full collection walks every tracked object and stops the event loop meanwhile. Measured in
`bench/realtime.py` (1,000 technician sockets per API process, two cores shared with the rest):
full collections of the whole heap took 0.5–1.4 s, the tail of the emergency offers' latency.
Most of that heap is what start-up built (modules, the app, its models and schemas) and lives as
long as the process, so it is frozen out of every later collection; each pause is counted in
`/metrics`.
"""

import gc
import time

from prometheus_client import Histogram

GC_PAUSE = Histogram("gasdispatch_gc_pause_seconds", "Garbage collector pauses, by generation", ["generation"],
                     buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
_started: list[float] = []
# The youngest generation collected every 50,000 net allocations instead of 700: a request's or a
# fix's short-lived objects die before they are promoted, so the oldest generation, whose
# collections are the long pauses, grows and is walked far less often.
THRESHOLDS = (50_000, 20, 10)


def _time_collections(phase: str, info: dict) -> None:
    if phase == "start":
        _started.append(time.perf_counter())
    elif _started:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _started.pop())


def settle() -> None:
    """Call once started: collects, then freezes what is left (gc.freeze), and times every
    collection from then on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)
