"""Writes an NXtomo file with h5py (blosc-compressed uint16 frames via hdf5plugin), an independent peer for
`beamline recon`: the Shepp-Logan sinogram is computed here in numpy from the ellipse formulas.

usage: recon_make_nxtomo.py OUT.h5 [--cols N] [--rows R] [--angles A] [--span DEG] [--center C]
                            [--bad nan|zero-flat|no-darks|no-flats|shape] [--stop-after N]
                            [--layout nxtomo|dxchange] [--compression blosc|bslz4|zstd|gzip|none]
                            [--theta-units deg|rad|none] [--pixel-size M]
--layout dxchange writes DXchange as tomocupy does: /exchange/data (projections), data_white, data_dark,
theta in degrees (--theta-units rad stores radians with units="rad"; none stores degrees without units).
--compression bslz4 writes Bitshuffle-LZ4 chunks (HDF5 filter 32008) through hdf5plugin.Bitshuffle;
zstd writes filter 32015, which beamline does not decode. --pixel-size stores x/y_pixel_size in metres.
--perturb-row R makes detector row R of every projection 10% darker (an altered input).
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
    ap.add_argument("--layout", default="nxtomo", choices=["nxtomo", "dxchange"])
    ap.add_argument("--compression", default="blosc", choices=["blosc", "bslz4", "zstd", "gzip", "none"])
    ap.add_argument("--theta-units", default="deg", choices=["deg", "rad", "none"])
    ap.add_argument("--pixel-size", type=float, default=None)
    ap.add_argument("--perturb-row", type=int, default=None)
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
    if a.perturb_row is not None:
        # An altered input: detector row R of every projection 10% darker.
        p = keys == 0
        data[p, a.perturb_row] = np.round(data[p, a.perturb_row] * 0.9).astype(data.dtype)
    if a.stop_after is not None:
        keys[a.stop_after:] = 3
        angles[a.stop_after:] = np.nan
        data[a.stop_after:] = 0
    comp = {
        "blosc": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)),
        "bslz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
        "zstd": dict(hdf5plugin.Zstd()),
        "gzip": dict(compression="gzip"),
        "none": {},
    }[a.compression]
    if a.layout == "dxchange":
        with h5py.File(a.out, "w") as f:
            ex = f.create_group("exchange")
            for name, key in [("data", 0), ("data_white", 1), ("data_dark", 2)]:
                sel = data[keys == key]
                if len(sel):
                    ex.create_dataset(name, data=sel, chunks=(1, rows, cols), **comp)
            theta = angles[keys == 0]
            if a.theta_units == "rad":
                ds = ex.create_dataset("theta", data=np.deg2rad(theta))
                ds.attrs["units"] = "rad"
            else:
                ds = ex.create_dataset("theta", data=theta)
                if a.theta_units == "deg":
                    ds.attrs["units"] = "deg"
            if a.pixel_size is not None:
                ds = f.create_dataset("/measurement/instrument/detection_system/objective/resolution",
                                      data=a.pixel_size * 1e6)
                ds.attrs["units"] = "um"
        print(json.dumps({"cols": cols, "rows": rows, "angles": n, "center": center, "mu": MU,
                          "frames": int(len(keys))}))
        return
    with h5py.File(a.out, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.create_dataset("definition", data="NXtomo")
        det = entry.create_group("instrument").create_group("detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("data", data=data, chunks=(1, rows, cols), **comp)
        if a.pixel_size is not None:
            for axis in "xy":
                ds = det.create_dataset(f"{axis}_pixel_size", data=a.pixel_size)
                ds.attrs["units"] = "m"
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
