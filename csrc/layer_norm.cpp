// add_layer_norm: y = LayerNorm(x + residual) (or LayerNorm(x)) over the last dim, fp32 statistics.
// kernel (add_ln_row in common.h) -> launcher (row-parallel) -> registered in ops.cpp.
#include "common.h"

namespace dbf {
namespace {

template <typename T, typename P>
void add_layer_norm_kernel(const T* x, int64_t ldx, const T* r, int64_t ldr, const P* w, const P* b,
                           int64_t N, int64_t D, float eps, T* out) {
  at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
    std::vector<float> buf(D + W);
    for (int64_t n = begin; n < end; ++n) {
      if (r != nullptr) {
        add_ln_row<T, P, true>(x + n * ldx, r + n * ldr, D, w, b, eps, buf.data(), out + n * D);
      } else {
        add_ln_row<T, P, false>(x + n * ldx, nullptr, D, w, b, eps, buf.data(), out + n * D);
      }
    }
  });
}

}  // namespace
}  // namespace dbf

at::Tensor add_layer_norm_cpu(const at::Tensor& x, const std::optional<at::Tensor>& residual,
                              const at::Tensor& weight, const at::Tensor& bias, double eps) {
  using namespace dbf;
  check_rows(x, "add_layer_norm: x");
  const int64_t N = x.size(0), D = x.size(1);
  TORCH_CHECK(D > 0, "add_layer_norm: x must have a non-empty last dim, got shape ", x.sizes());
  const bool has_r = residual.has_value() && residual->defined();
  if (has_r) {
    check_rows(*residual, "add_layer_norm: residual");
    TORCH_CHECK(residual->sizes() == x.sizes(), "add_layer_norm: residual shape ", residual->sizes(),
                " must equal x shape ", x.sizes());
    TORCH_CHECK(residual->scalar_type() == x.scalar_type(), "add_layer_norm: residual dtype ",
                residual->scalar_type(), " must equal x dtype ", x.scalar_type());
  }
  TORCH_CHECK(eps >= 0.0, "add_layer_norm: eps must be >= 0, got ", eps);
  auto [w, b] = ln_params(weight, bias, D, x.scalar_type(), "add_layer_norm: weight", "add_layer_norm: bias");
  at::Tensor out = at::empty({N, D}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0) return out;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* rp = has_r ? residual->data_ptr<T>() : nullptr;
    const int64_t ldr = has_r ? row_stride(*residual) : 0;
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      add_layer_norm_kernel<T, P>(x.data_ptr<T>(), row_stride(x), rp, ldr, w.data_ptr<P>(), b.data_ptr<P>(), N,
                                  D, static_cast<float>(eps), out.data_ptr<T>());
    };
    if (w.scalar_type() == at::kFloat) run(float{}); else run(T{});
  });
  return out;
}
