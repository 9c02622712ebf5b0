// The per-row pieces of the int8 path and its launchers' argument checks, shared by quantize.cpp (epilogues on
// a GEMM output in memory) and int8_gemm.cpp (the same epilogues on rows the GEMM has just left in a
// cache-resident buffer), so both paths compute every row with the same code and agree bit for bit.
// Quantization is symmetric per token (row): scale = max|y| / 127, q = round_half_even(y * (127 / max|y|)),
// an all-zero row gets scale 1. q is stored as uint8 q + 128 (zero point 128): the VNNI instruction multiplies
// u8 x s8.
#pragma once

#include <string>
#include <type_traits>

#include "common.h"

namespace dbf {

constexpr float kQmax = 127.0f;

// max |y[i]| over the row (NaN-free rows; a NaN row quantizes to garbage exactly like torch.round would).
template <typename T>
DBF_INLINE float row_absmax(const T* y, int64_t D) {
#if DBF_AVX512
  const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  __m512 m0 = _mm512_setzero_ps(), m1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * W <= D; i += 2 * W) {
    m0 = _mm512_max_ps(m0, _mm512_and_ps(vload(y + i), sign));
    m1 = _mm512_max_ps(m1, _mm512_and_ps(vload(y + i + W), sign));
  }
  for (; i < D; i += W) m0 = _mm512_max_ps(m0, _mm512_and_ps(vload(y + i, first_n(D - i)), sign));
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
#else
  float m = 0.0f;
  for (int64_t i = 0; i < D; ++i) m = std::max(m, std::fabs(static_cast<float>(y[i])));
  return m;
#endif
}

// acc = max(acc, |v|) over the lanes in m.
DBF_INLINE vf vabsmax(vf acc, vf v, vmask m) {
#if DBF_AVX512
  return _mm512_mask_max_ps(acc, m, acc, _mm512_abs_ps(v));
#else
  return m ? std::max(acc, std::fabs(v)) : acc;
#endif
}

// q = clamp(round_half_even(y * inv), -127, 127) + 128 with amax = max|y| known; returns the row's scale.
template <typename T>
DBF_INLINE float quantize_row_amax(const T* y, int64_t D, uint8_t* q, float amax) {
  const float inv = amax > 0.0f ? kQmax / amax : 0.0f;
#if DBF_AVX512
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), zp = _mm512_set1_epi32(128);
  for (int64_t i = 0; i < D; i += W) {
    const __mmask16 m = first_n(D - i);
    // cvtps_epi32 rounds with MXCSR's mode: round to nearest even, as torch.round.
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(vload(y + i, m), vinv));
    v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), zp);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);  // 1..255: truncation to 8 bits is exact
  }
#else
  for (int64_t i = 0; i < D; ++i) {
    float v = std::nearbyint(static_cast<float>(y[i]) * inv);
    q[i] = static_cast<uint8_t>(static_cast<int>(std::min(kQmax, std::max(-kQmax, v))) + 128);
  }
#endif
  return amax > 0.0f ? amax / kQmax : 1.0f;
}

// The same, computing max|y| first.
template <typename T>
DBF_INLINE float quantize_row(const T* y, int64_t D, uint8_t* q) {
  return quantize_row_amax(y, D, q, row_absmax(y, D));
}

// y = act(acc * xs + bias) for one row; returns max|y| (of the fp32 values: exact for a float32 y, which is
// what the fused quantization uses it for).
template <bool HAS_ACT, Act A, typename T>
DBF_INLINE float epilogue_row(const float* acc, float xs, const float* bias, int64_t F, T* y) {
  const vf vs = vset1(xs);
  vf mx = vzero();
  for (int64_t i = 0; i < F; i += W) {
    const vmask m = first_n(F - i);
    vf v = vmul(vload(acc + i, m), vs);
    if (bias != nullptr) v = vadd(v, vload(bias + i, m));
    if constexpr (HAS_ACT) v = vact<A>(v);
    vstore(y + i, v, m);
    mx = vabsmax(mx, v, m);
  }
  return hmax(mx);
}

// One row of int8_epilogue(_out): y = act(acc * xs + bias) written to `y` (a stored output row, or an
// L1-resident scratch row when the output is not kept), then quantized into q / *scale when q is given.
template <bool HAS_ACT, Act A, typename T>
DBF_INLINE void epilogue_quant_row(const float* acc, float xs, const float* bias, int64_t F, T* y, uint8_t* q,
                                   float* scale) {
  const float amax = epilogue_row<HAS_ACT, A>(acc, xs, bias, F, y);
  if (q == nullptr) return;
  // float32 rows: quantize with the max the epilogue just took (one pass less over the row); a bf16 row is
  // quantized from its rounded values, as the reference does
  if constexpr (std::is_same_v<T, float>) {
    *scale = quantize_row_amax(y, F, q, amax);
  } else {
    *scale = quantize_row(y, F, q);
  }
}

// One row of int8_epilogue_add_ln_out: y = LayerNorm(T(acc * xs + bias) + residual) (+ q / *scale). The
// rounding to T before the add is kept, so the result equals the epilogue then add_layer_norm(_quant) bit for
// bit. tmp: F elements of T, buf: F + W floats (scratch).
template <typename T, typename P>
DBF_INLINE void epilogue_add_ln_row(const float* acc, float xs, const float* bias, const T* residual, int64_t F,
                                    const P* ln_w, const P* ln_b, float eps, T* tmp, float* buf, T* y, uint8_t* q,
                                    float* scale) {
  epilogue_row<false, Act::Gelu>(acc, xs, bias, F, tmp);
  add_ln_row<T, P, true>(tmp, residual, F, ln_w, ln_b, eps, buf, y);
  if (q != nullptr) *scale = quantize_row(y, F, q);
}

// Calls f(has_act, act) with both as compile-time constants (std::integral_constant), so one template
// instantiation per activation serves a runtime choice.
template <typename Fn>
DBF_INLINE void dispatch_act(bool has_act, Act a, Fn&& f) {
  using Off = std::integral_constant<bool, false>;
  using On = std::integral_constant<bool, true>;
  if (!has_act) return f(Off{}, std::integral_constant<Act, Act::Gelu>{});
  switch (a) {
    case Act::Gelu: return f(On{}, std::integral_constant<Act, Act::Gelu>{});
    case Act::GeluNew: return f(On{}, std::integral_constant<Act, Act::GeluNew>{});
    case Act::Relu: return f(On{}, std::integral_constant<Act, Act::Relu>{});
    case Act::Silu: return f(On{}, std::integral_constant<Act, Act::Silu>{});
  }
}

// ---- argument checks of the int8 launchers (`op` names the op in the messages) --------------------------

inline void check_scale(const at::Tensor& s, int64_t N, const std::string& name) {
  check_cpu(s, name.c_str());
  TORCH_CHECK(s.dim() == 1 && s.size(0) == N && s.scalar_type() == at::kFloat, name,
              " must be a float32 tensor of shape (", N, ",), got ", s.scalar_type(), " ", s.sizes());
}

// An optional float32 bias of F elements: contiguous, or an undefined tensor when absent (see data_or_null).
inline at::Tensor check_bias(const std::optional<at::Tensor>& bias, int64_t F, const std::string& name) {
  return bias.has_value() && bias->defined() ? check_vec(*bias, F, at::kFloat, name.c_str()) : at::Tensor();
}

// t's data, or nullptr for an absent (undefined) tensor.
template <typename T>
inline T* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}
template <typename T>
inline T* data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

// An output of shape (N, F): contiguous float32 or bfloat16.
inline void check_y(const at::Tensor& y, int64_t N, int64_t F, const char* op) {
  check_cpu(y, (std::string(op) + ": y").c_str());
  TORCH_CHECK((y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16) && y.dim() == 2 &&
                  y.size(0) == N && y.size(1) == F && y.is_contiguous(),
              op, ": y must be a contiguous float32 or bfloat16 tensor of shape (", N, ", ", F, "), got ",
              y.scalar_type(), " ", y.sizes(), " strides ", y.strides());
}

// q (uint8 rows (N, F)) and scale (one per row): both or neither; returns whether they are given.
inline bool check_quant_out(const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& scale, int64_t N,
                            int64_t F, const char* op) {
  const bool has_q = q.has_value() && q->defined();
  TORCH_CHECK(has_q == (scale.has_value() && scale->defined()), op,
              ": q and scale must be given together (or neither)");
  if (has_q) {
    check_cpu(*q, (std::string(op) + ": q").c_str());
    TORCH_CHECK(q->scalar_type() == at::kByte && q->dim() == 2 && q->size(0) == N && q->size(1) == F &&
                    q->is_contiguous(),
                op, ": q must be a contiguous uint8 tensor of shape (", N, ", ", F, "), got ", q->scalar_type(),
                " ", q->sizes());
    TORCH_CHECK(scale->is_contiguous(), op, ": scale must be contiguous");
    check_scale(*scale, N, std::string(op) + ": scale");
  }
  return has_q;
}

}  // namespace dbf
