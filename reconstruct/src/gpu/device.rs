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

use cudarc::cufft::{sys as cufft_sys, CudaFft};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use kernels::launch::{self, Launch};
use kernels::{BackprojectGeometry, Kernel, SlabShape};

use crate::backend::{Backend, BackendError, ReconSetup, Slab};
use crate::gpu::host;
use crate::gpu::nvrtc;
pub use crate::gpu::stages::StageTimes;
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

/// How the filtered sinogram is stored for the backprojection (`--gpu-dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuDtype {
    /// 32-bit float: bit for bit the CPU backend's backprojection (harness-checked).
    #[default]
    F32,
    /// IEEE half: half the bytes the backprojection reads; per-pixel error at most `2^-11` of the
    /// backprojection of `|filtered|` (stated and measured in tests/tests/gpu_harness.rs).
    F16,
}

impl GpuDtype {
    /// `f32` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            GpuDtype::F32 => "f32",
            GpuDtype::F16 => "f16",
        }
    }
}

/// Which filter implementation the backend uses (`--gpu-filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuFilter {
    /// cuFFT when libcufft loads, else the direct convolution.
    #[default]
    Auto,
    /// cuFFT (batched real-to-complex); an error when libcufft does not load.
    Fft,
    /// The direct real-space convolution (`filter_convolve`, the harness reference).
    Convolve,
}

impl GpuFilter {
    /// `auto`, `fft` or `convolve`.
    pub fn name(self) -> &'static str {
        match self {
            GpuFilter::Auto => "auto",
            GpuFilter::Fft => "fft",
            GpuFilter::Convolve => "convolve",
        }
    }
}

/// Options of a [`CudaBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GpuOptions {
    /// Storage of the filtered sinogram.
    pub dtype: GpuDtype,
    /// Filter implementation.
    pub filter: GpuFilter,
}

impl GpuOptions {
    /// Whether a backend opened now with these options filters with cuFFT: `fft` and `auto` when libcufft
    /// loads, never `convolve`; `fft` without libcufft is an error.
    pub fn uses_fft(&self) -> Result<bool, GpuError> {
        match self.filter {
            GpuFilter::Convolve => Ok(false),
            GpuFilter::Auto => Ok(cufft_present()),
            GpuFilter::Fft if cufft_present() => Ok(true),
            GpuFilter::Fft => Err(GpuError::NoCufft),
        }
    }
}

/// True when cuFFT (libcufft) can be loaded; never panics.
pub fn cufft_present() -> bool {
    // SAFETY: only probes whether the shared library loads.
    unsafe { cufft_sys::is_culib_present() }
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
/// The cuFFT path's padded lines take `2 L + 2` more floats per line (`L` the padded length, `<= 4 n_cols`),
/// which this bound includes whether or not cuFFT is used.
pub fn chunk_rows(setup: &ReconSetup, free_bytes: usize) -> usize {
    let (a, c, n) = (setup.angles_rad.len().max(1), setup.n_cols.max(1), setup.out_size.max(1));
    let l = crate::filter::padded_len(c);
    let per_row_device = 4 * (3 * a * c + 3 * c + n * n) + 2 * a * c + 4 * a * (2 * l + 2);
    let by_device = (free_bytes as f64 * DEVICE_MEMORY_SHARE) as usize / (LANES * per_row_device);
    let by_host = MAX_CHUNK_INPUT_BYTES / (4 * a * c);
    by_device.min(by_host).clamp(1, 65_535)
}

/// The loaded kernels of one device.
struct Functions {
    normalize: CudaFunction,
    normalize_u16: CudaFunction,
    zingers: CudaFunction,
    filter: CudaFunction,
    pad: CudaFunction,
    multiply: CudaFunction,
    crop: CudaFunction,
    backproject: CudaFunction,
    to_half: CudaFunction,
    backproject_f16: CudaFunction,
}

/// What one setup needs on the device: its constants and both lanes' buffers.
struct Prepared {
    /// The setup these were made for (the cache key: a different setup prepares again).
    setup: ReconSetup,
    constants: Constants,
    chunk_rows: usize,
    lanes: Vec<Lane>,
}

/// Device-side constants of one setup (and the per-slab flat weights).
struct Constants {
    taps: CudaSlice<f32>,
    /// cuFFT path: padded length and the response of `multiply_response` (`L / 2 + 1` values).
    padded_len: usize,
    response: CudaSlice<f32>,
    cos: CudaSlice<f32>,
    sin: CudaSlice<f32>,
    flat_weight: CudaSlice<f32>,
    geometry: BackprojectGeometry,
}

/// A stream with its own staging and device buffers.
struct Lane {
    stream: Arc<CudaStream>,
    /// Pinned float counts (or host-preprocessed values) of one chunk.
    host_in: PinnedHostSlice<f32>,
    /// Pinned `[dark | flat_before | flat_after]` of one chunk.
    host_fields: PinnedHostSlice<f32>,
    dev_fields: CudaSlice<f32>,
    /// Pinned reconstructed slices of one chunk.
    host_out: PinnedHostSlice<f32>,
    dev_in: CudaSlice<f32>,
    dev_a: CudaSlice<f32>,
    dev_b: CudaSlice<f32>,
    dev_out: CudaSlice<f32>,
    /// Pinned uint16 counts of one chunk, and their device copy (used when every count is a uint16).
    host_raw16: PinnedHostSlice<u16>,
    dev_raw16: CudaSlice<u16>,
    /// The filtered chunk as IEEE half (`--gpu-dtype f16`).
    dev_half: CudaSlice<u16>,
    /// cuFFT path: plans over every line of a full chunk, padded lines and their half spectra.
    fft: Option<LaneFft>,
    /// Timing events at the stage boundaries of the chunk in flight (see [`StageTimes`]).
    events: [CudaEvent; 6],
    /// Output values (range in the slab's result) whose download is in flight.
    pending: Option<Range<usize>>,
}

/// A lane's cuFFT plans and buffers.
struct LaneFft {
    forward: CudaFft,
    inverse: CudaFft,
    padded: CudaSlice<f32>,
    spectrum: CudaSlice<cufft_sys::float2>,
}

/// One GPU as a [`Backend`].
pub struct CudaBackend {
    info: DeviceInfo,
    options: GpuOptions,
    /// Whether this backend filters with cuFFT (options and library presence decided at open).
    use_fft: bool,
    ctx: Arc<CudaContext>,
    functions: Functions,
    prepared: Option<Prepared>,
    times: StageTimes,
    /// Upper bound on rows per slab (a host memory budget), if any.
    max_rows: Option<usize>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend").field("info", &self.info).finish()
    }
}

/// The kernels a [`CudaBackend`] runs, in the order of its function table.
pub const BACKEND_KERNELS: [Kernel; 10] = [
    kernels::NORMALIZE_MINUS_LOG,
    kernels::NORMALIZE_MINUS_LOG_U16,
    kernels::REMOVE_ZINGERS,
    kernels::FILTER_CONVOLVE,
    kernels::PAD_LINES,
    kernels::MULTIPLY_RESPONSE,
    kernels::CROP_LINES,
    kernels::BACKPROJECT_ROWS,
    kernels::TO_HALF,
    kernels::BACKPROJECT_ROWS_F16,
];

/// What opening a device compiles: every kernel of [`BACKEND_KERNELS`] for `arch`, each source file
/// through NVRTC once per process (a second device, or a second backend on the same device, compiles
/// nothing; see [`nvrtc::compilations`]).
pub fn compile_backend_kernels(arch: &str) -> Result<Vec<Arc<nvrtc::CompiledKernel>>, nvrtc::CompileError> {
    BACKEND_KERNELS.iter().map(|k| nvrtc::compile(*k, arch)).collect()
}

/// Loads the compiled kernels into `ctx`, each source file's PTX once (the driver's JIT then runs once
/// per file and context, not once per kernel).
fn load_functions(ctx: &Arc<CudaContext>, compiled: &[Arc<nvrtc::CompiledKernel>]) -> Result<Functions, GpuError> {
    let mut modules: Vec<(*const nvrtc::CompiledModule, Arc<cudarc::driver::CudaModule>)> = Vec::new();
    let mut functions = Vec::with_capacity(compiled.len());
    for k in compiled {
        let key = Arc::as_ptr(&k.module);
        let module = match modules.iter().find(|(m, _)| *m == key) {
            Some((_, module)) => module.clone(),
            None => {
                let module = ctx.load_module(Ptx::from_src(k.ptx().to_string())).map_err(driver_err("loading PTX"))?;
                modules.push((key, module.clone()));
                module
            }
        };
        functions.push(module.load_function(k.kernel.name).map_err(driver_err("finding a kernel in its module"))?);
    }
    let [normalize, normalize_u16, zingers, filter, pad, multiply, crop, backproject, to_half, backproject_f16]: [CudaFunction; 10] =
        functions.try_into().map_err(|_| GpuError::Driver("kernel table has the wrong length".into()))?;
    Ok(Functions {
        normalize,
        normalize_u16,
        zingers,
        filter,
        pad,
        multiply,
        crop,
        backproject,
        to_half,
        backproject_f16,
    })
}

impl CudaBackend {
    /// Opens GPU `ordinal` with the default options (f32 storage, cuFFT when present).
    pub fn new(ordinal: usize) -> Result<CudaBackend, GpuError> {
        CudaBackend::with_options(ordinal, GpuOptions::default())
    }

    /// Opens GPU `ordinal`, compiles (or takes from this process's cache) every kernel for its
    /// architecture and loads them. `GpuFilter::Fft` without libcufft is an error.
    pub fn with_options(ordinal: usize, options: GpuOptions) -> Result<CudaBackend, GpuError> {
        if !driver_present() {
            return Err(GpuError::NoDriver);
        }
        let use_fft = options.uses_fft()?;
        let ctx = CudaContext::new(ordinal).map_err(driver_err("opening the device"))?;
        let info = info(&ctx)?;
        let arch = info.arch();
        let functions = load_functions(&ctx, &compile_backend_kernels(&arch)?)?;
        Ok(CudaBackend {
            info,
            options,
            use_fft,
            ctx,
            functions,
            prepared: None,
            times: StageTimes::default(),
            max_rows: None,
        })
    }

    /// Caps the rows per slab this device asks for (for a host memory budget); slabs below
    /// [`CHUNKS_PER_SLAB`] chunks still alternate lanes, with smaller chunks.
    pub fn limit_rows(mut self, rows: usize) -> CudaBackend {
        self.max_rows = Some(rows.max(1));
        self
    }

    /// Device time per stage over every chunk so far.
    pub fn stage_times(&self) -> StageTimes {
        self.times
    }

    /// The options this backend was opened with.
    pub fn options(&self) -> GpuOptions {
        self.options
    }

    /// `fft` or `convolve`: the filter this backend runs.
    pub fn filter_path(&self) -> &'static str {
        if self.use_fft {
            "fft"
        } else {
            "convolve"
        }
    }

    /// What the driver reported for this device when it was opened.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Uploads the per-setup constants and allocates both lanes, unless already done for this setup.
    fn prepare(&mut self, setup: &ReconSetup) -> Result<(), BackendError> {
        if self.prepared.as_ref().is_some_and(|p| p.setup == *setup) {
            return Ok(());
        }
        self.prepared = None; // free the old buffers first
        let taps = host::filter_taps(setup);
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
        let (padded_len, response) = host::fft_response(setup);
        let response = upload(&response).map_err(&err)?;
        let flat_weight = stream.alloc_zeros::<f32>(a.max(1)).map_err(&err)?;
        let fft_err = |e: cudarc::cufft::result::CufftError| BackendError::Device {
            device: self.name(),
            reason: format!("planning cuFFT: {e:?}"),
        };
        let lines = rows * a;
        let (l, nf) = (padded_len, padded_len / 2 + 1);
        let as_int =
            |v: usize| i32::try_from(v).map_err(|_| BackendError::Input(format!("{v} values exceed one cuFFT plan")));
        let mut lanes = Vec::with_capacity(LANES);
        let err = device_error(self.name(), "allocating lane buffers");
        for _ in 0..LANES {
            let s = self.ctx.new_stream().map_err(&err)?;
            // SAFETY: both pinned buffers are fully written (host_in by the host, host_out by a download)
            // before anything reads them.
            let (host_in, host_out) = unsafe {
                (
                    self.ctx.alloc_pinned::<f32>(sino_len).map_err(&err)?,
                    self.ctx
                        .alloc_pinned_with_flags::<f32>(out_len, cudarc::driver::sys::CU_MEMHOSTALLOC_PORTABLE)
                        .map_err(&err)?,
                )
            };
            let fft = if self.use_fft {
                let (n, batch) = ([as_int(l)?], as_int(lines)?);
                let (li, nfi) = (as_int(l)?, as_int(nf)?);
                let forward = CudaFft::plan_many(
                    &n,
                    None,
                    1,
                    li,
                    None,
                    1,
                    nfi,
                    cufft_sys::cufftType::CUFFT_R2C,
                    batch,
                    s.clone(),
                )
                .map_err(fft_err)?;
                let inverse = CudaFft::plan_many(
                    &n,
                    None,
                    1,
                    nfi,
                    None,
                    1,
                    li,
                    cufft_sys::cufftType::CUFFT_C2R,
                    batch,
                    s.clone(),
                )
                .map_err(fft_err)?;
                Some(LaneFft {
                    forward,
                    inverse,
                    padded: s.alloc_zeros(lines * l).map_err(&err)?,
                    spectrum: s.alloc_zeros(lines * nf).map_err(&err)?,
                })
            } else {
                None
            };
            // SAFETY: the pinned counts are fully written by the host before an upload reads them.
            let (host_raw16, host_fields) = unsafe {
                (
                    self.ctx.alloc_pinned::<u16>(sino_len.max(1)).map_err(&err)?,
                    self.ctx.alloc_pinned::<f32>(3 * field_len).map_err(&err)?,
                )
            };
            let event = || self.ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT));
            let events = [event(), event(), event(), event(), event(), event()];
            let events = events.map(|e| e.map_err(&err));
            let [e0, e1, e2, e3, e4, e5] = events;
            lanes.push(Lane {
                events: [e0?, e1?, e2?, e3?, e4?, e5?],
                host_raw16,
                dev_raw16: s.alloc_zeros(sino_len.max(1)).map_err(&err)?,
                dev_half: if self.options.dtype == GpuDtype::F16 {
                    s.alloc_zeros(sino_len.max(1)).map_err(&err)?
                } else {
                    s.alloc_zeros(1).map_err(&err)?
                },
                fft,
                host_fields,
                dev_fields: s.alloc_zeros(3 * field_len).map_err(&err)?,
                dev_in: s.alloc_zeros(sino_len).map_err(&err)?,
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
        let constants = Constants { taps, padded_len, response, cos, sin, flat_weight, geometry };
        self.prepared = Some(Prepared { setup: setup.clone(), constants, chunk_rows: rows, lanes });
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

/// Checks the setup and that the slab holds what the setup says (input errors: no device would do better).
fn check_slab(setup: &ReconSetup, slab: &Slab) -> Result<(), BackendError> {
    crate::cpu::validate(setup)?;
    let (a, c) = (setup.angles_rad.len(), setup.n_cols);
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
    Ok(())
}

/// Uploads the slab's per-angle flat weights (shared by every chunk) and waits for them.
fn upload_flat_weights(
    lane: &Lane,
    constants: &mut Constants,
    weights: &[f32],
) -> Result<(), cudarc::driver::DriverError> {
    lane.stream.memcpy_htod(weights, &mut constants.flat_weight)?;
    lane.stream.synchronize()
}

/// Where one chunk lies in a lane's staging and input buffers: `[sinogram | dark | flat_before | flat_after]`,
/// each part sized for the lane's full chunk.
struct ChunkLayout {
    angles: usize,
    cols: usize,
    /// Values of the sinogram part.
    sino_max: usize,
    /// Values of each field part.
    field_max: usize,
}

impl ChunkLayout {
    fn new(setup: &ReconSetup, chunk_rows: usize) -> ChunkLayout {
        let (angles, cols) = (setup.angles_rad.len(), setup.n_cols);
        ChunkLayout { angles, cols, sino_max: chunk_rows * angles * cols, field_max: chunk_rows * cols }
    }

    fn shape(&self, rows: usize) -> SlabShape {
        SlabShape { rows: rows as u32, angles: self.angles as u32, cols: self.cols as u32 }
    }
}

/// Host preprocessing of slab `rows` for setups with stripe removal (which has no kernel): `-log` of the
/// normalised counts, zingers, stripes; `[row][angle][col]`.
fn preprocess_on_host(setup: &ReconSetup, slab: &Slab, rows: Range<usize>) -> Vec<f32> {
    let (a, c) = (setup.angles_rad.len(), setup.n_cols);
    let mut v = slab.projections[rows.start * a * c..rows.end * a * c].to_vec();
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
}

/// Copies uint16-valued counts into `out` and returns true, or returns false at the first value that is not
/// a uint16 (a fraction, negative, beyond 65535 or NaN); then `out` is partly written and must not be used.
pub fn counts_as_u16(counts: &[f32], out: &mut [u16]) -> bool {
    for (o, v) in out.iter_mut().zip(counts) {
        let u = *v as u16; // saturating; NaN gives 0
        if u as f32 != *v {
            return false;
        }
        *o = u;
    }
    true
}

/// Copies slab `rows` into the lane's pinned staging buffers: the preprocessed sinogram when given, else
/// the raw counts (as uint16 when every count of the chunk is one), then the dark and flat fields.
/// Returns true when the counts were staged as uint16.
fn stage(
    lane: &mut Lane,
    layout: &ChunkLayout,
    slab: &Slab,
    rows: Range<usize>,
    preprocessed: Option<&[f32]>,
) -> Result<bool, cudarc::driver::DriverError> {
    let (a, c, field_max) = (layout.angles, layout.cols, layout.field_max);
    let values = rows.start * a * c..rows.end * a * c;
    let fr = rows.start * c..rows.end * c;
    let as_u16 = preprocessed.is_none() && {
        let n = values.len();
        counts_as_u16(&slab.projections[values.clone()], &mut lane.host_raw16.as_mut_slice()?[..n])
    };
    if !as_u16 {
        let sino = lane.host_in.as_mut_slice()?;
        sino[..values.len()].copy_from_slice(preprocessed.unwrap_or(&slab.projections[values]));
    }
    let fields = lane.host_fields.as_mut_slice()?;
    fields[..fr.len()].copy_from_slice(&slab.dark[fr.clone()]);
    fields[field_max..field_max + fr.len()].copy_from_slice(&slab.flat_before[fr.clone()]);
    fields[2 * field_max..2 * field_max + fr.len()].copy_from_slice(&slab.flat_after[fr]);
    Ok(as_u16)
}

/// Enqueues one staged chunk of `rows` rows on the lane's stream: upload (uint16 counts when staged so),
/// normalisation and zingers (or a copy of host-preprocessed values), filter (cuFFT or the direct
/// convolution), backprojection of 8 slices per block (from float or half storage), and the download into
/// pinned memory.
#[allow(clippy::too_many_arguments)]
fn launch_chunk(
    f: &Functions,
    constants: &Constants,
    lane: &mut Lane,
    setup: &ReconSetup,
    layout: &ChunkLayout,
    rows: usize,
    counts_u16: bool,
    dtype: GpuDtype,
    device: &str,
) -> Result<(), BackendError> {
    let device_err = |what: &'static str| device_error(device.to_string(), what);
    let field_max = layout.field_max;
    let shape = layout.shape(rows);
    let s = lane.stream.clone();
    let mark = |k: usize, lane: &Lane| lane.events[k].record(&s).map_err(device_err("recording a timing event"));
    mark(0, lane)?;
    s.memcpy_htod(&lane.host_fields, &mut lane.dev_fields).map_err(device_err("uploading flat and dark fields"))?;
    if counts_u16 {
        s.memcpy_htod(&lane.host_raw16, &mut lane.dev_raw16).map_err(device_err("uploading uint16 counts"))?;
    } else {
        s.memcpy_htod(&lane.host_in, &mut lane.dev_in).map_err(device_err("uploading a chunk"))?;
    }
    mark(1, lane)?;
    let (u_rows, u_a, u_c) = (shape.rows, shape.angles, shape.cols);
    let dark = lane.dev_fields.slice(0..field_max);
    let fb = lane.dev_fields.slice(field_max..2 * field_max);
    let fa = lane.dev_fields.slice(2 * field_max..3 * field_max);
    let bad_launch = |e: kernels::launch::LaunchError| BackendError::Input(e.to_string());
    let launch_err = device_err("launching a kernel");
    // SAFETY (all launches): argument types and order match the kernel signatures in kernels/cuda;
    // every buffer holds at least the values the shape makes the kernel touch.
    if setup.stripe_size.is_some() {
        // Staged values are already -log, dezingered and destriped (see `preprocess_on_host`).
        s.memcpy_dtod(&lane.dev_in, &mut lane.dev_a).map_err(device_err("copying a chunk"))?;
    } else {
        let floor = TRANSMISSION_FLOOR;
        let mut b = s.launch_builder(if counts_u16 { &f.normalize_u16 } else { &f.normalize });
        if counts_u16 {
            b.arg(&lane.dev_raw16);
        } else {
            b.arg(&lane.dev_in);
        }
        b.arg(&dark).arg(&fb).arg(&fa).arg(&constants.flat_weight).arg(&mut lane.dev_a);
        b.arg(&u_rows).arg(&u_a).arg(&u_c).arg(&floor);
        unsafe { b.launch(config(launch::elementwise(shape))) }.map_err(&launch_err)?;
        if let Some(threshold) = setup.zinger_threshold {
            let mut b = s.launch_builder(&f.zingers);
            b.arg(&lane.dev_a).arg(&mut lane.dev_b).arg(&u_rows).arg(&u_a).arg(&u_c).arg(&threshold);
            unsafe { b.launch(config(launch::elementwise(shape))) }.map_err(&launch_err)?;
            std::mem::swap(&mut lane.dev_a, &mut lane.dev_b);
        }
    }
    mark(2, lane)?;
    let lines = shape.lines() as u32;
    match lane.fft.as_mut() {
        Some(fft) => {
            // The plans cover every line of a full chunk; a shorter last chunk transforms stale lines too,
            // whose results are never read.
            let l = constants.padded_len as u32;
            let nf = l / 2 + 1;
            let full_lines = (layout.sino_max / layout.cols.max(1)) as u64;
            let mut b = s.launch_builder(&f.pad);
            b.arg(&lane.dev_a).arg(&mut fft.padded).arg(&lines).arg(&u_c).arg(&l);
            unsafe { b.launch(config(launch::lines(lines as u64, l).map_err(bad_launch)?)) }.map_err(&launch_err)?;
            let fft_err = |e: cudarc::cufft::result::CufftError| BackendError::Device {
                device: device.to_string(),
                reason: format!("cuFFT: {e:?}"),
            };
            fft.forward.exec_r2c(&fft.padded, &mut fft.spectrum).map_err(fft_err)?;
            let mut b = s.launch_builder(&f.multiply);
            b.arg(&mut fft.spectrum).arg(&constants.response).arg(&lines).arg(&nf);
            unsafe { b.launch(config(launch::lines(lines as u64, nf).map_err(bad_launch)?)) }.map_err(&launch_err)?;
            fft.inverse.exec_c2r(&mut fft.spectrum, &mut fft.padded).map_err(fft_err)?;
            let mut b = s.launch_builder(&f.crop);
            b.arg(&fft.padded).arg(&mut lane.dev_b).arg(&lines).arg(&u_c).arg(&l);
            unsafe { b.launch(config(launch::lines(lines as u64, u_c).map_err(bad_launch)?)) }.map_err(&launch_err)?;
            debug_assert!(lines as u64 <= full_lines);
        }
        None => {
            let mut b = s.launch_builder(&f.filter);
            b.arg(&lane.dev_a).arg(&constants.taps).arg(&mut lane.dev_b).arg(&lines).arg(&u_c);
            unsafe { b.launch(config(launch::filter(shape).map_err(bad_launch)?)) }.map_err(&launch_err)?;
        }
    }
    mark(3, lane)?;
    let g = constants.geometry;
    let bp = config(launch::backproject_rows(u_rows, g.out_size).map_err(bad_launch)?);
    match dtype {
        GpuDtype::F32 => {
            let mut b = s.launch_builder(&f.backproject);
            b.arg(&lane.dev_b).arg(&constants.cos).arg(&constants.sin).arg(&mut lane.dev_out);
            b.arg(&u_rows).arg(&u_a).arg(&u_c).arg(&g.out_size).arg(&g.c0).arg(&g.pad);
            unsafe { b.launch(bp) }.map_err(&launch_err)?;
        }
        GpuDtype::F16 => {
            let n = shape.len() as u64;
            let mut b = s.launch_builder(&f.to_half);
            b.arg(&lane.dev_b).arg(&mut lane.dev_half).arg(&n);
            unsafe { b.launch(config(launch::elementwise_len(n))) }.map_err(&launch_err)?;
            let mut b = s.launch_builder(&f.backproject_f16);
            b.arg(&lane.dev_half).arg(&constants.cos).arg(&constants.sin).arg(&mut lane.dev_out);
            b.arg(&u_rows).arg(&u_a).arg(&u_c).arg(&g.out_size).arg(&g.c0).arg(&g.pad);
            unsafe { b.launch(bp) }.map_err(&launch_err)?;
        }
    }
    mark(4, lane)?;
    s.memcpy_dtoh(&lane.dev_out, &mut lane.host_out).map_err(device_err("downloading slices"))?;
    mark(5, lane)?;
    Ok(())
}

/// Waits for a lane's download, copies it into the slab's result and adds the chunk's stage times.
fn finish(lane: &mut Lane, out: &mut [f32], times: &mut StageTimes) -> Result<(), cudarc::driver::DriverError> {
    if let Some(range) = lane.pending.take() {
        {
            let _wait = tracing::info_span!("wait.gpu_download", values = range.len()).entered();
            let done = lane.host_out.as_slice()?;
            out[range.clone()].copy_from_slice(&done[..range.len()]);
        }
        let e = &lane.events;
        let ms = |a: usize, b: usize| e[a].elapsed_ms(&e[b]).map(|v| v as f64 / 1e3);
        times.upload_s += ms(0, 1)?;
        times.preprocess_s += ms(1, 2)?;
        times.filter_s += ms(2, 3)?;
        times.backproject_s += ms(3, 4)?;
        times.download_s += ms(4, 5)?;
        times.chunks += 1;
    }
    Ok(())
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{} {}", self.info.ordinal, self.info.name)
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        check_slab(setup, slab)?;
        self.prepare(setup)?;
        let name = self.name();
        let n_rows = slab.rows.len();
        let span = tracing::info_span!("recon.backproject", device = %name, rows = n_rows);
        let _span = span.enter();
        let device_err = |what: &'static str| device_error(name.clone(), what);
        let functions = &self.functions;
        let dtype = self.options.dtype;
        let started = std::time::Instant::now();
        let times = &mut self.times;
        let Prepared { constants, chunk_rows, lanes, .. } = self
            .prepared
            .as_mut()
            .ok_or_else(|| BackendError::Device { device: name.clone(), reason: "not prepared".into() })?;
        upload_flat_weights(&lanes[0], constants, &slab.flat_weight).map_err(device_err("uploading flat weights"))?;
        let chunk_rows = *chunk_rows;
        let layout = ChunkLayout::new(setup, chunk_rows);
        let n = setup.out_size;
        let mut out = vec![0f32; n_rows * n * n];
        // At least CHUNKS_PER_SLAB chunks when the slab allows, so the lanes overlap within the slab.
        let step = chunk_rows.min(n_rows.div_ceil(CHUNKS_PER_SLAB)).max(1);
        for (k, start) in (0..n_rows).step_by(step).enumerate() {
            let rows = start..(start + step).min(n_rows);
            let lane = &mut lanes[k % LANES];
            finish(lane, &mut out, times).map_err(device_err("downloading slices"))?;
            let counts_u16 = {
                let _stage = tracing::info_span!("gpu.stage", device = %name, rows = rows.len()).entered();
                // Stripe removal has no kernel: preprocess in ordinary memory (the staging buffer is
                // write-combined, slow to read back) and stage -log values instead of counts.
                let preprocessed = setup.stripe_size.is_some().then(|| preprocess_on_host(setup, slab, rows.clone()));
                stage(lane, &layout, slab, rows.clone(), preprocessed.as_deref())
                    .map_err(device_err("waiting for a staging buffer"))?
            };
            launch_chunk(functions, constants, lane, setup, &layout, rows.len(), counts_u16, dtype, &name)?;
            lane.pending = Some(rows.start * n * n..rows.end * n * n);
        }
        for lane in lanes.iter_mut() {
            finish(lane, &mut out, times).map_err(device_err("downloading slices"))?;
        }
        times.wall_s += started.elapsed().as_secs_f64();
        Ok(out)
    }

    fn stage_times(&self) -> Option<StageTimes> {
        Some(self.times)
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
