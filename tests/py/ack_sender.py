"""An independent sender with acknowledgements, written from acquisition/PROTOCOL.md only ("Acknowledgements").

pyzmq + numpy, xxhash for the payload checksum; blosc1 chunks made by the c-blosc inside hdf5plugin (written
with h5py, read back raw with read_direct_chunk), since python-blosc is not in the test environment.

usage: ack_sender.py ENDPOINT ACK_ENDPOINT OUTDIR SERIES FRAMES BUFFER_BYTES FPS

Sends one series of FRAMES uint16 64 x 64 frames (index order, blosc1 lz4 + byte shuffle, each with its
`xxh3_64`) at about FPS frames/s to a receiver started with `--ack ACK_ENDPOINT`, keeping every frame sent in
a replay buffer of at most BUFFER_BYTES payload bytes until a `have` of its series lists it; waits when the
buffer is full; on a new `receiver` value sends the series start again if the receiver does not name the
series as `receiving`, then every buffered frame (`"resent": true`), then the series end if it had sent it;
returns once a `have` says `closed` with a status that is not `incomplete ...`. Writes OUTDIR/expected.json +
expected.bin (the acq_check.py format) and prints one JSON line: frames, restarts seen, frames sent again,
the buffer's peak and cap, and this process's peak RSS during the series (VmHWM, reset before it) and its
RSS before the series (VmRSS).
Exits 1 with a message when the receiver says `failed` or says nothing for 60 s.
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

ACK_TIMEOUT_S = 60.0


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def log(msg):
    print(f"ack_sender: {msg}", file=sys.stderr, flush=True)


endpoint, ack_endpoint, outdir, series = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
n, cap, fps = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
rows = cols = 64
rng = np.random.default_rng(11)
frames = rng.poisson(800.0, size=(n, rows, cols)).astype("<u2")
keys = [2] * 5 + [1] * 5 + [0] * (n - 10)
angles = [0.0] * 10 + [(i - 10) * 180.0 / (n - 10) for i in range(10, n)]
compression = {"codec": "blosc1", "compressor": "lz4", "clevel": 5, "shuffle": "byte"}
with h5py.File(os.path.join(outdir, "chunks.h5"), "w") as f:
    d = f.create_dataset("x", data=frames, chunks=(1, rows, cols),
                         **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    payloads = [bytes(d.id.read_direct_chunk((i, 0, 0))[1]) for i in range(n)]
os.remove(os.path.join(outdir, "chunks.h5"))
frames.tofile(os.path.join(outdir, "expected.bin"))
metadata = {"sample": "ack peer"}
json.dump({"series": series, "shape": [rows, cols], "dtype": "uint16", "frames": n, "keys": keys,
           "angles": angles, "missing": [], "compression": compression, "status": "complete",
           "metadata": metadata, "rejected": 0}, open(os.path.join(outdir, "expected.json"), "w"))
# What this process holds besides the replay buffer: the pre-made payloads and pixels (the test's data set).
# The peak (VmHWM) is reset here (Linux clear_refs 5), so that the peak measured at the end is the series'.
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rss_before_kib = status_kib("VmRSS")

ctx = zmq.Context()
push = ctx.socket(zmq.PUSH)
push.sndtimeo = 100
push.sndhwm = 16  # ZeroMQ's own queue stays small: the replay buffer is what holds frames
push.linger = 0
push.connect(endpoint)
sub = ctx.socket(zmq.SUB)
sub.setsockopt(zmq.SUBSCRIBE, b"have")
sub.connect(ack_endpoint)

start = {"protocol": 1, "series": series, "shape": [rows, cols], "dtype": "uint16", "byte_order": "little",
         "compression": compression, "frames": n, "metadata": metadata, "replay_buffer_bytes": cap}
start_msg = [b"series_start", json.dumps(start).encode()]

buffer = {}  # index -> payload length, for frames sent and not yet listed in a `have`
buffered = 0
peak = 0
receiver = None
restarts = 0
resent = 0
end_sent = False
closed = None
last_word = time.monotonic()


def header(i, again):
    h = {"protocol": 1, "series": series, "index": i, "image_key": keys[i], "angle": angles[i],
         "timestamp": time.time(), "xxh3_64": xxhash.xxh3_64_hexdigest(payloads[i])}
    if again:
        h["resent"] = True
    return json.dumps(h).encode()


def send(parts):
    """Sends one message, waiting 100 ms at a time (and reading acknowledgements) while ZeroMQ cannot take it."""
    t0 = time.monotonic()
    while True:
        try:
            push.send_multipart(parts)
            return
        except zmq.Again:
            poll_acks(0)
            if time.monotonic() - t0 > ACK_TIMEOUT_S:
                sys.exit(f"ack_sender: no receiver took a message for {ACK_TIMEOUT_S} s")


def end_msg():
    return [b"series_end", json.dumps({"protocol": 1, "series": series, "frames_sent": n}).encode()]


def on_have(msg):
    global buffered, receiver, restarts, resent, closed, last_word
    last_word = time.monotonic()
    if msg.get("series") == series:
        # Whole state, not deltas: drop every listed index from the buffer.
        for a, b in msg["held"]:
            for i in range(a, b):
                size = buffer.pop(i, None)
                if size is not None:
                    buffered -= size
    first = receiver is None
    if first or msg["receiver"] != receiver:
        receiver = msg["receiver"]
        named = msg.get("series") == series and msg.get("state") == "receiving"
        if not first:
            restarts += 1
        # A receiver seen for the first time that does not name the series never saw its start (it started
        # after this sender, or was restarted before its first word arrived): treated like a restart.
        if not first or (not named and (buffer or end_sent)):
            log(f"receiver {receiver} (state {msg.get('state')}, series {msg.get('series')}): "
                f"sending {len(buffer)} buffered frames again")
            if not named:
                send(start_msg)
            for i in sorted(buffer):
                send([b"frame", header(i, True), payloads[i]])
                resent += 1
            if end_sent:
                send(end_msg())
            return
    if msg.get("series") == series and msg.get("state") == "failed":
        sys.exit(f"ack_sender: the receiver stopped the series: {msg.get('status')}: {msg.get('error')}")
    if msg.get("series") == series and msg.get("state") == "closed":
        if not str(msg.get("status", "")).startswith("incomplete"):
            closed = msg


def poll_acks(timeout_ms):
    while sub.poll(timeout_ms):
        parts = sub.recv_multipart()
        timeout_ms = 0
        if len(parts) != 2 or parts[0] != b"have":
            continue
        on_have(json.loads(parts[1]))


send(start_msg)
t0 = time.monotonic()
for i in range(n):
    size = len(payloads[i])
    # A full buffer waits (and says so); one frame larger than the buffer is let in when it is empty.
    waited = time.monotonic()
    while buffer and buffered + size > cap:
        poll_acks(50)
        if time.monotonic() - last_word > ACK_TIMEOUT_S:
            sys.exit(f"ack_sender: no acknowledgement for {ACK_TIMEOUT_S} s, replay buffer full "
                     f"({buffered} of {cap} bytes)")
        if time.monotonic() - waited > 5:
            log(f"replay buffer full ({buffered} of {cap} bytes, {len(buffer)} frames)")
            waited = time.monotonic()
    send([b"frame", header(i, False), payloads[i]])
    # Buffered once ZeroMQ took it: a restart seen while `send` waits resends the buffer, which must not hold
    # this frame yet (its first copy would then arrive after the copy marked `resent`, as a duplicate).
    buffer[i] = size
    buffered += size
    peak = max(peak, buffered)
    poll_acks(0)
    delay = t0 + (i + 1) / fps - time.monotonic()
    if delay > 0:
        poll_acks(int(delay * 1000))
send(end_msg())
end_sent = True
while closed is None:
    poll_acks(100)
    if time.monotonic() - last_word > ACK_TIMEOUT_S:
        sys.exit(f"ack_sender: no acknowledgement for {ACK_TIMEOUT_S} s; {len(buffer)} frames sent but not confirmed")
if buffer:
    sys.exit(f"ack_sender: the receiver closed the series ({closed.get('status')}) without frames {sorted(buffer)}")
print(json.dumps({"frames": n, "restarts": restarts, "resent": resent, "buffer_peak": peak, "buffer_cap": cap,
                  "status": closed.get("status"), "vm_hwm_kib": status_kib("VmHWM"),
                  "rss_before_kib": rss_before_kib}), flush=True)
push.close()
sub.close()
ctx.term()
