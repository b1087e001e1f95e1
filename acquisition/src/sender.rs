//! The sending side of the protocol: a ZeroMQ PUSH socket that speaks series start / frames / series end,
//! and [`FanOutSender`], one series dealt over several receivers (see [`fanout`]).

pub mod fanout;
pub mod replay_buffer;

pub use fanout::FanOutSender;

use std::time::{Duration, Instant};

use crate::ack::{mark_resent, AckListener, HaveState, IndexRanges};
use replay_buffer::Acked;

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
    /// The receiver said it cannot go on with the series (disk full, ...).
    #[error("the receiver stopped the series: {0}")]
    ReceiverFailed(String),
    /// No acknowledgement came for too long.
    #[error(
        "no acknowledgement from the receiver on {ack_endpoint} for {waited:?}: {unconfirmed} frames sent \
         but not confirmed (is `beamline receive` running with --ack {ack_endpoint}?)"
    )]
    Unconfirmed {
        /// The ack endpoint.
        ack_endpoint: String,
        /// Frames sent that the receiver never said it holds.
        unconfirmed: u64,
        /// How long nothing was heard.
        waited: Duration,
    },
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
    frames: u64,
    /// The encoded series start (sent again to a restarted receiver).
    start: Vec<u8>,
    /// The encoded series end, once sent.
    end: Option<Vec<u8>>,
    /// With `resume`: what the receiver held when the series started (not sent again).
    skip: IndexRanges,
    skipped: u64,
}

/// What the acknowledgements showed, for a sender's closing line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckStats {
    /// The replay buffer's cap, bytes.
    pub buffer_cap: u64,
    /// The most payload bytes the replay buffer held.
    pub peak_buffered: u64,
    /// Frames sent again (after a receiver restart).
    pub resent: u64,
    /// Receiver restarts seen.
    pub restarts: u64,
    /// Frames not sent because the receiver already held them (`resume`).
    pub skipped: u64,
    /// Time spent waiting for room in the replay buffer.
    pub blocked: Duration,
}

/// Send timeout: a blocked send wakes this often to read acknowledgements and to say it waits.
const SEND_POLL: Duration = Duration::from_millis(100);
/// A sender waiting on its receiver says so this often.
const SAY_EVERY: Duration = Duration::from_secs(5);

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
    acked: Option<Acked>,
    resume: bool,
    ack_timeout: Duration,
    last_skipped: u64,
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
        // A blocked send wakes up to read acknowledgements and to say that it waits (never freezes).
        socket.set_sndtimeo(SEND_POLL.as_millis() as i32).map_err(|e| err("set_sndtimeo", e))?;
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
            acked: None,
            resume: false,
            ack_timeout: Duration::from_secs(60),
            last_skipped: 0,
        })
    }

    /// Turns on acknowledgements (PROTOCOL.md, "Acknowledgements"): a SUB socket connected to the
    /// receiver's ack endpoint (bound instead with `bind`), and a replay buffer of `buffer_bytes` holding
    /// every frame sent until the receiver says it is on disk. A full buffer makes sending wait.
    pub fn enable_acks(&mut self, ack_endpoint: &str, bind: bool, buffer_bytes: u64) -> Result<(), SendError> {
        let listener = AckListener::open(&self._ctx, ack_endpoint, bind).map_err(|e| SendError::Zmq {
            op: if bind { "bind" } else { "connect" },
            endpoint: ack_endpoint.to_string(),
            cause: e,
        })?;
        self.acked = Some(Acked::new(listener, buffer_bytes));
        Ok(())
    }

    /// With acknowledgements on: the next series is one this sender (or an earlier run of it) already sent
    /// in part; after its start the sender waits for the receiver's `have` and sends only the frames the
    /// receiver does not hold.
    pub fn set_resume(&mut self, on: bool) {
        self.resume = on;
    }

    /// How long the sender waits without hearing the receiver before giving up (default 60 s).
    pub fn set_ack_timeout(&mut self, d: Duration) {
        self.ack_timeout = d;
    }

    /// What the acknowledgements showed (all zero without them).
    pub fn ack_stats(&self) -> AckStats {
        let skipped = self.series.as_ref().map_or(0, |s| s.skipped) + self.last_skipped;
        match &self.acked {
            None => AckStats::default(),
            Some(a) => AckStats {
                buffer_cap: a.buffer.cap(),
                peak_buffered: a.buffer.peak(),
                resent: a.resent,
                restarts: a.restarts,
                skipped,
                blocked: a.blocked,
            },
        }
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

    fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), SendError> {
        self.push(parts)
    }

    /// Sends one multipart message. While ZeroMQ cannot take it (no receiver, or one that lags), reads
    /// acknowledgements (without acting on them: a frame sent again now could overtake this one) and says
    /// every 5 s that it waits.
    fn push(&mut self, parts: &[&[u8]]) -> Result<(), SendError> {
        let last = parts.len() - 1;
        let t0 = Instant::now();
        let mut said = t0;
        for (i, p) in parts.iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            loop {
                match self.socket.send(*p, flags) {
                    Ok(()) => break,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => {
                        if said.elapsed() >= SAY_EVERY {
                            said = Instant::now();
                            let (sent, frames) = self.series.as_ref().map_or((0, 0), |s| (s.sent, s.frames));
                            tracing::warn!(
                                "no receiver at {} after {} s; frames {sent}/{frames} waiting",
                                self.endpoint,
                                t0.elapsed().as_secs()
                            );
                        }
                        self.service(Duration::ZERO, false)?;
                    }
                    Err(e) => return Err(self.zerr("send", e)),
                }
            }
        }
        Ok(())
    }

    /// Reads acknowledgements (waiting up to `wait`); with `act`, sends the series start and the frames a
    /// restarted receiver needs. Fails when the receiver failed the series.
    fn service(&mut self, wait: Duration, act: bool) -> Result<(), SendError> {
        let Some(a) = self.acked.as_mut() else {
            std::thread::sleep(wait);
            return Ok(());
        };
        let Some(id) = self.series.as_ref().map(|s| s.id.clone()) else { return Ok(()) };
        a.poll(wait, &id);
        if let Some(f) = a.failure() {
            return Err(SendError::ReceiverFailed(f));
        }
        if !act {
            return Ok(());
        }
        if std::mem::take(&mut a.actions.send_start) {
            let start = self.series.as_ref().map(|s| s.start.clone()).unwrap_or_default();
            tracing::info!("sending the series start again to the restarted receiver");
            self.push(&[Kind::SeriesStart.tag(), &start])?;
        }
        while self.acked.as_mut().is_some_and(|a| std::mem::take(&mut a.actions.resend)) {
            self.resend()?;
        }
        Ok(())
    }

    /// Sends every frame still unacknowledged again (marked `resent`), then the series end if it was sent.
    fn resend(&mut self) -> Result<(), SendError> {
        let indices = self.acked.as_ref().map(|a| a.buffer.indices()).unwrap_or_default();
        if !indices.is_empty() {
            tracing::info!("sending {} unacknowledged frames again", indices.len());
        }
        for i in indices {
            let Some((mut header, payload)) =
                self.acked.as_ref().and_then(|a| a.buffer.get(i)).map(|b| (b.header.clone(), b.payload.clone()))
            else {
                continue; // acknowledged meanwhile
            };
            mark_resent(&mut header);
            self.push(&[Kind::Frame.tag(), &header, &payload])?;
            if let Some(a) = self.acked.as_mut() {
                a.resent += 1;
            }
        }
        if let Some(end) = self.series.as_ref().and_then(|s| s.end.clone()) {
            self.push(&[Kind::SeriesEnd.tag(), &end])?;
        }
        Ok(())
    }

    /// Waits until `done` holds for the acknowledgement state, reading acknowledgements and acting on
    /// them; says every 5 s what it waits for and gives up after the ack timeout without a word from the
    /// receiver.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Acked) -> bool) -> Result<(), SendError> {
        let t0 = Instant::now();
        let mut said = t0;
        loop {
            let Some(a) = self.acked.as_ref() else { return Ok(()) };
            if done(a) {
                return Ok(());
            }
            let quiet = a.last_heard.map_or(t0.elapsed(), |t| t.elapsed().min(t0.elapsed()));
            if quiet >= self.ack_timeout {
                return Err(SendError::Unconfirmed {
                    ack_endpoint: a.listener.endpoint().to_string(),
                    unconfirmed: a.buffer.len() as u64,
                    waited: quiet,
                });
            }
            if said.elapsed() >= SAY_EVERY {
                said = Instant::now();
                let (sent, frames) = self.series.as_ref().map_or((0, 0), |s| (s.sent, s.frames));
                tracing::warn!(
                    "waiting {} s for {what} ({} on {}); frames {sent}/{frames} sent, {} unconfirmed ({} bytes \
                     in the replay buffer)",
                    t0.elapsed().as_secs(),
                    if quiet >= SAY_EVERY { "no receiver heard" } else { "receiver heard" },
                    a.listener.endpoint(),
                    a.buffer.len(),
                    a.buffer.bytes()
                );
            }
            self.service(SEND_POLL, true)?;
        }
    }

    /// Keeps a frame just encoded in the replay buffer (waiting for room), when acknowledgements are on.
    fn buffer_frame(&mut self, index: u64, header: &[u8], payload: &[u8]) -> Result<(), SendError> {
        let n = payload.len() as u64;
        if self.acked.as_ref().is_none_or(|a| a.buffer.fits(n)) {
            self.service(Duration::ZERO, true)?;
        }
        if self.acked.as_ref().is_some_and(|a| !a.buffer.fits(n)) {
            let t0 = Instant::now();
            if let Some(a) = self.acked.as_ref() {
                tracing::info!(
                    "replay buffer full ({} frames, {} of {} bytes unacknowledged): waiting for the receiver",
                    a.buffer.len(),
                    a.buffer.bytes(),
                    a.buffer.cap()
                );
            }
            let r = self.wait_for("room in the replay buffer", |a| a.buffer.fits(n));
            if let Some(a) = self.acked.as_mut() {
                a.blocked += t0.elapsed();
            }
            r?;
        }
        if let Some(a) = self.acked.as_mut() {
            a.buffer.insert(index, header.to_vec(), payload.to_vec());
        }
        Ok(())
    }

    /// Validates and sends a series start; frames follow with [`send_frame`](Self::send_frame).
    pub fn start_series(&mut self, start: &SeriesStart) -> Result<(), SendError> {
        if self.series.is_some() {
            return Err(SendError::State("a series is already open: end it before starting another"));
        }
        start.validate()?;
        // With acknowledgements the receiver learns the replay buffer's size, to flush before it fills.
        let with_buffer;
        let start = match self.acked.as_ref() {
            Some(a) if start.replay_buffer_bytes.is_none() => {
                with_buffer = SeriesStart { replay_buffer_bytes: Some(a.buffer.cap()), ..start.clone() };
                &with_buffer
            }
            _ => start,
        };
        self.codec = match start.compression {
            Compression::None => None,
            Compression::Blosc1(p) => Some(Codec::new(p, start.dtype.size()).with_threads(self.threads)),
        };
        let encoded = encode_series_start(start);
        self.series = Some(OpenSeries {
            id: start.series.clone(),
            compression: start.compression,
            frame_bytes: start.frame_bytes(),
            sent: 0,
            frames: start.frames,
            start: encoded.clone(),
            end: None,
            skip: IndexRanges::new(),
            skipped: 0,
        });
        self.last_skipped = 0;
        if let Some(a) = self.acked.as_mut() {
            a.begin();
        }
        self.send_parts(&[Kind::SeriesStart.tag(), &encoded])?;
        if self.resume && self.acked.is_some() {
            // Resuming: what does the receiver hold of this series already?
            self.wait_for("the receiver's list of frames it holds", |a| {
                matches!(a.state, Some(HaveState::Receiving) | Some(HaveState::Closed))
            })?;
            let held = self.acked.as_ref().map(|a| a.held.clone()).unwrap_or_default();
            tracing::info!("resuming: the receiver holds {} of {} frames", held.len(), start.frames);
            if let Some(s) = self.series.as_mut() {
                s.skip = held;
            }
        }
        Ok(())
    }

    /// True when frame `index` need not be sent: resuming, and the receiver holds it already.
    fn skips(&mut self, index: u64) -> bool {
        match self.series.as_mut() {
            Some(s) if s.skip.contains(index) => {
                s.skipped += 1;
                true
            }
            _ => false,
        }
    }

    /// Sends one frame: `pixels_le` are the little-endian pixels, compressed here as the series declares.
    pub fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        let s = self.series.as_ref().ok_or(SendError::State("send_frame before start_series"))?;
        if pixels_le.len() != s.frame_bytes {
            return Err(SendError::FrameSize { got: pixels_le.len(), expected: s.frame_bytes });
        }
        let compression = s.compression;
        if self.skips(header.index.0) {
            return Ok(());
        }
        let mut codec = self.codec.take();
        let payload = match (&mut codec, compression) {
            (Some(codec), Compression::Blosc1(_)) => codec.compress(pixels_le),
            _ => Ok(pixels_le),
        };
        let r = match payload {
            Ok(p) => self.send_one(header, p, None),
            Err(e) => Err(e.into()),
        };
        self.codec = codec;
        r
    }

    /// Sends a frame whose payload is already encoded as the series declares (a blosc1 chunk or raw pixels);
    /// used by replay and benchmarks. The payload is not checked here; the receiver checks it.
    pub fn send_encoded(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<(), SendError> {
        self.send_encoded_with(header, payload, None)
    }

    /// [`send_encoded`](Self::send_encoded) for a payload whose checksum ([`payload_checksum`]) the caller
    /// computed once already, e.g. when it was compressed and still in cache, and sends many times (replay,
    /// benchmarks). A wrong value makes the receiver reject the frame (`checksum`).
    pub fn send_encoded_summed(
        &mut self,
        header: &FrameHeader,
        payload: &[u8],
        checksum: u64,
    ) -> Result<(), SendError> {
        self.send_encoded_with(header, payload, Some(checksum))
    }

    fn send_encoded_with(&mut self, header: &FrameHeader, payload: &[u8], known: Option<u64>) -> Result<(), SendError> {
        if self.series.is_none() {
            return Err(SendError::State("send_encoded before start_series"));
        }
        if self.skips(header.index.0) {
            return Ok(());
        }
        self.send_one(header, payload, known)
    }

    fn send_one(&mut self, header: &FrameHeader, payload: &[u8], known: Option<u64>) -> Result<(), SendError> {
        let sum = self.checksum.then(|| known.unwrap_or_else(|| payload_checksum(payload)));
        let mut hdr = std::mem::take(&mut self.header);
        let id = self.series.as_ref().map_or("", |s| s.id.as_str());
        encode_frame_header_with(id, header, sum, &mut hdr);
        if self.resume {
            // A resumed series: any frame may have reached the receiver before (unflushed, so not listed).
            mark_resent(&mut hdr);
        }
        let r = (|| {
            if self.acked.is_some() {
                self.buffer_frame(header.index.0, &hdr, payload)?;
            }
            self.push(&[Kind::Frame.tag(), &hdr, payload])
        })();
        self.header = hdr;
        r?;
        if let Some(s) = self.series.as_mut() {
            s.sent += 1;
        }
        Ok(())
    }

    /// Sends raw multipart messages (tests and fuzzers use this to send anything at all). Waits while
    /// ZeroMQ cannot take the message; reads no acknowledgements.
    pub fn send_raw(&self, parts: &[&[u8]]) -> Result<(), SendError> {
        let Some(last) = parts.len().checked_sub(1) else { return Ok(()) };
        for (i, p) in parts.iter().enumerate() {
            let flags = if i < last { zmq::SNDMORE } else { 0 };
            loop {
                match self.socket.send(*p, flags) {
                    Ok(()) => break,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => continue,
                    Err(e) => return Err(self.zerr("send", e)),
                }
            }
        }
        Ok(())
    }

    /// Ends the open series with a status and optional final metadata (a JSON object the writer stores).
    /// Returns the number of frames of the series sent (by this sender, plus, when resuming, those the
    /// receiver already held). With acknowledgements on, returns only once the receiver says it closed the
    /// file holding every frame (sending again whatever a restarted receiver lacks).
    pub fn end_series(&mut self, status: SeriesStatus, metadata: Option<serde_json::Value>) -> Result<u64, SendError> {
        let s = self.series.as_ref().ok_or(SendError::State("end_series without an open series"))?;
        let frames_sent = s.sent + s.skipped;
        let end =
            SeriesEnd { protocol: PROTOCOL_VERSION, series: s.id.clone(), frames_sent, status: Some(status), metadata };
        end.validate()?;
        let encoded = encode_series_end(&end);
        if let Some(s) = self.series.as_mut() {
            s.end = Some(encoded.clone());
        }
        let r = self
            .send_parts(&[Kind::SeriesEnd.tag(), &encoded])
            .and_then(|()| self.wait_for("the receiver to close the series", |a| a.closed()));
        let s = self.series.take();
        self.last_skipped = s.as_ref().map_or(0, |s| s.skipped);
        r?;
        let held = self.acked.as_ref().map(|a| a.held.len());
        if let Some(held) = held.filter(|h| *h < frames_sent) {
            return Err(SendError::ReceiverFailed(format!(
                "it closed the series holding {held} of the {frames_sent} frames sent (was it restarted without \
                 --resume, so that it started the file afresh?)"
            )));
        }
        Ok(frames_sent)
    }

    /// Frames sent in the open series (0 when none is open).
    pub fn frames_sent(&self) -> u64 {
        self.series.as_ref().map_or(0, |s| s.sent)
    }

    /// Closes the sender without acknowledgements: waits up to `limit` for ZeroMQ to hand every queued
    /// message to the receiver's connection (calling `waiting(elapsed)` every 5 s meanwhile). Returns false
    /// when the limit ran out with messages possibly undelivered (at most the send high-water mark's worth
    /// of frames, and the series end). With acknowledgements on, [`end_series`](Self::end_series) already
    /// confirmed everything and this returns true at once.
    pub fn close(self, limit: Duration, mut waiting: impl FnMut(Duration)) -> bool {
        let SeriesSender { _ctx: ctx, socket, acked, .. } = self;
        let confirmed = acked.is_some();
        let ms = if confirmed { 0 } else { limit.as_millis().min(i32::MAX as u128) as i32 };
        let _ = socket.set_linger(ms);
        drop(socket);
        drop(acked);
        let t0 = Instant::now();
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        // Terminating the context blocks until the queue is delivered or the linger runs out.
        let term = std::thread::spawn(move || {
            drop(ctx);
            let _ = tx.send(());
        });
        loop {
            match rx.recv_timeout(SAY_EVERY) {
                Ok(()) => break,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => waiting(t0.elapsed()),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = term.join();
        confirmed || t0.elapsed() + Duration::from_millis(50) < limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_series_start, Dtype, Shape};

    #[test]
    fn a_sender_with_acknowledgements_declares_its_replay_buffer_in_the_series_start() {
        let ctx = zmq::Context::new();
        let pull = ctx.socket(zmq::PULL).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        pull.set_rcvtimeo(5000).unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        let start = SeriesStart::new("w", Shape([2, 3]), Dtype::Uint8, Compression::None, 2);
        for (acks, want) in [(false, None), (true, Some(4096))] {
            let mut s = SeriesSender::connect(&endpoint).unwrap();
            s.set_linger(0).unwrap();
            if acks {
                s.enable_acks("tcp://127.0.0.1:*", true, 4096).unwrap();
            }
            s.start_series(&start).unwrap();
            let parts = pull.recv_multipart(0).unwrap();
            assert_eq!(parts[0], Kind::SeriesStart.tag());
            assert_eq!(decode_series_start(&parts[1]).unwrap().replay_buffer_bytes, want, "acks {acks}");
        }
    }
}
