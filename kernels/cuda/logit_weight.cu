// Fused logit weighting for palette decoding: add lambda-weighted reward rows to the logits,
// then log-softmax and top-k, in one launch per step instead of K+4 (and one pass over the
// vocabulary to memory instead of K+3).
//
//   z[i]        = logits[i] + sum_j lambda[j] * rewards[j][i]
//   logprobs[i] = z[i] - logsumexp(z)
//   top-k       = the k largest logprobs, ties to the smaller token id, in descending order
//
// One block per row. `rewards` is (rows, n_rewards, vocab) with `reward_row_stride` elements
// between rows, 0 when all rows share one (n_rewards, vocab) table.
#include "common.cuh"
#include <limits.h>

#define MAX_TOPK 64

// (value, id) order used everywhere: larger value first, then smaller id.
__device__ __forceinline__ bool ranks_before(float av, int ai, float bv, int bi) {
    return av > bv || (av == bv && ai < bi);
}

// Block-wide best (value, id); every thread gets it.
__device__ __forceinline__ void block_best(float& v, int& id, float* sv, int* si) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, id, o);
        if (ranks_before(ov, oi, v, id)) { v = ov; id = oi; }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    if (lane == 0) { sv[warp] = v; si[warp] = id; }
    __syncthreads();
    v = (lane < warps) ? sv[lane] : -INFINITY;
    id = (lane < warps) ? si[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, id, o);
        if (ranks_before(ov, oi, v, id)) { v = ov; id = oi; }
    }
    __syncthreads();
}

template <typename T>
__device__ void logit_weight_topk(const T* __restrict__ logits, const float* __restrict__ rewards,
                                  long long reward_row_stride, const float* __restrict__ lambda,
                                  int n_rewards, int vocab, int k, float* __restrict__ logprobs,
                                  uint32_t* __restrict__ top_ids, float* __restrict__ top_logprobs) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const size_t row = blockIdx.x;
    const T* z_in = logits + row * vocab;
    const float* r = rewards + row * reward_row_stride;
    float* out = logprobs + row * vocab;

    float m = -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float z = to_f32(z_in[i]);
        for (int j = 0; j < n_rewards; ++j) z += lambda[j] * r[(size_t)j * vocab + i];
        out[i] = z;
        m = fmaxf(m, z);
    }
    m = block_max(m, sv);
    float s = 0.f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) s += expf(out[i] - m);
    const float lse = m + logf(block_sum(s, sv));

    // Each thread keeps its own sorted top-k; k rounds of a block-wide best then merge them.
    float lv[MAX_TOPK];
    int li[MAX_TOPK];
    int n = 0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = out[i] - lse;
        out[i] = v;
        if (n < k || ranks_before(v, i, lv[n - 1], li[n - 1])) {
            int p = n < k ? n++ : k - 1;
            while (p > 0 && ranks_before(v, i, lv[p - 1], li[p - 1])) {
                lv[p] = lv[p - 1];
                li[p] = li[p - 1];
                --p;
            }
            lv[p] = v;
            li[p] = i;
        }
    }
    int head = 0;
    for (int round = 0; round < k; ++round) {
        float bv = head < n ? lv[head] : -INFINITY;
        int bi = head < n ? li[head] : INT_MAX;
        const int mine = bi;
        block_best(bv, bi, sv, si);
        if (head < n && mine == bi) ++head;  // ids are unique: only the owner advances
        if (threadIdx.x == 0) {
            top_ids[row * k + round] = (uint32_t)bi;
            top_logprobs[row * k + round] = bv;
        }
    }
}

#define LOGIT_WEIGHT_TOPK(NAME, T)                                                              \
    extern "C" __global__ void NAME(const T* logits, const float* rewards,                      \
                                    long long reward_row_stride, const float* lambda,           \
                                    int n_rewards, int vocab, int k, float* logprobs,           \
                                    uint32_t* top_ids, float* top_logprobs) {                   \
        logit_weight_topk<T>(logits, rewards, reward_row_stride, lambda, n_rewards, vocab, k,   \
                             logprobs, top_ids, top_logprobs);                                   \
    }

LOGIT_WEIGHT_TOPK(logit_weight_topk_f32, float)
LOGIT_WEIGHT_TOPK(logit_weight_topk_bf16, __nv_bfloat16)
