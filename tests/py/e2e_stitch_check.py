"""Independent check of a stitched master NXtomo file (h5py + hdf5plugin).

usage: e2e_stitch_check.py MASTER.h5 SINGLE.h5 N_SOURCES

MASTER.h5 is `beamline stitch` over the files of N_SOURCES receivers; SINGLE.h5 is the same series
written by one receiver. Checks that the master's frame dataset is an HDF5 virtual dataset with sources
in N_SOURCES files, and that every frame (pixels, image key, rotation angle) equals the single-writer
file, in frame order. The frame timestamps (a different run, so different times) must be where the
single-writer file has them, with its shape and type, finite, and equal to the timestamp the source
holding each frame recorded. Prints one JSON line with what it saw.
"""

import json
import os
import sys

import h5py
import hdf5plugin  # noqa: F401  (registers the blosc filter the source files use)
import numpy as np

DATA = "/entry/instrument/detector/data"
KEYS = "/entry/instrument/detector/image_key"
ANGLES = "/entry/sample/rotation_angle"
TIMES = "/entry/instrument/detector/frame_timestamp"


def main():
    master_path, single_path, n_sources = sys.argv[1], sys.argv[2], int(sys.argv[3])
    master_dir = os.path.dirname(os.path.abspath(master_path))
    # Open from another directory: the virtual dataset must find its sources relative to the master.
    os.chdir("/")
    with h5py.File(master_path, "r") as m, h5py.File(single_path, "r") as s:
        assert m["/entry/definition"][()].decode() == "NXtomo", "master is not NXtomo"
        d = m[DATA]
        assert d.is_virtual, "master data is not a virtual dataset"
        files = {vs.file_name for vs in d.virtual_sources()}
        assert len(files) == n_sources, f"virtual sources in {sorted(files)}, expected {n_sources} files"
        ref = s[DATA]
        assert d.shape == ref.shape, f"shape {d.shape} != single-writer {ref.shape}"
        assert d.dtype == ref.dtype, f"dtype {d.dtype} != {ref.dtype}"
        for i in range(ref.shape[0]):
            a, b = d[i], ref[i]
            if not np.array_equal(a, b):
                raise AssertionError(f"frame {i} differs from the single-writer run ({np.sum(a != b)} pixels)")
        keys, ref_keys = m[KEYS][()], s[KEYS][()]
        assert np.array_equal(keys, ref_keys), f"image keys differ: {keys} vs {ref_keys}"
        assert not np.any(keys == 3), "master holds frames marked as not received"
        angles, ref_angles = m[ANGLES][()], s[ANGLES][()]
        assert np.array_equal(angles, ref_angles), "rotation angles differ"
        assert TIMES in s, f"the single-writer file has no {TIMES}"
        assert TIMES in m, f"master has no {TIMES} (the single-writer file has)"
        times, ref_times = m[TIMES][()], s[TIMES][()]
        assert times.shape == ref_times.shape, f"timestamps {times.shape} != single-writer {ref_times.shape}"
        assert times.dtype == ref_times.dtype, f"timestamp type {times.dtype} != {ref_times.dtype}"
        assert np.all(np.isfinite(times)), "master has frames without a timestamp"
        names = [n.decode() if isinstance(n, bytes) else n for n in m["/entry/stitch/sources"][()]]
        owner = m["/entry/stitch/source_of_frame"][()]
        src_times = []
        for n in names:
            with h5py.File(os.path.join(master_dir, n), "r") as src:
                src_times.append(src[TIMES][()])
        for i, t in enumerate(times):
            # Every receiver's file is series-long: frame i is at row i of the file holding it.
            expected = src_times[owner[i]][i]
            assert t == expected, f"frame {i}: master timestamp {t} != {expected} in {names[owner[i]]}"
        # NXdata links resolve to the same data.
        assert np.array_equal(m["/entry/data/data"][0], ref[0])
        print(json.dumps({
            "frames": int(ref.shape[0]),
            "shape": list(ref.shape[1:]),
            "sources": sorted(files),
            "mappings": len(d.virtual_sources()),
        }))


if __name__ == "__main__":
    main()
