// Skinny matrix product for decode: y (m, n) = x (m, k) . W (n, k)^T with m <= 8 rows, the
// shape of every projection when a few sequences decode one token each. cuBLAS runs these as
// general GEMMs; reading W is all that matters here, so each warp streams one row of W with
// 16-byte loads and keeps the m dot products in registers (accumulated in f32).
//
// Requires k % (16 / sizeof(T)) == 0 and 16-byte aligned rows (checked on the host).
#include "common.cuh"

#define GEMV_MAX_ROWS 8
#define GEMV_WARPS 8

template <typename T> struct Vec16;  // 16 bytes of T
template <> struct Vec16<float> {
    static constexpr int N = 4;
    __device__ static void load(const float* p, float* out) {
        const float4 v = *reinterpret_cast<const float4*>(p);
        out[0] = v.x; out[1] = v.y; out[2] = v.z; out[3] = v.w;
    }
};
template <> struct Vec16<__nv_bfloat16> {
    static constexpr int N = 8;
    __device__ static void load(const __nv_bfloat16* p, float* out) {
        const uint4 v = *reinterpret_cast<const uint4*>(p);
        const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const float2 f = __bfloat1622float2(h[i]);
            out[2 * i] = f.x;
            out[2 * i + 1] = f.y;
        }
    }
};

template <typename T, int M>
__device__ void gemv(const T* __restrict__ x, const T* __restrict__ w, T* __restrict__ y, int n, int k) {
    constexpr int V = Vec16<T>::N;
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= n) return;
    const T* wr = w + (size_t)row * k;
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.f;
    float wv[V], xv[V];
#pragma unroll 2
    for (int c = lane * V; c < k; c += 32 * V) {
        Vec16<T>::load(wr + c, wv);
#pragma unroll
        for (int m = 0; m < M; ++m) {
            Vec16<T>::load(x + (size_t)m * k + c, xv);
#pragma unroll
            for (int i = 0; i < V; ++i) acc[m] = fmaf(wv[i], xv[i], acc[m]);
        }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
        float v = acc[m];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) y[(size_t)m * n + row] = from_f32<T>(v);
    }
}

// One entry point per (type, rows): the row count is a template constant so the
// accumulators stay in registers.
#define GEMV_ENTRY(NAME, T, M)                                                          \
    extern "C" __global__ void NAME##_##M(const T* x, const T* w, T* y, int n, int k) { \
        gemv<T, M>(x, w, y, n, k);                                                      \
    }
#define GEMV_ALL(NAME, T) \
    GEMV_ENTRY(NAME, T, 1) GEMV_ENTRY(NAME, T, 2) GEMV_ENTRY(NAME, T, 3) GEMV_ENTRY(NAME, T, 4) \
    GEMV_ENTRY(NAME, T, 5) GEMV_ENTRY(NAME, T, 6) GEMV_ENTRY(NAME, T, 7) GEMV_ENTRY(NAME, T, 8)

GEMV_ALL(gemv_f32, float)
GEMV_ALL(gemv_bf16, __nv_bfloat16)
