// Metal source of cuda/steer_norm.cu (same arithmetic; see that file for the contract):
//   residual_out = round(residual + delta + scale * steer)
//   normed       = round(f32(residual_out) * rsqrt(mean(f32(residual_out)^2) + eps) * weight)
// One threadgroup per row. `has_steer` = 0 ignores `steer`.
#include <metal_stdlib>
using namespace metal;

// Sum over the threadgroup; every thread gets it. `scratch` holds one float per simdgroup.
inline float threadgroup_sum(float v, threadgroup float* scratch, uint tid, uint simd_lane,
                             uint simd_id, uint simd_groups) {
    v = simd_sum(v);
    if (simd_lane == 0) scratch[simd_id] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    v = simd_lane < simd_groups ? scratch[simd_lane] : 0.0f;
    v = simd_sum(v);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return v;
}

template <typename T>
inline void residual_steer_rmsnorm(device const T* residual, device const T* delta,
                                   device const float* steer, constant uint& has_steer,
                                   constant float& scale, device const float* weight,
                                   device T* residual_out, device T* normed, constant uint& d,
                                   constant float& eps, threadgroup float* scratch, uint row,
                                   uint tid, uint threads, uint simd_lane, uint simd_id,
                                   uint simd_groups) {
    const ulong base = (ulong)row * d;
    float sumsq = 0.0f;
    for (uint i = tid; i < d; i += threads) {
        float h = float(residual[base + i]) + float(delta[base + i]);
        if (has_steer != 0) h += scale * steer[i];
        const T stored = T(h);
        residual_out[base + i] = stored;
        const float r = float(stored);
        sumsq += r * r;
    }
    const float inv = rsqrt(threadgroup_sum(sumsq, scratch, tid, simd_lane, simd_id, simd_groups) / float(d) + eps);
    for (uint i = tid; i < d; i += threads) {
        normed[base + i] = T(float(residual_out[base + i]) * inv * weight[i]);
    }
}

#define RESIDUAL_STEER_RMSNORM(NAME, T)                                                         \
    kernel void NAME(device const T* residual [[buffer(0)]], device const T* delta [[buffer(1)]], \
                     device const float* steer [[buffer(2)]], constant uint& has_steer [[buffer(3)]], \
                     constant float& scale [[buffer(4)]], device const float* weight [[buffer(5)]], \
                     device T* residual_out [[buffer(6)]], device T* normed [[buffer(7)]],       \
                     constant uint& d [[buffer(8)]], constant float& eps [[buffer(9)]],          \
                     uint row [[threadgroup_position_in_grid]],                                   \
                     uint tid [[thread_position_in_threadgroup]],                                 \
                     uint threads [[threads_per_threadgroup]],                                    \
                     uint simd_lane [[thread_index_in_simdgroup]],                                \
                     uint simd_id [[simdgroup_index_in_threadgroup]],                             \
                     uint simd_groups [[simdgroups_per_threadgroup]]) {                           \
        threadgroup float scratch[32];                                                            \
        residual_steer_rmsnorm<T>(residual, delta, steer, has_steer, scale, weight, residual_out, \
                                  normed, d, eps, scratch, row, tid, threads, simd_lane, simd_id, \
                                  simd_groups);                                                   \
    }

RESIDUAL_STEER_RMSNORM(residual_steer_rmsnorm_f32, float)
RESIDUAL_STEER_RMSNORM(residual_steer_rmsnorm_bf16, bfloat)
