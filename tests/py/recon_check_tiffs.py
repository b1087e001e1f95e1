"""Reads a `beamline recon` TIFF stack (or HDF5 volume) with tifffile (h5py) and compares every slice with the
phantom the file was made from (recon_make_nxtomo.py): slice r should be MU * (1 + 0.1 r) * phantom.

usage: recon_check_tiffs.py OUT_DIR_OR_H5 COLS ROWS [FIRST_ROW]
Prints one JSON line: per slice the dtype, shape, RMSE against the scaled phantom (disc of radius 0.45 n), and
the ImageDescription (provenance) of the first file.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from recon_make_nxtomo import MU, phantom  # noqa: E402


def main():
    path, cols, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    truth = phantom(cols)
    h = (cols - 1) / 2
    yy, xx = np.mgrid[0:cols, 0:cols]
    disc = (xx - h) ** 2 + (yy - h) ** 2 <= (0.45 * cols) ** 2
    out = {"slices": []}
    if path.endswith(".h5"):
        import h5py
        with h5py.File(path, "r") as f:
            vol = f["/entry/data/data"][()]
            out["first_slice"] = int(f["/entry/data/data"].attrs["first_slice"])
            out["provenance"] = f["/entry/provenance"][()].decode()
        images = [(first + i, vol[i]) for i in range(vol.shape[0])]
    else:
        import tifffile
        images = []
        for r in range(first, first + rows):
            name = os.path.join(path, f"slice_{r:05d}.tif")
            with tifffile.TiffFile(name) as t:
                if r == first:
                    out["provenance"] = t.pages[0].description
                images.append((r, t.asarray()))
    for r, img in images:
        expect = MU * (1 + 0.1 * r) * truth
        rec = img.astype(np.float64) / (MU * (1 + 0.1 * r))
        rmse = float(np.sqrt(np.mean((rec - truth)[disc] ** 2)))
        corr = float(np.corrcoef(img[disc].ravel(), expect[disc].ravel())[0, 1])
        out["slices"].append({"row": r, "dtype": str(img.dtype), "shape": list(img.shape), "rmse": rmse, "corr": corr})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
