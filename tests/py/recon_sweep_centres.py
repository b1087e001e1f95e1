"""Reads every center_*.tif of a `beamline recon --center-sweep` folder with tifffile and prints one JSON line
mapping each file name to the `center` in its ImageDescription (provenance).

usage: recon_sweep_centres.py DIR
"""
import json
import os
import sys

import tifffile


def main():
    out = {}
    for name in sorted(os.listdir(sys.argv[1])):
        if name.startswith("center_") and name.endswith(".tif"):
            with tifffile.TiffFile(os.path.join(sys.argv[1], name)) as t:
                out[name] = json.loads(t.pages[0].description)["center"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
