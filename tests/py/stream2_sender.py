"""A DECTRIS SIMPLON stream v2 sender written from the public format description (cbor2 + pyzmq), and the
checker of what `beamline receive --format stream2` wrote (h5py + hdf5plugin).

  stream2_sender.py send ENDPOINT DIR SCENARIO   # binds PUSH on ENDPOINT; SCENARIO: complete | noend | raw
  stream2_sender.py shared ENDPOINT DIR PEERS     # waits for PEERS PULL clients, then start, images in order,
                                                 # end: the socket deals them round robin, as a detector does
  stream2_sender.py check_master MASTER DIR FILE...  # the stitched master vs DIR/expected.npz, and each
                                                     # image held by exactly one of the receivers' FILEs
  stream2_sender.py check FILE DIR               # compares FILE with DIR/expected.npz / expected.json
  stream2_sender.py compare OURS STREAM2          # same frames, keys and angles in both files? (JSON line)

bslz4 chunks are made by the HDF5 Bitshuffle filter of hdf5plugin (written to an in-memory HDF5 file and read
back with read_direct_chunk): the exact framing a detector sends, made by another implementation than ours.
"""
import json
import sys

import cbor2
import h5py
import hdf5plugin
import numpy as np
import zmq

ROWS, COLS, N = 61, 83, 6  # 5063 pixels: full and partial bitshuffle blocks plus leftover bytes
SERIES_ID, UNIQUE = 7, "py-stream2"
OMEGA0, STEP = 12.5, 0.75
KEYS = [2, 1, 0, 0, 0, 0]  # user_data.image_keys: dark, flat, projections


def images():
    rng = np.random.default_rng(17)
    base = rng.poisson(200, size=(ROWS, COLS)).astype(np.uint16)
    return [base + np.uint16(i * 1000) for i in range(N)]


def bslz4(img):
    with h5py.File("mem.h5", "w", driver="core", backing_store=False) as f:
        ds = f.create_dataset("d", data=img, chunks=img.shape, **hdf5plugin.Bitshuffle(cname="lz4"))
        _, chunk = ds.id.read_direct_chunk((0, 0))
        return bytes(chunk)


def image_msg(i, img, encoding, payload=None):
    if encoding == "raw":
        data = cbor2.CBORTag(69, img.astype("<u2").tobytes())
    else:
        payload = bslz4(img) if payload is None else payload
        data = cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, payload]))
    return {
        "type": "image",
        "series_id": SERIES_ID,
        "series_unique_id": UNIQUE,
        "image_id": i,
        "real_time": cbor2.CBORTag(30, [1, 100]),
        "data": {"threshold_1": cbor2.CBORTag(40, [[ROWS, COLS], data])},
    }


def dump(msg):
    return cbor2.dumps(cbor2.CBORTag(55799, msg))


def send(endpoint, outdir, scenario):
    imgs = images()
    encoding = "raw" if scenario == "raw" else "bslz4"
    start = {
        "type": "start",
        "series_id": SERIES_ID,
        "series_unique_id": UNIQUE,
        "arm_date": "2024-01-01T00:00:00Z",
        "beam_center_x": 40.5,
        "beam_center_y": 30.25,
        "channels": ["threshold_1"],
        "count_time": 0.009,
        "frame_time": 0.01,
        "goniometer": {"omega": {"increment": STEP, "start": OMEGA0}, "kappa": {"increment": 0.0, "start": 3.0}},
        "image_dtype": "uint16",
        "image_size_x": COLS,
        "image_size_y": ROWS,
        "incident_energy": 12400.0,
        "incident_wavelength": 1.0,
        "number_of_images": N,
        "pixel_size_x": 7.5e-5,
        "pixel_size_y": 7.5e-5,
        "saturation_value": 65000,
        "user_data": {"image_keys": KEYS, "rotation_axis": "omega"},
    }
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 10000)
    s.bind(endpoint)
    s.send(dump(start))
    s.send(b"\x00\x01 not cbor at all \xff")  # garbage between messages
    order = [3, 0, 5, 1, 4, 2]
    sent = []
    for n, i in enumerate(order):
        if n == 2 and encoding == "bslz4":
            good = bslz4(imgs[i])
            s.send(dump(image_msg(i, imgs[i], encoding, good[:-7])))  # damaged: truncated block
        if scenario == "noend" and i == 2:
            continue  # never sent: must stay missing
        s.send(dump(image_msg(i, imgs[i], encoding)))
        sent.append(i)
        if n == 1:
            s.send(dump(image_msg(i, imgs[i], encoding)))  # duplicate
    if scenario != "noend":
        s.send(dump({"type": "end", "series_id": SERIES_ID, "series_unique_id": UNIQUE}))
    s.close()
    ctx.term()
    np.savez(f"{outdir}/expected.npz", *imgs)
    with open(f"{outdir}/expected.json", "w") as f:
        json.dump({"sent": sent, "encoding": encoding}, f)


def start_msg():
    return {
        "type": "start", "series_id": SERIES_ID, "series_unique_id": UNIQUE, "image_dtype": "uint16",
        "image_size_x": COLS, "image_size_y": ROWS, "number_of_images": N, "frame_time": 0.01,
        "goniometer": {"omega": {"increment": STEP, "start": OMEGA0}},
        "user_data": {"image_keys": KEYS, "rotation_axis": "omega"},
    }


def shared(endpoint, outdir, peers):
    """One stream, several PULL clients: libzmq's PUSH deals each message to one of them in turn."""
    from zmq.utils.monitor import recv_monitor_message
    imgs = images()
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 10000)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    mon.setsockopt(zmq.RCVTIMEO, 60000)
    s.bind(endpoint)
    for _ in range(int(peers)):
        recv_monitor_message(mon)  # raises zmq.Again if a receiver never connects
    s.send(dump(start_msg()))
    for i in range(N):
        s.send(dump(image_msg(i, imgs[i], "bslz4")))
    s.send(dump({"type": "end", "series_id": SERIES_ID, "series_unique_id": UNIQUE}))
    s.disable_monitor()
    mon.close()
    s.close()
    ctx.term()
    np.savez(f"{outdir}/expected.npz", *imgs)


def check_master(master, outdir, *files):
    imgs = np.load(f"{outdir}/expected.npz")
    held = []
    for path in files:
        with h5py.File(path, "r") as f:
            held.append([int(i) for i, k in enumerate(f["/entry/instrument/detector/image_key"][()]) if k != 3])
    counts = [sum(i in h for h in held) for i in range(N)]
    assert counts == [1] * N, f"images held by how many receivers: {counts}"
    with h5py.File(master, "r") as f:
        d = f["/entry/instrument/detector/data"]
        assert d.is_virtual and d.shape == (N, ROWS, COLS), (d.is_virtual, d.shape)
        for i in range(N):
            assert np.array_equal(d[i], imgs[f"arr_{i}"]), f"image {i} differs in the master"
        keys = list(f["/entry/instrument/detector/image_key"][()])
        angles = f["/entry/sample/rotation_angle"][()]
        assert keys == KEYS, keys
        assert np.allclose(angles, [OMEGA0 + STEP * i for i in range(N)]), angles
    print(json.dumps({"images": N, "held": held}))


def check(path, outdir):
    exp = json.load(open(f"{outdir}/expected.json"))
    imgs = np.load(f"{outdir}/expected.npz")
    with h5py.File(path, "r") as f:
        d = f["/entry/instrument/detector/data"]
        assert d.shape == (N, ROWS, COLS) and d.dtype == np.uint16, (d.shape, d.dtype)
        filters = d.id.get_create_plist()
        ids = [filters.get_filter(k)[0] for k in range(filters.get_nfilters())]
        assert ids == ([32008] if exp["encoding"] == "bslz4" else []), ids
        keys = f["/entry/instrument/detector/image_key"][()]
        angles = f["/entry/sample/rotation_angle"][()]
        for i in range(N):
            if i in exp["sent"]:
                assert np.array_equal(d[i], imgs[f"arr_{i}"]), f"frame {i} differs"
                assert keys[i] == KEYS[i], (i, keys[i])
                assert abs(angles[i] - (OMEGA0 + STEP * i)) < 1e-9, (i, angles[i])
            else:
                assert keys[i] == 3, (i, keys[i])
        det = f["/entry/instrument/detector"]
        assert abs(det["x_pixel_size"][()] - 7.5e-5) < 1e-12
        assert det["beam_center_y"][()] == 30.25 and det["frame_time"][()] == 0.01
        assert f["/entry/instrument/beam/incident_energy"][()] == 12400.0
        assert f["/entry/acquisition/stream2_series_id"][()] == SERIES_ID
        rejected = json.loads(f["/entry/acquisition/rejected_by_reason"][()])
        print(json.dumps({"checked": len(exp["sent"]), "rejected": rejected,
                          "status": f["/entry/acquisition/status"][()].decode()}))


def compare(ours, theirs):
    """`beamline simulate` sent the same series in our protocol and as stream v2: the files must agree."""
    with h5py.File(ours, "r") as a, h5py.File(theirs, "r") as b:
        da, db = a["/entry/instrument/detector/data"], b["/entry/instrument/detector/data"]
        plist = db.id.get_create_plist()
        filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
        frames_equal = da.shape == db.shape and all(np.array_equal(da[i], db[i]) for i in range(da.shape[0]))
        keys_equal = np.array_equal(a["/entry/instrument/detector/image_key"][()],
                                    b["/entry/instrument/detector/image_key"][()])
        angles_equal = np.allclose(a["/entry/sample/rotation_angle"][()], b["/entry/sample/rotation_angle"][()])
        print(json.dumps({"frames": int(db.shape[0]), "frames_equal": bool(frames_equal),
                          "keys_equal": bool(keys_equal), "angles_equal": bool(angles_equal),
                          "filters": filters, "status": b["/entry/acquisition/status"][()].decode()}))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "shared":
        shared(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "check_master":
        check_master(sys.argv[2], sys.argv[3], *sys.argv[4:])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        check(sys.argv[2], sys.argv[3])
