"""Independent check of a `beamline receive` NXtomo file with h5py + hdf5plugin.

usage: acq_check.py FILE.h5 EXPECTED.json [--flushed-only]

EXPECTED.json describes what was sent (series, shape, dtype, frames, keys, angles, missing, status,
frames_sent, metadata, end_metadata, compression, rejected); EXPECTED.bin next to it holds the raw
little-endian frames in index order (zeros for frames never sent). With --flushed-only (after kill -9) only
frames whose image_key in the file is not 3 are compared, and the end-of-series fields are not required.
Prints one JSON line with what was checked; exits non-zero with a message on the first mismatch.
"""
import json
import sys

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter 32001)
import numpy as np


def fail(msg):
    print("MISMATCH: " + msg, file=sys.stderr)
    sys.exit(1)


def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def attr(obj, name):
    return s(obj.attrs[name])


def main():
    path, exp_path = sys.argv[1], sys.argv[2]
    flushed_only = "--flushed-only" in sys.argv[3:]
    exp = json.load(open(exp_path))
    n, rows, cols = exp["frames"], exp["shape"][0], exp["shape"][1]
    dtype = np.dtype(exp["dtype"]).newbyteorder("<")
    raw = np.fromfile(exp_path[: -len(".json")] + ".bin", dtype=dtype).reshape(n, rows, cols)

    f = h5py.File(path, "r")  # no h5clear, no SWMR: must open as is
    entry = f["/entry"]
    if attr(entry, "NX_class") != "NXentry":
        fail("/entry NX_class")
    if s(entry["definition"][()]) != "NXtomo":
        fail("/entry/definition")
    if s(entry["title"][()]) != exp["series"]:
        fail("/entry/title")
    if not s(entry["start_time"][()]).endswith("Z"):
        fail("/entry/start_time")
    for g, c in [("instrument", "NXinstrument"), ("instrument/detector", "NXdetector"), ("sample", "NXsample"),
                 ("data", "NXdata"), ("acquisition", "NXcollection")]:
        if attr(entry[g], "NX_class") != c:
            fail(f"/entry/{g} NX_class {attr(entry[g], 'NX_class')} != {c}")
    prog = entry["program_name"]
    if not s(prog[()]).startswith("beamline "):
        fail("program_name")
    if "receive" not in attr(prog, "configuration"):
        fail("program_name@configuration must hold the receiver command line")

    det = entry["instrument/detector"]
    data = det["data"]
    if data.shape != (n, rows, cols) or data.dtype != dtype:
        fail(f"data shape/dtype {data.shape} {data.dtype}")
    if data.chunks != (1, rows, cols):
        fail(f"chunks {data.chunks}")
    comp = exp["compression"]
    filters = data._filters
    if comp["codec"] == "blosc1":
        cd = filters.get("32001")
        if cd is None or len(cd) != 7:
            fail(f"blosc filter 32001 with 7 cd_values expected, got {filters}")
        want = [2, 2, dtype.itemsize, rows * cols * dtype.itemsize, comp["clevel"],
                {"none": 0, "byte": 1, "bit": 2}[comp["shuffle"]],
                {"blosclz": 0, "lz4": 1, "lz4hc": 2}[comp["compressor"]]]
        if list(cd) != want:
            fail(f"cd_values {list(cd)} != {want}")
    elif "32001" in filters:
        fail("uncompressed series must not declare the blosc filter")

    keys = det["image_key"][()]
    angles = entry["sample/rotation_angle"][()]
    stamps = det["frame_timestamp"][()]
    if attr(entry["sample/rotation_angle"], "units") != "degree":
        fail("rotation_angle units")
    nxdata = entry["data"]
    if attr(nxdata, "signal") != "data":
        fail("NXdata signal")
    for name, target in [("data", data), ("image_key", det["image_key"]),
                         ("rotation_angle", entry["sample/rotation_angle"])]:
        if nxdata[name].id != target.id:
            fail(f"/entry/data/{name} is not a link to {target.name}")

    missing = set(exp["missing"])
    checked = 0
    for i in range(n):
        if flushed_only:
            if keys[i] == 3:
                continue
        elif i in missing:
            if keys[i] != 3 or not np.isnan(angles[i]):
                fail(f"missing frame {i} must have image_key 3 and NaN angle")
            continue
        if keys[i] != exp["keys"][i]:
            fail(f"image_key[{i}] = {keys[i]} != {exp['keys'][i]}")
        if abs(angles[i] - exp["angles"][i]) > 1e-9:
            fail(f"rotation_angle[{i}] = {angles[i]} != {exp['angles'][i]}")
        if not (stamps[i] > 1.0e9):
            fail(f"frame_timestamp[{i}] = {stamps[i]}")
        frame = data[i]
        if not np.array_equal(frame, raw[i]):
            bad = np.argwhere(frame != raw[i])
            fail(f"frame {i}: {len(bad)} pixels differ, first at {bad[0].tolist()}")
        checked += 1

    acq = entry["acquisition"]
    if int(acq["protocol_version"][()]) != 1 or s(acq["series_id"][()]) != exp["series"]:
        fail("acquisition provenance")
    meta = json.loads(s(acq["series_metadata"][()]))
    for k, v in exp.get("metadata", {}).items():
        if meta.get(k) != v:
            fail(f"series_metadata[{k}] = {meta.get(k)!r} != {v!r}")
    if not flushed_only:
        if s(acq["status"][()]) != exp["status"]:
            fail(f"status {s(acq['status'][()])} != {exp['status']}")
        if not s(entry["end_time"][()]).endswith("Z"):
            fail("end_time")
        if sorted(acq["missing_frames"][()].tolist()) != sorted(missing):
            fail(f"missing_frames {acq['missing_frames'][()].tolist()} != {sorted(missing)}")
        if int(acq["frames_received"][()]) != n - len(missing):
            fail("frames_received")
        if "frames_sent" in exp and int(acq["frames_sent"][()]) != exp["frames_sent"]:
            fail("frames_sent")
        if "rejected" in exp and int(acq["frames_rejected"][()]) != exp["rejected"]:
            fail(f"frames_rejected {int(acq['frames_rejected'][()])} != {exp['rejected']}")
        if exp.get("end_metadata") is not None:
            if json.loads(s(acq["end_metadata"][()])) != exp["end_metadata"]:
                fail("end_metadata")
    print(json.dumps({"checked_frames": checked, "flushed_only": flushed_only,
                      "rejected": int(acq["frames_rejected"][()]) if "frames_rejected" in acq else None}))


if __name__ == "__main__":
    main()
