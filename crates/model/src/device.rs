//! What a benchmark reports about the device it ran on: name and memory (CUDA through the
//! driver; the CPU from /proc), and the measured device-to-device copy bandwidth, the ceiling
//! that memory-bound decode is compared with.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DeviceInfo {
    pub name: String,
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// Stream-ordered allocation (memory pools): without it every free synchronises the device.
    pub async_alloc: Option<bool>,
}

pub fn device_info(device: &Device) -> DeviceInfo {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let stream = d.cuda_stream();
            let ctx = stream.context();
            let (free, total) = ctx.mem_get_info().unwrap_or((0, 0));
            DeviceInfo {
                name: ctx.name().unwrap_or_else(|_| "CUDA device".into()),
                total_bytes: Some(total as u64),
                free_bytes: Some(free as u64),
                async_alloc: Some(ctx.has_async_alloc()),
            }
        }
        Device::Cpu => DeviceInfo {
            name: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split(':').nth(1))
                        .map(|n| n.trim().to_string())
                })
                .unwrap_or_else(|| "CPU".into()),
            ..Default::default()
        },
        other => DeviceInfo {
            name: format!("{:?}", other.location()),
            ..Default::default()
        },
    }
}

/// The datasheet memory bandwidth of known GPUs, bytes/s (for the bound; the measured copy
/// bandwidth is reported beside it).
pub fn nominal_bandwidth(name: &str) -> Option<f64> {
    let n = name.to_ascii_uppercase();
    let tb = |x: f64| Some(x * 1e12);
    if n.contains("H200") {
        tb(4.8)
    } else if n.contains("H100") && n.contains("PCIE") {
        tb(2.0)
    } else if n.contains("H100") {
        tb(3.35)
    } else if n.contains("A100") && n.contains("80GB") {
        tb(2.039)
    } else if n.contains("A100") {
        tb(1.555)
    } else if n.contains("L4") {
        tb(0.3)
    } else {
        None
    }
}

/// Device-to-device copy bandwidth, counting bytes read plus written: the best of `reps`
/// copies of `bytes`.
pub fn copy_bandwidth(device: &Device, bytes: usize, reps: usize) -> Result<f64> {
    let src = Tensor::zeros(bytes / 4, DType::F32, device)?;
    let warm = src.copy()?;
    device.synchronize()?;
    drop(warm);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let c = src.copy()?;
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(2.0 * bytes as f64 / best)
}
