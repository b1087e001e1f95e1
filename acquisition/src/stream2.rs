//! DECTRIS SIMPLON stream v2 in: CBOR `start` / `image` / `end` messages (decoded with `ciborium`) from a
//! detector's PUSH socket, written as the same NXtomo file as our own protocol.
//!
//! Compressed images (`bslz4`, `lz4`) are written as they arrive with `H5Dwrite_chunk` into a data set that
//! declares the matching HDF5 filter (Bitshuffle 32008 or LZ4 32004); they are never decompressed here: only
//! their framing (sizes, block table) is walked, which costs a few hundred reads per frame. What we read from
//! the messages, and the `user_data` keys, are in `acquisition/STREAM2.md`.

pub mod peers;
pub mod send;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::value::Value;
use crossbeam_channel::{Receiver as ChanRx, RecvTimeoutError, Sender as ChanTx};
use serde_json::{json, Map, Value as Json};

use crate::budget::ByteBudget;
use crate::direct::WriteIo;
use crate::nexus::{attr_str, nx_group, path as nx, Degrees, FrameIndex, ImageKey};
use crate::protocol::{
    now_timestamp, Compression, Dtype, FrameHeader, SeriesEnd, SeriesStart, SeriesStatus, Shape, Share,
};
use crate::receiver::{
    check_output, file_for, queue_for_writer, Output, ReceiveError, ReceiveSummary, ReceiverConfig, StopHandle,
};
use crate::reject::{Reason, Rejections};
use crate::writer::{ChunkFilter, NxtomoWriter, Provenance, SeriesSummary, WriteError};
pub use peers::Peers;

/// HDF5 filter id of Bitshuffle (bitshuffle + LZ4 in the `bslz4` framing).
pub const BITSHUFFLE_FILTER: i32 = 32008;
/// HDF5 filter id of LZ4 (the `lz4` framing).
pub const LZ4_FILTER: i32 = 32004;
/// CBOR self-describe tag every message starts with.
pub const TAG_SELF_DESCRIBE: u64 = 55799;
/// CBOR tag of a row-major MultiDimArray (RFC 8746).
pub const TAG_MULTI_DIM: u64 = 40;
/// DECTRIS compression tag: `[algorithm, element size, bytes]`.
pub const TAG_COMPRESSION: u64 = 56500;
/// RFC 8746 typed array tags we accept: u8, u16 LE, u32 LE, f32 LE.
pub const TYPED_ARRAYS: [(u64, Dtype); 4] =
    [(64, Dtype::Uint8), (69, Dtype::Uint16), (70, Dtype::Uint32), (85, Dtype::Float32)];
/// The pixel type of a series whose start has no `image_dtype` and that received no image.
pub const UNDECLARED_DTYPE: Dtype = Dtype::Uint16;
/// CBOR tag of a rational number `[numerator, denominator]`.
const TAG_RATIONAL: u64 = 30;

/// Why a stream v2 message was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Stream2Error {
    /// Not CBOR, or a field of its type is missing or of the wrong kind.
    #[error("not a valid stream v2 message: {0}")]
    Cbor(String),
    /// The `type` names no message kind we know.
    #[error("unknown stream v2 message type {0:?}")]
    UnknownType(String),
    /// A field is out of range or contradicts the series start.
    #[error("{0}")]
    Field(String),
    /// A compressed image's framing is damaged, or its algorithm unknown.
    #[error("compressed image: {0}")]
    Framing(String),
    /// A raw image does not have the size its shape and type give.
    #[error("image of {got} bytes, expected {want}")]
    Size {
        /// Bytes received.
        got: usize,
        /// Bytes the shape and type give.
        want: usize,
    },
}

impl Stream2Error {
    /// The counted rejection reason.
    pub fn reason(&self) -> Reason {
        match self {
            Stream2Error::Cbor(_) => Reason::BadCbor,
            Stream2Error::UnknownType(_) => Reason::UnknownKind,
            Stream2Error::Field(_) => Reason::InvalidField,
            Stream2Error::Framing(_) => Reason::CompressedFraming,
            Stream2Error::Size { .. } => Reason::PayloadSize,
        }
    }
}

fn bad(s: impl Into<String>) -> Stream2Error {
    Stream2Error::Cbor(s.into())
}

/// How an image's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Raw little-endian pixels.
    Raw,
    /// Bitshuffle + LZ4 in the HDF5 Bitshuffle framing.
    Bslz4,
    /// LZ4 in the HDF5 LZ4 framing.
    Lz4,
}

impl Encoding {
    /// The name used on the wire (`none` for raw).
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Raw => "none",
            Encoding::Bslz4 => "bslz4",
            Encoding::Lz4 => "lz4",
        }
    }
}

/// One channel's image of an `image` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// `[rows, cols]` (the MultiDimArray's `[height, width]`).
    pub shape: [u32; 2],
    /// Pixel type from the typed array tag.
    pub dtype: Dtype,
    /// Encoding of `bytes`.
    pub encoding: Encoding,
    /// The bytes as received (a compressed chunk, or raw pixels).
    pub bytes: Vec<u8>,
}

/// A `start` message: the fields we use, and the whole message as JSON (byte strings replaced by their size).
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// `series_id`.
    pub series_id: u64,
    /// `series_unique_id` (empty when absent).
    pub series_unique_id: String,
    /// `number_of_images`.
    pub number_of_images: u64,
    /// `image_dtype`; absent in some detectors' start messages (the tickit Eiger's, captured from an EIGER2
    /// 16M, has none): then the first image's typed array tag gives it.
    pub dtype: Option<Dtype>,
    /// `[image_size_y, image_size_x]`.
    pub shape: [u32; 2],
    /// The whole message as JSON.
    pub json: Json,
}

impl Start {
    /// A number field of the start message.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.json.get(key)?.as_f64()
    }

    /// `user_data` (an empty object when absent).
    pub fn user_data(&self) -> &Json {
        static EMPTY: Json = Json::Null;
        self.json.get("user_data").unwrap_or(&EMPTY)
    }

    /// The goniometer axis that rotates the sample: `user_data.rotation_axis`, else `omega`.
    pub fn rotation_axis(&self) -> &str {
        self.user_data().get("rotation_axis").and_then(Json::as_str).unwrap_or("omega")
    }

    /// `(start, increment)` in degrees of the rotation axis, when the goniometer declares it.
    pub fn rotation(&self) -> Option<(f64, f64)> {
        let axis = self.json.get("goniometer")?.get(self.rotation_axis())?;
        Some((axis.get("start")?.as_f64()?, axis.get("increment")?.as_f64()?))
    }

    /// The angle of image `id`: `user_data.angles[id]`, else goniometer start + id × increment, else 0.
    pub fn angle(&self, id: u64) -> Degrees {
        let listed = self.user_data().get("angles").and_then(|a| a.get(id as usize)).and_then(Json::as_f64);
        Degrees(listed.or_else(|| self.rotation().map(|(s, inc)| s + inc * id as f64)).unwrap_or(0.0))
    }

    /// The image key of image `id`: `user_data.image_keys[id]`, else `user_data.image_key`, else projection.
    pub fn image_key(&self, id: u64) -> ImageKey {
        let ud = self.user_data();
        let code = ud
            .get("image_keys")
            .and_then(|a| a.get(id as usize))
            .and_then(Json::as_i64)
            .or_else(|| ud.get("image_key").and_then(Json::as_i64));
        code.and_then(ImageKey::from_code).filter(|k| k.is_valid()).unwrap_or(ImageKey::Projection)
    }
}

/// An `image` message (the first channel in name order; the others are not written).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageMsg {
    /// `series_id`.
    pub series_id: u64,
    /// `image_id` (the frame index).
    pub image_id: u64,
    /// `series_unique_id`, when the image carries it.
    pub series_unique_id: Option<String>,
    /// The channel written.
    pub channel: String,
    /// Its image.
    pub image: Image,
    /// `user_data.image_key` of this image, if any.
    pub image_key: Option<i64>,
    /// `user_data.angle` of this image (degrees), if any.
    pub angle: Option<f64>,
}

/// An `end` message.
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    /// `series_id`.
    pub series_id: u64,
}

/// A decoded stream v2 message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// `start`.
    Start(Box<Start>),
    /// `image`.
    Image(ImageMsg),
    /// `end`.
    End(End),
}

fn untag(mut v: Value) -> Value {
    while let Value::Tag(TAG_SELF_DESCRIBE, inner) = v {
        v = *inner;
    }
    v
}

fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    map.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
}

fn uint(v: &Value) -> Option<u64> {
    v.as_integer().and_then(|i| u64::try_from(i).ok())
}

fn need_u64(map: &[(Value, Value)], key: &str) -> Result<u64, Stream2Error> {
    get(map, key).and_then(uint).ok_or_else(|| bad(format!("`{key}` missing or not an unsigned integer")))
}

/// CBOR to JSON for metadata: rationals become numbers, other tags their content, byte strings `{"bytes": n}`.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Integer(i) => {
            let i = i128::from(*i);
            i64::try_from(i).map(Json::from).unwrap_or_else(|_| json!(i as f64))
        }
        Value::Float(f) => json!(f),
        Value::Text(s) => json!(s),
        Value::Bool(b) => json!(b),
        Value::Null => Json::Null,
        Value::Bytes(b) => json!({ "bytes": b.len() }),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| (k.as_text().map_or_else(|| to_json(k).to_string(), str::to_string), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Tag(TAG_RATIONAL, inner) => match inner.as_array().map(|a| a.as_slice()) {
            Some([n, d]) => match (to_json(n).as_f64(), to_json(d).as_f64()) {
                (Some(n), Some(d)) if d != 0.0 => json!(n / d),
                _ => to_json(inner),
            },
            _ => to_json(inner),
        },
        Value::Tag(_, inner) => to_json(inner),
        _ => Json::Null,
    }
}

fn dtype_of_tag(tag: u64) -> Option<Dtype> {
    TYPED_ARRAYS.iter().find(|(t, _)| *t == tag).map(|(_, d)| *d)
}

/// Reads a typed array, possibly wrapping (or wrapped by) the compression tag: `(dtype, encoding, bytes)`.
/// A typed array's content: its dtype (from the tag), encoding, compression element size and bytes.
type Typed = (Option<Dtype>, Encoding, Option<usize>, Vec<u8>);

fn typed_array(v: Value) -> Result<Typed, Stream2Error> {
    match v {
        Value::Bytes(b) => Ok((None, Encoding::Raw, None, b)),
        Value::Tag(TAG_COMPRESSION, inner) => {
            let Value::Array(a) = *inner else { return Err(bad("compression tag does not hold an array")) };
            let [alg, elem, data]: [Value; 3] =
                a.try_into().map_err(|_| bad("compression tag needs [algorithm, element size, bytes]"))?;
            let encoding = match alg.as_text() {
                Some("bslz4") => Encoding::Bslz4,
                Some("lz4") => Encoding::Lz4,
                other => return Err(Stream2Error::Framing(format!("unsupported algorithm {other:?}"))),
            };
            let elem = uint(&elem).ok_or_else(|| bad("compression element size is not an integer"))? as usize;
            let (dtype, _, _, bytes) = typed_array(data)?;
            Ok((dtype, encoding, Some(elem), bytes))
        }
        Value::Tag(tag, inner) => {
            let dtype =
                dtype_of_tag(tag).ok_or_else(|| Stream2Error::Field(format!("unsupported typed array tag {tag}")))?;
            let (_, encoding, elem, bytes) = typed_array(*inner)?;
            Ok((Some(dtype), encoding, elem, bytes))
        }
        _ => Err(bad("image data is not a typed array")),
    }
}

fn multi_dim(v: Value) -> Result<Image, Stream2Error> {
    let Value::Tag(TAG_MULTI_DIM, inner) = v else { return Err(bad("image is not a MultiDimArray (tag 40)")) };
    let Value::Array(a) = *inner else { return Err(bad("MultiDimArray does not hold an array")) };
    let [dims, data]: [Value; 2] = a.try_into().map_err(|_| bad("MultiDimArray needs [dimensions, data]"))?;
    let dims: Vec<u32> = dims
        .as_array()
        .map(|d| d.iter().filter_map(uint).filter_map(|x| u32::try_from(x).ok()).collect())
        .unwrap_or_default();
    let [rows, cols]: [u32; 2] =
        dims.try_into().map_err(|_| bad("MultiDimArray dimensions are not [height, width]"))?;
    let (dtype, encoding, elem, bytes) = typed_array(data)?;
    let dtype = dtype.ok_or_else(|| bad("image data carries no typed array tag"))?;
    if let Some(e) = elem {
        if e != dtype.size() {
            return Err(Stream2Error::Field(format!("compression element size {e} but the array is {}", dtype.name())));
        }
    }
    Ok(Image { shape: [rows, cols], dtype, encoding, bytes })
}

/// Decodes one stream v2 message.
pub fn decode(msg: &[u8]) -> Result<Message, Stream2Error> {
    let v: Value = ciborium::de::from_reader(msg).map_err(|e| bad(format!("CBOR: {e}")))?;
    let Value::Map(map) = untag(v) else { return Err(bad("message is not a CBOR map")) };
    let kind = get(&map, "type").and_then(Value::as_text).ok_or_else(|| bad("no `type` text field"))?.to_string();
    match kind.as_str() {
        "start" => {
            let dtype = match get(&map, "image_dtype") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let name = v.as_text().ok_or_else(|| bad("image_dtype is not text"))?;
                    let d: Dtype =
                        name.parse().map_err(|_| Stream2Error::Field(format!("image_dtype {name:?} unsupported")))?;
                    Some(d)
                }
            };
            let x = need_u64(&map, "image_size_x")?;
            let y = need_u64(&map, "image_size_y")?;
            let shape = [u32::try_from(y).unwrap_or(u32::MAX), u32::try_from(x).unwrap_or(u32::MAX)];
            let json = to_json(&Value::Map(map.clone()));
            Ok(Message::Start(Box::new(Start {
                series_id: need_u64(&map, "series_id")?,
                series_unique_id: get(&map, "series_unique_id").and_then(Value::as_text).unwrap_or("").to_string(),
                number_of_images: need_u64(&map, "number_of_images")?,
                dtype,
                shape,
                json,
            })))
        }
        "image" => {
            let series_id = need_u64(&map, "series_id")?;
            let image_id = need_u64(&map, "image_id")?;
            let ud = get(&map, "user_data").map(to_json).unwrap_or(Json::Null);
            let mut map = map;
            let pos = map.iter().position(|(k, _)| k.as_text() == Some("data")).ok_or_else(|| bad("no `data`"))?;
            let (_, data) = map.swap_remove(pos);
            let Value::Map(mut channels) = data else { return Err(bad("`data` is not a map of channels")) };
            channels.sort_by(|a, b| a.0.as_text().cmp(&b.0.as_text()));
            if channels.is_empty() {
                return Err(bad("`data` holds no channel"));
            }
            let (name, img) = channels.swap_remove(0);
            Ok(Message::Image(ImageMsg {
                series_id,
                image_id,
                series_unique_id: get(&map, "series_unique_id").and_then(Value::as_text).map(str::to_string),
                channel: name.as_text().unwrap_or("").to_string(),
                image: multi_dim(img)?,
                image_key: ud.get("image_key").and_then(Json::as_i64),
                angle: ud.get("angle").and_then(Json::as_f64),
            }))
        }
        "end" => Ok(Message::End(End { series_id: need_u64(&map, "series_id")? })),
        other => Err(Stream2Error::UnknownType(other.to_string())),
    }
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Walks the blocks of an HDF5 Bitshuffle (`bslz4`) or LZ4 (`lz4`) chunk without decompressing it: the 8-byte
/// big-endian total size must be `want` bytes, the 4-byte big-endian block size (bytes) must fit the framing,
/// and the blocks' 4-byte lengths must add up exactly to the payload. Returns the block size in bytes.
pub fn check_framing(bytes: &[u8], encoding: Encoding, elem: usize, want: u64) -> Result<u32, Stream2Error> {
    let err = |s: String| Stream2Error::Framing(format!("{} {s}", encoding.as_str()));
    if bytes.len() < 12 {
        return Err(err(format!("payload of {} bytes has no 12-byte header", bytes.len())));
    }
    let total = be_u64(bytes);
    let block = be_u32(&bytes[8..]);
    if total != want {
        return Err(err(format!("header says {total} bytes, the image has {want}")));
    }
    let (full, last, leftover) = match encoding {
        Encoding::Bslz4 => {
            let mult = 8 * elem as u64;
            if block == 0 || u64::from(block) % mult != 0 {
                return Err(err(format!("block size {block} is not a positive multiple of {mult}")));
            }
            let leftover = total % mult;
            (total / u64::from(block), total % u64::from(block) - leftover, leftover)
        }
        Encoding::Lz4 => {
            if block == 0 {
                return Err(err("block size 0".into()));
            }
            (total / u64::from(block), total % u64::from(block), 0)
        }
        Encoding::Raw => return Ok(0),
    };
    let mut at = 12usize;
    let blocks = full + u64::from(last > 0);
    for k in 0..blocks {
        let n = bytes
            .get(at..at + 4)
            .map(be_u32)
            .ok_or_else(|| err(format!("payload ends inside block {k}'s length ({blocks} blocks)")))?;
        at = at
            .checked_add(4 + n as usize)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| err(format!("block {k} of {n} bytes runs past the payload's {} bytes", bytes.len())))?;
    }
    if (bytes.len() - at) as u64 != leftover {
        return Err(err(format!("{} bytes after {blocks} blocks, expected {leftover}", bytes.len() - at)));
    }
    Ok(block)
}

/// Checks an image against the series start and returns the chunk filter its encoding needs.
pub fn check_image(start: &Start, img: &Image) -> Result<Option<ChunkFilter>, Stream2Error> {
    if img.shape != start.shape || start.dtype.is_some_and(|d| d != img.dtype) {
        return Err(Stream2Error::Field(format!(
            "image {}x{} {} but the series is {}x{} {}",
            img.shape[0],
            img.shape[1],
            img.dtype.name(),
            start.shape[0],
            start.shape[1],
            start.dtype.map_or("(type of its first image)", |d| d.name())
        )));
    }
    let elem = img.dtype.size();
    let want = u64::from(img.shape[0]) * u64::from(img.shape[1]) * elem as u64;
    match img.encoding {
        Encoding::Raw => {
            if img.bytes.len() as u64 != want {
                return Err(Stream2Error::Size { got: img.bytes.len(), want: want as usize });
            }
            Ok(None)
        }
        Encoding::Bslz4 => {
            let block = check_framing(&img.bytes, Encoding::Bslz4, elem, want)?;
            let cd = vec![0, 2, elem as u32, block / elem as u32, 2];
            Ok(Some(ChunkFilter { id: BITSHUFFLE_FILTER, cd_values: cd }))
        }
        Encoding::Lz4 => {
            let block = check_framing(&img.bytes, Encoding::Lz4, elem, want)?;
            Ok(Some(ChunkFilter { id: LZ4_FILTER, cd_values: vec![block] }))
        }
    }
}

/// The series id our files use for a stream v2 series: its `series_unique_id` with characters outside
/// `A-Z a-z 0-9 . _ -` replaced by `_`, else `series_<series_id>`.
pub fn series_name(start: &Start) -> String {
    let clean: String = start
        .series_unique_id
        .chars()
        .take(100)
        .map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' })
        .collect();
    if clean.is_empty() {
        format!("series_{}", start.series_id)
    } else {
        clean
    }
}

/// Writes the detector, beam and goniometer metadata of a start message into an open file.
fn write_metadata(w: &NxtomoWriter, start: &Start, encoding: Encoding) -> hdf5::Result<()> {
    let f = w.file();
    let det = f.group(nx::DETECTOR)?;
    let scalar = |g: &hdf5::Group, name: &str, v: f64, units: &str| -> hdf5::Result<()> {
        let ds = g.new_dataset::<f64>().create(name)?;
        ds.write_scalar(&v)?;
        if !units.is_empty() {
            attr_str(&ds, "units", units)?;
        }
        Ok(())
    };
    for (key, name, units) in [
        ("pixel_size_x", "x_pixel_size", "m"),
        ("pixel_size_y", "y_pixel_size", "m"),
        ("count_time", "count_time", "s"),
        ("frame_time", "frame_time", "s"),
        ("beam_center_x", "beam_center_x", "pixel"),
        ("beam_center_y", "beam_center_y", "pixel"),
        ("saturation_value", "saturation_value", "counts"),
        ("threshold_energy", "threshold_energy", "eV"),
        ("sensor_thickness", "sensor_thickness", "m"),
    ] {
        if let Some(v) = start.number(key).or_else(|| start.json.get(key).and_then(|t| t.get("threshold_1"))?.as_f64())
        {
            scalar(&det, name, v, units)?;
        }
    }
    crate::nexus::string_dataset(&det, "compression", encoding.as_str())?;
    if let Some(d) = start.json.get("detector_description").and_then(Json::as_str) {
        crate::nexus::string_dataset(&det, "description", d)?;
    }
    let energy = start.number("incident_energy");
    let wavelength = start.number("incident_wavelength");
    if energy.is_some() || wavelength.is_some() {
        let beam = nx_group(f, &format!("{}/beam", nx::INSTRUMENT), "NXbeam")?;
        if let Some(e) = energy {
            scalar(&beam, "incident_energy", e, "eV")?;
        }
        if let Some(l) = wavelength {
            scalar(&beam, "incident_wavelength", l, "angstrom")?;
        }
    }
    let acq = f.group(nx::ACQUISITION)?;
    crate::nexus::string_dataset(&acq, "stream2_start", &start.json.to_string())?;
    let ds = acq.new_dataset::<u64>().create("stream2_series_id")?;
    ds.write_scalar(&start.series_id)?;
    crate::nexus::string_dataset(&acq, "stream2_series_unique_id", &start.series_unique_id)?;
    crate::nexus::string_dataset(&acq, "stream2_rotation_axis", start.rotation_axis())?;
    Ok(())
}

/// A series as the receive thread sees it: what it checks images against.
struct OpenSeries {
    start: Start,
    encoding: Option<Encoding>,
    seen: Vec<bool>,
    rejected: Rejections,
    /// One of several receivers on the stream (`--peers`): the images not dealt here are not missing here.
    shared: bool,
    /// When the last image of the series arrived (or it opened).
    last: Instant,
}

/// What the receive thread hands the writer thread, in order, through the bounded queue.
enum ToWriter {
    /// A series starts (its file is created when the first image says which chunk filter it needs); `true`
    /// when this receiver is one of several on the stream.
    Open(Box<(Start, PathBuf, bool)>),
    /// The first accepted image's encoding and pixel type: create the file with this chunk filter.
    Create(Option<ChunkFilter>, Encoding, Dtype),
    /// An accepted image (the bytes as received: a compressed chunk or raw pixels).
    Frame(FrameHeader, Vec<u8>),
    /// The open series closes, with its end when one arrived.
    Close(Option<Box<SeriesEnd>>, Rejections),
}

/// Receives DECTRIS SIMPLON stream v2 from a detector (PULL connected to its PUSH, or bound with
/// `connect = false`) and writes each series as an NXtomo file.
///
/// As with our own protocol, the receive thread decodes and checks every message and hands accepted images
/// to a writer thread that owns every HDF5 call, through a queue bounded by `queue_frames` and
/// `queue_bytes`. A writer failure stops the receiver and is its error (no message is counted for it).
pub struct Stream2Receiver {
    cfg: ReceiverConfig,
    _ctx: zmq::Context,
    socket: zmq::Socket,
    stop: StopHandle,
    budget: Arc<ByteBudget>,
    zap: Option<crate::curve::ZapHandler>,
    peers: Option<Peers>,
}

impl Stream2Receiver {
    /// Checks the output, then connects (or binds) the PULL socket as `cfg` says.
    pub fn open(cfg: ReceiverConfig) -> Result<Stream2Receiver, ReceiveError> {
        check_output(&cfg.output)?;
        let ctx = zmq::Context::new();
        let zerr = |op, cause, hint| ReceiveError::Zmq { op, endpoint: cfg.endpoint.clone(), cause, hint };
        let socket = ctx.socket(zmq::PULL).map_err(|e| zerr("socket", e, ""))?;
        socket.set_rcvhwm(cfg.rcvhwm.max(1)).map_err(|e| zerr("set_rcvhwm", e, ""))?;
        socket.set_maxmsgsize(cfg.max_message_bytes).map_err(|e| zerr("set_maxmsgsize", e, ""))?;
        socket.set_rcvtimeo(100).map_err(|e| zerr("set_rcvtimeo", e, ""))?;
        socket.set_linger(0).map_err(|e| zerr("set_linger", e, ""))?;
        let zap = cfg.curve.as_ref().map(|c| crate::curve::ZapHandler::secure(&ctx, &socket, c)).transpose()?;
        if cfg.connect {
            socket.connect(&cfg.endpoint).map_err(|e| zerr("connect", e, ": check the detector's endpoint"))?;
        } else {
            socket.bind(&cfg.endpoint).map_err(|e| zerr("bind", e, ": is something else bound there?"))?;
        }
        let budget = Arc::new(ByteBudget::new(cfg.queue_bytes));
        Ok(Stream2Receiver { cfg, _ctx: ctx, socket, stop: StopHandle::default(), budget, zap, peers: None })
    }

    /// One of several receivers on the stream: shares the start and end it receives with the others, and
    /// opens a series it did not see start from the start a peer shared (see [`peers`]).
    pub fn with_peers(mut self, peers: Peers) -> Stream2Receiver {
        self.peers = Some(peers);
        self
    }

    /// The endpoint (the bound one when binding `tcp://127.0.0.1:*`).
    pub fn endpoint(&self) -> String {
        match self.socket.get_last_endpoint() {
            Ok(Ok(e)) if !self.cfg.connect => e,
            _ => self.cfg.endpoint.clone(),
        }
    }

    /// A handle that stops this receiver.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Receives until stopped (or, with `Output::File`, until one series ended), or until the writer fails.
    pub fn run(self) -> Result<ReceiveSummary, ReceiveError> {
        crate::frame_memory::keep_frame_buffers(self.cfg.queue_bytes);
        let (tx, rx) = crossbeam_channel::bounded::<ToWriter>(self.cfg.queue_frames.max(1));
        let (flush, prov, io) = (self.cfg.flush_interval, self.cfg.provenance.clone(), self.cfg.write_io);
        let (stop, budget) = (self.stop.clone(), self.budget.clone());
        let writer = std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer_loop(rx, flush, NewFiles { prov, io }, stop, budget))
            .map_err(|e| ReceiveError::Thread(e.to_string()))?;
        let mut outside = Rejections::default();
        let received = self.receive_loop(&tx, &mut outside);
        drop(tx);
        let series = writer.join().map_err(|_| ReceiveError::Thread("writer thread panicked".into()))??;
        received?;
        let curve_refused = self.zap.as_ref().map_or(0, |z| z.counts().refused());
        Ok(ReceiveSummary { series, rejected_outside_series: outside, resent_duplicates: 0, curve_refused })
    }

    fn receive_loop(&self, tx: &ChanTx<ToWriter>, outside: &mut Rejections) -> Result<(), ReceiveError> {
        let mut open: Option<OpenSeries> = None;
        let mut held: Vec<(Instant, ImageMsg)> = Vec::new();
        let mut msg = zmq::Message::new();
        let zerr = |cause| ReceiveError::Zmq { op: "recv", endpoint: self.cfg.endpoint.clone(), cause, hint: "" };
        let mut last_tick = Instant::now();
        while !self.stop.is_stopped() {
            let got = {
                let _w = match open {
                    Some(_) => tracing::debug_span!("wait.queue", queue = "zmq", wants = "data", on = "sender"),
                    None => tracing::debug_span!("wait.idle", until = "next series"),
                }
                .entered();
                match self.socket.recv(&mut msg, 0) {
                    Ok(()) => true,
                    Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => false,
                    Err(e) => return Err(zerr(e)),
                }
            };
            if got {
                let mut parts = 1;
                while msg.get_more() {
                    self.socket.recv(&mut msg, 0).map_err(zerr)?;
                    parts += 1;
                }
                let verdict = if parts != 1 {
                    Err((Reason::Parts, format!("stream v2 messages have one part, got {parts}")))
                } else {
                    let decoded = {
                        let _s = tracing::trace_span!("stream2.decode", bytes = msg.len()).entered();
                        decode(&msg)
                    };
                    match decoded {
                        Err(e) => Err((e.reason(), e.to_string())),
                        Ok(m) => match &self.peers {
                            None => self.on_message(m, &mut open, tx, false),
                            Some(p) => self.on_shared(p, m, &msg, &mut open, &mut held, tx),
                        },
                    }
                };
                if self.settle(verdict, &mut open, outside) {
                    break;
                }
            }
            if let Some(p) = &self.peers {
                if !got || last_tick.elapsed() >= Duration::from_millis(100) {
                    last_tick = Instant::now();
                    let verdict = self.peer_tick(p, &mut open, &mut held, tx, outside);
                    if self.settle(verdict, &mut open, outside) {
                        break;
                    }
                }
            }
        }
        for (_, img) in held.drain(..) {
            let why = format!(
                "image {} of series {}: receiver stopped before its start arrived",
                img.image_id, img.series_id
            );
            Self::tally(&mut None, outside, Reason::NoSeries, why);
        }
        if let Some(s) = open.take() {
            let _ = tx.send(ToWriter::Close(None, s.rejected));
        }
        Ok(())
    }

    /// Whether a verdict ends the loop: the one series of `--output` is done, or the writer is gone. A
    /// rejection is counted where it belongs.
    fn settle(&self, verdict: Verdict, open: &mut Option<OpenSeries>, outside: &mut Rejections) -> bool {
        match verdict {
            Ok(Flow::Continue) => false,
            Ok(Flow::SeriesDone) => matches!(self.cfg.output, Output::File(_)),
            Ok(Flow::WriterGone) => true,
            Err((reason, detail)) => {
                Self::tally(open, outside, reason, detail);
                false
            }
        }
    }

    fn tally(open: &mut Option<OpenSeries>, outside: &mut Rejections, reason: Reason, detail: String) {
        let tally = open.as_mut().map_or(outside, |s| &mut s.rejected);
        tally.add(reason);
        if tally.get(reason) <= 10 {
            tracing::warn!(reason = reason.as_str(), "rejected stream v2 message: {detail}");
        }
    }

    /// A message on a stream shared with peers: a start or end is published for them first; an image of a
    /// series not open here is held until its start arrives from a peer ([`Self::peer_tick`]).
    fn on_shared(
        &self,
        peers: &Peers,
        m: Message,
        raw: &[u8],
        open: &mut Option<OpenSeries>,
        held: &mut Vec<(Instant, ImageMsg)>,
        tx: &ChanTx<ToWriter>,
    ) -> Verdict {
        match m {
            Message::Start(start) => {
                if let Err(e) = peers.publish_start(start.series_id, raw) {
                    tracing::error!("cannot share series {}'s start in {}: {e}", start.series_id, peers.dir.display());
                }
                self.on_message(Message::Start(start), open, tx, true)
            }
            Message::End(end) => {
                if let Err(e) = peers.publish_end(end.series_id, raw) {
                    tracing::error!("cannot share series {}'s end in {}: {e}", end.series_id, peers.dir.display());
                }
                if open.as_ref().is_some_and(|s| s.start.series_id == end.series_id) {
                    self.on_message(Message::End(end), open, tx, true)
                } else {
                    Ok(Flow::Continue) // a series whose images all went to peers: nothing to close here
                }
            }
            Message::Image(img) if open.as_ref().is_none_or(|s| s.start.series_id != img.series_id) => {
                if held.len() >= self.cfg.queue_frames.max(1) {
                    return Err((
                        Reason::NoSeries,
                        format!(
                            "image {} of series {}: {} images already wait for its start (from a peer in {})",
                            img.image_id,
                            img.series_id,
                            held.len(),
                            peers.dir.display()
                        ),
                    ));
                }
                held.push((Instant::now(), img));
                Ok(Flow::Continue)
            }
            m => self.on_message(m, open, tx, true),
        }
    }

    /// Shared stream: opens the series of held images once a peer published its start (or rejects them
    /// after [`Peers::wait_for_start`]), and closes the open series once a peer published its end and no image
    /// of it arrived for [`Peers::quiet_after_end`].
    fn peer_tick(
        &self,
        peers: &Peers,
        open: &mut Option<OpenSeries>,
        held: &mut Vec<(Instant, ImageMsg)>,
        tx: &ChanTx<ToWriter>,
        outside: &mut Rejections,
    ) -> Verdict {
        if let Some((since, first)) = held.first() {
            let (sid, since) = (first.series_id, *since);
            if open.is_none() {
                if let Some(raw) = peers.start(sid) {
                    match decode(&raw) {
                        Ok(Message::Start(start)) => {
                            tracing::info!(series_id = sid, "series start shared by a peer in {}", peers.dir.display());
                            if let Flow::WriterGone = self.on_message(Message::Start(start), open, tx, true)? {
                                return Ok(Flow::WriterGone);
                            }
                        }
                        _ => tracing::error!("{} is not a stream v2 start", peers.start_path(sid).display()),
                    }
                }
            }
            if open.as_ref().is_some_and(|s| s.start.series_id == sid) {
                let (mine, others): (Vec<_>, Vec<_>) = held.drain(..).partition(|(_, i)| i.series_id == sid);
                *held = others;
                for (_, img) in mine {
                    let unique = img.series_unique_id.clone();
                    let verdict = match (&unique, open.as_ref()) {
                        (Some(u), Some(s))
                            if !s.start.series_unique_id.is_empty() && *u != s.start.series_unique_id =>
                        {
                            Err((
                                Reason::SeriesMismatch,
                                format!("image of series {u:?}, the shared start is of {:?}", s.start.series_unique_id),
                            ))
                        }
                        _ => self.on_message(Message::Image(img), open, tx, true),
                    };
                    if let Err((reason, detail)) = verdict {
                        Self::tally(open, outside, reason, detail);
                    } else if let Ok(Flow::WriterGone) = verdict {
                        return Ok(Flow::WriterGone);
                    }
                }
            } else if since.elapsed() >= peers.wait_for_start {
                let waited = peers.wait_for_start.as_secs_f64();
                for (_, img) in held.drain(..) {
                    let why = format!(
                        "image {} of series {}: no start arrived here or from a peer in {} within {waited} s",
                        img.image_id,
                        img.series_id,
                        peers.dir.display()
                    );
                    Self::tally(&mut None, outside, Reason::NoSeries, why);
                }
            }
        }
        match open.as_ref() {
            Some(s) if s.shared && s.last.elapsed() >= peers.quiet_after_end && peers.ended(s.start.series_id) => {
                let series_id = s.start.series_id;
                tracing::info!(series_id, "series end shared by a peer in {}", peers.dir.display());
                self.on_message(Message::End(End { series_id }), open, tx, true)
            }
            _ => Ok(Flow::Continue),
        }
    }

    /// Checks one decoded message and queues what the writer must do with it.
    fn on_message(&self, m: Message, open: &mut Option<OpenSeries>, tx: &ChanTx<ToWriter>, shared: bool) -> Verdict {
        match m {
            Message::Start(start) => {
                if start.number_of_images == 0 {
                    return Err((Reason::InvalidField, "start declares number_of_images 0".into()));
                }
                let name = series_name(&start);
                let s = SeriesStart::new(
                    name.clone(),
                    Shape(start.shape),
                    start.dtype.unwrap_or(UNDECLARED_DTYPE),
                    Compression::None,
                    start.number_of_images,
                );
                s.validate().map_err(|e| (Reason::InvalidField, e.to_string()))?;
                if let Some(prev) = open.take() {
                    tracing::warn!("series {} closed without an end: a new start arrived", series_name(&prev.start));
                    if let Flow::WriterGone = push(tx, ToWriter::Close(None, prev.rejected)) {
                        return Ok(Flow::WriterGone);
                    }
                }
                tracing::info!(series = %name, images = start.number_of_images, "stream v2 series start");
                let path = file_for(&self.cfg.output, &name);
                *open = Some(OpenSeries {
                    seen: vec![false; start.number_of_images as usize],
                    start: (*start).clone(),
                    encoding: None,
                    rejected: Rejections::default(),
                    shared,
                    last: Instant::now(),
                });
                Ok(push(tx, ToWriter::Open(Box::new((*start, path, shared)))))
            }
            Message::Image(img) => {
                let s = open.as_mut().ok_or((Reason::NoSeries, "image outside a series".into()))?;
                if img.series_id != s.start.series_id {
                    return Err((Reason::SeriesMismatch, format!("image of series {}", img.series_id)));
                }
                let i = img.image_id as usize;
                match s.seen.get(i) {
                    None => return Err((Reason::IndexOutOfRange, format!("image_id {i} of {}", s.seen.len()))),
                    Some(true) => return Err((Reason::DuplicateFrame, format!("image_id {i} again"))),
                    Some(false) => {}
                }
                let filter = check_image(&s.start, &img.image).map_err(|e| (e.reason(), e.to_string()))?;
                match s.encoding {
                    Some(enc) if enc != img.image.encoding => {
                        return Err((
                            Reason::InvalidField,
                            format!("image {} is {} in a {} series", i, img.image.encoding.as_str(), enc.as_str()),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        s.encoding = Some(img.image.encoding);
                        s.start.dtype = Some(img.image.dtype);
                        let create = ToWriter::Create(filter, img.image.encoding, img.image.dtype);
                        if let Flow::WriterGone = push(tx, create) {
                            return Ok(Flow::WriterGone);
                        }
                    }
                }
                let key = img
                    .image_key
                    .and_then(ImageKey::from_code)
                    .filter(|k| k.is_valid())
                    .unwrap_or_else(|| s.start.image_key(img.image_id));
                let angle = img.angle.map(Degrees).unwrap_or_else(|| s.start.angle(img.image_id));
                let h =
                    FrameHeader { index: FrameIndex(img.image_id), image_key: key, angle, timestamp: now_timestamp() };
                s.seen[i] = true;
                s.last = Instant::now();
                let bytes = img.image.bytes;
                if !self.budget.acquire(bytes.len() as u64, || self.stop.is_stopped()) {
                    return Ok(Flow::WriterGone);
                }
                Ok(push(tx, ToWriter::Frame(h, bytes)))
            }
            Message::End(e) => {
                let s = open.take().ok_or((Reason::NoSeries, "end outside a series".into()))?;
                if e.series_id != s.start.series_id {
                    let id = s.start.series_id;
                    *open = Some(s);
                    return Err((Reason::SeriesMismatch, format!("end of series {} in series {id}", e.series_id)));
                }
                // Shared stream: the detector dealt this receiver the images that arrived here (any it lost is
                // found by `beamline stitch`, which needs every image in exactly one receiver's file).
                let frames_sent =
                    if s.shared { s.seen.iter().filter(|&&x| x).count() as u64 } else { s.start.number_of_images };
                let end = SeriesEnd {
                    protocol: crate::protocol::PROTOCOL_VERSION,
                    series: series_name(&s.start),
                    frames_sent,
                    status: Some(SeriesStatus::Complete),
                    metadata: None,
                };
                Ok(match push(tx, ToWriter::Close(Some(Box::new(end)), s.rejected)) {
                    Flow::Continue => Flow::SeriesDone,
                    other => other,
                })
            }
        }
    }
}

enum Flow {
    Continue,
    SeriesDone,
    WriterGone,
}

type Verdict = Result<Flow, (Reason, String)>;

fn push(tx: &ChanTx<ToWriter>, msg: ToWriter) -> Flow {
    if queue_for_writer(tx, msg) {
        Flow::Continue
    } else {
        Flow::WriterGone
    }
}

/// A series as the writer thread holds it: its file exists once the first image said how it is encoded.
struct WriterSeries {
    start: Start,
    path: PathBuf,
    writer: Option<NxtomoWriter>,
    shared: bool,
}

fn writer_loop(
    rx: ChanRx<ToWriter>,
    flush: Duration,
    files: NewFiles,
    stop: StopHandle,
    budget: Arc<ByteBudget>,
) -> Result<Vec<SeriesSummary>, ReceiveError> {
    let mut done = Vec::new();
    let mut current: Option<WriterSeries> = None;
    let mut dropped = 0u64;
    let result = (|| -> Result<(), WriteError> {
        loop {
            let msg = {
                let _w = match current {
                    Some(_) => tracing::debug_span!("wait.queue", queue = "frames", wants = "data", on = "receiver"),
                    None => tracing::debug_span!("wait.idle", until = "next series"),
                }
                .entered();
                rx.recv_timeout(flush)
            };
            match msg {
                Ok(ToWriter::Open(b)) => {
                    let (start, path, shared) = *b;
                    if let Some(s) = current.take() {
                        done.push(close(s, None, Rejections::default(), &files)?);
                    }
                    current = Some(WriterSeries { start, path, writer: None, shared });
                }
                Ok(ToWriter::Create(filter, encoding, dtype)) => {
                    if let Some(s) = current.as_mut() {
                        s.start.dtype = Some(dtype);
                        s.writer = Some(create(&s.start, &s.path, filter.as_ref(), encoding, s.shared, &files)?);
                    }
                }
                Ok(ToWriter::Frame(h, bytes)) => {
                    budget.release(bytes.len() as u64);
                    if stop.is_stopped_now() {
                        // Stopped at once: queued images are dropped (they stay missing in the file).
                        dropped += 1;
                        continue;
                    }
                    if let Some(w) = current.as_mut().and_then(|s| s.writer.as_mut()) {
                        w.write_frame(&h, &bytes)?;
                        w.maybe_flush(flush)?;
                    }
                }
                Ok(ToWriter::Close(end, rejected)) => {
                    if let Some(s) = current.take() {
                        done.push(close(s, end.as_deref(), rejected, &files)?);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(w) = current.as_mut().and_then(|s| s.writer.as_mut()) {
                        w.maybe_flush(flush)?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    if let Some(s) = current.take() {
                        done.push(close(s, None, Rejections::default(), &files)?);
                    }
                    return Ok(());
                }
            }
        }
    })();
    if dropped > 0 {
        tracing::warn!(dropped, "stopped at once: {dropped} queued images were not written (listed as missing)");
    }
    result.map(|()| done).map_err(|e| {
        tracing::error!("writer stopped: {e}");
        stop.stop();
        e.into()
    })
}

/// What every file the writer creates is made with: the provenance it records and how its chunks are written.
struct NewFiles {
    prov: Provenance,
    io: WriteIo,
}

fn create(
    start: &Start,
    path: &Path,
    filter: Option<&ChunkFilter>,
    encoding: Encoding,
    shared: bool,
    files: &NewFiles,
) -> Result<NxtomoWriter, WriteError> {
    let mut s = SeriesStart::new(
        series_name(start),
        Shape(start.shape),
        start.dtype.unwrap_or(UNDECLARED_DTYPE),
        Compression::None,
        start.number_of_images,
    );
    s.metadata = json!({ "stream2": start.json.clone(), "chunk_encoding": encoding.as_str() });
    if shared {
        // One of several receivers on the stream: the writer's share rule lists the images dealt to the others
        // as not sent here (not missing) when every image dealt here arrived and nothing was rejected.
        s.share = Some(Share { index: 0, of: 1 });
    }
    let w = NxtomoWriter::create_with(path, &s, &files.prov, filter, files.io)?;
    write_metadata(&w, start, encoding).map_err(|cause| WriteError::Hdf5 {
        what: "write stream v2 metadata".into(),
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(w)
}

fn close(
    mut s: WriterSeries,
    end: Option<&SeriesEnd>,
    rejected: Rejections,
    files: &NewFiles,
) -> Result<SeriesSummary, WriteError> {
    let w = match s.writer.take() {
        Some(w) => w,
        None => create(&s.start, &s.path, None, Encoding::Raw, s.shared, files)?,
    };
    w.finish(end, rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).unwrap();
        out
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn image(data: Value) -> Vec<u8> {
        let md = Value::Tag(TAG_MULTI_DIM, Box::new(Value::Array(vec![Value::Array(vec![2.into(), 8.into()]), data])));
        let m = Value::Map(vec![
            (t("type"), t("image")),
            (t("series_id"), 3.into()),
            (t("image_id"), 1.into()),
            (t("data"), Value::Map(vec![(t("threshold_1"), md)])),
        ]);
        enc(&Value::Tag(TAG_SELF_DESCRIBE, Box::new(m)))
    }

    /// A bslz4 framing for 16 u16 pixels: one block of 32 bytes holding `n` bytes, no leftover.
    fn bslz4(total: u64, block: u32, lens: &[u32], tail: usize) -> Vec<u8> {
        let mut b = total.to_be_bytes().to_vec();
        b.extend(block.to_be_bytes());
        for &n in lens {
            b.extend(n.to_be_bytes());
            b.extend(vec![0u8; n as usize]);
        }
        b.extend(vec![0u8; tail]);
        b
    }

    #[test]
    fn a_compressed_image_decodes_with_its_tags_and_framing_is_walked() {
        let payload = bslz4(32, 32, &[7], 0);
        let data = Value::Tag(
            69,
            Box::new(Value::Tag(
                TAG_COMPRESSION,
                Box::new(Value::Array(vec![t("bslz4"), 2.into(), Value::Bytes(payload.clone())])),
            )),
        );
        let Message::Image(m) = decode(&image(data)).unwrap() else { panic!("not an image") };
        assert_eq!((m.series_id, m.image_id, m.channel.as_str()), (3, 1, "threshold_1"));
        assert_eq!(m.image.shape, [2, 8]);
        assert_eq!((m.image.dtype, m.image.encoding), (Dtype::Uint16, Encoding::Bslz4));
        assert_eq!(m.image.bytes, payload);
        assert_eq!(check_framing(&payload, Encoding::Bslz4, 2, 32), Ok(32));
    }

    #[test]
    fn damaged_framings_are_rejected_with_a_reason() {
        let cases = [
            bslz4(30, 32, &[7], 0), // wrong total
            bslz4(32, 12, &[7], 0), // block size not a multiple of 16
            bslz4(32, 32, &[7], 3), // trailing bytes
            bslz4(32, 32, &[], 0),  // missing block
            bslz4(32, 16, &[7], 0), // one block short
            vec![0u8; 5],           // no header
        ];
        for c in cases {
            let e = check_framing(&c, Encoding::Bslz4, 2, 32).unwrap_err();
            assert_eq!(e.reason(), Reason::CompressedFraming, "{e}");
        }
        let mut cut = bslz4(32, 32, &[7], 0);
        cut.pop();
        assert!(check_framing(&cut, Encoding::Bslz4, 2, 32).is_err());
        // 20 u16 pixels = 40 bytes: one 32-byte block, and 8 leftover bytes are not a full 16-byte group.
        assert_eq!(check_framing(&bslz4(40, 32, &[5], 8), Encoding::Bslz4, 2, 40), Ok(32));
        assert_eq!(check_framing(&bslz4(40, 16, &[3, 4], 8), Encoding::Bslz4, 2, 40), Ok(16));
        assert_eq!(check_framing(&bslz4(10, 4, &[1, 1, 1], 0), Encoding::Lz4, 1, 10), Ok(4));
    }

    #[test]
    fn garbage_and_wrong_types_are_counted_not_panicked() {
        assert_eq!(decode(b"\xff\x00garbage").unwrap_err().reason(), Reason::BadCbor);
        let m = enc(&Value::Map(vec![(t("type"), t("config"))]));
        assert_eq!(decode(&m).unwrap_err().reason(), Reason::UnknownKind);
        let e = decode(&image(Value::Tag(71, Box::new(Value::Bytes(vec![0; 4]))))).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidField);
        let e = decode(&image(Value::Tag(
            69,
            Box::new(Value::Tag(
                TAG_COMPRESSION,
                Box::new(Value::Array(vec![t("zstd"), 2.into(), Value::Bytes(vec![0; 4])])),
            )),
        )))
        .unwrap_err();
        assert_eq!(e.reason(), Reason::CompressedFraming);
    }

    #[test]
    fn a_writer_failure_stops_the_receiver_and_is_its_error_not_a_rejection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taken.h5");
        let mut cfg = ReceiverConfig::new(Output::File(path.clone()));
        cfg.endpoint = "tcp://127.0.0.1:*".into();
        let rx = Stream2Receiver::open(cfg).unwrap();
        let (ep, stop) = (rx.endpoint(), rx.stop_handle());
        std::fs::create_dir(&path).unwrap(); // HDF5 cannot create the file now
        let run = std::thread::spawn(move || rx.run());
        let ctx = zmq::Context::new();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.connect(&ep).unwrap();
        let start = Value::Map(vec![
            (t("type"), t("start")),
            (t("series_id"), 3.into()),
            (t("number_of_images"), 2.into()),
            (t("image_dtype"), t("uint16")),
            (t("image_size_x"), 8.into()),
            (t("image_size_y"), 2.into()),
        ]);
        push.send(enc(&start), 0).unwrap();
        push.send(image(Value::Tag(69, Box::new(Value::Bytes(vec![1; 32])))), 0).unwrap();
        push.send(enc(&Value::Map(vec![(t("type"), t("end")), (t("series_id"), 3.into())])), 0).unwrap();
        let t0 = std::time::Instant::now();
        while !run.is_finished() && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let finished = run.is_finished();
        stop.stop();
        let r = run.join().unwrap();
        assert!(finished, "the receiver kept running after its writer failed: {r:?}");
        match r {
            Err(ReceiveError::Write(e)) => assert!(e.to_string().contains("taken.h5"), "{e}"),
            other => panic!("expected the writer's error, got {other:?}"),
        }
    }

    #[test]
    fn a_start_without_image_dtype_takes_the_first_images_type() {
        // The tickit Eiger's start message (captured from an EIGER2 16M) has no image_dtype.
        let m = Value::Map(vec![
            (t("type"), t("start")),
            (t("series_id"), 3.into()),
            (t("number_of_images"), 2.into()),
            (t("image_size_x"), 8.into()),
            (t("image_size_y"), 2.into()),
        ]);
        let Message::Start(s) = decode(&enc(&m)).unwrap() else { panic!("not a start") };
        assert_eq!(s.dtype, None);
        let img = Image { shape: [2, 8], dtype: Dtype::Uint32, encoding: Encoding::Raw, bytes: vec![0; 64] };
        assert_eq!(check_image(&s, &img), Ok(None));
        let e = check_image(&s, &Image { shape: [2, 7], ..img }).unwrap_err();
        assert_eq!(e.reason(), Reason::InvalidField);
    }

    #[test]
    fn start_metadata_gives_angles_and_keys() {
        let ud = Value::Map(vec![(t("image_keys"), Value::Array(vec![2.into(), 1.into(), 0.into()]))]);
        let gonio = Value::Map(vec![(
            t("omega"),
            Value::Map(vec![(t("start"), Value::Float(10.0)), (t("increment"), Value::Float(0.5))]),
        )]);
        let rational = Value::Tag(TAG_RATIONAL, Box::new(Value::Array(vec![1.into(), 4.into()])));
        let m = Value::Map(vec![
            (t("type"), t("start")),
            (t("series_id"), 3.into()),
            (t("series_unique_id"), t("abc/1")),
            (t("number_of_images"), 3.into()),
            (t("image_dtype"), t("uint16")),
            (t("image_size_x"), 8.into()),
            (t("image_size_y"), 2.into()),
            (t("count_time"), rational),
            (t("goniometer"), gonio),
            (t("user_data"), ud),
        ]);
        let Message::Start(s) = decode(&enc(&Value::Tag(TAG_SELF_DESCRIBE, Box::new(m)))).unwrap() else {
            panic!("not a start")
        };
        assert_eq!((s.shape, s.dtype, s.number_of_images), ([2, 8], Some(Dtype::Uint16), 3));
        assert_eq!(series_name(&s), "abc_1");
        assert_eq!(s.number("count_time"), Some(0.25));
        assert_eq!(s.angle(2), Degrees(11.0));
        assert_eq!([s.image_key(0), s.image_key(2)], [ImageKey::Dark, ImageKey::Projection]);
    }
}
