"""Reads the energy, distance and pixel size an NXtomo file records, with their units attributes (h5py), for
`beamline recon --phase paganin` tests.

usage: phase_fields.py FILE.h5
Prints one JSON object: path -> [value, units] for each field present.
"""
import json
import sys

import h5py

PATHS = ["/entry/instrument/source/energy", "/entry/instrument/detector/distance",
         "/entry/instrument/detector/x_pixel_size", "/entry/instrument/detector/y_pixel_size"]


def main():
    out = {}
    with h5py.File(sys.argv[1], "r") as f:
        for p in PATHS:
            if p in f:
                u = f[p].attrs.get("units")
                out[p] = [float(f[p][()]), u.decode() if isinstance(u, bytes) else u]
        src = f.get("/entry/instrument/source")
        if src is not None:
            c = src.attrs.get("NX_class")
            out["source_class"] = c.decode() if isinstance(c, bytes) else c
    print(json.dumps(out))


if __name__ == "__main__":
    main()
