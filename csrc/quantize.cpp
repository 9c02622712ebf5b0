// int8 dynamic quantization fused into the kernels that produce the activations:
//   quantize_rows        x -> (q, scale)                                (attention context rows)
//   add_layer_norm_quant LayerNorm(x + residual) -> (y, q, scale)       (every residual LayerNorm)
//   embeddings_quant     LayerNorm(word[ids] + pos[pos]) -> (y, q, scale)
//   int8_epilogue        acc (fp32 = int32 sum * w_scale) -> y = act(acc * x_scale + bias) (+ q, scale)
// Quantization is symmetric per token (row): scale = max|y| / 127, q = round_half_even(y * (127 / max|y|)),
// an all-zero row gets scale 1. q is stored as uint8 q + 128 (zero point 128): oneDNN's VNNI int8 GEMM
// multiplies u8 x s8; an s8 source measured orders of magnitude slower here (a reference fallback). The row is quantized right after it is written, while it is still in L1:
// no second pass over memory. distilbert_fast/ops/int8/reference.py is the same math in PyTorch.
#include "quantize.h"

#include <string>

#include "common.h"

namespace dbf {
namespace {

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
DBF_INLINE float quantize_row_amax(const T* y, int64_t D, uint8_t* q, float amax);

// The same, computing max|y| first.
template <typename T>
DBF_INLINE float quantize_row(const T* y, int64_t D, uint8_t* q) {
  return quantize_row_amax(y, D, q, row_absmax(y, D));
}

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

// y == nullptr (with q): the rows are only quantized, never stored. The FFN's GELU output feeds nothing but the
// next int8 GEMM, so writing it (50 MB per layer at 32x128 in float32, 25 MB in bf16) is pure memory traffic: each
// row goes through an L1-resident buffer of T instead (measured on the 2-core Xeon: FFN-in GEMM + epilogue 19.4 ->
// 18.6 ms in float32).
template <bool HAS_ACT, Act A, typename T>
void epilogue_kernel(const float* acc, int64_t lda, const float* xs, const float* bias, int64_t N, int64_t F, T* y,
                     uint8_t* q, float* qs) {
  at::parallel_for(0, N, row_grain(F), [&](int64_t begin, int64_t end) {
    std::vector<T> row(y == nullptr ? F : 0);
    for (int64_t n = begin; n < end; ++n) {
      T* yr = y == nullptr ? row.data() : y + n * F;
      const float amax = epilogue_row<HAS_ACT, A>(acc + n * lda, xs[n], bias, F, yr);
      if (q == nullptr) continue;
      // float32 rows: quantize with the max the epilogue just took (one pass less over the row); a bf16 row
      // is quantized from its rounded values, as the reference does
      if constexpr (std::is_same_v<T, float>) {
        qs[n] = quantize_row_amax(yr, F, q + n * F, amax);
      } else {
        qs[n] = quantize_row(yr, F, q + n * F);
      }
    }
  });
}

void check_scale(const at::Tensor& s, int64_t N, const char* name) {
  check_cpu(s, name);
  TORCH_CHECK(s.dim() == 1 && s.size(0) == N && s.scalar_type() == at::kFloat, name,
              " must be a float32 tensor of shape (", N, ",), got ", s.scalar_type(), " ", s.sizes());
}

// The epilogue ops' shared argument checks; `op` names the op in the messages.
void check_acc(const at::Tensor& acc, const char* op) {
  check_cpu(acc, (std::string(op) + ": acc").c_str());
  TORCH_CHECK(acc.dim() == 2 && acc.scalar_type() == at::kFloat && (acc.size(1) <= 1 || acc.stride(1) == 1), op,
              ": acc must be a 2-D float32 tensor with a unit-stride last dim, got ", acc.scalar_type(), " of shape ",
              acc.sizes(), " strides ", acc.strides());
}

void check_y(const at::Tensor& y, const at::Tensor& acc, const char* op) {
  check_cpu(y, (std::string(op) + ": y").c_str());
  TORCH_CHECK((y.scalar_type() == at::kFloat || y.scalar_type() == at::kBFloat16) && y.sizes() == acc.sizes() &&
                  y.is_contiguous(),
              op, ": y must be a contiguous float32 or bfloat16 tensor of acc's shape ", acc.sizes(), ", got ",
              y.scalar_type(), " ", y.sizes(), " strides ", y.strides());
}

// q (uint8 rows) and scale (one per row): both or neither; returns whether they are given.
bool check_quant_out(const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& scale, const at::Tensor& acc,
                     const char* op) {
  const bool has_q = q.has_value() && q->defined();
  TORCH_CHECK(has_q == (scale.has_value() && scale->defined()), op,
              ": q and scale must be given together (or neither)");
  if (has_q) {
    check_cpu(*q, (std::string(op) + ": q").c_str());
    TORCH_CHECK(q->scalar_type() == at::kByte && q->sizes() == acc.sizes() && q->is_contiguous(), op,
                ": q must be a contiguous uint8 tensor of acc's shape ", acc.sizes(), ", got ", q->scalar_type(), " ",
                q->sizes());
    TORCH_CHECK(scale->is_contiguous(), op, ": scale must be contiguous");
    check_scale(*scale, acc.size(0), (std::string(op) + ": scale").c_str());
  }
  return has_q;
}

}  // namespace
}  // namespace dbf

std::tuple<at::Tensor, at::Tensor> quantize_rows_cpu(const at::Tensor& x) {
  using namespace dbf;
  check_rows(x, "quantize_rows: x");
  const int64_t N = x.size(0), D = x.size(1);
  at::Tensor q = at::empty({N, D}, x.options().dtype(at::kByte));
  at::Tensor s = at::empty({N}, x.options().dtype(at::kFloat));
  if (N == 0) return {q, s};
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_ptr<T>();
    const int64_t ld = row_stride(x);
    uint8_t* qp = q.data_ptr<uint8_t>();
    float* sp = s.data_ptr<float>();
    at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) sp[n] = quantize_row(xp + n * ld, D, qp + n * D);
    });
  });
  return {q, s};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_layer_norm_quant_cpu(const at::Tensor& x,
                                                                        const std::optional<at::Tensor>& residual,
                                                                        const at::Tensor& weight,
                                                                        const at::Tensor& bias, double eps) {
  using namespace dbf;
  check_rows(x, "add_layer_norm_quant: x");
  const int64_t N = x.size(0), D = x.size(1);
  TORCH_CHECK(D > 0, "add_layer_norm_quant: x must have a non-empty last dim, got shape ", x.sizes());
  const bool has_r = residual.has_value() && residual->defined();
  if (has_r) {
    check_rows(*residual, "add_layer_norm_quant: residual");
    TORCH_CHECK(residual->sizes() == x.sizes() && residual->scalar_type() == x.scalar_type(),
                "add_layer_norm_quant: residual must have x's shape ", x.sizes(), " and dtype ", x.scalar_type(),
                ", got ", residual->sizes(), " ", residual->scalar_type());
  }
  TORCH_CHECK(eps >= 0.0, "add_layer_norm_quant: eps must be >= 0, got ", eps);
  auto [w, b] = ln_params(weight, bias, D, x.scalar_type(), "add_layer_norm_quant: weight",
                          "add_layer_norm_quant: bias");
  at::Tensor y = at::empty({N, D}, x.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor q = at::empty({N, D}, x.options().dtype(at::kByte));
  at::Tensor s = at::empty({N}, x.options().dtype(at::kFloat));
  if (N == 0) return {y, q, s};
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.data_ptr<T>();
    const int64_t ldx = row_stride(x);
    const T* rp = has_r ? residual->data_ptr<T>() : nullptr;
    const int64_t ldr = has_r ? row_stride(*residual) : 0;
    T* yp = y.data_ptr<T>();
    uint8_t* qp = q.data_ptr<uint8_t>();
    float* sp = s.data_ptr<float>();
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      const P* wp = w.data_ptr<P>();
      const P* bp = b.data_ptr<P>();
      at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
        std::vector<float> buf(D + W);
        for (int64_t n = begin; n < end; ++n) {
          if (rp != nullptr) {
            add_ln_row<T, P, true>(xp + n * ldx, rp + n * ldr, D, wp, bp, static_cast<float>(eps), buf.data(),
                                   yp + n * D);
          } else {
            add_ln_row<T, P, false>(xp + n * ldx, nullptr, D, wp, bp, static_cast<float>(eps), buf.data(),
                                    yp + n * D);
          }
          sp[n] = quantize_row(yp + n * D, D, qp + n * D);  // the row just written, from L1
        }
      });
    };
    if (w.scalar_type() == at::kFloat) run(float{}); else run(T{});
  });
  return {y, q, s};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> embeddings_quant_cpu(
    const at::Tensor& input_ids, const at::Tensor& position_ids, const at::Tensor& word_weight,
    const at::Tensor& pos_weight, const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps) {
  // The embeddings kernel validates every argument (index ranges included); quantizing its rows right
  // after would be a second pass, so the gather + LayerNorm + quantize run here row by row instead.
  using namespace dbf;
  at::Tensor y = embeddings_cpu(input_ids.slice(0, 0, 0), position_ids.slice(0, 0, 0), word_weight, pos_weight,
                                ln_weight, ln_bias, eps);  // argument checks only (no rows)
  TORCH_CHECK(input_ids.dim() == 1 && position_ids.dim() == 1 && input_ids.size(0) == position_ids.size(0),
              "embeddings_quant: input_ids and position_ids must be 1-D of equal length, got ", input_ids.sizes(),
              " and ", position_ids.sizes());
  const at::Tensor ids = input_ids.contiguous(), pos = position_ids.contiguous();
  const int64_t N = ids.size(0), D = word_weight.size(1);
  const int64_t* ip = ids.data_ptr<int64_t>();
  const int64_t* pp = pos.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    TORCH_CHECK(ip[n] >= 0 && ip[n] < word_weight.size(0), "embeddings_quant: input_ids[", n, "] = ", ip[n],
                " is out of range [0, ", word_weight.size(0), ")");
    TORCH_CHECK(pp[n] >= 0 && pp[n] < pos_weight.size(0), "embeddings_quant: position_ids[", n, "] = ", pp[n],
                " is out of range [0, ", pos_weight.size(0), ")");
  }
  y = at::empty({N, D}, word_weight.options().memory_format(at::MemoryFormat::Contiguous));
  at::Tensor q = at::empty({N, D}, word_weight.options().dtype(at::kByte));
  at::Tensor s = at::empty({N}, word_weight.options().dtype(at::kFloat));
  if (N == 0) return {y, q, s};
  auto [w, b] = ln_params(ln_weight, ln_bias, D, word_weight.scalar_type(), "embeddings_quant: ln_weight",
                          "embeddings_quant: ln_bias");
  dispatch_float(word_weight.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* word = word_weight.data_ptr<T>();
    const T* posw = pos_weight.data_ptr<T>();
    const int64_t ldw = row_stride(word_weight), ldp = row_stride(pos_weight);
    T* yp = y.data_ptr<T>();
    uint8_t* qp = q.data_ptr<uint8_t>();
    float* sp = s.data_ptr<float>();
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      const P* wp = w.data_ptr<P>();
      const P* bp = b.data_ptr<P>();
      at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
        std::vector<float> buf(D + W);
        for (int64_t n = begin; n < end; ++n) {
          add_ln_row<T, P, true>(word + ip[n] * ldw, posw + pp[n] * ldp, D, wp, bp, static_cast<float>(eps),
                                 buf.data(), yp + n * D);
          sp[n] = quantize_row(yp + n * D, D, qp + n * D);
        }
      });
    };
    if (w.scalar_type() == at::kFloat) run(float{}); else run(T{});
  });
  return {y, q, s};
}

namespace {
template <typename T>
void run_epilogue(bool has_act, dbf::Act a, const float* ap, int64_t lda, const float* xsp, const float* bp,
                  int64_t N, int64_t F, T* yp, uint8_t* qp, float* sp) {
  using namespace dbf;
  if (!has_act) return epilogue_kernel<false, Act::Gelu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
  switch (a) {
    case Act::Gelu: return epilogue_kernel<true, Act::Gelu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
    case Act::GeluNew: return epilogue_kernel<true, Act::GeluNew>(ap, lda, xsp, bp, N, F, yp, qp, sp);
    case Act::Relu: return epilogue_kernel<true, Act::Relu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
    case Act::Silu: return epilogue_kernel<true, Act::Silu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
  }
}
}  // namespace

void int8_epilogue_out_cpu(const at::Tensor& acc, const at::Tensor& x_scale, const std::optional<at::Tensor>& bias,
                           c10::string_view act, const std::optional<at::Tensor>& y_opt,
                           const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& scale,
                           std::optional<at::ScalarType> rows_dtype) {
  using namespace dbf;
  constexpr const char* op = "int8_epilogue_out";
  check_acc(acc, op);
  const int64_t N = acc.size(0), F = acc.size(1);
  check_scale(x_scale, N, "int8_epilogue_out: x_scale");
  const bool has_y = y_opt.has_value() && y_opt->defined();
  const bool has_q = check_quant_out(q, scale, acc, op);
  TORCH_CHECK(has_y || has_q, "int8_epilogue_out: y may be omitted only when q and scale are given");
  if (has_y) check_y(*y_opt, acc, op);
  // the dtype of the rows that are quantized: y's, or without y rows_dtype (default float32)
  const at::ScalarType rows = has_y ? y_opt->scalar_type() : rows_dtype.value_or(at::kFloat);
  TORCH_CHECK(rows == at::kFloat || rows == at::kBFloat16,
              "int8_epilogue_out: rows_dtype must be float32 or bfloat16, got ", rows);
  TORCH_CHECK(!has_y || !rows_dtype.has_value() || *rows_dtype == rows, "int8_epilogue_out: rows_dtype (",
              *rows_dtype, ") must be y's dtype (", rows, ") when y is given");
  const bool has_b = bias.has_value() && bias->defined();
  at::Tensor b;
  if (has_b) b = check_vec(*bias, F, at::kFloat, "int8_epilogue_out: bias");
  bool has_act;
  const Act a = parse_act("int8_epilogue_out", act, true, has_act);
  if (N == 0 || F == 0) return;
  const at::Tensor xs = x_scale.contiguous();
  // no y: the rows go through a thread-local buffer of the rows dtype and are quantized from those values, as
  // from a stored y (bf16: the rounded values, as the reference quantizes them)
  dispatch_float(rows, [&](auto tag) {
    using T = decltype(tag);
    run_epilogue<T>(has_act, a, acc.data_ptr<float>(), row_stride(acc), xs.data_ptr<float>(),
                    has_b ? b.data_ptr<float>() : nullptr, N, F, has_y ? y_opt->data_ptr<T>() : nullptr,
                    has_q ? q->data_ptr<uint8_t>() : nullptr, has_q ? scale->data_ptr<float>() : nullptr);
  });
}

void int8_epilogue_add_ln_out_cpu(const at::Tensor& acc, const at::Tensor& x_scale,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                  const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps, const at::Tensor& y,
                                  const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& scale) {
  // y = LayerNorm(T(acc * x_scale + bias) + residual) (+ its rows quantized): the attention-output and FFN-output
  // GEMMs' epilogue fused with the residual LayerNorm that follows them, row by row while the row is in L1. The
  // unfused path writes the GEMM's output rows and re-reads them for the LayerNorm; the rounding to T before the
  // add is kept, so the result equals int8_epilogue then add_layer_norm(_quant) bit for bit.
  using namespace dbf;
  constexpr const char* op = "int8_epilogue_add_ln_out";
  check_acc(acc, op);
  const int64_t N = acc.size(0), F = acc.size(1);
  check_scale(x_scale, N, "int8_epilogue_add_ln_out: x_scale");
  check_y(y, acc, op);
  check_rows(residual, "int8_epilogue_add_ln_out: residual");
  TORCH_CHECK(residual.sizes() == acc.sizes() && residual.scalar_type() == y.scalar_type(),
              "int8_epilogue_add_ln_out: residual must have acc's shape ", acc.sizes(), " and y's dtype ",
              y.scalar_type(), ", got ", residual.sizes(), " ", residual.scalar_type());
  const bool has_q = check_quant_out(q, scale, acc, op);
  TORCH_CHECK(eps >= 0.0, "int8_epilogue_add_ln_out: eps must be >= 0, got ", eps);
  const bool has_b = bias.has_value() && bias->defined();
  at::Tensor b;
  if (has_b) b = check_vec(*bias, F, at::kFloat, "int8_epilogue_add_ln_out: bias");
  auto [lw, lb] = ln_params(ln_weight, ln_bias, F, y.scalar_type(), "int8_epilogue_add_ln_out: ln_weight",
                            "int8_epilogue_add_ln_out: ln_bias");
  if (N == 0 || F == 0) return;
  const at::Tensor xs = x_scale.contiguous();
  dispatch_float(y.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const float* ap = acc.data_ptr<float>();
    const int64_t lda = row_stride(acc), ldr = row_stride(residual);
    const float* xsp = xs.data_ptr<float>();
    const float* bp = has_b ? b.data_ptr<float>() : nullptr;
    const T* rp = residual.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    uint8_t* qp = has_q ? q->data_ptr<uint8_t>() : nullptr;
    float* sp = has_q ? scale->data_ptr<float>() : nullptr;
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      const P* wp = lw.data_ptr<P>();
      const P* lbp = lb.data_ptr<P>();
      at::parallel_for(0, N, row_grain(F), [&](int64_t begin, int64_t end) {
        std::vector<T> row(F);
        std::vector<float> buf(F + W);
        for (int64_t n = begin; n < end; ++n) {
          epilogue_row<false, Act::Gelu>(ap + n * lda, xsp[n], bp, F, row.data());
          add_ln_row<T, P, true>(row.data(), rp + n * ldr, F, wp, lbp, static_cast<float>(eps), buf.data(),
                                 yp + n * F);
          if (qp != nullptr) sp[n] = quantize_row(yp + n * F, F, qp + n * F);
        }
      });
    };
    if (lw.scalar_type() == at::kFloat) run(float{}); else run(T{});
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> int8_epilogue_cpu(const at::Tensor& acc, const at::Tensor& x_scale,
                                                                 const std::optional<at::Tensor>& bias,
                                                                 c10::string_view act, at::ScalarType out_dtype,
                                                                 bool quantize) {
  using namespace dbf;
  check_acc(acc, "int8_epilogue");
  TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kBFloat16,
              "int8_epilogue: out_dtype must be float32 or bfloat16, got ", out_dtype);
  const int64_t N = acc.size(0), F = acc.size(1);
  check_scale(x_scale, N, "int8_epilogue: x_scale");
  const bool has_b = bias.has_value() && bias->defined();
  at::Tensor b;
  if (has_b) b = check_vec(*bias, F, at::kFloat, "int8_epilogue: bias");
  bool has_act;
  const Act a = parse_act("int8_epilogue", act, true, has_act);
  at::Tensor y = at::empty({N, F}, acc.options().dtype(out_dtype));
  at::Tensor q = quantize ? at::empty({N, F}, acc.options().dtype(at::kByte)) : at::Tensor();
  at::Tensor s = quantize ? at::empty({N}, acc.options().dtype(at::kFloat)) : at::Tensor();
  if (N == 0 || F == 0) return {y, q, s};
  const at::Tensor xs = x_scale.contiguous();
  dispatch_float(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    const float* ap = acc.data_ptr<float>();
    const int64_t lda = row_stride(acc);
    const float* xsp = xs.data_ptr<float>();
    const float* bp = has_b ? b.data_ptr<float>() : nullptr;
    T* yp = y.data_ptr<T>();
    uint8_t* qp = quantize ? q.data_ptr<uint8_t>() : nullptr;
    float* sp = quantize ? s.data_ptr<float>() : nullptr;
    if (!has_act) return epilogue_kernel<false, Act::Gelu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
    switch (a) {
      case Act::Gelu: return epilogue_kernel<true, Act::Gelu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
      case Act::GeluNew: return epilogue_kernel<true, Act::GeluNew>(ap, lda, xsp, bp, N, F, yp, qp, sp);
      case Act::Relu: return epilogue_kernel<true, Act::Relu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
      case Act::Silu: return epilogue_kernel<true, Act::Silu>(ap, lda, xsp, bp, N, F, yp, qp, sp);
    }
  });
  return {y, q, s};
}
