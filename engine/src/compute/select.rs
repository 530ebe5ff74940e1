//! Choosing a backend at start: `auto` prefers a hardware adapter, `gpu` insists on one,
//! `cpu` never asks.

use std::str::FromStr;
use std::sync::Arc;

use super::cpu::CpuCompute;
use super::gpu::GpuCompute;
use super::{Compute, ComputeError, Result};

/// Set to 1 to let a software adapter (lavapipe) count as a GPU; the tests do.
pub const ALLOW_SOFTWARE_ENV: &str = "TESSERA_GPU_ALLOW_SOFTWARE";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Selection {
    #[default]
    Auto,
    Gpu,
    Cpu,
}

impl FromStr for Selection {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Selection> {
        match s {
            "auto" => Ok(Selection::Auto),
            "gpu" => Ok(Selection::Gpu),
            "cpu" => Ok(Selection::Cpu),
            other => Err(ComputeError::BadInput(format!(
                "compute backend {other:?} is not one of auto, gpu, cpu"
            ))),
        }
    }
}

/// Whether `ALLOW_SOFTWARE_ENV` lets a software adapter count as a GPU.
pub fn allow_software() -> bool {
    std::env::var(ALLOW_SOFTWARE_ENV).is_ok_and(|v| v == "1" || v == "true")
}

/// Builds the backend. `Gpu` fails when no usable adapter exists; `Auto` then falls back to
/// the CPU and logs why.
pub fn select(selection: Selection) -> Result<Arc<dyn Compute>> {
    match selection {
        Selection::Cpu => Ok(Arc::new(CpuCompute::new())),
        Selection::Gpu => Ok(Arc::new(GpuCompute::new(allow_software())?)),
        Selection::Auto => match GpuCompute::new(allow_software()) {
            Ok(gpu) => Ok(Arc::new(gpu)),
            Err(e) => {
                tracing::info!("compute: using the CPU (rayon) backend: {e}");
                Ok(Arc::new(CpuCompute::new()))
            }
        },
    }
}
