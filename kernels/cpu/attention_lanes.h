// The query-lanes path of the CPU attention kernels (kernels/cpu/attention_lanes.cpp), with
// attention_forward's and attention_backward's contract (kernels/attention.h); they call it
// for the sizes cpu_attention_path_for names, or when asked for it.
#pragma once
#include <cstdint>

#include "kernels/attention.h"

namespace mmg::cpu {

// Elements of the saved weights (kernels/attention.h): per (b, h) and group of 8 queries, a
// [Sk, 8] tile of P.
int64_t attention_lanes_saved_weights(int64_t B, int64_t H, int64_t Sq, int64_t Sk);

// saved_weights: null, or attention_lanes_saved_weights(...) elements to write P into.
template <class T>
void attention_forward_lanes(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                             const uint8_t* query_mask, HeadRows<T> out, T* lse, int64_t B, int64_t H, int64_t Sq,
                             int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop, T* saved_weights = nullptr);

template <class T>
void attention_backward_lanes(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                              const uint8_t* query_mask, HeadRows<const T> out, HeadRows<const T> dout, const T* lse,
                              HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                              bool causal, T scale, const AttentionDropout& drop,
                              const T* saved_weights = nullptr);

}  // namespace mmg::cpu
