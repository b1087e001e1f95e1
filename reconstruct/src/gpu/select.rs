//! Choosing the backends of a run from `--backend` ([`BackendChoice`], defined with the pipeline's options):
//! the CPU, every GPU, or every GPU when there is one that works and the CPU otherwise.

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::gpu::device::{driver_present, list_devices, CudaBackend};
use crate::gpu::GpuError;
use crate::pipeline::BackendChoice;

/// Opens every GPU; returns those that opened and why the others did not.
pub fn open_gpus() -> Result<(Vec<CudaBackend>, Vec<String>), GpuError> {
    if !driver_present() {
        return Err(GpuError::NoDriver);
    }
    let devices = list_devices()?;
    if devices.is_empty() {
        return Err(GpuError::NoDevice);
    }
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for d in devices {
        match CudaBackend::new(d.ordinal) {
            Ok(b) => opened.push(b),
            Err(e) => failed.push(format!("cuda:{} {}: {e}", d.ordinal, d.name)),
        }
    }
    Ok((opened, failed))
}

/// The backends for `choice` and one line saying what was chosen (and why, when `auto` fell back to the
/// CPU). `cpu` is cloned for CPU runs, so its counters are shared with the caller; its `rows_per_slab`,
/// when set, also caps the slab size of the GPUs (a host memory budget).
pub fn select_backends(choice: BackendChoice, cpu: &CpuBackend) -> Result<(Vec<Box<dyn Backend>>, String), GpuError> {
    let cpu_only = |why: String| -> (Vec<Box<dyn Backend>>, String) {
        let b = cpu.clone();
        let line = format!("backend: {}{why}", b.name());
        (vec![Box::new(b)], line)
    };
    if choice == BackendChoice::Cpu {
        return Ok(cpu_only(String::new()));
    }
    match open_gpus() {
        Ok((gpus, failed)) if !gpus.is_empty() => {
            // The caller's slab size for the CPU comes from its memory budget: keep GPUs within it too.
            let gpus: Vec<CudaBackend> = match cpu.rows_per_slab {
                0 => gpus,
                cap => gpus.into_iter().map(|g| g.limit_rows(cap)).collect(),
            };
            let names: Vec<String> = gpus.iter().map(|g| g.name()).collect();
            let mut line = format!("backend: cuda on {} GPU(s): {}", gpus.len(), names.join(", "));
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
