//! A safe blosc1 codec over c-blosc's context API (`blosc_compress_ctx` / `blosc_decompress_ctx`, no global
//! state, so it is safe from any thread) with reused buffers, and validation of untrusted chunks.

use std::os::raw::{c_int, c_void};

use crate::protocol::{BloscParams, Compressor};

/// Length of the blosc1 chunk header.
pub const HEADER_LEN: usize = 16;

/// Blosc format version written by c-blosc 1.x (header byte 0).
pub const FORMAT_VERSION: u8 = 2;

/// Errors from compressing, decompressing or validating blosc1 chunks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BloscError {
    /// The chunk header is malformed or inconsistent with the series.
    #[error("corrupt blosc header: {0}")]
    Header(String),
    /// The chunk does not decompress to the size the series declares.
    #[error("blosc chunk does not decompress to {expected} bytes: {detail}")]
    Size {
        /// Uncompressed frame size the series declares.
        expected: usize,
        /// What went wrong.
        detail: String,
    },
    /// c-blosc reported an internal error while compressing.
    #[error("blosc compression failed (code {0})")]
    Compress(i32),
}

/// The 16-byte header at the start of every blosc1 chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Blosc format version (2 for c-blosc 1.x).
    pub version: u8,
    /// Version of the internal compressor format.
    pub versionlz: u8,
    /// Flags: 0x01 byte shuffle, 0x02 memcpyed, 0x04 bit shuffle, bits 5-7 compressor format.
    pub flags: u8,
    /// Bytes per item used for shuffling.
    pub typesize: u8,
    /// Uncompressed size.
    pub nbytes: u32,
    /// Block size.
    pub blocksize: u32,
    /// Compressed size including this header.
    pub cbytes: u32,
}

impl ChunkHeader {
    /// Reads the header from the first 16 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<ChunkHeader, BloscError> {
        if buf.len() < HEADER_LEN {
            return Err(BloscError::Header(format!("{} bytes, shorter than the 16-byte header", buf.len())));
        }
        let u32_at = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        Ok(ChunkHeader {
            version: buf[0],
            versionlz: buf[1],
            flags: buf[2],
            typesize: buf[3],
            nbytes: u32_at(4),
            blocksize: u32_at(8),
            cbytes: u32_at(12),
        })
    }

    /// True when the data is stored uncompressed after the header.
    pub fn memcpyed(&self) -> bool {
        self.flags & 0x02 != 0
    }

    /// Compressor format code (bits 5-7 of the flags).
    pub fn format_code(&self) -> u8 {
        self.flags >> 5
    }
}

/// Checks an untrusted chunk against the series without decompressing it: header fields, sizes, and the
/// table of block starts. `typesize` and `nbytes` are what the series declares.
///
/// This catches truncation, wrong sizes, wrong types and damaged headers/offset tables; it cannot see damage
/// inside the compressed stream itself (use [`Codec::decompress_into`] for that, at a cost).
pub fn validate_chunk(buf: &[u8], typesize: usize, nbytes: usize) -> Result<ChunkHeader, BloscError> {
    let h = ChunkHeader::parse(buf)?;
    let bad = |m: String| Err(BloscError::Header(m));
    if h.version != FORMAT_VERSION && h.version != 1 {
        return bad(format!("format version {} (expected {FORMAT_VERSION})", h.version));
    }
    if h.typesize as usize != typesize {
        return bad(format!("typesize {} but the series dtype has {typesize} bytes", h.typesize));
    }
    if h.cbytes as usize != buf.len() {
        return bad(format!("header says {} compressed bytes, payload has {}", h.cbytes, buf.len()));
    }
    if h.nbytes as usize != nbytes {
        return Err(BloscError::Size { expected: nbytes, detail: format!("header declares {} bytes", h.nbytes) });
    }
    if h.format_code() > 1 {
        return bad(format!("compressor format {} is not blosclz (0) or lz4 (1)", h.format_code()));
    }
    if h.memcpyed() {
        if buf.len() != nbytes + HEADER_LEN {
            return bad(format!("memcpyed chunk of {} bytes for {nbytes} data bytes", buf.len()));
        }
        return Ok(h);
    }
    if nbytes == 0 {
        return Ok(h);
    }
    let bs = h.blocksize as usize;
    if bs == 0 || bs > nbytes.max(1) {
        return bad(format!("block size {bs} for {nbytes} bytes"));
    }
    let nblocks = nbytes.div_ceil(bs);
    let table_end = HEADER_LEN + 4 * nblocks;
    if table_end > buf.len() {
        return bad(format!("{nblocks} blocks need a {table_end}-byte table, chunk has {} bytes", buf.len()));
    }
    for k in 0..nblocks {
        let i = HEADER_LEN + 4 * k;
        let start = u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]) as usize;
        if start < table_end || start >= buf.len() {
            return bad(format!("block {k} starts at {start}, outside {table_end}..{}", buf.len()));
        }
    }
    let mut n = 0usize;
    // SAFETY: c-blosc reads at most `buf.len()` bytes of `buf`.
    let rc = unsafe { blosc_src::blosc_cbuffer_validate(buf.as_ptr().cast(), buf.len(), &mut n) };
    if rc != 0 || n != nbytes {
        return bad("c-blosc rejects the chunk".into());
    }
    Ok(h)
}

/// A blosc1 compressor/decompressor bound to one set of parameters, owning its output buffer.
#[derive(Debug)]
pub struct Codec {
    params: BloscParams,
    typesize: usize,
    threads: i32,
    out: Vec<u8>,
}

impl Codec {
    /// A codec for items of `typesize` bytes, single threaded.
    pub fn new(params: BloscParams, typesize: usize) -> Codec {
        Codec { params, typesize, threads: 1, out: Vec::new() }
    }

    /// Uses `n` internal c-blosc threads (1 = compress on the calling thread only).
    pub fn with_threads(mut self, n: usize) -> Codec {
        self.threads = n.clamp(1, 256) as i32;
        self
    }

    /// The parameters this codec compresses with.
    pub fn params(&self) -> BloscParams {
        self.params
    }

    /// Compresses `src` into the codec's reused buffer and returns the chunk.
    pub fn compress(&mut self, src: &[u8]) -> Result<&[u8], BloscError> {
        let cap = src.len() + HEADER_LEN;
        if self.out.len() < cap {
            self.out.resize(cap, 0);
        }
        // SAFETY: `src` is valid for `src.len()` bytes, `out` for `cap` bytes; c-blosc writes at most `cap`.
        let rc = unsafe {
            blosc_src::blosc_compress_ctx(
                self.params.clevel as c_int,
                self.params.shuffle.code() as c_int,
                self.typesize,
                src.len(),
                src.as_ptr().cast::<c_void>(),
                self.out.as_mut_ptr().cast::<c_void>(),
                cap,
                self.params.compressor.c_name().as_ptr().cast(),
                0,
                self.threads,
            )
        };
        if rc <= 0 {
            return Err(BloscError::Compress(rc));
        }
        Ok(&self.out[..rc as usize])
    }

    /// Decompresses an untrusted chunk into `dst`, which must be exactly the declared uncompressed size.
    pub fn decompress_into(&self, chunk: &[u8], dst: &mut [u8]) -> Result<(), BloscError> {
        validate_chunk(chunk, self.typesize, dst.len())?;
        decompress_validated(chunk, dst, self.threads)
    }
}

/// Decompresses a chunk already checked by [`validate_chunk`] for `dst.len()` bytes.
pub fn decompress_validated(chunk: &[u8], dst: &mut [u8], threads: i32) -> Result<(), BloscError> {
    // SAFETY: the chunk passed `validate_chunk` (its header and block table lie inside `chunk`), and c-blosc
    // writes at most `dst.len()` bytes.
    let rc =
        unsafe { blosc_src::blosc_decompress_ctx(chunk.as_ptr().cast(), dst.as_mut_ptr().cast(), dst.len(), threads) };
    if rc < 0 || rc as usize != dst.len() {
        return Err(BloscError::Size { expected: dst.len(), detail: format!("c-blosc returned {rc}") });
    }
    Ok(())
}

/// Compressor of a chunk from its format code, when unambiguous (LZ4 and LZ4 HC share a format).
pub fn compressor_of(h: &ChunkHeader) -> Option<Compressor> {
    match h.format_code() {
        0 => Some(Compressor::Blosclz),
        1 => Some(Compressor::Lz4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Shuffle;

    fn data() -> Vec<u8> {
        (0..40_000u32).flat_map(|i| ((i * 7 % 1000) as u16).to_le_bytes()).collect()
    }

    #[test]
    fn round_trip_all_compressors() {
        let src = data();
        for compressor in [Compressor::Blosclz, Compressor::Lz4, Compressor::Lz4hc] {
            let mut c = Codec::new(BloscParams { compressor, clevel: 5, shuffle: Shuffle::Byte }, 2);
            let chunk = c.compress(&src).unwrap().to_vec();
            assert!(chunk.len() < src.len());
            let h = validate_chunk(&chunk, 2, src.len()).unwrap();
            assert_eq!(h.format_code(), compressor.format_code());
            let mut out = vec![0u8; src.len()];
            c.decompress_into(&chunk, &mut out).unwrap();
            assert_eq!(out, src);
        }
    }

    #[test]
    fn rejects_damaged_chunks() {
        let src = data();
        let mut c = Codec::new(BloscParams::default(), 2);
        let chunk = c.compress(&src).unwrap().to_vec();
        assert!(matches!(validate_chunk(&chunk[..10], 2, src.len()), Err(BloscError::Header(_))));
        assert!(matches!(validate_chunk(&chunk[..chunk.len() - 1], 2, src.len()), Err(BloscError::Header(_))));
        assert!(matches!(validate_chunk(&chunk, 4, src.len()), Err(BloscError::Header(_))));
        assert!(matches!(validate_chunk(&chunk, 2, src.len() + 2), Err(BloscError::Size { .. })));
        let mut bad = chunk.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(validate_chunk(&bad, 2, src.len()).is_err());
        let mut out = vec![0u8; src.len()];
        assert!(c.decompress_into(&bad, &mut out).is_err());
        // Every single-byte truncation or header flip is rejected or decodes without touching memory.
        for i in 0..HEADER_LEN {
            let mut m = chunk.clone();
            m[i] ^= 0xff;
            let _ = c.decompress_into(&m, &mut out);
        }
    }
}
