"""Independent reader of a scan's NXtomo file (h5py + hdf5plugin): prints one JSON summary.

usage: check_scan_nxtomo.py FILE.h5 SCRIPT.rhai
"""
import hashlib
import json
import sys

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter)
import numpy as np

path, script = sys.argv[1], sys.argv[2]
with h5py.File(path, "r") as f:
    data = f["/entry/instrument/detector/data"]
    shape = list(data.shape)
    keys = f["/entry/instrument/detector/image_key"][()]
    angles = f["/entry/sample/rotation_angle"][()]
    acq = f["/entry/acquisition"]
    end = json.loads(acq["end_metadata"][()])
    status = acq["status"][()].decode()
    taken = keys != 3
    frames = data[np.nonzero(taken)[0]] if taken.any() else np.zeros((0,) + data.shape[1:])
    means = {int(k): float(frames[keys[taken] == k].mean()) for k in (0, 1, 2) if (keys[taken] == k).any()}
text = open(script, encoding="utf-8").read()
print(json.dumps({
    "status": status,
    "shape": shape,
    "counts": {str(k): int((keys == k).sum()) for k in (0, 1, 2, 3)},
    "projection_angles": [float(a) for a in angles[keys == 0]],
    "mean_by_key": {str(k): v for k, v in means.items()},
    "sha256_matches": end["provenance"]["script_sha256"] == hashlib.sha256(text.encode()).hexdigest(),
    "script_matches": end["provenance"]["script"] == text,
    "parameters": end["provenance"]["parameters"],
    "exit_status": end["exit_status"],
    "end_status": end["status"],
}))
