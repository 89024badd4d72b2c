//! With the `cuda` feature, compiles `cuda/*.cu` to PTX with nvcc (from `CUDA_ROOT`/`CUDA_HOME`
//! or PATH); the PTX is embedded in the library and JIT-compiled by the driver on first use.
//! The PTX targets `compute_$CUDA_COMPUTE_CAP` (default 80: runs on Ampere and newer).
use std::path::PathBuf;
use std::process::Command;

const KERNELS: [&str; 3] = ["residual_norm", "gemv", "decode_attention"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=cuda");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| PathBuf::from(root).join("bin/nvcc"))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    for name in KERNELS {
        let src = format!("cuda/{name}.cu");
        let ptx = out.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args([
                "--ptx",
                "-O3",
                "-std=c++17",
                &format!("-arch=compute_{cap}"),
            ])
            .arg(&src)
            .arg("-o")
            .arg(&ptx)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "running {}: {e} (set CUDA_ROOT, see .ci/cuda-toolchain)",
                    nvcc.display()
                )
            });
        assert!(status.success(), "nvcc failed on {src}");
    }
}
