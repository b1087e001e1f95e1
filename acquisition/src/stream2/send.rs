//! Stream v2 out: a DECTRIS SIMPLON stream v2 sender (a PUSH socket like a detector's; CBOR written with
//! `ciborium`), so `beamline simulate --format stream2` and `beamline bench ingest --format stream2` send the
//! same frames as our own protocol in a detector's format.
//!
//! Images go out raw (tag 69 etc.), `lz4` (the HDF5 LZ4 filter's framing) or `bslz4` (the HDF5 Bitshuffle
//! filter's framing: 8-byte big-endian total size, 4-byte big-endian block size in bytes, then per block a
//! 4-byte big-endian length and the LZ4 block of the bit-transposed elements; the last `n mod 8` elements
//! raw). The bit transpose is c-blosc's (`blosc_internal_bitshuffle`, the bitshuffle library's
//! `bshuf_trans_bit_elem` that c-blosc vendors, linked from `blosc-src`) and LZ4 is liblz4's (`lz4-sys`,
//! the copy c-blosc links): nothing here is a codec of our own. Each image carries `user_data` `image_key`
//! and `angle`, which our receiver reads (`acquisition/STREAM2.md`).

use ciborium::value::Value;

use super::{Encoding, TAG_COMPRESSION, TAG_MULTI_DIM, TAG_SELF_DESCRIBE, TYPED_ARRAYS};
use crate::curve::CurveClient;
use crate::protocol::{Dtype, FrameHeader};
use crate::sender::{SendError, DEFAULT_SNDHWM};

extern "C" {
    /// c-blosc's bit transpose of one block (`blocksize` bytes, a multiple of 8 elements), from `blosc-src`.
    fn blosc_internal_bitshuffle(
        bytesoftype: usize,
        blocksize: usize,
        src: *const u8,
        dest: *const u8,
        tmp: *const u8,
    ) -> std::os::raw::c_int;
}

/// Target block size of the HDF5 Bitshuffle filter (bytes); blocks hold a multiple of 8 elements.
pub const BSHUF_BLOCK_BYTES: usize = 8192;

fn lz4_block(src: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
    let n = i32::try_from(src.len()).map_err(|_| SendError::State("LZ4 block over 2 GiB"))?;
    // SAFETY: LZ4_compressBound only computes a size.
    let bound = unsafe { lz4_sys::LZ4_compressBound(n) };
    let at = out.len();
    out.resize(at + 4 + bound as usize, 0);
    // SAFETY: `src` is readable for `n` bytes and `out[at + 4..]` writable for `bound` bytes.
    let written =
        unsafe { lz4_sys::LZ4_compress_default(src.as_ptr().cast(), out[at + 4..].as_mut_ptr().cast(), n, bound) };
    if written <= 0 {
        return Err(SendError::State("LZ4 compression failed"));
    }
    out[at..at + 4].copy_from_slice(&(written as u32).to_be_bytes());
    out.truncate(at + 4 + written as usize);
    Ok(())
}

/// Encodes little-endian pixels of `elem`-byte elements as a `bslz4` chunk (HDF5 Bitshuffle framing) into
/// `out` (cleared first); `tmp` is scratch space.
pub fn bslz4(pixels: &[u8], elem: usize, out: &mut Vec<u8>, tmp: &mut Vec<u8>) -> Result<(), SendError> {
    let elem = elem.max(1);
    let block = ((BSHUF_BLOCK_BYTES / elem) / 8 * 8).max(8) * elem;
    out.clear();
    out.extend_from_slice(&(pixels.len() as u64).to_be_bytes());
    out.extend_from_slice(&(block as u32).to_be_bytes());
    let leftover = pixels.len() % (8 * elem);
    let body = &pixels[..pixels.len() - leftover];
    let mut shuffled = vec![0u8; block.min(body.len())];
    tmp.resize(block, 0);
    for chunk in body.chunks(block) {
        let dst = &mut shuffled[..chunk.len()];
        // SAFETY: `chunk`, `dst` and `tmp` are each at least `chunk.len()` bytes, a multiple of 8 elements.
        let r = unsafe { blosc_internal_bitshuffle(elem, chunk.len(), chunk.as_ptr(), dst.as_ptr(), tmp.as_ptr()) };
        if r < 0 {
            return Err(SendError::State("bitshuffle failed"));
        }
        lz4_block(dst, out)?;
    }
    out.extend_from_slice(&pixels[pixels.len() - leftover..]);
    Ok(())
}

/// Encodes bytes as an `lz4` chunk (HDF5 LZ4 filter framing, 1 MiB blocks) into `out` (cleared first).
pub fn lz4(pixels: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
    const BLOCK: usize = 1 << 20;
    out.clear();
    out.extend_from_slice(&(pixels.len() as u64).to_be_bytes());
    out.extend_from_slice(&(BLOCK as u32).to_be_bytes());
    for chunk in pixels.chunks(BLOCK) {
        lz4_block(chunk, out)?;
    }
    Ok(())
}

fn t(s: &str) -> Value {
    Value::Text(s.into())
}

fn typed_tag(d: Dtype) -> u64 {
    TYPED_ARRAYS.iter().find(|(_, x)| *x == d).map_or(64, |(tag, _)| *tag)
}

/// What a `start` message declares.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// `series_id`.
    pub series_id: u64,
    /// `series_unique_id` (names the receiver's file).
    pub series_unique_id: String,
    /// `[rows, cols]`.
    pub shape: [u32; 2],
    /// Pixel type.
    pub dtype: Dtype,
    /// `number_of_images`.
    pub images: u64,
    /// More fields of the start message (goniometer, user_data, ...).
    pub extra: Vec<(Value, Value)>,
}

struct Open {
    series_id: u64,
    shape: [u32; 2],
    dtype: Dtype,
    sent: u64,
}

/// A PUSH socket sending stream v2 series.
pub struct Stream2Sender {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
    encoding: Encoding,
    open: Option<Open>,
    chunk: Vec<u8>,
    tmp: Vec<u8>,
    msg: Vec<u8>,
}

impl Stream2Sender {
    /// Connects (or, with `bind`, binds like a detector) a PUSH socket, a CURVE client with `curve`.
    pub fn open(
        endpoint: &str,
        bind: bool,
        curve: Option<&CurveClient>,
        encoding: Encoding,
    ) -> Result<Stream2Sender, SendError> {
        let ctx = zmq::Context::new();
        let err = |op, cause| SendError::Zmq { op, endpoint: endpoint.to_string(), cause };
        let socket = ctx.socket(zmq::PUSH).map_err(|e| err("socket", e))?;
        if let Some(c) = curve {
            c.apply(&socket)?;
        }
        socket.set_sndhwm(DEFAULT_SNDHWM).map_err(|e| err("set_sndhwm", e))?;
        socket.set_linger(10_000).map_err(|e| err("set_linger", e))?;
        if bind {
            socket.bind(endpoint).map_err(|e| err("bind", e))?;
        } else {
            socket.connect(endpoint).map_err(|e| err("connect", e))?;
        }
        Ok(Stream2Sender {
            _ctx: ctx,
            socket,
            endpoint: endpoint.to_string(),
            encoding,
            open: None,
            chunk: Vec::new(),
            tmp: Vec::new(),
            msg: Vec::new(),
        })
    }

    /// The bound endpoint (resolves `tcp://127.0.0.1:*`).
    pub fn endpoint(&self) -> String {
        match self.socket.get_last_endpoint() {
            Ok(Ok(e)) => e,
            _ => self.endpoint.clone(),
        }
    }

    fn send(&mut self, v: &Value) -> Result<(), SendError> {
        self.msg.clear();
        let tagged = Value::Tag(TAG_SELF_DESCRIBE, Box::new(v.clone()));
        ciborium::ser::into_writer(&tagged, &mut self.msg).map_err(|_| SendError::State("CBOR encoding failed"))?;
        self.socket.send(&self.msg[..], 0).map_err(|cause| SendError::Zmq {
            op: "send",
            endpoint: self.endpoint.clone(),
            cause,
        })
    }

    /// Sends a `start` message.
    pub fn start_series(&mut self, s: &StartInfo) -> Result<(), SendError> {
        if self.open.is_some() {
            return Err(SendError::State("a stream v2 series is already open"));
        }
        let mut m = vec![
            (t("type"), t("start")),
            (t("series_id"), s.series_id.into()),
            (t("series_unique_id"), t(&s.series_unique_id)),
            (t("channels"), Value::Array(vec![t("threshold_1")])),
            (t("image_dtype"), t(s.dtype.name())),
            (t("image_size_x"), s.shape[1].into()),
            (t("image_size_y"), s.shape[0].into()),
            (t("number_of_images"), s.images.into()),
        ];
        m.extend(s.extra.iter().cloned());
        self.send(&Value::Map(m))?;
        self.open = Some(Open { series_id: s.series_id, shape: s.shape, dtype: s.dtype, sent: 0 });
        Ok(())
    }

    /// Sets how long dropping the sender waits to deliver queued messages, in milliseconds (-1 = for ever).
    pub fn set_linger(&self, ms: i32) -> Result<(), SendError> {
        self.socket.set_linger(ms).map_err(|cause| SendError::Zmq {
            op: "set_linger",
            endpoint: self.endpoint.clone(),
            cause,
        })
    }

    /// Sends one image whose pixels are already a chunk of this sender's encoding (a `bslz4` chunk, say).
    pub fn send_encoded(&mut self, h: &FrameHeader, chunk: &[u8]) -> Result<(), SendError> {
        let o = self.open.as_ref().ok_or(SendError::State("image with no stream v2 series open"))?;
        let (series_id, shape, dtype) = (o.series_id, o.shape, o.dtype);
        let data = match self.encoding {
            Encoding::Raw => Value::Bytes(chunk.to_vec()),
            enc => Value::Tag(
                TAG_COMPRESSION,
                Box::new(Value::Array(vec![
                    t(enc.as_str()),
                    (dtype.size() as u64).into(),
                    Value::Bytes(chunk.to_vec()),
                ])),
            ),
        };
        self.send_image_value(h, series_id, shape, dtype, data)
    }

    fn send_image_value(
        &mut self,
        h: &FrameHeader,
        series_id: u64,
        shape: [u32; 2],
        dtype: Dtype,
        data: Value,
    ) -> Result<(), SendError> {
        let md = Value::Array(vec![
            Value::Array(vec![shape[0].into(), shape[1].into()]),
            Value::Tag(typed_tag(dtype), Box::new(data)),
        ]);
        let m = Value::Map(vec![
            (t("type"), t("image")),
            (t("series_id"), series_id.into()),
            (t("image_id"), h.index.0.into()),
            (t("data"), Value::Map(vec![(t("threshold_1"), Value::Tag(TAG_MULTI_DIM, Box::new(md)))])),
            (
                t("user_data"),
                Value::Map(vec![
                    (t("image_key"), i64::from(h.image_key.code()).into()),
                    (t("angle"), h.angle.0.into()),
                ]),
            ),
        ]);
        self.send(&m)?;
        if let Some(o) = self.open.as_mut() {
            o.sent += 1;
        }
        Ok(())
    }

    /// Sends one image (little-endian pixels), encoded as this sender's encoding, with `user_data`
    /// `image_key` and `angle` from `h`.
    pub fn send_image(&mut self, h: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        let o = self.open.as_ref().ok_or(SendError::State("image with no stream v2 series open"))?;
        let (series_id, shape, dtype) = (o.series_id, o.shape, o.dtype);
        let want = shape[0] as usize * shape[1] as usize * dtype.size();
        if pixels_le.len() != want {
            return Err(SendError::FrameSize { got: pixels_le.len(), expected: want });
        }
        let data = match self.encoding {
            Encoding::Raw => Value::Bytes(pixels_le.to_vec()),
            enc => {
                let mut chunk = std::mem::take(&mut self.chunk);
                if enc == Encoding::Bslz4 {
                    bslz4(pixels_le, dtype.size(), &mut chunk, &mut self.tmp)?;
                } else {
                    lz4(pixels_le, &mut chunk)?;
                }
                let c = Value::Array(vec![t(enc.as_str()), (dtype.size() as u64).into(), Value::Bytes(chunk)]);
                Value::Tag(TAG_COMPRESSION, Box::new(c))
            }
        };
        self.send_image_value(h, series_id, shape, dtype, data)
    }

    /// Sends the `end` message; returns the images sent.
    pub fn end_series(&mut self) -> Result<u64, SendError> {
        let o = self.open.take().ok_or(SendError::State("end with no stream v2 series open"))?;
        self.send(&Value::Map(vec![(t("type"), t("end")), (t("series_id"), o.series_id.into())]))?;
        Ok(o.sent)
    }
}

impl crate::sim::FrameSink for Stream2Sender {
    fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        self.send_image(header, pixels_le)
    }
}

/// `beamline simulate --format stream2`: the simulator's series as stream v2 (the goniometer's `omega` axis
/// from the schedule, per-image `image_key` and `angle` in `user_data`). Returns the images sent.
pub fn simulate_stream2(
    sender: &mut Stream2Sender,
    cfg: &crate::sim::SimConfig,
    schedule: &crate::sim::Schedule,
    series: &str,
    fps: Option<f64>,
    progress: impl FnMut(u64),
) -> Result<u64, SendError> {
    let step = schedule.range.0 / schedule.angles.max(1) as f64;
    let gonio = Value::Map(vec![(
        t("omega"),
        Value::Map(vec![(t("start"), Value::Float(0.0)), (t("increment"), Value::Float(step))]),
    )]);
    let start = StartInfo {
        series_id: crate::protocol::now_timestamp() as u64,
        series_unique_id: series.to_string(),
        shape: [cfg.rows as u32, cfg.cols as u32],
        dtype: cfg.dtype,
        images: schedule.frames(),
        extra: vec![
            (t("goniometer"), gonio),
            (t("detector_description"), t("beamline simulate (3-D Shepp-Logan phantom)")),
            (t("user_data"), Value::Map(vec![(t("rotation_axis"), t("omega"))])),
        ],
    };
    sender.start_series(&start)?;
    crate::sim::send_frames(sender, cfg, schedule, fps, progress)?;
    sender.end_series()
}

/// `beamline simulate --format stream2 --replay FILE`: the frames of an NXtomo file (decompressed by HDF5)
/// sent again as a stream v2 series, in index order, frames marked invalid skipped (as
/// [`crate::replay::replay_series`] does for our protocol): each image carries its `image_key` and `angle` in
/// `user_data`, the start the replayed file's name. Returns the images sent.
pub fn replay_stream2(
    sender: &mut Stream2Sender,
    src: &crate::replay::NxtomoSource,
    replayed: &std::path::Path,
    series: &str,
    fps: Option<f64>,
    mut progress: impl FnMut(u64),
) -> Result<u64, crate::replay::ReplayError> {
    let frames = src.frames();
    let start = StartInfo {
        series_id: crate::protocol::now_timestamp() as u64,
        series_unique_id: series.to_string(),
        shape: src.shape().0,
        dtype: src.dtype(),
        images: frames.len().max(1) as u64,
        extra: vec![
            (t("detector_description"), t("beamline simulate --replay")),
            (t("user_data"), Value::Map(vec![(t("replayed_file"), t(&replayed.display().to_string()))])),
        ],
    };
    sender.start_series(&start)?;
    let (mut buf, pacer) = (Vec::new(), crate::sim::Pacer::new(fps));
    for (n, (i, key, angle)) in frames.into_iter().enumerate() {
        src.read_frame(i, &mut buf)?;
        pacer.wait(n as u64);
        let h = FrameHeader {
            index: crate::nexus::FrameIndex(n as u64),
            image_key: key,
            angle,
            timestamp: crate::protocol::now_timestamp(),
        };
        sender.send_image(&h, &buf)?;
        progress(n as u64 + 1);
    }
    Ok(sender.end_series()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bslz4_chunks_pass_the_receivers_framing_check() {
        // 5063 u16 pixels: full 8192-byte blocks, a partial block and 7 leftover elements.
        let pixels: Vec<u8> = (0..5063u32).flat_map(|i| ((i * 7 % 1000) as u16).to_le_bytes()).collect();
        let (mut out, mut tmp) = (Vec::new(), Vec::new());
        bslz4(&pixels, 2, &mut out, &mut tmp).unwrap();
        assert_eq!(super::super::check_framing(&out, Encoding::Bslz4, 2, pixels.len() as u64), Ok(8192));
        assert!(out.len() < pixels.len(), "compressible data compresses");
        assert_eq!(&out[out.len() - 14..], &pixels[pixels.len() - 14..], "the leftover elements go raw");
        lz4(&pixels, &mut out).unwrap();
        assert_eq!(super::super::check_framing(&out, Encoding::Lz4, 2, pixels.len() as u64), Ok(1 << 20));
    }
}
