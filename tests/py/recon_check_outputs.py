"""Independent checks of what `beamline recon` writes, with tifffile and h5py.

usage:
  recon_check_outputs.py scaling FLOAT_DIR INT_OUTPUT   -- INT_OUTPUT: folder of slices or one multi-page TIFF
  recon_check_outputs.py nexus VOLUME.h5
Prints one JSON line.

scaling: reads each float32 slice and the matching 16/8-bit page, takes lo, hi, max from the
ImageDescription JSON ("scaling") and from SMinSampleValue/SMaxSampleValue, inverts
value = lo + stored * (hi - lo) / max and reports the largest error, in quanta (hi - lo) / max, over the
pixels whose float value lies inside [lo, hi].
"""
import glob
import json
import os
import sys

import h5py
import numpy as np
import tifffile


def pages(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "slice_*.tif")))
        for f in files:
            with tifffile.TiffFile(f) as t:
                yield t.pages[0]
    else:
        with tifffile.TiffFile(path) as t:
            for p in t.pages:
                yield p


def scaling(float_dir, int_out):
    floats = [tifffile.imread(f) for f in sorted(glob.glob(os.path.join(float_dir, "slice_*.tif")))]
    worst, n_pages, inside, tags_match, bits = 0.0, 0, 0, True, None
    for k, page in enumerate(pages(int_out)):
        desc = json.loads(page.tags["ImageDescription"].value)
        sc = desc["scaling"]
        lo, hi, mx = sc["lo"], sc["hi"], sc["max"]
        smin = page.tags["SMinSampleValue"].value
        smax = page.tags["SMaxSampleValue"].value
        smin = smin[0] if isinstance(smin, tuple) else smin
        smax = smax[0] if isinstance(smax, tuple) else smax
        tags_match &= abs(smin - lo) < 1e-6 * max(1.0, abs(lo)) and abs(smax - hi) < 1e-6 * max(1.0, abs(hi))
        stored = page.asarray().astype(np.float64)
        bits = page.bitspersample
        back = lo + stored * (hi - lo) / mx
        f = floats[k].astype(np.float64)
        m = (f >= lo) & (f <= hi)
        inside += int(m.sum())
        q = (hi - lo) / mx
        if m.any():
            worst = max(worst, float(np.abs(back[m] - f[m]).max() / q))
        n_pages += 1
    print(json.dumps({"pages": n_pages, "bits": bits, "worst_quanta": worst, "inside": inside,
                      "tags_match": bool(tags_match), "formula": sc["formula"], "quantity": sc["quantity"]}))


def nexus(path):
    def s(v):
        return v.decode() if isinstance(v, bytes) else (str(v) if not isinstance(v, np.ndarray) else [s(x) for x in v])
    with h5py.File(path, "r") as f:
        e, d = f["/entry"], f["/entry/data"]
        out = {
            "entry_class": s(e.attrs["NX_class"]),
            "default": s(e.attrs.get("default", "")),
            "data_class": s(d.attrs["NX_class"]),
            "signal": s(d.attrs["signal"]),
            "axes": s(d.attrs["axes"]),
            "shape": list(d["data"].shape),
            "dtype": str(d["data"].dtype),
            "x_pixel_size": float(d["x_pixel_size"][()]),
            "x_units": s(d["x_pixel_size"].attrs["units"]),
            "z_units": s(d["z"].attrs["units"]),
            "x": [float(d["x"][0]), float(d["x"][-1])],
            "provenance": json.loads(s(f["/entry/provenance"][()])),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    {"scaling": scaling, "nexus": nexus}[sys.argv[1]](*sys.argv[2:])
