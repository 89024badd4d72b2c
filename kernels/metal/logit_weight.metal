// Metal source of cuda/logit_weight.cu (same arithmetic and order; see that file):
//   z = logits + sum_j lambda[j] * rewards[j];  logprobs = z - logsumexp(z);  top-k of logprobs
// ties to the smaller id. One threadgroup per row; each thread keeps its own sorted top-k and
// k rounds of a threadgroup-wide best merge them.
#include <metal_stdlib>
using namespace metal;

#define MAX_TOPK 64

inline bool ranks_before(float av, int ai, float bv, int bi) {
    return av > bv || (av == bv && ai < bi);
}

inline void simd_best(thread float& v, thread int& id) {
    for (ushort o = 16; o > 0; o >>= 1) {
        const float ov = simd_shuffle_xor(v, o);
        const int oi = simd_shuffle_xor(id, o);
        if (ranks_before(ov, oi, v, id)) { v = ov; id = oi; }
    }
}

inline void threadgroup_best(thread float& v, thread int& id, threadgroup float* sv,
                             threadgroup int* si, uint simd_lane, uint simd_id, uint simd_groups) {
    simd_best(v, id);
    if (simd_lane == 0) { sv[simd_id] = v; si[simd_id] = id; }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    v = simd_lane < simd_groups ? sv[simd_lane] : -INFINITY;
    id = simd_lane < simd_groups ? si[simd_lane] : INT_MAX;
    simd_best(v, id);
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

inline float threadgroup_reduce(float v, bool is_max, threadgroup float* scratch, uint simd_lane,
                                uint simd_id, uint simd_groups) {
    v = is_max ? simd_max(v) : simd_sum(v);
    if (simd_lane == 0) scratch[simd_id] = v;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    v = simd_lane < simd_groups ? scratch[simd_lane] : (is_max ? -INFINITY : 0.0f);
    v = is_max ? simd_max(v) : simd_sum(v);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    return v;
}

template <typename T>
inline void logit_weight_topk(device const T* logits, device const float* rewards,
                              constant long& reward_row_stride, device const float* lambda,
                              constant int& n_rewards, constant int& vocab, constant int& k,
                              device float* logprobs, device uint* top_ids,
                              device float* top_logprobs, threadgroup float* sv,
                              threadgroup int* si, uint row, uint tid, uint threads,
                              uint simd_lane, uint simd_id, uint simd_groups) {
    device const T* z_in = logits + (ulong)row * vocab;
    device const float* r = rewards + (long)row * reward_row_stride;
    device float* out = logprobs + (ulong)row * vocab;
    float m = -INFINITY;
    for (int i = tid; i < vocab; i += threads) {
        float z = float(z_in[i]);
        for (int j = 0; j < n_rewards; ++j) z += lambda[j] * r[(ulong)j * vocab + i];
        out[i] = z;
        m = max(m, z);
    }
    m = threadgroup_reduce(m, true, sv, simd_lane, simd_id, simd_groups);
    float s = 0.0f;
    for (int i = tid; i < vocab; i += threads) s += exp(out[i] - m);
    const float lse = m + log(threadgroup_reduce(s, false, sv, simd_lane, simd_id, simd_groups));

    float lv[MAX_TOPK];
    int li[MAX_TOPK];
    int n = 0;
    for (int i = tid; i < vocab; i += threads) {
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
        threadgroup_best(bv, bi, sv, si, simd_lane, simd_id, simd_groups);
        if (head < n && mine == bi) ++head;
        if (tid == 0) {
            top_ids[(ulong)row * k + round] = uint(bi);
            top_logprobs[(ulong)row * k + round] = bv;
        }
    }
}

#define LOGIT_WEIGHT_TOPK(NAME, T)                                                               \
    kernel void NAME(device const T* logits [[buffer(0)]], device const float* rewards [[buffer(1)]], \
                     constant long& reward_row_stride [[buffer(2)]],                               \
                     device const float* lambda [[buffer(3)]], constant int& n_rewards [[buffer(4)]], \
                     constant int& vocab [[buffer(5)]], constant int& k [[buffer(6)]],             \
                     device float* logprobs [[buffer(7)]], device uint* top_ids [[buffer(8)]],    \
                     device float* top_logprobs [[buffer(9)]],                                     \
                     uint row [[threadgroup_position_in_grid]],                                    \
                     uint tid [[thread_position_in_threadgroup]],                                  \
                     uint threads [[threads_per_threadgroup]],                                     \
                     uint simd_lane [[thread_index_in_simdgroup]],                                 \
                     uint simd_id [[simdgroup_index_in_threadgroup]],                              \
                     uint simd_groups [[simdgroups_per_threadgroup]]) {                            \
        threadgroup float sv[32];                                                                  \
        threadgroup int si[32];                                                                    \
        logit_weight_topk<T>(logits, rewards, reward_row_stride, lambda, n_rewards, vocab, k,      \
                             logprobs, top_ids, top_logprobs, sv, si, row, tid, threads,           \
                             simd_lane, simd_id, simd_groups);                                     \
    }

LOGIT_WEIGHT_TOPK(logit_weight_topk_f32, float)
LOGIT_WEIGHT_TOPK(logit_weight_topk_bf16, bfloat)
