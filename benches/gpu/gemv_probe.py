"""Times kernels/cuda/gemv.cu (compiled by CuPy's NVRTC) against PyTorch's cuBLAS on the
decode projections of Llama-3-8B (one row, bf16): achieved bandwidth of each. Run on a GPU
machine from the repository root: python3 benches/gpu/gemv_probe.py"""
import cupy as cp
import numpy as np
import torch

SHAPES = {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336), "head": (128256, 4096)}


def time_it(fn, reps=50):
    for _ in range(5):
        fn()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / reps / 1e3


# NVRTC has no libc headers: inline common.cuh with the one typedef it needs.
common = open("kernels/cuda/common.cuh").read().replace("#include <stdint.h>", "typedef unsigned int uint32_t;\n#define INFINITY __int_as_float(0x7f800000)")
src = open("kernels/cuda/gemv.cu").read().replace('#include "common.cuh"', common)
try:
    mod = cp.RawModule(code=src, options=("-std=c++17",))
    ours = mod.get_function("gemv_bf16_1")
except Exception as e:  # noqa: BLE001
    print("nvrtc compile failed:", str(e).splitlines()[0])
    ours = None
total_ours = total_torch = total_bytes = 0
for name, (n, k) in SHAPES.items():
    nbytes = n * k * 2
    w_t = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
    x_t = torch.randn(1, k, dtype=torch.bfloat16, device="cuda")
    t_torch = time_it(lambda: torch.matmul(x_t, w_t.t()))
    line = f"{name:8} {n}x{k}: cuBLAS {nbytes / t_torch / 1e12:.2f} TB/s ({t_torch * 1e6:.0f} us)"
    total_torch += t_torch
    total_bytes += nbytes
    if ours is not None:
        w = cp.asarray(w_t.view(torch.int16)).view(cp.uint16)
        x = cp.asarray(x_t.view(torch.int16)).view(cp.uint16)
        y = cp.empty(n, dtype=cp.uint16)
        grid = ((n + 7) // 8,)
        t_ours = time_it(lambda: ours(grid, (256,), (x, w, y, np.int32(n), np.int32(k))))
        total_ours += t_ours
        line += f"; ours {nbytes / t_ours / 1e12:.2f} TB/s ({t_ours * 1e6:.0f} us)"
    print(line, flush=True)
layers = 32
per_token_bytes = layers * sum(n * k * 2 for nm, (n, k) in SHAPES.items() if nm != "head") + 128256 * 4096 * 2
print(f"one decode step's matrices: {per_token_bytes / 1e9:.2f} GB")
