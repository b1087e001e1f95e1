//! Run-time compilation of the kernels with NVRTC, once per (source, architecture, options) per process.
//!
//! Several kernels share a source file (`backproject_rows.cu` holds three): the file goes through NVRTC
//! once, and every kernel of it is looked up in the same PTX ([`CompiledKernel::module`]). The PTX is kept
//! for the whole process, so every device and context opened later reuses it; [`compilations`] counts the
//! NVRTC runs (the tests check that a second opening compiles nothing).
//!
//! NVRTC is loaded dynamically: a missing library is an error ([`CompileError::NvrtcMissing`]) saying how
//! to install it, never a panic. A kernel whose compilation log holds a warning is rejected like one that
//! does not compile, so warnings cannot accumulate unnoticed.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{result, sys};
use kernels::Kernel;

/// Options every kernel is compiled with. `-default-device` is not used: the kernels are `__global__`
/// only. FMA contraction stays on (NVRTC's default) for speed; the harness tests bound its effect.
const OPTIONS: &[&str] = &["--std=c++17", "--restrict"];

/// Why a kernel could not be compiled.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CompileError {
    /// The NVRTC library could not be loaded.
    #[error(
        "NVRTC (libnvrtc.so.12) not found: install it with `pip install nvidia-cuda-nvrtc-cu12` and put its \
         lib folder on LD_LIBRARY_PATH (`make test` / `. target/env.sh` do both), or install the CUDA toolkit"
    )]
    NvrtcMissing,
    /// NVRTC rejected the kernel, or warned about it.
    #[error("kernel {kernel} ({file}) for {arch}: {reason}\n{log}")]
    Rejected {
        /// Kernel name.
        kernel: &'static str,
        /// Source file under kernels/cuda.
        file: &'static str,
        /// Target architecture.
        arch: String,
        /// Short reason.
        reason: String,
        /// The full NVRTC log.
        log: String,
    },
}

/// One source file compiled to PTX for one architecture: what every kernel of that file is loaded from.
#[derive(Debug)]
pub struct CompiledModule {
    /// File name under kernels/cuda.
    pub file: &'static str,
    /// The architecture, e.g. `sm_80`.
    pub arch: String,
    /// PTX text (every `__global__` function of the file).
    pub ptx: String,
}

/// One kernel compiled to PTX for one architecture: its entry point in its source file's module.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    /// The kernel.
    pub kernel: Kernel,
    /// The architecture, e.g. `sm_80`.
    pub arch: String,
    /// The compiled source file, shared by every kernel of that file.
    pub module: Arc<CompiledModule>,
}

impl CompiledKernel {
    /// The PTX text of the kernel's source file.
    pub fn ptx(&self) -> &str {
        &self.module.ptx
    }
}

/// True when the NVRTC library can be loaded (no panic when it cannot).
pub fn nvrtc_present() -> bool {
    // SAFETY: only probes whether the shared library loads.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), CompileError> {
    if !nvrtc_present() {
        return Err(CompileError::NvrtcMissing);
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are valid for writes.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        Ok((major, minor))
    } else {
        Err(CompileError::NvrtcMissing)
    }
}

/// NVRTC compilations run by this process so far (each one a source file for one architecture).
pub fn compilations() -> usize {
    COMPILATIONS.load(Ordering::Relaxed)
}

static COMPILATIONS: AtomicUsize = AtomicUsize::new(0);

/// A source text, an architecture and the options (the architecture's included): what NVRTC's output
/// depends on.
type ModuleKey = (&'static str, String);
/// One slot per key, filled once: concurrent requests for the same key wait for the first compilation
/// instead of compiling again.
type ModuleSlot = Arc<OnceLock<Result<Arc<CompiledModule>, CompileError>>>;
type KernelKey = (&'static str, &'static str, String);

fn modules() -> &'static Mutex<HashMap<ModuleKey, ModuleSlot>> {
    static CACHE: OnceLock<Mutex<HashMap<ModuleKey, ModuleSlot>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn kernels_cache() -> &'static Mutex<HashMap<KernelKey, Arc<CompiledKernel>>> {
    static CACHE: OnceLock<Mutex<HashMap<KernelKey, Arc<CompiledKernel>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn options_for(arch: &str) -> Vec<String> {
    let mut options: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    options
}

/// Compiles `kernel`'s source file to PTX for `arch` (e.g. `"sm_80"`), or takes the copy compiled
/// earlier in this process (for this kernel or another of the same file), and checks the kernel's
/// entry point is in it.
pub fn compile(kernel: Kernel, arch: &str) -> Result<Arc<CompiledKernel>, CompileError> {
    if !nvrtc_present() {
        // Not cached: nothing was compiled.
        return Err(CompileError::NvrtcMissing);
    }
    let kernel_key = (kernel.name, kernel.source, arch.to_string());
    if let Some(hit) = kernels_cache().lock().unwrap_or_else(|p| p.into_inner()).get(&kernel_key) {
        return Ok(hit.clone());
    }
    let options = options_for(arch);
    let slot = modules()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry((kernel.source, options.join(" ")))
        .or_default()
        .clone();
    let module = slot.get_or_init(|| compile_uncached(kernel, arch, &options).map(Arc::new)).clone()?;
    if !module.ptx.contains(&format!(".entry {}", kernel.name)) {
        return Err(CompileError::Rejected {
            kernel: kernel.name,
            file: kernel.file,
            arch: arch.to_string(),
            reason: format!("PTX has no entry point {}", kernel.name),
            log: String::new(),
        });
    }
    let compiled = Arc::new(CompiledKernel { kernel, arch: arch.to_string(), module });
    let mut cache = kernels_cache().lock().unwrap_or_else(|p| p.into_inner());
    Ok(cache.entry(kernel_key).or_insert(compiled).clone())
}

/// Compiles every kernel of [`kernels::ALL`] for `arch`.
pub fn compile_all(arch: &str) -> Result<Vec<Arc<CompiledKernel>>, CompileError> {
    kernels::ALL.iter().map(|k| compile(*k, arch)).collect()
}

fn text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|c| *c as u8).take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs NVRTC on `kernel`'s source file (counted in [`compilations`]); the log is attributed to `kernel`,
/// the one whose request compiled the file.
fn compile_uncached(kernel: Kernel, arch: &str, options: &[String]) -> Result<CompiledModule, CompileError> {
    let rejected = |reason: String, log: String| CompileError::Rejected {
        kernel: kernel.name,
        file: kernel.file,
        arch: arch.to_string(),
        reason,
        log,
    };
    let src = CString::new(kernel.source).map_err(|_| rejected("source contains a NUL byte".into(), String::new()))?;
    let name =
        CString::new(kernel.file).map_err(|_| rejected("file name contains a NUL byte".into(), String::new()))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| rejected(format!("{e:?}"), String::new()))?;
    // SAFETY: `prog` was created above and is destroyed exactly once below; `src` and `name` outlive it.
    let outcome = unsafe {
        COMPILATIONS.fetch_add(1, Ordering::Relaxed);
        let compiled = result::compile_program(prog, options);
        let log = result::get_program_log(prog).map(|l| text(&l)).unwrap_or_default();
        let ptx = match compiled {
            Ok(()) => result::get_ptx(prog).map(|p| text(&p)).map_err(|e| rejected(format!("{e:?}"), log.clone())),
            Err(e) => Err(rejected(format!("compilation failed ({e:?})"), log.clone())),
        };
        let _ = result::destroy_program(prog);
        ptx.map(|ptx| (ptx, log))
    };
    let (ptx, log) = outcome?;
    if log.to_ascii_lowercase().contains("warning") {
        return Err(rejected("compiled with warnings (warnings are errors here)".into(), log));
    }
    Ok(CompiledModule { file: kernel.file, arch: arch.to_string(), ptx })
}
