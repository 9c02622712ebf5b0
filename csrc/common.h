// Shared pieces of the distilbert_fast CPU kernels: argument checks, dtype dispatch, the LayerNorm row
// routine (used by add_layer_norm and embeddings), and the launcher declarations registered in ops.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/string_view.h>

#include <optional>

#include "simd.h"

namespace dbf {

// ---- argument checks (messages name the argument) ----------------------------------------------------

inline void check_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor, got device ", t.device());
}

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, name,
              " must be float32 or bfloat16, got ", t.scalar_type());
}

// (N, D) token rows: any row stride (views such as column slices of a fused QKV output are fine), but the
// last dim must be unit-stride.
inline void check_rows(const at::Tensor& t, const char* name) {
  check_cpu(t, name);
  TORCH_CHECK(t.dim() == 2, name, " must be 2-D (tokens, dim), got shape ", t.sizes());
  TORCH_CHECK(t.size(1) <= 1 || t.stride(1) == 1, name,
              " must have a unit-stride last dim (row-strided views are fine), got strides ", t.strides());
  check_float_dtype(t, name);
}

inline int64_t row_stride(const at::Tensor& t) { return t.size(0) <= 1 ? t.size(1) : t.stride(0); }

// A (D,) parameter vector: float32 or the input's dtype. Returned contiguous.
inline at::Tensor check_vec(const at::Tensor& t, int64_t D, at::ScalarType xdtype, const char* name) {
  check_cpu(t, name);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == D, name, " must have shape (", D, ",), got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == xdtype, name,
              " must be float32 or the input's dtype ", xdtype, ", got ", t.scalar_type());
  return t.contiguous();
}

// LayerNorm affine parameters in one dtype P: the input's dtype if both are, else float32.
inline std::pair<at::Tensor, at::Tensor> ln_params(const at::Tensor& w, const at::Tensor& b, int64_t D,
                                                   at::ScalarType xdtype, const char* wname,
                                                   const char* bname) {
  at::Tensor wc = check_vec(w, D, xdtype, wname), bc = check_vec(b, D, xdtype, bname);
  if (wc.scalar_type() != bc.scalar_type()) {
    wc = wc.to(at::kFloat);
    bc = bc.to(at::kFloat);
  }
  return {wc, bc};
}

// Calls f(T{}) with T = float or c10::BFloat16 for the tensor's dtype.
template <typename F>
inline void dispatch_float(at::ScalarType st, F&& f) {
  if (st == at::kFloat) {
    f(float{});
  } else {
    f(bf16{});
  }
}

// Rows per parallel task so that a task moves ~32K elements (ATen's own grain) but never less than 1.
inline int64_t row_grain(int64_t D) { return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(D, 1)); }

// ---- LayerNorm of one row ----------------------------------------------------------------------------

// out = LayerNorm(a (+ b)) over D elements with affine w, bias. One pass over memory: the row (sum) lands
// in the fp32 scratch `buf` (L1), then mean, a second pass over buf for the centred variance (exact
// two-pass, no E[x^2]-E[x]^2 cancellation), then normalise + affine + store.
template <typename T, typename P, bool HAS_B>
DBF_INLINE void add_ln_row(const T* a, const T* b, int64_t D, const P* w, const P* bias, float eps, float* buf,
                           T* out) {
  vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
  int64_t i = 0;
  auto ld = [&](int64_t j) {
    vf v = vload(a + j);
    if constexpr (HAS_B) v = vadd(v, vload(b + j));
    return v;
  };
  for (; i + 4 * W <= D; i += 4 * W) {
    vf v0 = ld(i), v1 = ld(i + W), v2 = ld(i + 2 * W), v3 = ld(i + 3 * W);
    vstore(buf + i, v0);
    vstore(buf + i + W, v1);
    vstore(buf + i + 2 * W, v2);
    vstore(buf + i + 3 * W, v3);
    s0 = vadd(s0, v0);
    s1 = vadd(s1, v1);
    s2 = vadd(s2, v2);
    s3 = vadd(s3, v3);
  }
  for (; i + W <= D; i += W) {
    vf v = ld(i);
    vstore(buf + i, v);
    s0 = vadd(s0, v);
  }
  if (i < D) {
    vmask m = first_n(D - i);
    vf v = vload(a + i, m);
    if constexpr (HAS_B) v = vadd(v, vload(b + i, m));
    vstore(buf + i, v, m);
    s1 = vadd(s1, v);
  }
  const float mean = hsum(vadd(vadd(s0, s1), vadd(s2, s3))) / static_cast<float>(D);
  const vf vmean = vset1(mean);

  s0 = s1 = s2 = s3 = vzero();
  i = 0;
  for (; i + 4 * W <= D; i += 4 * W) {
    vf d0 = vsub(vload(buf + i), vmean), d1 = vsub(vload(buf + i + W), vmean);
    vf d2 = vsub(vload(buf + i + 2 * W), vmean), d3 = vsub(vload(buf + i + 3 * W), vmean);
    s0 = vfma(d0, d0, s0);
    s1 = vfma(d1, d1, s1);
    s2 = vfma(d2, d2, s2);
    s3 = vfma(d3, d3, s3);
  }
  for (; i + W <= D; i += W) {
    vf d = vsub(vload(buf + i), vmean);
    s0 = vfma(d, d, s0);
  }
  if (i < D) {
    vmask m = first_n(D - i);
    vf d = vsub_z(vload(buf + i, m), vmean, m);
    s1 = vfma(d, d, s1);
  }
  const float var = hsum(vadd(vadd(s0, s1), vadd(s2, s3))) / static_cast<float>(D);
  const vf vrstd = vset1(1.0f / std::sqrt(var + eps));

  i = 0;
  for (; i + W <= D; i += W) {
    vf y = vmul(vsub(vload(buf + i), vmean), vrstd);
    vstore(out + i, vfma(y, vload(w + i), vload(bias + i)));
  }
  if (i < D) {
    vmask m = first_n(D - i);
    vf y = vmul(vsub(vload(buf + i, m), vmean), vrstd);
    vstore(out + i, vfma(y, vload(w + i, m), vload(bias + i, m)), m);
  }
}

}  // namespace dbf

// ---- launchers (registered in ops.cpp) ---------------------------------------------------------------

at::Tensor add_layer_norm_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                              const at::Tensor& weight, const at::Tensor& bias, double eps);
at::Tensor bias_act_cpu(const at::Tensor& x, const at::Tensor& bias, c10::string_view act);
at::Tensor varlen_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& cu_seqlens, int64_t max_seqlen, int64_t n_heads,
                                double scale, const std::optional<at::Tensor>& head_mask);
at::Tensor embeddings_cpu(const at::Tensor& input_ids, const at::Tensor& position_ids,
                          const at::Tensor& word_weight, const at::Tensor& pos_weight,
                          const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps);
