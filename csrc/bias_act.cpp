// bias_act: y = act(x + bias), act in {gelu (erf, exact), gelu_new (tanh form), relu, silu}; the add and the
// activation run in fp32 registers, one rounding to the output dtype. For GEMMs whose epilogue cannot fuse
// the activation. kernel -> launcher -> registered in ops.cpp.
#include "common.h"

namespace dbf {
namespace {

template <Act A, typename T, typename P>
void bias_act_kernel(const T* x, int64_t ldx, const P* bias, int64_t N, int64_t D, T* out) {
  at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      const T* xr = x + n * ldx;
      T* yr = out + n * D;
      int64_t i = 0;
      for (; i + 2 * W <= D; i += 2 * W) {
        vf a = vact<A>(vadd(vload(xr + i), vload(bias + i)));
        vf b = vact<A>(vadd(vload(xr + i + W), vload(bias + i + W)));
        vstore(yr + i, a);
        vstore(yr + i + W, b);
      }
      for (; i < D; i += W) {
        vmask m = first_n(D - i);
        vstore(yr + i, vact<A>(vadd(vload(xr + i, m), vload(bias + i, m))), m);
      }
    }
  });
}

template <typename T, typename P>
void bias_act_dispatch(Act act, const T* x, int64_t ldx, const P* bias, int64_t N, int64_t D, T* out) {
  switch (act) {
    case Act::Gelu: return bias_act_kernel<Act::Gelu>(x, ldx, bias, N, D, out);
    case Act::GeluNew: return bias_act_kernel<Act::GeluNew>(x, ldx, bias, N, D, out);
    case Act::Relu: return bias_act_kernel<Act::Relu>(x, ldx, bias, N, D, out);
    case Act::Silu: return bias_act_kernel<Act::Silu>(x, ldx, bias, N, D, out);
  }
}

}  // namespace
}  // namespace dbf

at::Tensor bias_act_cpu(const at::Tensor& x, const at::Tensor& bias, c10::string_view act) {
  using namespace dbf;
  bool has_act;
  const Act a = parse_act("bias_act", act, /*allow_none=*/false, has_act);
  check_rows(x, "bias_act: x");
  const int64_t N = x.size(0), D = x.size(1);
  at::Tensor b = check_vec(bias, D, x.scalar_type(), "bias_act: bias");
  at::Tensor out = at::empty({N, D}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0 || D == 0) return out;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    if (b.scalar_type() == at::kFloat) {
      bias_act_dispatch<T, float>(a, x.data_ptr<T>(), row_stride(x), b.data_ptr<float>(), N, D, out.data_ptr<T>());
    } else {
      bias_act_dispatch<T, T>(a, x.data_ptr<T>(), row_stride(x), b.data_ptr<T>(), N, D, out.data_ptr<T>());
    }
  });
  return out;
}
