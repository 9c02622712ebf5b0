// int8 dynamic quantization fused into the kernels that produce the activations:
//   quantize_rows        x -> (q, scale)                                (attention context rows)
//   add_layer_norm_quant LayerNorm(x + residual) -> (y, q, scale)       (every residual LayerNorm)
//   embeddings_quant     LayerNorm(word[ids] + pos[pos]) -> (y, q, scale)
//   int8_epilogue        acc (fp32 = int32 sum * w_scale) -> y = act(acc * x_scale + bias) (+ q, scale)
// The quantization (int8_common.h): symmetric per token, q stored as uint8 q + 128 (oneDNN's VNNI GEMM multiplies
// u8 x s8; an s8 source measured orders of magnitude slower here, a reference fallback). The row is quantized
// right after it is written, while it is still in L1: no second pass over memory.
// distilbert_fast/ops/int8/reference.py is the same math in PyTorch.
#include "quantize.h"

#include <string>

#include "int8_common.h"

namespace dbf {
namespace {

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
      epilogue_quant_row<HAS_ACT, A>(acc + n * lda, xs[n], bias, F, y == nullptr ? row.data() : y + n * F,
                                     q == nullptr ? nullptr : q + n * F, q == nullptr ? nullptr : qs + n);
    }
  });
}

// The epilogue ops' shared argument checks; `op` names the op in the messages.
void check_acc(const at::Tensor& acc, const char* op) {
  check_cpu(acc, (std::string(op) + ": acc").c_str());
  TORCH_CHECK(acc.dim() == 2 && acc.scalar_type() == at::kFloat && (acc.size(1) <= 1 || acc.stride(1) == 1), op,
              ": acc must be a 2-D float32 tensor with a unit-stride last dim, got ", acc.scalar_type(), " of shape ",
              acc.sizes(), " strides ", acc.strides());
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
  dispatch_act(has_act, a, [&](auto has, auto act) {
    epilogue_kernel<decltype(has)::value, decltype(act)::value>(ap, lda, xsp, bp, N, F, yp, qp, sp);
  });
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
  const bool has_q = check_quant_out(q, scale, N, F, op);
  TORCH_CHECK(has_y || has_q, "int8_epilogue_out: y may be omitted only when q and scale are given");
  if (has_y) check_y(*y_opt, N, F, op);
  // the dtype of the rows that are quantized: y's, or without y rows_dtype (default float32)
  const at::ScalarType rows = has_y ? y_opt->scalar_type() : rows_dtype.value_or(at::kFloat);
  TORCH_CHECK(rows == at::kFloat || rows == at::kBFloat16,
              "int8_epilogue_out: rows_dtype must be float32 or bfloat16, got ", rows);
  TORCH_CHECK(!has_y || !rows_dtype.has_value() || *rows_dtype == rows, "int8_epilogue_out: rows_dtype (",
              *rows_dtype, ") must be y's dtype (", rows, ") when y is given");
  const at::Tensor b = check_bias(bias, F, "int8_epilogue_out: bias");
  bool has_act;
  const Act a = parse_act("int8_epilogue_out", act, true, has_act);
  if (N == 0 || F == 0) return;
  const at::Tensor xs = x_scale.contiguous();
  // no y: the rows go through a thread-local buffer of the rows dtype and are quantized from those values, as
  // from a stored y (bf16: the rounded values, as the reference quantizes them)
  dispatch_float(rows, [&](auto tag) {
    using T = decltype(tag);
    run_epilogue<T>(has_act, a, acc.data_ptr<float>(), row_stride(acc), xs.data_ptr<float>(),
                    data_or_null<float>(b), N, F, has_y ? y_opt->data_ptr<T>() : nullptr,
                    data_or_null<uint8_t>(q), data_or_null<float>(scale));
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
  check_y(y, N, F, op);
  check_rows(residual, "int8_epilogue_add_ln_out: residual");
  TORCH_CHECK(residual.sizes() == acc.sizes() && residual.scalar_type() == y.scalar_type(),
              "int8_epilogue_add_ln_out: residual must have acc's shape ", acc.sizes(), " and y's dtype ",
              y.scalar_type(), ", got ", residual.sizes(), " ", residual.scalar_type());
  check_quant_out(q, scale, N, F, op);
  TORCH_CHECK(eps >= 0.0, "int8_epilogue_add_ln_out: eps must be >= 0, got ", eps);
  const at::Tensor b = check_bias(bias, F, "int8_epilogue_add_ln_out: bias");
  auto [lw, lb] = ln_params(ln_weight, ln_bias, F, y.scalar_type(), "int8_epilogue_add_ln_out: ln_weight",
                            "int8_epilogue_add_ln_out: ln_bias");
  if (N == 0 || F == 0) return;
  const at::Tensor xs = x_scale.contiguous();
  dispatch_float(y.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const float* ap = acc.data_ptr<float>();
    const int64_t lda = row_stride(acc), ldr = row_stride(residual);
    const float* xsp = xs.data_ptr<float>();
    const float* bp = data_or_null<float>(b);
    const T* rp = residual.data_ptr<T>();
    T* yp = y.data_ptr<T>();
    uint8_t* qp = data_or_null<uint8_t>(q);
    float* sp = data_or_null<float>(scale);
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      const P* wp = lw.data_ptr<P>();
      const P* lbp = lb.data_ptr<P>();
      at::parallel_for(0, N, row_grain(F), [&](int64_t begin, int64_t end) {
        std::vector<T> row(F);
        std::vector<float> buf(F + W);
        for (int64_t n = begin; n < end; ++n) {
          epilogue_add_ln_row(ap + n * lda, xsp[n], bp, rp + n * ldr, F, wp, lbp, static_cast<float>(eps), row.data(),
                              buf.data(), yp + n * F, qp == nullptr ? nullptr : qp + n * F,
                              qp == nullptr ? nullptr : sp + n);
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
  const at::Tensor b = check_bias(bias, F, "int8_epilogue: bias");
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
    const float* bp = data_or_null<float>(b);
    T* yp = y.data_ptr<T>();
    uint8_t* qp = quantize ? q.data_ptr<uint8_t>() : nullptr;
    float* sp = quantize ? s.data_ptr<float>() : nullptr;
    run_epilogue<T>(has_act, a, ap, lda, xsp, bp, N, F, yp, qp, sp);
  });
  return {y, q, s};
}
