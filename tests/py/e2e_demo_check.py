"""Independent check of the outputs of `beamline demo` (h5py + hdf5plugin, tifffile, numpy).

usage: e2e_demo_check.py RUN_DIR SIZE PROJECTIONS DARKS FLATS TRUTH.f32 K

TRUTH.f32 holds the phantom sampled on every slice (SIZE x SIZE x SIZE float32, phantom units) and K the
attenuation per phantom unit and pixel of the simulated detector. Checks the NXtomo file (shape, image
keys, angles, every frame readable) and the TIFF stack (one float32 slice per detector row), and prints
one JSON line: frames, keys, tiffs and the RMSE of the volume against the phantom inside the disc of
radius 0.95 x SIZE / 2, in phantom units.
"""

import glob
import json
import os
import sys

import h5py
import hdf5plugin  # noqa: F401  (blosc filter)
import numpy as np
import tifffile


def main():
    run, size, projections, darks, flats, truth_path, k = sys.argv[1:8]
    size, projections, darks, flats, k = int(size), int(projections), int(darks), int(flats), float(k)
    frames = darks + 2 * flats + projections
    with h5py.File(os.path.join(run, "scan.h5"), "r") as f:
        assert f["/entry/definition"][()].decode() == "NXtomo"
        data = f["/entry/instrument/detector/data"]
        assert data.shape == (frames, size, size), f"data shape {data.shape}, expected {(frames, size, size)}"
        keys = f["/entry/instrument/detector/image_key"][()]
        counts = {int(v): int(n) for v, n in zip(*np.unique(keys, return_counts=True))}
        assert counts == {0: projections, 1: 2 * flats, 2: darks}, f"image keys {counts}"
        angles = f["/entry/sample/rotation_angle"][()][keys == 0]
        assert np.all(np.diff(angles) > 0), "projection angles do not increase"
        step = 180.0 / projections
        assert len(angles) == projections and abs(angles[0]) < 1e-9, f"angles start at {angles[0]}"
        assert 180.0 - 1.5 * step < angles[-1] <= 180.0, f"angles {angles[0]}..{angles[-1]} do not span 180 degrees"
        pixels = data[()]
        assert pixels.max() > 0, "frames are empty"
        dark, flat = pixels[keys == 2].mean(), pixels[keys == 1].mean()
        assert flat > 4 * dark, f"flats ({flat}) not brighter than darks ({dark})"

    tiffs = sorted(glob.glob(os.path.join(run, "recon", "slice_*.tif")))
    assert len(tiffs) == size, f"{len(tiffs)} TIFF slices, expected {size}"
    volume = np.stack([tifffile.imread(t) for t in tiffs])
    assert volume.dtype == np.float32 and volume.shape == (size, size, size), f"{volume.dtype} {volume.shape}"
    truth = np.fromfile(truth_path, dtype=np.float32).reshape(size, size, size)
    half = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size]
    disc = (x - half) ** 2 + (y - half) ** 2 <= (0.95 * size / 2) ** 2
    err = (volume / k - truth)[:, disc]
    rmse = float(np.sqrt(np.mean(err.astype(np.float64) ** 2)))
    print(json.dumps({"frames": frames, "keys": counts, "tiffs": len(tiffs), "rmse": rmse}))


if __name__ == "__main__":
    main()
