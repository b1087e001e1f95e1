//! Why a message was rejected, and counters per reason.

use std::fmt;

/// Every reason the receiver rejects a message (see `PROTOCOL.md`, "What the receiver does with bad input").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The number of parts does not match the kind (or part 0 is missing).
    Parts,
    /// Part 0 names no known kind.
    UnknownKind,
    /// Part 1 is not valid JSON or lacks a field of its kind.
    BadJson,
    /// The `protocol` field names another version.
    Version,
    /// A field is out of range (image key, shape, dtype, byte order, series id, frames, ...).
    InvalidField,
    /// A frame or series end arrived while no series is open.
    NoSeries,
    /// A frame or series end names another series than the open one.
    SeriesMismatch,
    /// A series start arrived while another series is open.
    SeriesInProgress,
    /// The frame index is not below the number of frames the series declared.
    IndexOutOfRange,
    /// A frame with this index was already accepted.
    DuplicateFrame,
    /// An uncompressed payload does not have the declared frame size.
    PayloadSize,
    /// A blosc payload has a corrupt header or block table, or the wrong type size.
    BloscHeader,
    /// A blosc payload does not decompress to the declared frame size.
    BloscSize,
    /// The payload does not match the checksum its frame header carries.
    Checksum,
    /// A stream v2 message is not valid CBOR or lacks a field of its type.
    BadCbor,
    /// A stream v2 compressed image has a damaged framing (bslz4 sizes or block table) or an unknown algorithm.
    CompressedFraming,
}

impl Reason {
    /// All reasons, in counter order.
    pub const ALL: [Reason; 16] = [
        Reason::Parts,
        Reason::UnknownKind,
        Reason::BadJson,
        Reason::Version,
        Reason::InvalidField,
        Reason::NoSeries,
        Reason::SeriesMismatch,
        Reason::SeriesInProgress,
        Reason::IndexOutOfRange,
        Reason::DuplicateFrame,
        Reason::PayloadSize,
        Reason::BloscHeader,
        Reason::BloscSize,
        Reason::Checksum,
        Reason::BadCbor,
        Reason::CompressedFraming,
    ];

    /// The snake_case name used in logs, files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Parts => "parts",
            Reason::UnknownKind => "unknown_kind",
            Reason::BadJson => "bad_json",
            Reason::Version => "version",
            Reason::InvalidField => "invalid_field",
            Reason::NoSeries => "no_series",
            Reason::SeriesMismatch => "series_mismatch",
            Reason::SeriesInProgress => "series_in_progress",
            Reason::IndexOutOfRange => "index_out_of_range",
            Reason::DuplicateFrame => "duplicate_frame",
            Reason::PayloadSize => "payload_size",
            Reason::BloscHeader => "blosc_header",
            Reason::BloscSize => "blosc_size",
            Reason::Checksum => "checksum",
            Reason::BadCbor => "bad_cbor",
            Reason::CompressedFraming => "compressed_framing",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rejected-message counts per [`Reason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections([u64; Reason::ALL.len()]);

impl Rejections {
    /// Counts one rejection.
    pub fn add(&mut self, r: Reason) {
        self.0[r as usize] += 1;
    }

    /// Count for one reason.
    pub fn get(&self, r: Reason) -> u64 {
        self.0[r as usize]
    }

    /// Total of all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Rejections) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Non-zero counts as `(reason, count)`.
    pub fn nonzero(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|r| (*r, self.get(*r))).filter(|(_, n)| *n > 0)
    }

    /// A JSON object `{reason: count}` of the non-zero counts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.nonzero().map(|(r, n)| (r.as_str().to_string(), n.into())).collect())
    }
}

impl fmt::Display for Rejections {
    /// `3 (bad_json 2, parts 1)` or `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.total())?;
        let parts: Vec<String> = self.nonzero().map(|(r, n)| format!("{r} {n}")).collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}
