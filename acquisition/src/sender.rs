//! The sending side of the protocol: a ZeroMQ PUSH socket that speaks series start / frames / series end,
//! and [`FanOutSender`], one series dealt over several receivers (see [`fanout`]).

pub mod fanout;

pub use fanout::FanOutSender;

use crate::blosc::{BloscError, Codec};
use crate::protocol::{
    encode_frame_header_with, encode_series_end, encode_series_start, payload_checksum, Compression, FrameHeader, Kind,
    ProtocolError, SeriesEnd, SeriesStart, SeriesStatus, PROTOCOL_VERSION,
};

/// Errors while sending.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// ZeroMQ refused an operation (bad endpoint, address in use, ...).
    #[error("ZeroMQ {op} {endpoint}: {cause}")]
    Zmq {
        /// What was attempted.
        op: &'static str,
        /// The endpoint involved.
        endpoint: String,
        /// The libzmq error.
        cause: zmq::Error,
    },
    /// The series start is invalid.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// CURVE could not be set up (keys, or a libzmq without CURVE).
    #[error(transparent)]
    Curve(#[from] crate::curve::CurveError),
    /// Compression failed.
    #[error(transparent)]
    Blosc(#[from] BloscError),
    /// A frame or end was sent with no series open, or a series was started while one is open.
    #[error("{0}")]
    State(&'static str),
    /// The pixel buffer does not have the size the series declares.
    #[error("frame has {got} bytes, the series declares {expected}")]
    FrameSize {
        /// Bytes given.
        got: usize,
        /// Bytes declared by the series start.
        expected: usize,
    },
}

struct OpenSeries {
    id: String,
    compression: Compression,
    frame_bytes: usize,
    sent: u64,
}

/// A PUSH socket sending one series at a time. Memory is bounded by the send high-water mark.
pub struct SeriesSender {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
    codec: Option<Codec>,
    header: Vec<u8>,
    series: Option<OpenSeries>,
    threads: usize,
    checksum: bool,
}

/// Default send high-water mark, in messages.
pub const DEFAULT_SNDHWM: i32 = 16;

impl SeriesSender {
    /// Connects a PUSH socket to `endpoint` (e.g. `tcp://127.0.0.1:5555`, where `beamline receive` binds).
    pub fn connect(endpoint: &str) -> Result<SeriesSender, SendError> {
        Self::open(endpoint, false, None)
    }

    /// Binds a PUSH socket on `endpoint` (the receiver then connects).
    pub fn bind(endpoint: &str) -> Result<SeriesSender, SendError> {
        Self::open(endpoint, true, None)
    }

    /// As [`SeriesSender::connect`] (or [`SeriesSender::bind`] with `bind`), as a CURVE client when `curve` is
    /// given: only a receiver holding the secret key of `curve.server` can read the frames, and it admits
    /// them only if it lists this sender's public key.
    pub fn open_secure(
        endpoint: &str,
        bind: bool,
        curve: Option<&crate::curve::CurveClient>,
    ) -> Result<SeriesSender, SendError> {
        Self::open(endpoint, bind, curve)
    }

    fn open(endpoint: &str, bind: bool, curve: Option<&crate::curve::CurveClient>) -> Result<SeriesSender, SendError> {
        let ctx = zmq::Context::new();
        let err = |op, source| SendError::Zmq { op, endpoint: endpoint.to_string(), cause: source };
        let socket = ctx.socket(zmq::PUSH).map_err(|e| err("socket", e))?;
        if let Some(c) = curve {
            c.apply(&socket)?;
        }
        socket.set_sndhwm(DEFAULT_SNDHWM).map_err(|e| err("set_sndhwm", e))?;
        // Deliver what is queued when dropped, but never hang for ever on a vanished receiver.
        socket.set_linger(10_000).map_err(|e| err("set_linger", e))?;
        if bind {
            socket.bind(endpoint).map_err(|e| err("bind", e))?;
        } else {
            socket.connect(endpoint).map_err(|e| err("connect", e))?;
        }
        Ok(SeriesSender {
            _ctx: ctx,
            socket,
            endpoint: endpoint.to_string(),
            codec: None,
            header: Vec::new(),
            series: None,
            threads: 1,
            checksum: true,
        })
    }

    /// Sets the send high-water mark (messages queued before `send_frame` blocks).
    pub fn set_sndhwm(&self, messages: i32) -> Result<(), SendError> {
        self.socket.set_sndhwm(messages).map_err(|e| self.zerr("set_sndhwm", e))
    }

    /// Sets how long dropping the sender waits to deliver queued messages, in milliseconds (-1 = for ever).
    pub fn set_linger(&self, ms: i32) -> Result<(), SendError> {
        self.socket.set_linger(ms).map_err(|e| self.zerr("set_linger", e))
    }

    /// Uses `n` c-blosc threads to compress frames (default 1).
    pub fn set_compress_threads(&mut self, n: usize) {
        self.codec = self.codec.take().map(|c| c.with_threads(n));
        self.threads = n;
    }

    /// Whether frames carry the payload checksum (`xxh3_64` in the frame header, see `PROTOCOL.md`); on by
    /// default.
    pub fn set_checksum(&mut self, on: bool) {
        self.checksum = on;
    }

    fn zerr(&self, op: &'static str, source: zmq::Error) -> SendError {
        SendError::Zmq { op, endpoint: self.endpoint.clone(), cause: source }
    }

    fn send_parts(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        let last = parts.len() - 1;
        for (i, p) in parts.iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            self.socket.send(*p, flags).map_err(|e| self.zerr("send", e))?;
        }
        Ok(())
    }

    /// Validates and sends a series start; frames follow with [`send_frame`](Self::send_frame).
    pub fn start_series(&mut self, start: &SeriesStart) -> Result<(), SendError> {
        if self.series.is_some() {
            return Err(SendError::State("a series is already open: end it before starting another"));
        }
        start.validate()?;
        self.codec = match start.compression {
            Compression::None => None,
            Compression::Blosc1(p) => Some(Codec::new(p, start.dtype.size()).with_threads(self.threads)),
        };
        self.send_parts(&[Kind::SeriesStart.tag(), &encode_series_start(start)])?;
        self.series = Some(OpenSeries {
            id: start.series.clone(),
            compression: start.compression,
            frame_bytes: start.frame_bytes(),
            sent: 0,
        });
        Ok(())
    }

    /// Sends one frame: `pixels_le` are the little-endian pixels, compressed here as the series declares.
    pub fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        let s = self.series.as_ref().ok_or(SendError::State("send_frame before start_series"))?;
        if pixels_le.len() != s.frame_bytes {
            return Err(SendError::FrameSize { got: pixels_le.len(), expected: s.frame_bytes });
        }
        let payload = match (&mut self.codec, s.compression) {
            (Some(codec), Compression::Blosc1(_)) => codec.compress(pixels_le)?,
            _ => pixels_le,
        };
        let sum = self.checksum.then(|| payload_checksum(payload));
        encode_frame_header_with(&s.id, header, sum, &mut self.header);
        send3(&self.socket, &self.header, payload).map_err(|e| SendError::Zmq {
            op: "send",
            endpoint: self.endpoint.clone(),
            cause: e,
        })?;
        if let Some(s) = self.series.as_mut() {
            s.sent += 1;
        }
        Ok(())
    }

    /// Sends a frame whose payload is already encoded as the series declares (a blosc1 chunk or raw pixels);
    /// used by replay and benchmarks. The payload is not checked here; the receiver checks it.
    pub fn send_encoded(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<(), SendError> {
        let s = self.series.as_mut().ok_or(SendError::State("send_encoded before start_series"))?;
        let sum = self.checksum.then(|| payload_checksum(payload));
        encode_frame_header_with(&s.id, header, sum, &mut self.header);
        s.sent += 1;
        send3(&self.socket, &self.header, payload).map_err(|e| SendError::Zmq {
            op: "send",
            endpoint: self.endpoint.clone(),
            cause: e,
        })
    }

    /// Sends raw multipart messages (tests and fuzzers use this to send anything at all).
    pub fn send_raw(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        if parts.is_empty() {
            return Ok(());
        }
        self.send_parts(parts)
    }

    /// Ends the open series with a status and optional final metadata (a JSON object the writer stores).
    /// Returns the number of frames sent.
    pub fn end_series(&mut self, status: SeriesStatus, metadata: Option<serde_json::Value>) -> Result<u64, SendError> {
        let s = self.series.take().ok_or(SendError::State("end_series without an open series"))?;
        let end =
            SeriesEnd { protocol: PROTOCOL_VERSION, series: s.id, frames_sent: s.sent, status: Some(status), metadata };
        end.validate()?;
        self.send_parts(&[Kind::SeriesEnd.tag(), &encode_series_end(&end)])?;
        Ok(s.sent)
    }

    /// Frames sent in the open series (0 when none is open).
    pub fn frames_sent(&self) -> u64 {
        self.series.as_ref().map_or(0, |s| s.sent)
    }
}

fn send3(socket: &zmq::Socket, header: &[u8], payload: &[u8]) -> Result<(), zmq::Error> {
    socket.send(Kind::Frame.tag(), zmq::SNDMORE)?;
    socket.send(header, zmq::SNDMORE)?;
    socket.send(payload, 0)
}
