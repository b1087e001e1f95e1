//! Fast path of the reader for compressed chunked data: compressed chunks are read raw with `H5Dread_chunk`
//! (sequential I/O under HDF5's lock) in batches and decoded in parallel on rayon, then the slab's rows are
//! converted to f32. Two codecs are decoded here, so no HDF5 plugin directory is needed for them:
//! * blosc (filter 32001, what our receiver and `hdf5plugin.Blosc` write), with c-blosc
//!   ([`acquisition::blosc`]);
//! * Bitshuffle with LZ4 (filter 32008 with `cd_values[4] == 2`, what Eiger/Jungfrau writers, our stream2
//!   receiver and `hdf5plugin.Bitshuffle` write): LZ4 blocks with `lz4_flex`, the bit transpose with
//!   [`bitunshuffle`] (no maintained Rust crate decodes bitshuffle).
//!
//! Any other layout (contiguous, other filters, big-endian, partial-width chunks) goes through the HDF5
//! filter pipeline instead ([`crate::reader`] decides, and refuses a filter HDF5 cannot apply here with
//! [`unavailable_filter`]).

use std::ops::Range;

use rayon::prelude::*;

/// HDF5 filter id of Bitshuffle.
pub const BITSHUFFLE_FILTER: i32 = 32008;
/// `cd_values[4]` of the Bitshuffle filter when its blocks are LZ4-compressed.
pub const BITSHUFFLE_LZ4: u32 = 2;

/// Names of registered HDF5 filters (<https://github.com/HDFGroup/hdf5_plugins/blob/master/docs/RegisteredFilterPlugins.md>)
/// that readers meet, for messages.
pub fn filter_name(id: i32) -> &'static str {
    match id {
        1 => "deflate (gzip)",
        2 => "shuffle",
        3 => "fletcher32",
        4 => "szip",
        5 => "nbit",
        6 => "scaleoffset",
        307 => "bzip2",
        32000 => "LZF",
        32001 => "Blosc",
        32004 => "LZ4",
        32008 => "Bitshuffle",
        32013 => "zfp",
        32015 => "Zstandard",
        32016 => "Blosc2",
        32017 => "SZ",
        32018 => "FCIDECOMP",
        32019 => "JPEG",
        32024 => "SZ3",
        _ => "unregistered here",
    }
}

/// How compressed chunks are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// c-blosc.
    Blosc,
    /// Bitshuffle + LZ4 in the HDF5 Bitshuffle framing.
    BitshuffleLz4,
}

/// The first filter of `ds`'s pipeline that this HDF5 library cannot apply (no plugin loaded for it) and
/// that [`RawChunks`] does not decode either: `(id, cd_values)`.
pub fn unavailable_filter(ds: &hdf5::Dataset, decoded_here: bool) -> Option<(i32, Vec<u32>)> {
    if decoded_here {
        return None;
    }
    ds.filters().into_iter().find(|f| !f.is_available()).map(|f| match f {
        hdf5::filters::Filter::User(id, cd) => (id, cd),
        other => (other.id(), Vec::new()),
    })
}

/// Sample types the fast path converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// `uint8`.
    U8,
    /// `uint16` (typical detector counts).
    U16,
    /// `uint32`.
    U32,
    /// `float32`.
    F32,
}

impl Sample {
    /// Bytes per sample.
    pub fn size(self) -> usize {
        match self {
            Sample::U8 => 1,
            Sample::U16 => 2,
            Sample::U32 | Sample::F32 => 4,
        }
    }

    fn to_f32(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            Sample::U8 => out.iter_mut().zip(bytes).for_each(|(o, b)| *o = *b as f32),
            Sample::U16 => out
                .iter_mut()
                .zip(bytes.chunks_exact(2))
                .for_each(|(o, b)| *o = u16::from_le_bytes([b[0], b[1]]) as f32),
            Sample::U32 => out
                .iter_mut()
                .zip(bytes.chunks_exact(4))
                .for_each(|(o, b)| *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32),
            Sample::F32 => out
                .iter_mut()
                .zip(bytes.chunks_exact(4))
                .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        }
    }
}

/// A dataset the fast path can read: chunk shape `[frames][rows][cols]` spanning the full width, blosc or
/// Bitshuffle-LZ4 as the only filter, little-endian samples.
#[derive(Debug, Clone)]
pub struct RawChunks {
    /// Dataset shape `[frames][rows][cols]`.
    pub shape: [usize; 3],
    /// Chunk shape.
    pub chunk: [usize; 3],
    /// Sample type.
    pub sample: Sample,
    /// How chunks are decoded.
    pub codec: Codec,
}

/// Compressed plus decoded bytes held at once by one batch of chunks (at least two chunks per thread are
/// read per batch regardless).
pub const BATCH_BYTES: usize = 256 << 20;

impl RawChunks {
    /// Whether `ds` qualifies; `None` means "use the HDF5 filter pipeline".
    pub fn plan(ds: &hdf5::Dataset) -> Option<RawChunks> {
        use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
        let shape = ds.shape();
        let chunk = ds.chunk()?;
        if shape.len() != 3 || chunk.len() != 3 || chunk[2] != shape[2] || chunk.contains(&0) {
            return None;
        }
        let filters = ds.filters();
        let codec = match filters.as_slice() {
            [hdf5::filters::Filter::Blosc(..)] => Codec::Blosc,
            [hdf5::filters::Filter::User(BITSHUFFLE_FILTER, cd)] if cd.get(4) == Some(&BITSHUFFLE_LZ4) => {
                Codec::BitshuffleLz4
            }
            _ => return None,
        };
        let dtype = ds.dtype().ok()?;
        // SAFETY: plain query on a valid datatype id, under HDF5's lock.
        let order = hdf5::sync::sync(|| unsafe { hdf5_sys::h5t::H5Tget_order(dtype.id()) });
        if order != hdf5_sys::h5t::H5T_order_t::H5T_ORDER_LE {
            return None;
        }
        let sample = match dtype.to_descriptor().ok()? {
            TypeDescriptor::Unsigned(IntSize::U1) => Sample::U8,
            TypeDescriptor::Unsigned(IntSize::U2) => Sample::U16,
            TypeDescriptor::Unsigned(IntSize::U4) => Sample::U32,
            TypeDescriptor::Float(FloatSize::U4) => Sample::F32,
            _ => return None,
        };
        Some(RawChunks { shape: [shape[0], shape[1], shape[2]], chunk: [chunk[0], chunk[1], chunk[2]], sample, codec })
    }

    /// Reads detector `rows` of `frames` as f32 `[frame - frames.start][row][col]`.
    pub fn read_rows(&self, ds: &hdf5::Dataset, frames: Range<usize>, rows: Range<usize>) -> Result<Vec<f32>, String> {
        let [_, _, nc] = self.shape;
        let [cf, cr, _] = self.chunk;
        let (nr, nf) = (rows.len(), frames.len());
        let mut out = vec![0f32; nf * nr * nc];
        let row_chunks: Vec<usize> = (rows.start / cr..rows.end.div_ceil(cr)).collect();
        let offsets: Vec<[u64; 3]> = (frames.start / cf..frames.end.div_ceil(cf))
            .flat_map(|fc| row_chunks.iter().map(move |&rc| [(fc * cf) as u64, (rc * cr) as u64, 0]))
            .collect();
        let chunk_bytes = cf * cr * nc * self.sample.size();
        let batch_len = (BATCH_BYTES / (2 * chunk_bytes).max(1)).clamp(2 * rayon::current_num_threads(), 256);
        for batch in offsets.chunks(batch_len) {
            let raw = {
                let _span = tracing::info_span!("recon.read_chunks", chunks = batch.len()).entered();
                batch.iter().map(|off| read_chunk(ds, off)).collect::<Result<Vec<_>, String>>()?
            };
            let decoded: Vec<(usize, Vec<u8>)> = {
                let _span = tracing::info_span!("recon.decode", chunks = batch.len()).entered();
                raw.into_par_iter()
                    .enumerate()
                    .map(|(i, (mask, bytes))| {
                        let Some(bytes) = bytes else { return Ok((i, vec![0u8; chunk_bytes])) };
                        if mask & 1 != 0 {
                            // The blosc filter was skipped for this chunk: stored as is.
                            return if bytes.len() == chunk_bytes {
                                Ok((i, bytes))
                            } else {
                                Err(format!(
                                    "unfiltered chunk at {:?} has {} bytes, expected {chunk_bytes}",
                                    batch[i],
                                    bytes.len()
                                ))
                            };
                        }
                        let mut dst = vec![0u8; chunk_bytes];
                        match self.codec {
                            Codec::Blosc => acquisition::blosc::validate_chunk(&bytes, self.sample.size(), chunk_bytes)
                                .and_then(|_| acquisition::blosc::decompress_validated(&bytes, &mut dst, 1))
                                .map_err(|e| format!("blosc chunk at {:?}: {e}", batch[i]))?,
                            Codec::BitshuffleLz4 => bitshuffle_lz4_decode(&bytes, self.sample.size(), &mut dst)
                                .map_err(|e| format!("bitshuffle-lz4 chunk at {:?}: {e}", batch[i]))?,
                        }
                        Ok((i, dst))
                    })
                    .collect::<Result<_, String>>()?
            };
            for (i, bytes) in decoded {
                let [f0, r0, _] = batch[i].map(|v| v as usize);
                for df in 0..cf.min(self.shape[0] - f0) {
                    let f = f0 + df;
                    if f < frames.start || f >= frames.end {
                        continue;
                    }
                    for dr in 0..cr {
                        let r = r0 + dr;
                        if r < rows.start || r >= rows.end {
                            continue;
                        }
                        let src = &bytes
                            [(df * cr + dr) * nc * self.sample.size()..(df * cr + dr + 1) * nc * self.sample.size()];
                        let o = ((f - frames.start) * nr + (r - rows.start)) * nc;
                        self.sample.to_f32(src, &mut out[o..o + nc]);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Reads one raw chunk: `(filter mask, bytes)`, or `None` bytes when the chunk was never written.
fn read_chunk(ds: &hdf5::Dataset, offset: &[u64; 3]) -> Result<(u32, Option<Vec<u8>>), String> {
    hdf5::sync::sync(|| {
        let (mut mask, mut addr, mut size) = (0u32, 0u64, 0u64);
        // SAFETY: valid dataset id; offset has rank 3 like the dataset; out-pointers are valid.
        let rc = unsafe {
            hdf5_sys::h5d::H5Dget_chunk_info_by_coord(ds.id(), offset.as_ptr(), &mut mask, &mut addr, &mut size)
        };
        if rc < 0 {
            return Err(format!("chunk at {offset:?}: H5Dget_chunk_info_by_coord failed"));
        }
        if size == 0 || addr == hdf5_sys::h5::HADDR_UNDEF {
            return Ok((0, None));
        }
        let mut buf = vec![0u8; size as usize];
        let mut filters = 0u32;
        // SAFETY: buf holds the chunk's stored size as reported above.
        let rc = unsafe {
            hdf5_sys::h5d::H5Dread_chunk1(
                ds.id(),
                hdf5_sys::h5p::H5P_DEFAULT,
                offset.as_ptr(),
                &mut filters,
                buf.as_mut_ptr().cast(),
            )
        };
        if rc < 0 {
            return Err(format!("chunk at {offset:?}: H5Dread_chunk failed"));
        }
        Ok((filters, Some(buf)))
    })
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

/// Decodes one chunk in the HDF5 Bitshuffle framing with LZ4 blocks into `dst` (its size is the chunk's):
/// an 8-byte big-endian total size, a 4-byte big-endian block size in bytes, then per block a 4-byte
/// big-endian compressed length and the LZ4 block of the bit-shuffled elements; the last block holds the
/// remaining elements rounded down to a multiple of 8, and the last `n % 8` elements follow unshuffled.
pub fn bitshuffle_lz4_decode(src: &[u8], elem: usize, dst: &mut [u8]) -> Result<(), String> {
    if src.len() < 12 {
        return Err(format!("{} bytes, shorter than the 12-byte header", src.len()));
    }
    let total = be_u64(src);
    if total != dst.len() as u64 {
        return Err(format!("header says {total} bytes, the chunk has {}", dst.len()));
    }
    let block_bytes = be_u32(&src[8..]) as usize;
    let block = block_bytes / elem.max(1);
    if elem == 0 || block == 0 || !block.is_multiple_of(8) || block * elem != block_bytes {
        return Err(format!("block size {block_bytes} bytes is not a positive multiple of 8 elements of {elem} bytes"));
    }
    let n = dst.len() / elem;
    let mut tmp = vec![0u8; block_bytes];
    let (mut at, mut done) = (12usize, 0usize);
    while n - done >= 8 {
        let k = block.min((n - done) / 8 * 8);
        let len = src.get(at..at + 4).map(be_u32).ok_or("the data ends inside a block length")? as usize;
        at += 4;
        let packed = src.get(at..at + len).ok_or_else(|| format!("a block of {len} bytes runs past the chunk"))?;
        at += len;
        let out = &mut tmp[..k * elem];
        let got = lz4_flex::block::decompress_into(packed, out).map_err(|e| format!("LZ4 block: {e}"))?;
        if got != k * elem {
            return Err(format!("LZ4 block gave {got} bytes, expected {}", k * elem));
        }
        bitunshuffle(out, elem, &mut dst[done * elem..(done + k) * elem]);
        done += k;
    }
    let rest = (n - done) * elem;
    let tail = src.get(at..at + rest).ok_or("the data ends before the unshuffled last elements")?;
    dst[done * elem..].copy_from_slice(tail);
    if at + rest != src.len() {
        return Err(format!("{} bytes left after the last block", src.len() - at - rest));
    }
    Ok(())
}

/// Transposes an 8 x 8 bit matrix held in a u64 (byte i = row i, bit j = column j).
fn transpose8(mut x: u64) -> u64 {
    let t = (x ^ (x >> 7)) & 0x00AA_00AA_00AA_00AA;
    x ^= t ^ (t << 7);
    let t = (x ^ (x >> 14)) & 0x0000_CCCC_0000_CCCC;
    x ^= t ^ (t << 14);
    let t = (x ^ (x >> 28)) & 0x0000_0000_F0F0_F0F0;
    x ^ t ^ (t << 28)
}

/// Undoes bitshuffle's transpose of one block: `src` holds `8 * elem` bit planes of `n / 8` bytes (plane
/// `8 b + i` is bit `i` of byte `b` of every element, element `e` at bit `e % 8` of byte `e / 8`); `dst`
/// receives the `n` elements of `elem` bytes. `n` is a multiple of 8.
pub fn bitunshuffle(src: &[u8], elem: usize, dst: &mut [u8]) {
    let n = dst.len() / elem;
    let row = n / 8;
    for q in 0..row {
        for b in 0..elem {
            let mut x = [0u8; 8];
            for (i, v) in x.iter_mut().enumerate() {
                *v = src[(8 * b + i) * row + q];
            }
            let t = transpose8(u64::from_le_bytes(x)).to_le_bytes();
            for (j, v) in t.iter().enumerate() {
                dst[(8 * q + j) * elem + b] = *v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bitshuffle as its definition says, one bit at a time.
    fn bitshuffle_reference(src: &[u8], elem: usize) -> Vec<u8> {
        let n = src.len() / elem;
        let mut out = vec![0u8; src.len()];
        for e in 0..n {
            for b in 0..elem {
                for i in 0..8 {
                    if src[e * elem + b] >> i & 1 == 1 {
                        out[(8 * b + i) * (n / 8) + e / 8] |= 1 << (e % 8);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn unshuffle_inverts_the_definition() {
        for elem in [1, 2, 4] {
            let data: Vec<u8> = (0..64 * elem).map(|i| (i * 37 % 251) as u8).collect();
            let shuffled = bitshuffle_reference(&data, elem);
            let mut back = vec![0u8; data.len()];
            bitunshuffle(&shuffled, elem, &mut back);
            assert_eq!(back, data, "elem {elem}");
        }
    }

    #[test]
    fn framing_with_a_short_last_block_and_leftover_elements() {
        // 21 u16 elements, blocks of 8: one full block, one of 8, 5 left over unshuffled.
        let elem = 2;
        let data: Vec<u8> = (0..21 * elem).map(|i| (i * 11 % 256) as u8).collect();
        let mut src = Vec::new();
        src.extend_from_slice(&(data.len() as u64).to_be_bytes());
        src.extend_from_slice(&((8 * elem) as u32).to_be_bytes());
        for blk in [&data[..16], &data[16..32]] {
            let packed = lz4_flex::block::compress(&bitshuffle_reference(blk, elem));
            src.extend_from_slice(&(packed.len() as u32).to_be_bytes());
            src.extend_from_slice(&packed);
        }
        src.extend_from_slice(&data[32..]);
        let mut dst = vec![0u8; data.len()];
        bitshuffle_lz4_decode(&src, elem, &mut dst).unwrap();
        assert_eq!(dst, data);
        assert!(bitshuffle_lz4_decode(&src[..src.len() - 1], elem, &mut dst).is_err());
        let mut bad = src.clone();
        bad[7] ^= 1;
        assert!(bitshuffle_lz4_decode(&bad, elem, &mut dst).unwrap_err().contains("header says"));
    }
}
