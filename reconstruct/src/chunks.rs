//! Fast path of the reader for blosc-compressed chunked data (what our receiver and `hdf5plugin` write):
//! compressed chunks are read raw with `H5Dread_chunk` (sequential I/O under HDF5's lock) in batches and
//! decoded in parallel with c-blosc (`acquisition::blosc`) on rayon, then the slab's rows are converted to
//! f32. Any other layout (contiguous, other filters, big-endian, partial-width chunks) goes through the HDF5
//! filter pipeline instead ([`crate::reader`] decides).

use std::ops::Range;

use rayon::prelude::*;

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

/// A dataset the fast path can read: chunk shape `[frames][rows][cols]` spanning the full width, blosc as
/// the only filter, little-endian samples.
#[derive(Debug, Clone)]
pub struct BloscChunks {
    /// Dataset shape `[frames][rows][cols]`.
    pub shape: [usize; 3],
    /// Chunk shape.
    pub chunk: [usize; 3],
    /// Sample type.
    pub sample: Sample,
}

/// Compressed plus decoded bytes held at once by one batch of chunks (at least two chunks per thread are
/// read per batch regardless).
pub const BATCH_BYTES: usize = 256 << 20;

impl BloscChunks {
    /// Whether `ds` qualifies; `None` means "use the HDF5 filter pipeline".
    pub fn plan(ds: &hdf5::Dataset) -> Option<BloscChunks> {
        use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
        let shape = ds.shape();
        let chunk = ds.chunk()?;
        if shape.len() != 3 || chunk.len() != 3 || chunk[2] != shape[2] || chunk.contains(&0) {
            return None;
        }
        let filters = ds.filters();
        if filters.len() != 1 || !matches!(filters[0], hdf5::filters::Filter::Blosc(..)) {
            return None;
        }
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
        Some(BloscChunks { shape: [shape[0], shape[1], shape[2]], chunk: [chunk[0], chunk[1], chunk[2]], sample })
    }

    /// Reads detector `rows` of every frame as f32 `[frame][row][col]`.
    pub fn read_rows(&self, ds: &hdf5::Dataset, rows: Range<usize>) -> Result<Vec<f32>, String> {
        let [nf, _, nc] = self.shape;
        let [cf, cr, _] = self.chunk;
        let nr = rows.len();
        let mut out = vec![0f32; nf * nr * nc];
        let row_chunks: Vec<usize> = (rows.start / cr..rows.end.div_ceil(cr)).collect();
        let offsets: Vec<[u64; 3]> = (0..nf.div_ceil(cf))
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
                        acquisition::blosc::validate_chunk(&bytes, self.sample.size(), chunk_bytes)
                            .and_then(|_| acquisition::blosc::decompress_validated(&bytes, &mut dst, 1))
                            .map_err(|e| format!("blosc chunk at {:?}: {e}", batch[i]))?;
                        Ok((i, dst))
                    })
                    .collect::<Result<_, String>>()?
            };
            for (i, bytes) in decoded {
                let [f0, r0, _] = batch[i].map(|v| v as usize);
                for df in 0..cf.min(nf - f0) {
                    for dr in 0..cr {
                        let r = r0 + dr;
                        if r < rows.start || r >= rows.end {
                            continue;
                        }
                        let src = &bytes
                            [(df * cr + dr) * nc * self.sample.size()..(df * cr + dr + 1) * nc * self.sample.size()];
                        let o = ((f0 + df) * nr + (r - rows.start)) * nc;
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
