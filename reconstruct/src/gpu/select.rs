//! Choosing the backends of a run from `--backend` ([`BackendChoice`], defined with the pipeline's options):
//! the CPU, every GPU this process may use ([`Visibility`]), or those GPUs when one works and the CPU
//! otherwise.

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::gpu::device::{device_count, driver_present, CudaBackend, GpuOptions};
use crate::gpu::visible::Visibility;
use crate::gpu::GpuError;
use crate::pipeline::BackendChoice;

/// Opens every GPU this process may use ([`Visibility`]: `CUDA_VISIBLE_DEVICES`, else the task's Slurm
/// GPUs) with the default options; returns those that opened and why the others did not. GPUs outside
/// the selection are never opened.
pub fn open_gpus() -> Result<(Vec<CudaBackend>, Vec<String>), GpuError> {
    open_gpus_with(GpuOptions::default())
}

/// [`open_gpus`] with the CUDA backend's `options` (`--gpu-dtype`, `--gpu-filter`).
pub fn open_gpus_with(options: GpuOptions) -> Result<(Vec<CudaBackend>, Vec<String>), GpuError> {
    if !driver_present() {
        return Err(GpuError::NoDriver);
    }
    let visibility = Visibility::from_process()?;
    let ordinals = visibility.ordinals(device_count()?)?;
    if ordinals.is_empty() {
        return Err(match visibility {
            Visibility::Unrestricted => GpuError::NoDevice,
            v => GpuError::NoneVisible(v.describe()),
        });
    }
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for ordinal in ordinals {
        match CudaBackend::with_options(ordinal, options) {
            Ok(b) => opened.push(b),
            Err(e) => failed.push(format!("cuda:{ordinal}: {e}")),
        }
    }
    Ok((opened, failed))
}

/// The backends for `choice` and one line saying what was chosen (and why, when `auto` fell back to the
/// CPU). `cpu` is cloned for CPU runs, so its counters are shared with the caller; its `rows_per_slab`,
/// when set, also caps the slab size of the GPUs (a host memory budget).
pub fn select_backends(choice: BackendChoice, cpu: &CpuBackend) -> Result<(Vec<Box<dyn Backend>>, String), GpuError> {
    select_backends_with(choice, cpu, GpuOptions::default())
}

/// [`select_backends`] with the CUDA backends opened with `options`; the line says the storage and the
/// filter path the GPUs run.
pub fn select_backends_with(
    choice: BackendChoice,
    cpu: &CpuBackend,
    options: GpuOptions,
) -> Result<(Vec<Box<dyn Backend>>, String), GpuError> {
    let cpu_only = |why: String| -> (Vec<Box<dyn Backend>>, String) {
        let b = cpu.clone();
        let line = format!("backend: {}{why}", b.name());
        (vec![Box::new(b)], line)
    };
    if choice == BackendChoice::Cpu {
        return Ok(cpu_only(String::new()));
    }
    match open_gpus_with(options) {
        Ok((gpus, failed)) if !gpus.is_empty() => {
            // The caller's slab size for the CPU comes from its memory budget: keep GPUs within it too.
            let gpus: Vec<CudaBackend> = match cpu.rows_per_slab {
                0 => gpus,
                cap => gpus.into_iter().map(|g| g.limit_rows(cap)).collect(),
            };
            let names: Vec<String> = gpus.iter().map(|g| g.name()).collect();
            let filter = gpus.first().map_or("", |g| g.filter_path());
            let mut line = format!(
                "backend: cuda on {} GPU(s): {} ({} storage, {filter} filter)",
                gpus.len(),
                names.join(", "),
                options.dtype.name()
            );
            if !failed.is_empty() {
                line.push_str(&format!(" (not used: {})", failed.join("; ")));
            }
            Ok((gpus.into_iter().map(|g| Box::new(g) as Box<dyn Backend>).collect(), line))
        }
        Ok((_, failed)) => {
            let why = format!("no GPU could be opened: {}", failed.join("; "));
            match choice {
                BackendChoice::Cuda => Err(GpuError::Driver(why)),
                _ => Ok(cpu_only(format!(" ({why}; using the CPU)"))),
            }
        }
        Err(e) => match choice {
            BackendChoice::Cuda => Err(e),
            _ => Ok(cpu_only(format!(" ({e}; using the CPU)"))),
        },
    }
}
