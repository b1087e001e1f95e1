"""Drives the tickit-devices Eiger simulator (a real SIMPLON REST API and stream v2 PUSH socket, from PyPI) and
checks what `beamline receive --format stream2` wrote against the images the simulator sent, decoded here
independently with `dectris-compression`.

  eiger_tickit.py config YAML REST_PORT CBOR_PORT LEGACY_PORT  # writes the tickit config for one Eiger
  eiger_tickit.py serve YAML                                   # runs it (`python -m tickit all YAML`, with
                                                               # the stream socket fix below)
  eiger_tickit.py drive REST_PORT NIMAGES                      # format cbor, ints, nimages; initialize, arm,
                                                               # trigger, disarm (prints the series id)
  eiger_tickit.py check FILE NIMAGES                           # h5py + hdf5plugin vs dectris.compression

The simulator streams the `start`/`image`/`end` messages it ships (captured from a real EIGER2 16M: a bslz4
image of 4362 x 4148 uint16 pixels) with `series_id`, `image_id` and `number_of_images` filled in.

Two fixes are applied when serving; everything else is the simulator as published:
- tickit 0.4.3 creates the stream's PUSH socket with `aiozmq.create_zmq_stream(zmq.PUSH, connect=addr,
  bind=addr)`, so the socket also connects to its own address; libzmq then deals part of the stream into that
  dead PUSH-to-PUSH connection and those messages are lost (seen here: a series whose start and two of three
  images never reached the one real client). `serve` gives the Eiger's stream adapters a bind-only socket.
- tickit-devices 0.4.1's `EigerZMQAdapter.after_update` sends everything buffered since the last device update
  as ONE multipart ZeroMQ message (`add_message_to_stream(list(consume_data()))`). Stream v1 is multipart by
  design, but stream v2 is not (DECTRIS: "V2 ... Multipart: No", one CBOR message per ZeroMQ message). When
  `trigger` follows `arm` before the adapter's next update, the start message and image 0 go out as one
  two-part message (captured with a pyzmq PULL in about 1 run of 6: `[start 947 B, image 0 513316 B]`), which
  `beamline receive --format stream2` rightly rejects (`reason=parts`); the series then has no start and every
  image is `no_series`. `serve` makes the stream v2 adapter send each buffered message as its own one-part
  message, as a real detector does; the stream v1 adapter is left as published.
"""
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cbor2
import dectris.compression
import h5py
import hdf5plugin  # noqa: F401  (registers the Bitshuffle filter with h5py)
import numpy as np
import tickit_devices.eiger

DETECTOR = "detector/api/1.8.0"
STREAM = "stream/api/1.8.0"
FRAME_TIME = 0.02


def config(path, rest_port, cbor_port, legacy_port):
    Path(path).write_text(
        "- type: tickit_devices.eiger.Eiger\n"
        "  name: eiger\n"
        "  inputs: {}\n"
        "  host: 127.0.0.1\n"
        f"  port: {rest_port}\n"
        "  stream_host: 127.0.0.1\n"
        f"  stream_legacy_port: {legacy_port}\n"
        f"  stream_cbor_port: {cbor_port}\n"
    )


def serve(yaml):
    import functools

    import aiozmq
    import tickit.cli
    import tickit_devices.eiger as eiger
    import zmq
    from tickit_devices.eiger.stream.eiger_stream_2 import EigerStream2

    async def bind_only(host, port):
        return await aiozmq.create_zmq_stream(zmq.PUSH, bind=f"tcp://{host}:{port}")

    eiger.ZeroMqPushIo = functools.partial(eiger.ZeroMqPushIo, socket_factory=bind_only)

    def one_message_per_zmq_message(self):
        if not isinstance(self.stream, EigerStream2):
            return published_after_update(self)  # stream v1: header and data parts are one multipart message
        for message in self.stream.consume_data():
            self.add_message_to_stream([message])

    published_after_update = eiger.EigerZMQAdapter.after_update
    eiger.EigerZMQAdapter.after_update = one_message_per_zmq_message
    tickit.cli.main(["all", yaml])


def put(base, path, value=None):
    body = b"" if value is None else json.dumps({"value": value}).encode()
    req = urllib.request.Request(f"{base}/{path}", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200, (path, r.status)
        text = r.read()
        return json.loads(text) if text else None


def get(base, path):
    with urllib.request.urlopen(f"{base}/{path}", timeout=10) as r:
        return json.loads(r.read())["value"]


def drive(rest_port, nimages):
    base = f"http://127.0.0.1:{rest_port}"
    deadline = time.time() + 60
    while True:  # the simulator takes a few seconds to import and serve
        try:
            get(base, f"{DETECTOR}/status/state")
            break
        except (urllib.error.URLError, ConnectionError):
            if time.time() > deadline:
                raise SystemExit(f"Eiger simulator REST API on port {rest_port} never answered")
            time.sleep(0.2)
    put(base, f"{STREAM}/config/format", "cbor")
    put(base, f"{DETECTOR}/config/trigger_mode", "ints")  # the default exts waits for an external trigger
    put(base, f"{DETECTOR}/config/nimages", int(nimages))
    put(base, f"{DETECTOR}/config/ntrigger", 1)
    put(base, f"{DETECTOR}/config/frame_time", FRAME_TIME)
    put(base, f"{DETECTOR}/config/count_time", FRAME_TIME / 2)
    put(base, f"{DETECTOR}/command/initialize")
    armed = put(base, f"{DETECTOR}/command/arm")
    put(base, f"{DETECTOR}/command/trigger")  # returns when the last image was streamed
    put(base, f"{DETECTOR}/command/disarm")
    state = get(base, f"{DETECTOR}/status/state")
    print(json.dumps({"arm": armed, "state": state}))


def sent_messages():
    """The messages the simulator streams, read from its own data files (without its decoders)."""
    data = Path(tickit_devices.eiger.__file__).parent / "data" / "stream2"
    start = cbor2.loads((data / "start.cbor").read_bytes())
    image = cbor2.loads((data / "image.cbor").read_bytes())
    return start, image


def check(path, nimages):
    nimages = int(nimages)
    start, image = sent_messages()
    start = start.value if isinstance(start, cbor2.CBORTag) else start
    image = image.value if isinstance(image, cbor2.CBORTag) else image
    (channel, md), = image["data"].items()
    assert md.tag == 40, md.tag
    (rows, cols), typed = md.value
    assert typed.tag == 69 and typed.value.tag == 56500, (typed.tag, typed.value.tag)
    algorithm, elem, blob = typed.value.value
    assert algorithm == "bslz4" and elem == 2, (algorithm, elem)
    pixels = np.frombuffer(dectris.compression.decompress(blob, "bslz4", elem_size=2), dtype="<u2")
    pixels = pixels.reshape(rows, cols)
    omega = start["goniometer"]["omega"]
    with h5py.File(path, "r") as f:
        d = f["/entry/instrument/detector/data"]
        assert d.shape == (nimages, rows, cols) and d.dtype == np.uint16, (d.shape, d.dtype)
        plist = d.id.get_create_plist()
        ids = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
        assert ids == [32008], ids
        for i in range(nimages):
            _, chunk = d.id.read_direct_chunk((i, 0, 0))
            assert bytes(chunk) == blob, f"chunk {i} is not the simulator's bytes as sent"
            assert np.array_equal(d[i], pixels), f"frame {i} differs from the dectris-compression decode"
        angles = f["/entry/sample/rotation_angle"][()]
        want = [omega["start"] + omega["increment"] * i for i in range(nimages)]
        assert np.allclose(angles, want), (angles, want)
        assert list(f["/entry/instrument/detector/image_key"][()]) == [0] * nimages
        det = f["/entry/instrument/detector"]
        assert abs(det["x_pixel_size"][()] - start["pixel_size_x"]) < 1e-15
        assert abs(det["beam_center_x"][()] - start["beam_center_x"]) < 1e-9
        assert abs(f["/entry/instrument/beam/incident_energy"][()] - start["incident_energy"]) < 1e-6
        assert f["/entry/instrument/detector/description"][()].decode() == start["detector_description"]
        stored = json.loads(f["/entry/acquisition/stream2_start"][()])
        status = f["/entry/acquisition/status"][()].decode()
        print(json.dumps({"checked": nimages, "status": status, "channel": channel, "shape": [rows, cols],
                          "series_id": int(f["/entry/acquisition/stream2_series_id"][()]),
                          "number_of_images": stored["number_of_images"],
                          "nonzero": int(np.count_nonzero(pixels))}))


if __name__ == "__main__":
    {"config": config, "serve": serve, "drive": drive, "check": check}[sys.argv[1]](*sys.argv[2:])
