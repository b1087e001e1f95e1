"""Writes an NXtomo file with h5py (blosc-compressed uint16 frames via hdf5plugin), an independent peer for
`beamline recon`: the Shepp-Logan sinogram is computed here in numpy from the ellipse formulas.

usage: recon_make_nxtomo.py OUT.h5 [--cols N] [--rows R] [--angles A] [--span DEG] [--center C]
                            [--bad nan|zero-flat|no-darks|no-flats|shape] [--stop-after N]
--stop-after N writes what a receiver that stopped after N frames leaves: the later frames invalid
(image_key 3, angle NaN, zero pixels) and /entry/acquisition with frames_expected, frames_received, status
and series_metadata (range_deg, angles).
Slice r is the phantom scaled by (1 + 0.1 r); attenuation per pixel MU; beam decays linearly from the flats
before (30000 counts) to the flats after (27000 counts). Prints a JSON line with the parameters.
"""
import argparse
import json

import h5py
import hdf5plugin
import numpy as np

MU = 0.02
ELLIPSES = [  # intensity, a, b, x0, y0, phi(deg) -- modified (Toft) Shepp-Logan
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0),
    (-0.2, 0.11, 0.31, 0.22, 0.0, -18.0),
    (-0.2, 0.16, 0.41, -0.22, 0.0, 18.0),
    (0.1, 0.21, 0.25, 0.0, 0.35, 0.0),
    (0.1, 0.046, 0.046, 0.0, 0.1, 0.0),
    (0.1, 0.046, 0.046, 0.0, -0.1, 0.0),
    (0.1, 0.046, 0.023, -0.08, -0.605, 0.0),
    (0.1, 0.023, 0.023, 0.0, -0.605, 0.0),
    (0.1, 0.023, 0.046, 0.06, -0.605, 0.0),
]


def sinogram(theta, cols, center, ppu):
    """Exact Radon transform, [angle][col], pixel units: column c integrates x cos + y sin = c - center."""
    s = (np.arange(cols) - center) / ppu
    out = np.zeros((len(theta), cols))
    for rho, a, b, x0, y0, phi in ELLIPSES:
        t = theta[:, None] - np.deg2rad(phi)
        a2 = (a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2
        sp = s[None, :] - (x0 * np.cos(theta) + y0 * np.sin(theta))[:, None]
        d = np.clip(a2 - sp ** 2, 0, None)
        out += 2 * rho * a * b * np.sqrt(d) / a2
    return out * ppu


def phantom(n):
    """Point-sampled phantom, [row][col], pixel (r, c) at x = c - (n-1)/2, y = (n-1)/2 - r."""
    h = (n - 1) / 2
    x = (np.arange(n) - h) / (n / 2)
    X, Y = np.meshgrid(x, -x)
    img = np.zeros((n, n))
    for rho, a, b, x0, y0, phi in ELLIPSES:
        p = np.deg2rad(phi)
        u = (X - x0) * np.cos(p) + (Y - y0) * np.sin(p)
        v = -(X - x0) * np.sin(p) + (Y - y0) * np.cos(p)
        img[(u / a) ** 2 + (v / b) ** 2 <= 1] += rho
    return img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=128)
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--angles", type=int, default=180)
    ap.add_argument("--span", type=float, default=180.0)
    ap.add_argument("--center", type=float, default=None)
    ap.add_argument("--bad", default=None)
    ap.add_argument("--stop-after", type=int, default=None)
    a = ap.parse_args()
    cols, rows, n = a.cols, a.rows, a.angles
    center = (cols - 1) / 2 if a.center is None else a.center
    theta_deg = np.arange(n) * a.span / n
    sino = sinogram(np.deg2rad(theta_deg), cols, center, cols / 2)  # [angle][col]
    n_flat, n_dark = 4, 3
    keys = [2] * n_dark + [1] * n_flat + [0] * n + [1] * n_flat
    frames = len(keys)
    beam = np.empty(frames)
    first, last = n_dark + n_flat, n_dark + n_flat + n - 1
    mid_before, mid_after = n_dark + (n_flat - 1) / 2, last + 1 + (n_flat - 1) / 2
    for i in range(frames):
        w = min(max((i - mid_before) / (mid_after - mid_before), 0.0), 1.0)
        beam[i] = 30000 * (1 - w) + 27000 * w
    dark = 100.0
    data = np.empty((frames, rows, cols), dtype=np.uint16)
    k = 0
    for i, key in enumerate(keys):
        if key == 2:
            data[i] = dark
        elif key == 1:
            data[i] = np.round(beam[i] + dark)
        else:
            for r in range(rows):
                data[i, r] = np.round(beam[i] * np.exp(-MU * (1 + 0.1 * r) * sino[k]) + dark)
            k += 1
    angles = np.zeros(frames)
    angles[first:last + 1] = theta_deg
    angles[last + 1:] = theta_deg[-1]
    keys = np.array(keys, dtype=np.int32)
    if a.bad == "no-darks":
        keep = keys != 2
        data, keys, angles = data[keep], keys[keep], angles[keep]
    if a.bad == "no-flats":
        keep = keys != 1
        data, keys, angles = data[keep], keys[keep], angles[keep]
    if a.bad == "zero-flat":
        data[keys == 1] = 0
        data[keys == 2] = 0
    if a.bad == "nan":
        data = data.astype(np.float32)
        data[first + 5, rows // 2, cols // 3] = np.nan
    if a.bad == "shape":
        angles = angles[:-2]
    if a.stop_after is not None:
        keys[a.stop_after:] = 3
        angles[a.stop_after:] = np.nan
        data[a.stop_after:] = 0
    with h5py.File(a.out, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXtomo")
        det = entry.create_group("instrument").create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=data, chunks=(1, rows, cols),
                           **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
        det.create_dataset("image_key", data=keys)
        sample = entry.create_group("sample")
        sample.attrs["NX_class"] = "NXsample"
        ds = sample.create_dataset("rotation_angle", data=angles)
        ds.attrs["units"] = "degree"
        nxdata = entry.create_group("data")
        nxdata.attrs["NX_class"] = "NXdata"
        nxdata["data"] = h5py.SoftLink("/entry/instrument/detector/data")
        nxdata["image_key"] = h5py.SoftLink("/entry/instrument/detector/image_key")
        nxdata["rotation_angle"] = h5py.SoftLink("/entry/sample/rotation_angle")
        if a.stop_after is not None:
            acq = entry.create_group("acquisition")
            acq.attrs["NX_class"] = "NXcollection"
            acq.create_dataset("frames_expected", data=np.uint64(len(keys)))
            acq.create_dataset("frames_received", data=np.uint64(a.stop_after))
            acq.create_dataset("status", data="incomplete (receiver stopped before series end)")
            acq.create_dataset("series_metadata", data=json.dumps({"range_deg": a.span, "angles": n}))
    print(json.dumps({"cols": cols, "rows": rows, "angles": n, "center": center, "mu": MU, "frames": int(len(keys))}))


if __name__ == "__main__":
    main()
