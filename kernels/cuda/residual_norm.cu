// Fused residual add + RMSNorm: the block boundary of a forward pass, where unfused code makes
// two passes over the residual stream and two launches.
//
//   residual_out = round(residual + delta)
//   normed       = round(f32(residual_out) * rsqrt(mean(f32(residual_out)^2) + eps) * weight)
//
// `round` is to the storage type T. The norm reads the rounded residual, as the unfused
// path (add, store, then RMSNorm in f32) does. One block per row of `d` elements. Steering
// vectors are not added here: they enter through the decoder's residual hook on every device.
#include "common.cuh"

template <typename T>
__device__ void residual_rmsnorm(const T* __restrict__ residual, const T* __restrict__ delta,
                                 const float* __restrict__ weight, T* __restrict__ residual_out,
                                 T* __restrict__ normed, int d, float eps) {
    __shared__ float scratch[32];
    const size_t base = (size_t)blockIdx.x * d;
    float sumsq = 0.f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        const T stored = from_f32<T>(to_f32(residual[base + i]) + to_f32(delta[base + i]));
        residual_out[base + i] = stored;
        const float r = to_f32(stored);
        sumsq += r * r;
    }
    const float inv = rsqrtf(block_sum(sumsq, scratch) / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        normed[base + i] = from_f32<T>(to_f32(residual_out[base + i]) * inv * weight[i]);
    }
}

#define RESIDUAL_RMSNORM(NAME, T)                                                               \
    extern "C" __global__ void NAME(const T* residual, const T* delta, const float* weight,     \
                                    T* residual_out, T* normed, int d, float eps) {             \
        residual_rmsnorm<T>(residual, delta, weight, residual_out, normed, d, eps);             \
    }

RESIDUAL_RMSNORM(residual_rmsnorm_f32, float)
RESIDUAL_RMSNORM(residual_rmsnorm_bf16, __nv_bfloat16)
