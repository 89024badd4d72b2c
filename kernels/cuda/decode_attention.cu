// Attention of one new token per sequence over its cached keys and values (decode), in one
// launch instead of five (q.K^T, scale, softmax, .V, the head transpose), with f32
// accumulation and an online softmax. No mask: every cached key is visible (the caller
// checks that).
//
//   q (b, heads, d) contiguous; k, v (b, kv_heads, s, d) with strides (batch_stride,
//   head_stride, d, 1), e.g. a prefix of a larger cache; out (b, heads, d).
// One block per (sequence, head); its warps take every ATT_WARPS-th key; each lane holds
// d / 32 elements of q and of the running output.
#include "common.cuh"

#define ATT_WARPS 4
#define ATT_MAX_PER_LANE 8  // head_dim <= 256

template <typename T>
__device__ void decode_attention(const T* __restrict__ q, const T* __restrict__ k,
                                 const T* __restrict__ v, T* __restrict__ out, int heads,
                                 int kv_heads, int s, int d, long long batch_stride,
                                 long long head_stride, float scale) {
    __shared__ float sm[ATT_WARPS], sl[ATT_WARPS];
    __shared__ float sacc[ATT_WARPS][ATT_MAX_PER_LANE * 32];
    const int bh = blockIdx.x, b = bh / heads, h = bh % heads;
    const int kvh = h / (heads / kv_heads);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int per_lane = d / 32;
    const T* qr = q + (size_t)bh * d;
    const T* kb = k + b * batch_stride + kvh * head_stride;
    const T* vb = v + b * batch_stride + kvh * head_stride;

    float qv[ATT_MAX_PER_LANE], acc[ATT_MAX_PER_LANE];
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; ++i) {
        qv[i] = i < per_lane ? to_f32(qr[i * 32 + lane]) * scale : 0.f;
        acc[i] = 0.f;
    }
    float m = -INFINITY, l = 0.f;
    for (int j = warp; j < s; j += ATT_WARPS) {
        const T* kr = kb + (size_t)j * d;
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_MAX_PER_LANE; ++i)
            if (i < per_lane) dot = fmaf(qv[i], to_f32(kr[i * 32 + lane]), dot);
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        const float m_new = fmaxf(m, dot);
        const float correction = expf(m - m_new);  // 0 on the first key (m = -inf)
        const float p = expf(dot - m_new);
        l = l * correction + p;
        const T* vr = vb + (size_t)j * d;
#pragma unroll
        for (int i = 0; i < ATT_MAX_PER_LANE; ++i)
            if (i < per_lane) acc[i] = fmaf(p, to_f32(vr[i * 32 + lane]), acc[i] * correction);
        m = m_new;
    }
    if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
    for (int i = 0; i < ATT_MAX_PER_LANE; ++i)
        if (i < per_lane) sacc[warp][i * 32 + lane] = acc[i];
    __syncthreads();
    float big = -INFINITY;
    for (int w = 0; w < ATT_WARPS; ++w) big = fmaxf(big, sm[w]);
    float total = 0.f;
    for (int w = 0; w < ATT_WARPS; ++w) total += sm[w] == -INFINITY ? 0.f : sl[w] * expf(sm[w] - big);
    for (int e = threadIdx.x; e < d; e += blockDim.x) {
        float sum = 0.f;
        for (int w = 0; w < ATT_WARPS; ++w)
            if (sm[w] != -INFINITY) sum += sacc[w][e] * expf(sm[w] - big);
        out[(size_t)bh * d + e] = from_f32<T>(sum / total);
    }
}

#define DECODE_ATTENTION(NAME, T)                                                                \
    extern "C" __global__ void NAME(const T* q, const T* k, const T* v, T* out, int heads,        \
                                    int kv_heads, int s, int d, long long batch_stride,           \
                                    long long head_stride, float scale) {                         \
        decode_attention<T>(q, k, v, out, heads, kv_heads, s, d, batch_stride, head_stride, scale); \
    }

DECODE_ATTENTION(decode_attention_f32, float)
DECODE_ATTENTION(decode_attention_bf16, __nv_bfloat16)
