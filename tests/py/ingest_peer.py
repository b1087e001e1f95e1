"""A plain Python receiver of beamline's wire protocol (acquisition/PROTOCOL.md), written the way a new user
would write one: pyzmq PULL, h5py `write_direct_chunk` into an hdf5plugin Blosc dataset. `beamline bench
ingest` runs it as its peer when BEAMLINE_PYTHON is set.

usage: ingest_peer.py OUTPUT.h5

Binds tcp://127.0.0.1:* and prints the endpoint on the first line of stdout, receives one series into
OUTPUT.h5 (checking the xxh3_64 payload checksum when a frame carries one), and prints
{"frames": N, "seconds": S, "bytes": B, "rejected": R} on the last line, timed from the series start to the
file being closed.
"""
import json
import sys
import time

import h5py
import hdf5plugin
import numpy as np
import xxhash
import zmq

DTYPES = {"uint8": "<u1", "uint16": "<u2", "uint32": "<u4", "float32": "<f4"}
SHUFFLE = {"none": hdf5plugin.Blosc.NOSHUFFLE, "byte": hdf5plugin.Blosc.SHUFFLE, "bit": hdf5plugin.Blosc.BITSHUFFLE}

ctx = zmq.Context()
sock = ctx.socket(zmq.PULL)
sock.bind("tcp://127.0.0.1:*")
print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)

f = None
received = rejected = nbytes = 0
while True:
    parts = sock.recv_multipart()
    kind, header = parts[0], json.loads(parts[1])
    if kind == b"series_start":
        t0 = time.perf_counter()
        n, (rows, cols) = header["frames"], header["shape"]
        c = header["compression"]
        filters = {}
        if c["codec"] == "blosc1":
            filters = hdf5plugin.Blosc(cname=c["compressor"], clevel=c["clevel"], shuffle=SHUFFLE[c["shuffle"]])
        f = h5py.File(sys.argv[1], "w")
        data = f.create_dataset("entry/instrument/detector/data", shape=(n, rows, cols),
                                dtype=DTYPES[header["dtype"]], chunks=(1, rows, cols), **filters)
        image_key = np.full(n, 3, dtype="i4")
        angle = np.full(n, np.nan)
        timestamp = np.full(n, np.nan)
    elif kind == b"frame":
        i, payload = header["index"], parts[2]
        if "xxh3_64" in header and xxhash.xxh3_64_hexdigest(payload) != header["xxh3_64"]:
            rejected += 1
            continue
        data.id.write_direct_chunk((i, 0, 0), payload)
        image_key[i], angle[i], timestamp[i] = header["image_key"], header["angle"], header["timestamp"]
        received += 1
        nbytes += len(payload)
    elif kind == b"series_end":
        f["entry/instrument/detector/image_key"] = image_key
        f["entry/sample/rotation_angle"] = angle
        f["entry/instrument/detector/frame_timestamp"] = timestamp
        f.close()
        seconds = time.perf_counter() - t0
        break

print(json.dumps({"frames": received, "seconds": seconds, "bytes": nbytes, "rejected": rejected}))
