//! ethos-model: tensors and models on candle. Loading (GGUF, safetensors, hub), tokenizer and
//! chat template, the decoder skeleton with its residual hook, the KV cache and scoring.

pub(crate) mod arch;
pub mod budget;
pub(crate) mod cache;
pub mod chat;
pub mod config;
/// Our CPU kernels; public for the GEMM benchmark (`benches/gemm.rs`), not an API.
#[doc(hidden)]
pub mod cpu;
pub(crate) mod decoder;
pub mod device;
pub mod error;
pub mod fetch;
pub mod files;
pub mod hooks;
pub mod loader;
pub mod logprobs;
pub mod lora;
pub(crate) mod nn;
pub(crate) mod ops;
pub mod prefix;
pub mod scoring;
pub(crate) mod spm;
pub mod tokenizer;
pub(crate) mod weights;

pub use cache::{gather_rows, KvCache, KvShape};
pub use candle_core::{DType, Device, Tensor};
pub use decoder::{AllLogits, Decoder, Gathered, LastLogits, TargetScore};
pub use error::{Error, Result};
pub use loader::{load, LoadOptions, Model, ModelSpec};
pub use nn::moe::{route as route_experts, RouterConfig, ScoringFunc, TopkMethod};
pub use ops::linear::Linear;
pub use ops::{Kernels, Numerics, QuantGemm};
pub use weights::dummy::PRESETS as DUMMY_PRESETS;
pub use weights::gguf::{check_tensor_layout as check_gguf_tensors, GgufFile};
pub use weights::gguf_header::check as check_gguf_header;

/// Fixes the number of CPU worker threads before any pool starts: `n`, else
/// `RAYON_NUM_THREADS`, else every available core, at most the cores (`capped_threads`).
/// Call it once, early. Returns a note when a request was capped. Besides sizing the pools,
/// exporting the count matters for speed: without it candle looks up the physical core count
/// in /proc/cpuinfo on every matrix product.
pub fn init_threads(n: Option<usize>) -> Option<String> {
    let from_env = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&v| v > 0);
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get());
    let (n, note) = capped_threads(n.or(from_env).unwrap_or(cores), cores);
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    note
}

/// The worker threads for a request of `n` on `cores` cores: between 1 and the cores, with a
/// note when capped. More threads than cores only take turns on them (spinning pools then
/// crawl), and each holds a stack and scratch buffers.
pub fn capped_threads(n: usize, cores: usize) -> (usize, Option<String>) {
    let cores = cores.max(1);
    if n > cores {
        let note = format!("threads: {n} requested, {cores} used (the machine's cores)");
        (cores, Some(note))
    } else {
        (n.max(1), None)
    }
}

/// Parses `--device cpu|cuda[:N]|metal[:N]`; a device not compiled in is an error naming it.
pub fn parse_device(name: &str) -> Result<Device> {
    let (kind, ordinal) = match name.split_once(':') {
        Some((k, o)) => (
            k,
            o.parse::<usize>()
                .map_err(|_| Error::Msg(format!("device `{name}`: `{o}` is not an ordinal")))?,
        ),
        None => (name, 0),
    };
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            let device = Device::new_cuda(ordinal).map_err(|e| {
                Error::Unsupported(format!("device `{name}`: {}", error::one_line(&e)))
            })?;
            #[cfg(feature = "cuda")]
            if let Device::Cuda(d) = &device {
                // Every tensor of a device lives on its one stream, where work is ordered
                // anyway, so the per-tensor events that order work across streams are pure
                // overhead: several driver calls per op, which dominates decode.
                // SAFETY: ethos never uses a second stream, so candle's obligations (no use,
                // write or free of a tensor racing across streams) hold without the events.
                unsafe { d.disable_event_tracking() };
            }
            Ok(device)
        }
        "metal" => Device::new_metal(ordinal)
            .map_err(|e| Error::Unsupported(format!("device `{name}`: {}", error::one_line(&e)))),
        other => Err(Error::Unsupported(format!(
            "device `{other}` (expected cpu, cuda or metal)"
        ))),
    }
}

/// Parses `--dtype f32|bf16|f16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(Error::Unsupported(format!(
            "dtype `{other}` (expected f32, bf16 or f16)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn threads_are_capped_at_the_cores_with_a_note() {
        assert_eq!(super::capped_threads(2, 8), (2, None));
        let (n, note) = super::capped_threads(100_000, 2);
        assert_eq!(n, 2);
        assert!(note.unwrap().contains("100000 requested, 2 used"));
        assert_eq!(super::capped_threads(0, 4).0, 1);
    }
}
