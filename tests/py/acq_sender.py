"""An independent sender written from acquisition/PROTOCOL.md only (pyzmq + numpy, xxhash for the payload
checksum; blosc chunks made by the c-blosc inside hdf5plugin, read back raw with h5py's read_direct_chunk).

usage: acq_sender.py ENDPOINT OUTDIR CODEC(blosc1|none) [CLIENT_SECRET SERVER_PUBLIC]

With the two certificate files (ZeroMQ certificates, read with pyzmq's zmq.auth.load_certificate) the socket
is a CURVE client of the receiver whose public key is SERVER_PUBLIC.

Sends one series of 30 uint16 frames in shuffled order, leaves frame 5 out, sends frame 3 a second time
with other pixels (the receiver must keep the first), ends with status "aborted" and final metadata, and
writes OUTDIR/expected.json + expected.bin describing what the file must hold.
"""
import json
import os
import sys
import time

import h5py
import hdf5plugin
import numpy as np
import xxhash
import zmq

endpoint, outdir, codec = sys.argv[1], sys.argv[2], sys.argv[3]
n, rows, cols = 30, 40, 56
series = "py-" + codec
rng = np.random.default_rng(42)
frames = rng.poisson(1000.0, size=(n, rows, cols)).astype("<u2")
keys = [2, 2, 1, 1, 1] + [0] * (n - 5)
angles = [0.0] * 5 + [(i - 5) * 180.0 / (n - 5) for i in range(5, n)]
metadata = {"sample": "python peer", "energy_keV": 25.0}

if codec == "blosc1":
    compression = {"codec": "blosc1", "compressor": "lz4", "clevel": 5, "shuffle": "byte"}
    tmp = os.path.join(outdir, "chunks.h5")
    with h5py.File(tmp, "w") as f:
        d = f.create_dataset("x", data=frames, chunks=(1, rows, cols),
                             **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
        payloads = [bytes(d.id.read_direct_chunk((i, 0, 0))[1]) for i in range(n)]
        dup = frames[3] + 1
        d[3] = dup
        dup_payload = bytes(d.id.read_direct_chunk((3, 0, 0))[1])
else:
    compression = {"codec": "none"}
    payloads = [frames[i].tobytes() for i in range(n)]
    dup_payload = (frames[3] + 1).astype("<u2").tobytes()

ctx = zmq.Context()
sock = ctx.socket(zmq.PUSH)
if len(sys.argv) > 5:
    import zmq.auth
    public, secret = zmq.auth.load_certificate(sys.argv[4])
    server_public, _ = zmq.auth.load_certificate(sys.argv[5])
    assert secret is not None, "the client certificate has no secret key"
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server_public
sock.connect(endpoint)
start = {"protocol": 1, "series": series, "shape": [rows, cols], "dtype": "uint16", "byte_order": "little",
         "compression": compression, "frames": n, "metadata": metadata}
sock.send_multipart([b"series_start", json.dumps(start).encode()])
order = [i for i in rng.permutation(n).tolist() if i != 5]
sent = 0
for i in order:
    hdr = {"protocol": 1, "series": series, "index": i, "image_key": keys[i], "angle": angles[i],
           "timestamp": time.time(), "xxh3_64": xxhash.xxh3_64_hexdigest(payloads[i])}
    sock.send_multipart([b"frame", json.dumps(hdr).encode(), payloads[i]])
    sent += 1
    if i == 3:
        hdr["xxh3_64"] = xxhash.xxh3_64_hexdigest(dup_payload)
        sock.send_multipart([b"frame", json.dumps(hdr).encode(), dup_payload])
        sent += 1
end_meta = {"script": "acq_sender.py", "reason": "test abort"}
sock.send_multipart([b"series_end", json.dumps({"protocol": 1, "series": series, "frames_sent": sent,
                                                 "status": "aborted", "metadata": end_meta}).encode()])
sock.close(linger=10000)
ctx.term()

frames[5] = 0
frames.tofile(os.path.join(outdir, "expected.bin"))
json.dump({"series": series, "shape": [rows, cols], "dtype": "uint16", "frames": n, "keys": keys,
           "angles": angles, "missing": [5], "compression": compression, "status": "aborted",
           "frames_sent": sent, "metadata": metadata, "end_metadata": end_meta, "rejected": 1},
          open(os.path.join(outdir, "expected.json"), "w"))
print(json.dumps({"sent": sent}))
