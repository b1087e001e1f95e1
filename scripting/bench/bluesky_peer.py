"""Peer for `beamline bench scan`: bluesky's RunEngine with ophyd.sim devices, microseconds per point beyond
a one-point run (as the Rust side measures). Prints one JSON object.

usage: python bluesky_peer.py POINTS
"""
import json
import sys
import time

import bluesky
import ophyd
from bluesky import RunEngine
from bluesky.plans import count, scan
from ophyd.sim import det, motor

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
RE = RunEngine({})


def per_point(plan_for):
    t = []
    for k in (1, n):
        t0 = time.perf_counter()
        RE(plan_for(k))
        t.append(time.perf_counter() - t0)
    return (t[1] - t[0]) / (n - 1) * 1e6


print(json.dumps({
    "bluesky": bluesky.__version__,
    "ophyd": ophyd.__version__,
    "points": n,
    "scan_us_per_point": per_point(lambda k: scan([det], motor, -10, 10, k)),
    "count_us_per_point": per_point(lambda k: count([det], k)),
}))
