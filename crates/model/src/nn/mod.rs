//! The parts a decoder block is assembled from.
pub mod attention;
pub mod experts;
pub mod linear;
pub mod mla;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rope;

/// Whether CUDA forward passes take our own kernels (`ethos_kernels`: the fused block boundary,
/// the decode matrix-vector product); `ETHOS_FUSED_KERNELS=0` turns them off, for measuring
/// what they save. CPU results never depend on it.
pub(crate) fn own_cuda_kernels() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("ETHOS_FUSED_KERNELS").map_or(true, |v| v != "0"))
}

/// The f32 elements of a CPU tensor's storage from its layout's start (our kernels read
/// tensors in place rather than copying them out).
pub(crate) fn cpu_f32<'a>(
    g: &'a candle_core::StorageRef<'_>,
    l: &candle_core::Layout,
) -> crate::error::Result<&'a [f32]> {
    match &**g {
        candle_core::Storage::Cpu(c) => Ok(&c.as_slice::<f32>()?[l.start_offset()..]),
        _ => Err(crate::error::Error::Msg(
            "this CPU kernel needs CPU tensors".into(),
        )),
    }
}
