//! The CUDA backend: one [`CudaBackend`] per GPU, driving the kernels of the `kernels` crate through cudarc
//! (dynamically loaded: nothing here links CUDA, and nothing runs until a driver is found).
//!
//! Per slab, rows are cut into chunks that alternate between two *lanes*, each with its own stream, pinned
//! host staging buffers and device buffers. While the GPU computes chunk `k` on one lane, the other lane
//! uploads chunk `k + 1` and downloads chunk `k - 1`, and the host copies finished chunks out of pinned
//! memory; together with the scheduler's reader thread (next slab) and the caller's writer (previous
//! slab), reading, copies, kernels and writing all overlap.
//!
//! NOT verified on a GPU: no machine this was written on has one. The kernels' arithmetic is checked by the
//! CPU harness and they compile with NVRTC in CI; this file compiles but has never executed.

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PinnedHostSlice, PushKernelArg};
use cudarc::nvrtc::Ptx;
use kernels::launch::{self, Launch};
use kernels::{BackprojectGeometry, Kernel, SlabShape};

use crate::backend::{Backend, BackendError, ReconSetup, Slab};
use crate::gpu::host;
use crate::gpu::nvrtc;
use crate::gpu::GpuError;
use crate::preprocess::{normalize_minus_log, remove_zingers, TRANSMISSION_FLOOR};
use crate::stripes::remove_stripes_sorting;

/// What is known about one GPU.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// CUDA ordinal.
    pub ordinal: usize,
    /// Model name.
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    /// Free device memory in bytes when asked.
    pub free_bytes: usize,
    /// Total device memory in bytes.
    pub total_bytes: usize,
}

impl DeviceInfo {
    /// The NVRTC architecture for this device, e.g. `sm_80`.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.compute_capability.0, self.compute_capability.1)
    }
}

/// True when the CUDA driver library (libcuda) can be loaded; never panics.
pub fn driver_present() -> bool {
    // SAFETY: only probes whether the shared library loads.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The driver's CUDA version as `(major, minor)`, when a driver is present.
pub fn driver_version() -> Option<(i32, i32)> {
    if !driver_present() {
        return None;
    }
    let mut v = 0;
    // SAFETY: the library is present; the pointer is valid for writes.
    let r = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (r == cudarc::driver::sys::CUresult::CUDA_SUCCESS).then_some((v / 1000, (v % 1000) / 10))
}

fn driver_err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> GpuError + '_ {
    move |e| GpuError::Driver(format!("{what}: {e:?}"))
}

/// How many GPUs the driver lists (after `CUDA_VISIBLE_DEVICES`, which the driver applies), without
/// opening any of them.
pub fn device_count() -> Result<usize, GpuError> {
    if !driver_present() {
        return Err(GpuError::NoDriver);
    }
    let count = CudaContext::device_count().map_err(driver_err("counting devices"))?;
    Ok(count.max(0) as usize)
}

/// Lists every GPU the driver sees. Errors when no driver is present (check [`driver_present`] first to
/// tell "no driver" from "driver broken").
pub fn list_devices() -> Result<Vec<DeviceInfo>, GpuError> {
    if !driver_present() {
        return Err(GpuError::NoDriver);
    }
    (0..device_count()?)
        .map(|i| CudaContext::new(i).map_err(driver_err("opening a device")).and_then(|c| info(&c)))
        .collect()
}

fn info(ctx: &Arc<CudaContext>) -> Result<DeviceInfo, GpuError> {
    let (free_bytes, total_bytes) = ctx.mem_get_info().map_err(driver_err("reading free memory"))?;
    Ok(DeviceInfo {
        ordinal: ctx.ordinal(),
        name: ctx.name().map_err(driver_err("reading the device name"))?,
        compute_capability: ctx.compute_capability().map_err(driver_err("reading the compute capability"))?,
        free_bytes,
        total_bytes,
    })
}

/// Fraction of the free device memory the buffers of both lanes may take.
const DEVICE_MEMORY_SHARE: f64 = 0.7;
/// Upper bound on one chunk's raw input (bounds pinned host memory and slab size in host RAM).
const MAX_CHUNK_INPUT_BYTES: usize = 128 << 20;
/// Chunks per slab: enough that the two lanes alternate several times per slab.
const CHUNKS_PER_SLAB: usize = 4;
/// Lanes (streams with their own buffers) per device.
const LANES: usize = 2;

/// Rows per chunk for a device with `free_bytes` free: both lanes' device buffers must fit in
/// [`DEVICE_MEMORY_SHARE`] of it, and one chunk's input in [`MAX_CHUNK_INPUT_BYTES`].
pub fn chunk_rows(setup: &ReconSetup, free_bytes: usize) -> usize {
    let (a, c, n) = (setup.angles_rad.len().max(1), setup.n_cols.max(1), setup.out_size.max(1));
    let per_row_device = 4 * (3 * a * c + 3 * c + n * n);
    let by_device = (free_bytes as f64 * DEVICE_MEMORY_SHARE) as usize / (LANES * per_row_device);
    let by_host = MAX_CHUNK_INPUT_BYTES / (4 * a * c);
    by_device.min(by_host).clamp(1, 65_535)
}

/// The loaded kernels of one device.
struct Functions {
    normalize: CudaFunction,
    zingers: CudaFunction,
    filter: CudaFunction,
    backproject: CudaFunction,
}

/// Device-side constants of one setup.
struct Prepared {
    setup_key: String,
    taps: CudaSlice<f32>,
    cos: CudaSlice<f32>,
    sin: CudaSlice<f32>,
    flat_weight: CudaSlice<f32>,
    geometry: BackprojectGeometry,
    chunk_rows: usize,
    lanes: Vec<Lane>,
}

/// A stream with its own staging and device buffers.
struct Lane {
    stream: Arc<CudaStream>,
    /// Pinned `[raw | dark | flat_before | flat_after]` for one chunk (write-combined: the host only writes).
    host_in: PinnedHostSlice<f32>,
    /// Pinned reconstructed slices of one chunk.
    host_out: PinnedHostSlice<f32>,
    dev_in: CudaSlice<f32>,
    dev_a: CudaSlice<f32>,
    dev_b: CudaSlice<f32>,
    dev_out: CudaSlice<f32>,
    /// Output values (range in the slab's result) whose download is in flight.
    pending: Option<Range<usize>>,
}

/// One GPU as a [`Backend`].
pub struct CudaBackend {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    functions: Functions,
    prepared: Option<Prepared>,
    /// Upper bound on rows per slab (a host memory budget), if any.
    max_rows: Option<usize>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend").field("info", &self.info).finish()
    }
}

fn load(ctx: &Arc<CudaContext>, kernel: Kernel, arch: &str) -> Result<CudaFunction, GpuError> {
    let compiled = nvrtc::compile(kernel, arch)?;
    let module = ctx.load_module(Ptx::from_src(compiled.ptx.clone())).map_err(driver_err("loading PTX"))?;
    module.load_function(kernel.name).map_err(driver_err("finding a kernel in its module"))
}

impl CudaBackend {
    /// Opens GPU `ordinal`, compiles (or takes from this process's cache) every kernel for its
    /// architecture and loads them.
    pub fn new(ordinal: usize) -> Result<CudaBackend, GpuError> {
        if !driver_present() {
            return Err(GpuError::NoDriver);
        }
        let ctx = CudaContext::new(ordinal).map_err(driver_err("opening the device"))?;
        let info = info(&ctx)?;
        let arch = info.arch();
        let functions = Functions {
            normalize: load(&ctx, kernels::NORMALIZE_MINUS_LOG, &arch)?,
            zingers: load(&ctx, kernels::REMOVE_ZINGERS, &arch)?,
            filter: load(&ctx, kernels::FILTER_CONVOLVE, &arch)?,
            backproject: load(&ctx, kernels::BACKPROJECT, &arch)?,
        };
        Ok(CudaBackend { info, ctx, functions, prepared: None, max_rows: None })
    }

    /// Caps the rows per slab this device asks for (for a host memory budget); slabs below
    /// [`CHUNKS_PER_SLAB`] chunks still alternate lanes, with smaller chunks.
    pub fn limit_rows(mut self, rows: usize) -> CudaBackend {
        self.max_rows = Some(rows.max(1));
        self
    }

    /// What the driver reported for this device when it was opened.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Uploads the per-setup constants and allocates both lanes, unless already done for this setup.
    fn prepare(&mut self, setup: &ReconSetup) -> Result<(), BackendError> {
        let key = format!(
            "{:?}|{}|{}|{}|{}|{:?}|{:?}",
            setup.angles_rad,
            setup.n_cols,
            setup.center,
            setup.out_size,
            setup.filter,
            setup.stripe_size,
            setup.zinger_threshold
        );
        if self.prepared.as_ref().is_some_and(|p| p.setup_key == key) {
            return Ok(());
        }
        self.prepared = None; // free the old buffers first
        let taps = host::filter_taps(setup)?;
        let (cos, sin) = host::trig_tables(&setup.angles_rad);
        let geometry = host::backproject_geometry(setup)?;
        let (free, _) = self.ctx.mem_get_info().map_err(device_error(self.name(), "reading free memory"))?;
        let rows = chunk_rows(setup, free.min(self.info.free_bytes));
        let (a, c, n) = (setup.angles_rad.len(), setup.n_cols, setup.out_size);
        let (sino_len, field_len, out_len) = (rows * a * c, rows * c, rows * n * n);
        let stream = self.ctx.default_stream();
        let upload = |v: &[f32]| stream.clone_htod(v);
        let err = device_error(self.name(), "uploading constants");
        let (taps, cos, sin) = (upload(&taps).map_err(&err)?, upload(&cos).map_err(&err)?, upload(&sin).map_err(&err)?);
        let flat_weight = stream.alloc_zeros::<f32>(a.max(1)).map_err(&err)?;
        let mut lanes = Vec::with_capacity(LANES);
        let err = device_error(self.name(), "allocating lane buffers");
        for _ in 0..LANES {
            let s = self.ctx.new_stream().map_err(&err)?;
            // SAFETY: both pinned buffers are fully written (host_in by the host, host_out by a download)
            // before anything reads them.
            let (host_in, host_out) = unsafe {
                (
                    self.ctx.alloc_pinned::<f32>(sino_len + 3 * field_len).map_err(&err)?,
                    self.ctx
                        .alloc_pinned_with_flags::<f32>(out_len, cudarc::driver::sys::CU_MEMHOSTALLOC_PORTABLE)
                        .map_err(&err)?,
                )
            };
            lanes.push(Lane {
                dev_in: s.alloc_zeros(sino_len + 3 * field_len).map_err(&err)?,
                dev_a: s.alloc_zeros(sino_len).map_err(&err)?,
                dev_b: s.alloc_zeros(sino_len).map_err(&err)?,
                dev_out: s.alloc_zeros(out_len).map_err(&err)?,
                stream: s,
                host_in,
                host_out,
                pending: None,
            });
        }
        self.ctx.synchronize().map_err(device_error(self.name(), "synchronising after setup"))?;
        self.prepared =
            Some(Prepared { setup_key: key, taps, cos, sin, flat_weight, geometry, chunk_rows: rows, lanes });
        Ok(())
    }
}

/// Maps a driver error on `device` while doing `what` to a device failure (the scheduler retries the slab
/// elsewhere).
fn device_error(device: String, what: &'static str) -> impl Fn(cudarc::driver::DriverError) -> BackendError {
    move |e| BackendError::Device { device: device.clone(), reason: format!("{what}: {e:?}") }
}

fn config(l: Launch) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (l.grid[0], l.grid[1], l.grid[2]),
        block_dim: (l.block[0], l.block[1], l.block[2]),
        shared_mem_bytes: 0,
    }
}

/// Waits for a lane's download and copies it into the slab's result.
fn finish(lane: &mut Lane, out: &mut [f32]) -> Result<(), cudarc::driver::DriverError> {
    if let Some(range) = lane.pending.take() {
        let _wait = tracing::info_span!("wait.gpu_download", values = range.len()).entered();
        let done = lane.host_out.as_slice()?;
        out[range.clone()].copy_from_slice(&done[..range.len()]);
    }
    Ok(())
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{} {}", self.info.ordinal, self.info.name)
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        crate::cpu::validate(setup)?;
        let (a, c, n) = (setup.angles_rad.len(), setup.n_cols, setup.out_size);
        let n_rows = slab.rows.len();
        for (what, len, want) in [
            ("projections", slab.projections.len(), n_rows * a * c),
            ("dark", slab.dark.len(), n_rows * c),
            ("flat_before", slab.flat_before.len(), n_rows * c),
            ("flat_after", slab.flat_after.len(), n_rows * c),
            ("flat_weight", slab.flat_weight.len(), a),
        ] {
            if len != want {
                return Err(BackendError::Input(format!("slab {what} has {len} values, expected {want}")));
            }
        }
        self.prepare(setup)?;
        let name = self.name();
        let span = tracing::info_span!("recon.backproject", device = %name, rows = n_rows);
        let _span = span.enter();
        let device_err = |what: &'static str| device_error(name.clone(), what);
        let f = &self.functions;
        let p = self
            .prepared
            .as_mut()
            .ok_or_else(|| BackendError::Device { device: name.clone(), reason: "not prepared".into() })?;
        p.lanes[0]
            .stream
            .memcpy_htod(&slab.flat_weight, &mut p.flat_weight)
            .map_err(device_err("uploading flat weights"))?;
        p.lanes[0].stream.synchronize().map_err(device_err("uploading flat weights"))?;
        let host_preprocess = setup.stripe_size.is_some();
        let mut out = vec![0f32; n_rows * n * n];
        let (sino_max, field_max) = (p.chunk_rows * a * c, p.chunk_rows * c);
        // At least CHUNKS_PER_SLAB chunks when the slab allows, so the lanes overlap within the slab.
        let step = p.chunk_rows.min(n_rows.div_ceil(CHUNKS_PER_SLAB)).max(1);
        for (k, start) in (0..n_rows).step_by(step).enumerate() {
            let rows = start..(start + step).min(n_rows);
            let lane = &mut p.lanes[k % LANES];
            finish(lane, &mut out).map_err(device_err("downloading slices"))?;
            let shape = SlabShape { rows: rows.len() as u32, angles: a as u32, cols: c as u32 };
            {
                let _stage = tracing::info_span!("gpu.stage", device = %name, rows = rows.len()).entered();
                let values = rows.start * a * c..rows.end * a * c;
                let fr = rows.start * c..rows.end * c;
                // Stripe removal has no kernel: preprocess in ordinary memory (the staging buffer is
                // write-combined, slow to read back) and stage -log values instead of counts.
                let preprocessed = host_preprocess.then(|| {
                    let mut v = slab.projections[values.clone()].to_vec();
                    for (r, sino_row) in v.chunks_mut(a * c).enumerate() {
                        let f = (rows.start + r) * c..(rows.start + r + 1) * c;
                        normalize_minus_log(
                            sino_row,
                            &slab.dark[f.clone()],
                            &slab.flat_before[f.clone()],
                            &slab.flat_after[f],
                            &slab.flat_weight,
                        );
                        if let Some(t) = setup.zinger_threshold {
                            remove_zingers(sino_row, c, t);
                        }
                        if let Some(size) = setup.stripe_size {
                            remove_stripes_sorting(sino_row, c, size);
                        }
                    }
                    v
                });
                let staged = lane.host_in.as_mut_slice().map_err(device_err("waiting for a staging buffer"))?;
                let (sino, fields) = staged.split_at_mut(sino_max);
                sino[..values.len()].copy_from_slice(preprocessed.as_deref().unwrap_or(&slab.projections[values]));
                fields[..fr.len()].copy_from_slice(&slab.dark[fr.clone()]);
                fields[field_max..field_max + fr.len()].copy_from_slice(&slab.flat_before[fr.clone()]);
                fields[2 * field_max..2 * field_max + fr.len()].copy_from_slice(&slab.flat_after[fr]);
            }
            let s = lane.stream.clone();
            s.memcpy_htod(&lane.host_in, &mut lane.dev_in).map_err(device_err("uploading a chunk"))?;
            let (u_rows, u_a, u_c) = (shape.rows, shape.angles, shape.cols);
            let sino_view = lane.dev_in.slice(0..sino_max);
            let dark = lane.dev_in.slice(sino_max..sino_max + field_max);
            let fb = lane.dev_in.slice(sino_max + field_max..sino_max + 2 * field_max);
            let fa = lane.dev_in.slice(sino_max + 2 * field_max..sino_max + 3 * field_max);
            let bad_launch = |e: kernels::launch::LaunchError| BackendError::Input(e.to_string());
            let launch_err = device_err("launching a kernel");
            // SAFETY (all launches): argument types and order match the kernel signatures in kernels/cuda;
            // every buffer holds at least the values the shape makes the kernel touch.
            let filtered_input = if host_preprocess {
                s.memcpy_dtod(&sino_view, &mut lane.dev_a).map_err(device_err("copying a chunk"))?;
                &mut lane.dev_a
            } else {
                let floor = TRANSMISSION_FLOOR;
                let mut b = s.launch_builder(&f.normalize);
                b.arg(&sino_view).arg(&dark).arg(&fb).arg(&fa).arg(&p.flat_weight).arg(&mut lane.dev_a);
                b.arg(&u_rows).arg(&u_a).arg(&u_c).arg(&floor);
                unsafe { b.launch(config(launch::elementwise(shape))) }.map_err(&launch_err)?;
                if let Some(threshold) = setup.zinger_threshold {
                    let mut b = s.launch_builder(&f.zingers);
                    b.arg(&lane.dev_a).arg(&mut lane.dev_b).arg(&u_rows).arg(&u_a).arg(&u_c).arg(&threshold);
                    unsafe { b.launch(config(launch::elementwise(shape))) }.map_err(&launch_err)?;
                    std::mem::swap(&mut lane.dev_a, &mut lane.dev_b);
                }
                &mut lane.dev_a
            };
            let lines = shape.lines() as u32;
            let mut b = s.launch_builder(&f.filter);
            b.arg(&*filtered_input).arg(&p.taps).arg(&mut lane.dev_b).arg(&lines).arg(&u_c);
            unsafe { b.launch(config(launch::filter(shape).map_err(bad_launch)?)) }.map_err(&launch_err)?;
            let g = p.geometry;
            let mut b = s.launch_builder(&f.backproject);
            b.arg(&lane.dev_b).arg(&p.cos).arg(&p.sin).arg(&mut lane.dev_out);
            b.arg(&u_rows).arg(&u_a).arg(&u_c).arg(&g.out_size).arg(&g.c0).arg(&g.pad);
            unsafe { b.launch(config(launch::backproject(u_rows, g.out_size).map_err(bad_launch)?)) }
                .map_err(&launch_err)?;
            s.memcpy_dtoh(&lane.dev_out, &mut lane.host_out).map_err(device_err("downloading slices"))?;
            lane.pending = Some(rows.start * n * n..rows.end * n * n);
        }
        for lane in &mut p.lanes {
            finish(lane, &mut out).map_err(device_err("downloading slices"))?;
        }
        Ok(out)
    }

    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        let own = CHUNKS_PER_SLAB * chunk_rows(setup, self.info.free_bytes);
        self.max_rows.map_or(own, |cap| own.min(cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fit_the_free_memory_and_the_host_bound() {
        let setup = ReconSetup::new(vec![0.0; 2048], 2048, 1023.5, 2048);
        // 40 GiB free: bounded by the 128 MiB input per chunk (2048 x 2048 x 4 bytes = 16 MiB per row).
        assert_eq!(chunk_rows(&setup, 40 << 30), 8);
        // 1 GiB free: both lanes' buffers (4 x 16 MiB + fields per row) must fit in 70% of it.
        let rows = chunk_rows(&setup, 1 << 30);
        assert!(
            rows >= 1
                && 2 * rows * 4 * (3 * 2048 * 2048 + 3 * 2048 + 2048 * 2048) <= (0.7 * (1u64 << 30) as f64) as usize
        );
        // Nothing free still gives one row (the device then fails and the slab is retried elsewhere).
        assert_eq!(chunk_rows(&setup, 0), 1);
    }
}
