//! Run-time compilation of the kernels with NVRTC, once per (kernel, architecture) per process.
//!
//! NVRTC is loaded dynamically: a missing library is an error ([`CompileError::NvrtcMissing`]) saying how
//! to install it, never a panic. A kernel whose compilation log holds a warning is rejected like one that
//! does not compile, so warnings cannot accumulate unnoticed.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
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

/// One kernel compiled to PTX for one architecture.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    /// The kernel.
    pub kernel: Kernel,
    /// The architecture, e.g. `sm_80`.
    pub arch: String,
    /// PTX text.
    pub ptx: String,
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

type Cache = Mutex<HashMap<(&'static str, String), Arc<CompiledKernel>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Compiles `kernel` to PTX for `arch` (e.g. `"sm_80"`), or returns the copy compiled earlier in this
/// process.
pub fn compile(kernel: Kernel, arch: &str) -> Result<Arc<CompiledKernel>, CompileError> {
    let key = (kernel.name, arch.to_string());
    if let Some(hit) = cache().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(hit.clone());
    }
    let compiled = Arc::new(compile_uncached(kernel, arch)?);
    cache().lock().unwrap_or_else(|p| p.into_inner()).insert(key, compiled.clone());
    Ok(compiled)
}

/// Compiles every kernel of [`kernels::ALL`] for `arch`.
pub fn compile_all(arch: &str) -> Result<Vec<Arc<CompiledKernel>>, CompileError> {
    kernels::ALL.iter().map(|k| compile(*k, arch)).collect()
}

fn text(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().map(|c| *c as u8).take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn compile_uncached(kernel: Kernel, arch: &str) -> Result<CompiledKernel, CompileError> {
    if !nvrtc_present() {
        return Err(CompileError::NvrtcMissing);
    }
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
    let mut options: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    let prog = result::create_program(&src, Some(&name)).map_err(|e| rejected(format!("{e:?}"), String::new()))?;
    // SAFETY: `prog` was created above and is destroyed exactly once below; `src` and `name` outlive it.
    let outcome = unsafe {
        let compiled = result::compile_program(prog, &options);
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
    if !ptx.contains(&format!(".entry {}", kernel.name)) {
        return Err(rejected(format!("PTX has no entry point {}", kernel.name), log));
    }
    Ok(CompiledKernel { kernel, arch: arch.to_string(), ptx })
}
