//! The wire protocol (version 1): domain types and the encoding of the three message kinds.
//!
//! Every message is a ZeroMQ multipart message sent PUSH -> PULL:
//!
//! | kind           | part 0 (ASCII)     | part 1                 | part 2                        |
//! |----------------|--------------------|------------------------|-------------------------------|
//! | series start   | `series_start`     | JSON [`SeriesStart`]   | -                             |
//! | frame          | `frame`            | JSON frame header      | payload (blosc1 chunk or raw) |
//! | series end     | `series_end`       | JSON [`SeriesEnd`]     | -                             |
//!
//! `acquisition/PROTOCOL.md` is the normative description (written for people implementing a sender in
//! another language); this module is its Rust implementation.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Version of the wire protocol spoken by this crate; carried in every JSON header as `"protocol"`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest number of frames one series may declare (keeps the receiver's per-frame bookkeeping bounded).
pub const MAX_FRAMES: u64 = 1_000_000;

/// Largest frame edge, in pixels.
pub const MAX_EDGE: u32 = 65_536;

/// Largest uncompressed frame, in bytes (the blosc1 limit).
pub const MAX_FRAME_BYTES: u64 = 2_147_483_631;

/// Longest series id, in bytes.
pub const MAX_SERIES_ID: usize = 128;

/// Part 0 of a series start message.
pub const KIND_SERIES_START: &[u8] = b"series_start";
/// Part 0 of a frame message.
pub const KIND_FRAME: &[u8] = b"frame";
/// Part 0 of a series end message.
pub const KIND_SERIES_END: &[u8] = b"series_end";

/// Errors decoding or validating a message.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The JSON part is not valid JSON or does not have the fields of its kind.
    #[error("invalid JSON header: {0}")]
    Json(#[from] serde_json::Error),
    /// The `protocol` field names a version this receiver does not speak.
    #[error("protocol version {found} is not supported (this build speaks version {PROTOCOL_VERSION})")]
    Version {
        /// The version the message declared.
        found: u32,
    },
    /// A field has a value outside its allowed range.
    #[error("invalid field: {0}")]
    Field(String),
}

pub use crate::nexus::{Degrees, FrameIndex, ImageKey};

/// Pixel type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Unsigned 8-bit.
    Uint8,
    /// Unsigned 16-bit.
    Uint16,
    /// Unsigned 32-bit.
    Uint32,
    /// IEEE 754 single precision.
    Float32,
}

impl Dtype {
    /// Bytes per pixel.
    pub fn size(self) -> usize {
        match self {
            Dtype::Uint8 => 1,
            Dtype::Uint16 => 2,
            Dtype::Uint32 | Dtype::Float32 => 4,
        }
    }

    /// The name used on the wire and on the command line (`uint16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Uint8 => "uint8",
            Dtype::Uint16 => "uint16",
            Dtype::Uint32 => "uint32",
            Dtype::Float32 => "float32",
        }
    }
}

impl std::str::FromStr for Dtype {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Dtype, ProtocolError> {
        match s {
            "uint8" | "u8" => Ok(Dtype::Uint8),
            "uint16" | "u16" => Ok(Dtype::Uint16),
            "uint32" | "u32" => Ok(Dtype::Uint32),
            "float32" | "f32" => Ok(Dtype::Float32),
            _ => Err(ProtocolError::Field(format!("unknown dtype {s:?}: use uint8, uint16, uint32 or float32"))),
        }
    }
}

/// Byte order of the pixels on the wire. Only little endian is accepted (version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ByteOrder {
    /// Least significant byte first.
    #[default]
    Little,
    /// Most significant byte first (declared by some senders; rejected by this receiver).
    Big,
}

/// The blosc1 compressor inside a chunk (the codecs this build of c-blosc decodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compressor {
    /// BloscLZ (HDF5 cd_values[6] = 0).
    Blosclz,
    /// LZ4 (cd_values[6] = 1).
    Lz4,
    /// LZ4 HC (cd_values[6] = 2).
    Lz4hc,
}

impl Compressor {
    /// Code in the HDF5 blosc filter's cd_values[6].
    pub fn filter_code(self) -> u32 {
        match self {
            Compressor::Blosclz => 0,
            Compressor::Lz4 => 1,
            Compressor::Lz4hc => 2,
        }
    }

    /// The c-blosc compressor name, NUL terminated.
    pub fn c_name(self) -> &'static [u8] {
        match self {
            Compressor::Blosclz => b"blosclz\0",
            Compressor::Lz4 => b"lz4\0",
            Compressor::Lz4hc => b"lz4hc\0",
        }
    }

    /// Compressor format code found in bits 5-7 of a chunk's flags byte (LZ4 HC writes the LZ4 format).
    pub fn format_code(self) -> u8 {
        match self {
            Compressor::Blosclz => 0,
            Compressor::Lz4 | Compressor::Lz4hc => 1,
        }
    }
}

/// Shuffle filter applied before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shuffle {
    /// No shuffle (cd_values[5] = 0).
    None,
    /// Byte shuffle (cd_values[5] = 1).
    Byte,
    /// Bit shuffle (cd_values[5] = 2).
    Bit,
}

impl Shuffle {
    /// Code in the HDF5 blosc filter's cd_values[5] (also c-blosc's `doshuffle`).
    pub fn code(self) -> u32 {
        match self {
            Shuffle::None => 0,
            Shuffle::Byte => 1,
            Shuffle::Bit => 2,
        }
    }
}

/// Parameters of blosc1 compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BloscParams {
    /// The compressor.
    pub compressor: Compressor,
    /// Compression level 0-9.
    pub clevel: u8,
    /// Shuffle filter.
    pub shuffle: Shuffle,
}

impl Default for BloscParams {
    /// LZ4, level 5, byte shuffle: the detector default.
    fn default() -> Self {
        BloscParams { compressor: Compressor::Lz4, clevel: 5, shuffle: Shuffle::Byte }
    }
}

/// How the frame payloads of a series are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "codec", rename_all = "lowercase")]
pub enum Compression {
    /// Raw little-endian pixels.
    None,
    /// One blosc1 chunk per frame.
    Blosc1(BloscParams),
}

/// How a series ended, as declared by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesStatus {
    /// Every planned frame was sent.
    Complete,
    /// Stopped on purpose (user abort, scan aborted).
    Aborted,
    /// Stopped by an error.
    Failed,
}

impl SeriesStatus {
    /// The word used on the wire and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesStatus::Complete => "complete",
            SeriesStatus::Aborted => "aborted",
            SeriesStatus::Failed => "failed",
        }
    }
}

/// Frame shape `[rows, cols]` (rows = detector height).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(pub [u32; 2]);

impl Shape {
    /// Detector rows.
    pub fn rows(self) -> usize {
        self.0[0] as usize
    }
    /// Detector columns.
    pub fn cols(self) -> usize {
        self.0[1] as usize
    }
    /// Pixels per frame.
    pub fn pixels(self) -> u64 {
        self.0[0] as u64 * self.0[1] as u64
    }
}

/// The series start message: everything the receiver needs to lay out the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesStart {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Series id: 1-128 characters from `A-Z a-z 0-9 . _ -` (it names the file in `--output-dir` mode).
    pub series: String,
    /// Frame shape `[rows, cols]`.
    pub shape: Shape,
    /// Pixel type.
    pub dtype: Dtype,
    /// Byte order of the pixels (only `little` accepted).
    #[serde(default)]
    pub byte_order: ByteOrder,
    /// Payload encoding.
    pub compression: Compression,
    /// Number of frames the series will hold (indices `0..frames`).
    pub frames: u64,
    /// Free-form metadata (a JSON object), stored in the file.
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
    /// Set by a sender that sends only a share of the series' frames to this receiver (a fan-out over
    /// several receivers): only such a series may be complete with frames it never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<Share>,
    /// Set by a sender with acknowledgements: the bytes of payload its replay buffer holds at most. A
    /// receiver publishing acknowledgements then flushes whenever half of it has been written since its
    /// last flush, so the buffer does not fill while waiting for the flush timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_buffer_bytes: Option<u64>,
}

/// A declared share of a fanned-out series: this receiver gets share `index` of `of` (0-based), the other
/// frames go to other receivers (`"share": {"index": 0, "of": 3}` in the series start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Share {
    /// Which share this is, `0..of`.
    pub index: u32,
    /// How many receivers the series is spread over, at least 1.
    pub of: u32,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl SeriesStart {
    /// A series start for the current protocol version with empty metadata.
    pub fn new(series: impl Into<String>, shape: Shape, dtype: Dtype, compression: Compression, frames: u64) -> Self {
        SeriesStart {
            protocol: PROTOCOL_VERSION,
            series: series.into(),
            shape,
            dtype,
            byte_order: ByteOrder::Little,
            compression,
            frames,
            metadata: empty_object(),
            share: None,
            replay_buffer_bytes: None,
        }
    }

    /// Bytes of one uncompressed frame.
    pub fn frame_bytes(&self) -> usize {
        (self.shape.pixels() * self.dtype.size() as u64) as usize
    }

    /// Checks every field against the limits of protocol version 1.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.protocol)?;
        check_series_id(&self.series)?;
        let [rows, cols] = self.shape.0;
        if rows == 0 || cols == 0 || rows > MAX_EDGE || cols > MAX_EDGE {
            return Err(field(format!("shape {rows}x{cols}: each edge must be 1..={MAX_EDGE}")));
        }
        let bytes = self.shape.pixels() * self.dtype.size() as u64;
        if bytes > MAX_FRAME_BYTES {
            return Err(field(format!("frame of {bytes} bytes exceeds the blosc1 limit {MAX_FRAME_BYTES}")));
        }
        if self.byte_order != ByteOrder::Little {
            return Err(field("byte_order must be \"little\"".into()));
        }
        if self.frames == 0 || self.frames > MAX_FRAMES {
            return Err(field(format!("frames = {}: must be 1..={MAX_FRAMES}", self.frames)));
        }
        if let Compression::Blosc1(p) = self.compression {
            if p.clevel > 9 {
                return Err(field(format!("clevel {} must be 0..=9", p.clevel)));
            }
        }
        if !self.metadata.is_object() {
            return Err(field("metadata must be a JSON object".into()));
        }
        if let Some(Share { index, of }) = self.share {
            if of == 0 || index >= of {
                return Err(field(format!("share {{index: {index}, of: {of}}}: need of >= 1 and index < of")));
            }
        }
        Ok(())
    }
}

/// One frame's header (part 1 of a frame message, without the series id the sender fills in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameHeader {
    /// Position in the series.
    pub index: FrameIndex,
    /// Projection, flat or dark ([`ImageKey::Invalid`] is never sent: receivers reject it).
    pub image_key: ImageKey,
    /// Rotation angle of the sample when the frame was taken.
    pub angle: Degrees,
    /// Acquisition time, seconds since the Unix epoch (UTC).
    pub timestamp: f64,
}

/// A decoded frame header with the series id it names (borrowed from the message where possible).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrame<'a> {
    /// The series this frame belongs to.
    pub series: Cow<'a, str>,
    /// The rest of the header.
    pub header: FrameHeader,
    /// The payload's checksum as sent ([`payload_checksum`]), when the sender included one.
    pub checksum: Option<u64>,
}

/// Name of the optional frame header field that carries the payload checksum.
pub const CHECKSUM_FIELD: &str = "xxh3_64";

/// The checksum of a payload as the protocol defines it: XXH3 64-bit, seed 0, of the payload bytes exactly
/// as sent (the blosc1 chunk, or the raw pixels). Sent as 16 lowercase hex digits in [`CHECKSUM_FIELD`].
pub fn payload_checksum(payload: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(payload)
}

fn parse_checksum(hex: &str) -> Result<u64, ProtocolError> {
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(field(format!("{CHECKSUM_FIELD} must be 16 hex digits, got {hex:?}")));
    }
    u64::from_str_radix(hex, 16).map_err(|_| field(format!("{CHECKSUM_FIELD} {hex:?} is not hexadecimal")))
}

#[derive(Serialize, Deserialize)]
struct FrameWire<'a> {
    protocol: u32,
    #[serde(borrow)]
    series: Cow<'a, str>,
    index: u64,
    image_key: u64,
    angle: f64,
    timestamp: f64,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    xxh3_64: Option<Cow<'a, str>>,
}

/// The series end message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesEnd {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The series being ended.
    pub series: String,
    /// Number of frame messages the sender sent for this series.
    pub frames_sent: u64,
    /// How the series ended (absent means `complete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<SeriesStatus>,
    /// Final metadata (a JSON object) the writer stores, e.g. the scan script's provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

impl SeriesEnd {
    /// Checks the version, the series id and that `metadata`, when present, is an object.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        check_version(self.protocol)?;
        check_series_id(&self.series)?;
        match &self.metadata {
            Some(m) if !m.is_object() => Err(field("metadata must be a JSON object".into())),
            _ => Ok(()),
        }
    }
}

fn field(msg: String) -> ProtocolError {
    ProtocolError::Field(msg)
}

fn check_version(v: u32) -> Result<(), ProtocolError> {
    if v == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ProtocolError::Version { found: v })
    }
}

/// Checks a series id: 1-128 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_series_id(id: &str) -> Result<(), ProtocolError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > MAX_SERIES_ID || id.starts_with('.') || !id.chars().all(ok_char) {
        return Err(field(format!(
            "series id {id:?}: use 1-{MAX_SERIES_ID} characters from A-Z a-z 0-9 . _ - (not starting with '.')"
        )));
    }
    Ok(())
}

/// Message kind named by part 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `series_start`.
    SeriesStart,
    /// `frame`.
    Frame,
    /// `series_end`.
    SeriesEnd,
}

impl Kind {
    /// The kind named by part 0, `None` for anything else.
    pub fn parse(part0: &[u8]) -> Option<Kind> {
        match part0 {
            KIND_SERIES_START => Some(Kind::SeriesStart),
            KIND_FRAME => Some(Kind::Frame),
            KIND_SERIES_END => Some(Kind::SeriesEnd),
            _ => None,
        }
    }

    /// Number of parts a message of this kind has.
    pub fn parts(self) -> usize {
        match self {
            Kind::Frame => 3,
            Kind::SeriesStart | Kind::SeriesEnd => 2,
        }
    }

    /// Part 0 of this kind.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Kind::SeriesStart => KIND_SERIES_START,
            Kind::Frame => KIND_FRAME,
            Kind::SeriesEnd => KIND_SERIES_END,
        }
    }
}

/// Decodes and validates part 1 of a series start.
pub fn decode_series_start(json: &[u8]) -> Result<SeriesStart, ProtocolError> {
    let s: SeriesStart = serde_json::from_slice(json)?;
    s.validate()?;
    Ok(s)
}

/// The `metadata` member of a series start or end (part 1), exactly as its bytes arrived: key order, number
/// spelling and white space kept (the receiver stores this, not a re-serialised copy). `None` when absent.
/// Call it on a part 1 that [`decode_series_start`] or [`decode_series_end`] accepted.
pub fn raw_metadata(json: &[u8]) -> Option<&str> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, default)]
        metadata: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Raw<'_>>(json).ok()?.metadata.map(|r| r.get())
}

/// Decodes and validates part 1 of a series end.
pub fn decode_series_end(json: &[u8]) -> Result<SeriesEnd, ProtocolError> {
    let e: SeriesEnd = serde_json::from_slice(json)?;
    e.validate()?;
    Ok(e)
}

/// Decodes part 1 of a frame without allocating (unless the series id contains JSON escapes).
///
/// Checks the version, the image key and that angle and timestamp are finite; the index and the series id
/// are checked against the open series by the receiver.
pub fn decode_frame_header(json: &[u8]) -> Result<DecodedFrame<'_>, ProtocolError> {
    let w: FrameWire<'_> = serde_json::from_slice(json)?;
    check_version(w.protocol)?;
    let image_key = i64::try_from(w.image_key)
        .ok()
        .and_then(ImageKey::from_code)
        .filter(|k| k.is_valid())
        .ok_or_else(|| field(format!("image_key {} must be 0 (projection), 1 (flat) or 2 (dark)", w.image_key)))?;
    if !w.angle.is_finite() || !w.timestamp.is_finite() {
        return Err(field("angle and timestamp must be finite numbers".into()));
    }
    let checksum = w.xxh3_64.as_deref().map(parse_checksum).transpose()?;
    Ok(DecodedFrame {
        series: w.series,
        header: FrameHeader { index: FrameIndex(w.index), image_key, angle: Degrees(w.angle), timestamp: w.timestamp },
        checksum,
    })
}

/// Encodes part 1 of a frame into `out` (cleared first; reuse it to avoid allocating), without a checksum.
pub fn encode_frame_header(series: &str, h: &FrameHeader, out: &mut Vec<u8>) {
    encode_frame_header_with(series, h, None, out)
}

/// Encodes part 1 of a frame into `out` (cleared first), with the payload checksum when `checksum` is given
/// (compute it with [`payload_checksum`] over the payload as sent).
pub fn encode_frame_header_with(series: &str, h: &FrameHeader, checksum: Option<u64>, out: &mut Vec<u8>) {
    out.clear();
    let hex = checksum.map(|c| format!("{c:016x}"));
    let w = FrameWire {
        protocol: PROTOCOL_VERSION,
        series: Cow::Borrowed(series),
        index: h.index.0,
        image_key: h.image_key.code() as u64,
        angle: h.angle.0,
        timestamp: h.timestamp,
        xxh3_64: hex.as_deref().map(Cow::Borrowed),
    };
    // Writing plain numbers and a validated string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &w);
}

/// Encodes part 1 of a series start.
pub fn encode_series_start(s: &SeriesStart) -> Vec<u8> {
    serde_json::to_vec(s).unwrap_or_default()
}

/// Encodes part 1 of a series end.
pub fn encode_series_end(e: &SeriesEnd) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

/// Seconds since the Unix epoch, now.
pub fn now_timestamp() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> SeriesStart {
        SeriesStart::new("s1", Shape([4, 6]), Dtype::Uint16, Compression::Blosc1(BloscParams::default()), 10)
    }

    #[test]
    fn series_start_round_trips_and_has_documented_json() {
        let s = start();
        let bytes = encode_series_start(&s);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["compression"]["codec"], "blosc1");
        assert_eq!(v["compression"]["compressor"], "lz4");
        assert_eq!(v["dtype"], "uint16");
        assert_eq!(v["shape"], serde_json::json!([4, 6]));
        assert_eq!(decode_series_start(&bytes).unwrap(), s);
        assert_eq!(s.frame_bytes(), 48);
    }

    #[test]
    fn frame_header_round_trips() {
        let h = FrameHeader { index: FrameIndex(7), image_key: ImageKey::Flat, angle: Degrees(12.5), timestamp: 1.5 };
        let mut buf = Vec::new();
        encode_frame_header("s1", &h, &mut buf);
        let d = decode_frame_header(&buf).unwrap();
        assert_eq!(d.series, "s1");
        assert_eq!(d.header, h);
        assert_eq!(d.checksum, None);
        encode_frame_header_with("s1", &h, Some(payload_checksum(b"abc")), &mut buf);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        // The XXH3-64 test vector of "abc" (seed 0), as python-xxhash's xxh3_64_hexdigest writes it.
        assert_eq!(v[CHECKSUM_FIELD], "78af5f94892f3950");
        let d = decode_frame_header(&buf).unwrap();
        assert_eq!((d.header, d.checksum), (h, Some(0x78af5f94892f3950)));
        for bad in ["78af", "78af5f94892f395g", "78af5f94892f39501"] {
            let j = String::from_utf8(buf.clone()).unwrap().replace("78af5f94892f3950", bad);
            assert!(matches!(decode_frame_header(j.as_bytes()), Err(ProtocolError::Field(_))), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_fields() {
        let mut s = start();
        s.protocol = 2;
        assert!(matches!(s.validate(), Err(ProtocolError::Version { found: 2 })));
        let mut s = start();
        s.series = "../etc".into();
        assert!(s.validate().is_err());
        let mut s = start();
        s.shape = Shape([0, 5]);
        assert!(s.validate().is_err());
        let mut s = start();
        s.frames = 0;
        assert!(s.validate().is_err());
        let bad_key = br#"{"protocol":1,"series":"s","index":0,"image_key":3,"angle":0,"timestamp":0}"#;
        assert!(matches!(decode_frame_header(bad_key), Err(ProtocolError::Field(_))));
        assert!(decode_frame_header(b"{").is_err());
        assert!(decode_series_end(br#"{"protocol":1,"series":"s","frames_sent":1,"status":"weird"}"#).is_err());
        let e = decode_series_end(br#"{"protocol":1,"series":"s","frames_sent":1,"status":"aborted"}"#).unwrap();
        assert_eq!(e.status, Some(SeriesStatus::Aborted));
    }

    #[test]
    fn angles_and_timestamps_parse_correctly_rounded() {
        // Values a sender's `repr(float)` writes with 17 significant digits: the parse must give the f64
        // whose shortest representation they are (std's parser is correctly rounded; serde_json's default
        // fast path is one ulp off for about one value in ten).
        let mut wrong = Vec::new();
        let mut x = 1_700_038_265.3498507_f64;
        for k in 0..2000u32 {
            for v in [x, f64::from(k) * 0.1 + 1e-7 * f64::from(k % 7), 359.999_999_999_999_9 - f64::from(k) * 0.1791] {
                let text = format!("{v:?}");
                let json = format!(
                    r#"{{"protocol":1,"series":"s","index":0,"image_key":0,"angle":{text},"timestamp":{text}}}"#
                );
                let h = decode_frame_header(json.as_bytes()).unwrap().header;
                let want: f64 = text.parse().unwrap();
                if h.angle.0.to_bits() != want.to_bits() || h.timestamp.to_bits() != want.to_bits() {
                    wrong.push(text);
                }
            }
            x += 0.000_123_456_7;
        }
        let exact = br#"{"protocol":1,"series":"s","index":0,"image_key":0,"angle":0,"timestamp":1700038265.3498507}"#;
        assert_eq!(format!("{:?}", decode_frame_header(exact).unwrap().header.timestamp), "1700038265.3498507");
        assert!(wrong.is_empty(), "{} of 6000 values not exact, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(3)]);
    }

    #[test]
    fn raw_metadata_is_the_bytes_as_sent() {
        let json = br#"{"protocol":1,"series":"s","shape":[2,2],"dtype":"uint8","compression":{"codec":"none"},"frames":1,
            "metadata": {"z": 1, "a": 123456789012345678901234567890, "f": 0.10000000000000001, "n": {"y": [1.5e300]}}}"#;
        assert!(decode_series_start(json).is_ok());
        assert_eq!(
            raw_metadata(json),
            Some(r#"{"z": 1, "a": 123456789012345678901234567890, "f": 0.10000000000000001, "n": {"y": [1.5e300]}}"#)
        );
        assert_eq!(raw_metadata(br#"{"protocol":1,"series":"s","frames_sent":0}"#), None);
    }

    #[test]
    fn a_share_is_optional_and_checked() {
        let mut s = start();
        assert!(!String::from_utf8(encode_series_start(&s)).unwrap().contains("share"));
        s.share = Some(Share { index: 2, of: 3 });
        let bytes = encode_series_start(&s);
        assert!(String::from_utf8_lossy(&bytes).contains(r#""share":{"index":2,"of":3}"#));
        assert_eq!(decode_series_start(&bytes).unwrap(), s);
        for bad in [Share { index: 3, of: 3 }, Share { index: 0, of: 0 }] {
            s.share = Some(bad);
            assert!(matches!(s.validate(), Err(ProtocolError::Field(_))), "{bad:?}");
        }
    }
}
