// Shared pieces of the distilbert_fast CPU kernels: argument checks, dtype dispatch, the LayerNorm row
// routine (used by add_layer_norm and embeddings), and the launcher declarations registered in ops.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/string_view.h>

#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

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
// The activation named `act` ("gelu", "gelu_new", "relu", "silu"; also "none" where allow_none, which sets
// has_act false). `op` names the caller in the error.
inline Act parse_act(const char* op, c10::string_view act, bool allow_none, bool& has_act) {
  has_act = true;
  if (act == "gelu") return Act::Gelu;
  if (act == "gelu_new") return Act::GeluNew;
  if (act == "relu") return Act::Relu;
  if (act == "silu") return Act::Silu;
  TORCH_CHECK(allow_none && act == "none", op, ": act must be one of ", allow_none ? "'none', " : "",
              "'gelu', 'gelu_new', 'relu', 'silu', got '", act, "'");
  has_act = false;
  return Act::Gelu;
}

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

// out = LayerNorm(a (+ b)) over D elements with affine w, bias, all in fp32. One pass over memory: the first
// pass pulls the row(s) into L1 and sums them (into the fp32 scratch `buf` when there is an add or a
// conversion to do; a plain fp32 row is simply re-read from L1, measured ~10% faster), the second computes
// the centred variance from L1 (exact two-pass, no E[x^2]-E[x]^2 cancellation), the third normalises,
// applies the affine and stores.
template <typename T, typename P, bool HAS_B>
DBF_INLINE void add_ln_row(const T* a, const T* b, int64_t D, const P* w, const P* bias, float eps, float* buf,
                           T* out) {
  constexpr bool kReread = std::is_same_v<T, float> && !HAS_B;
  auto ld = [&](int64_t j) {
    vf v = vload(a + j);
    if constexpr (HAS_B) v = vadd(v, vload(b + j));
    if constexpr (!kReread) vstore(buf + j, v);
    return v;
  };
  const int64_t tail = D % W, Dv = D - tail;
  const vmask mt = first_n(tail);

  vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
  int64_t i = 0;
  for (; i + 4 * W <= Dv; i += 4 * W) {
    s0 = vadd(s0, ld(i));
    s1 = vadd(s1, ld(i + W));
    s2 = vadd(s2, ld(i + 2 * W));
    s3 = vadd(s3, ld(i + 3 * W));
  }
  for (; i < Dv; i += W) s0 = vadd(s0, ld(i));
  if (tail) {
    vf v = vload(a + Dv, mt);
    if constexpr (HAS_B) v = vadd(v, vload(b + Dv, mt));
    if constexpr (!kReread) vstore(buf + Dv, v, mt);
    s1 = vadd(s1, v);
  }
  const float mean = hsum(vadd(vadd(s0, s1), vadd(s2, s3))) / static_cast<float>(D);
  const vf vmean = vset1(mean);
  const float* src;
  if constexpr (kReread) src = a; else src = buf;

  s0 = s1 = s2 = s3 = vzero();
  i = 0;
  for (; i + 4 * W <= Dv; i += 4 * W) {
    vf d0 = vsub(vload(src + i), vmean), d1 = vsub(vload(src + i + W), vmean);
    vf d2 = vsub(vload(src + i + 2 * W), vmean), d3 = vsub(vload(src + i + 3 * W), vmean);
    s0 = vfma(d0, d0, s0);
    s1 = vfma(d1, d1, s1);
    s2 = vfma(d2, d2, s2);
    s3 = vfma(d3, d3, s3);
  }
  for (; i < Dv; i += W) {
    vf d = vsub(vload(src + i), vmean);
    s0 = vfma(d, d, s0);
  }
  if (tail) {
    vf d = vsub_z(vload(src + Dv, mt), vmean, mt);
    s1 = vfma(d, d, s1);
  }
  const float var = hsum(vadd(vadd(s0, s1), vadd(s2, s3))) / static_cast<float>(D);
  // A variance that overflows fp32 (|x| around 1e18 and up) has no meaningful normalisation: 1/sqrt(inf) = 0
  // would silently turn the row into the bias. Return NaN instead, as torch does once its statistics
  // overflow; non-finite inputs already propagate through the mean.
  const float rstd = std::isfinite(var) ? 1.0f / std::sqrt(var + eps) : std::numeric_limits<float>::quiet_NaN();
  const vf vrstd = vset1(rstd);

  for (i = 0; i < Dv; i += W) {
    vf y = vmul(vsub(vload(src + i), vmean), vrstd);
    vstore(out + i, vfma(y, vload(w + i), vload(bias + i)));
  }
  if (tail) {
    vf y = vmul(vsub(vload(src + Dv, mt), vmean), vrstd);
    vstore(out + Dv, vfma(y, vload(w + Dv, mt), vload(bias + Dv, mt)), mt);
  }
}

}  // namespace dbf

// ---- launchers (registered in ops.cpp) ---------------------------------------------------------------

at::Tensor add_layer_norm_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                              const at::Tensor& weight, const at::Tensor& bias, double eps);
at::Tensor bias_act_cpu(const at::Tensor& x, const at::Tensor& bias, c10::string_view act);
at::Tensor varlen_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& cu_seqlens, int64_t max_seqlen, int64_t n_heads,
                                double scale, const std::optional<at::Tensor>& head_mask,
                                const std::optional<at::Tensor>& seqused);
at::Tensor embeddings_cpu(const at::Tensor& input_ids, const at::Tensor& position_ids,
                          const at::Tensor& word_weight, const at::Tensor& pos_weight,
                          const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps);
int64_t weights_fingerprint_cpu(at::TensorList tensors, int64_t samples);
// fp32 GEMM on an MKL-packed weight (mkl_gemm.cpp).
bool mkl_sgemm_available_cpu();
at::Tensor mkl_sgemm_pack_cpu(const at::Tensor& weight);
at::Tensor mkl_sgemm_packed_cpu(const at::Tensor& x_in, const at::Tensor& packed, int64_t out_features,
                                const std::optional<at::Tensor>& bias, c10::string_view act);
