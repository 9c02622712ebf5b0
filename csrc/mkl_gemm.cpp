// fp32 GEMM on a weight prepacked once by MKL (cblas_sgemm_pack / cblas_sgemm_compute), plus our bias +
// activation epilogue: y = act(x @ W^T + bias).
//
// Why MKL's packed GEMM and not oneDNN's prepacked one (ops/gemm.py): measured on the 2-core Xeon (VNNI,
// no AMX), DistilBERT-base's 24 GEMMs cycled over 6 layers' distinct weights as in a forward (so the
// weights stream from L3/DRAM, 170 MB), median GFLOP/s over interleaved rounds: M=128 (one 128-token
// sequence) oneDNN 270 / MKL packed 318; M=2062 323 / 341; M=4096 299 / 303. With the same weight reused
// (all in cache) both run ~330: MKL's packed panels stream better. torch's own `mkl::_mkl_linear` uses the
// packed weight only when the token count equals the count it was packed for; the packed layout does not
// depend on M (pack_get_size is the same for every m, and the results were checked for M from 1 to 4096,
// tests/test_ops_cpp.py), so here one packed weight serves every token count.
//
// MKL is not a build dependency: torch's libtorch_cpu exports the cblas pack/compute entry points when torch
// was built with MKL. They are declared weak, so a torch without them still loads this library and
// `mkl_sgemm_available()` returns false (ops/gemm.py then stays on oneDNN).
#include <string>

#include "common.h"

extern "C" {
// MKL's LP64 cblas interface (MKL_INT = int), as libtorch_cpu links it.
__attribute__((weak)) size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
__attribute__((weak)) void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                                            const float* src, int ld, float* dest);
__attribute__((weak)) void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k,
                                               const float* a, int lda, const float* b, int ldb, float beta, float* c,
                                               int ldc);
}

namespace dbf {
namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;
constexpr int kPackM = 512;  // the m handed to pack/get_size (the packed layout does not depend on it)

bool mkl_ok() {
  return cblas_sgemm_pack_get_size != nullptr && cblas_sgemm_pack != nullptr && cblas_sgemm_compute != nullptr;
}

void check_int_range(int64_t v, const char* name) {
  TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(), name, " = ", v, " does not fit MKL's 32-bit int");
}

// The packed buffer starts with a 64-byte header (magic, N, K) so that a buffer packed for another shape is
// refused instead of read; MKL's packed data follows at offset 64 (torch's CPU allocations are 64-byte aligned).
constexpr int64_t kHeader = 64;
constexpr int64_t kMagic = 0x64626653474d4d4bLL;  // "KMMGSfbd"

int64_t packed_bytes(int64_t N, int64_t K) {
  return static_cast<int64_t>(cblas_sgemm_pack_get_size(kBMatrix, kPackM, static_cast<int>(N), static_cast<int>(K)));
}

// y[n, :] = act(y[n, :] + bias) in place, rows in parallel.
template <bool HAS_B, bool HAS_ACT, Act A>
void epilogue(float* y, const float* bias, int64_t M, int64_t N) {
  at::parallel_for(0, M, row_grain(N), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* yr = y + r * N;
      for (int64_t i = 0; i < N; i += W) {
        const vmask m = first_n(N - i);
        vf v = vload(yr + i, m);
        if constexpr (HAS_B) v = vadd(v, vload(bias + i, m));
        if constexpr (HAS_ACT) v = vact<A>(v);
        vstore(yr + i, v, m);
      }
    }
  });
}

template <bool HAS_B>
void epilogue_dispatch(bool has_act, Act a, float* y, const float* bias, int64_t M, int64_t N) {
  if (!has_act) return epilogue<HAS_B, false, Act::Gelu>(y, bias, M, N);
  switch (a) {
    case Act::Gelu: return epilogue<HAS_B, true, Act::Gelu>(y, bias, M, N);
    case Act::GeluNew: return epilogue<HAS_B, true, Act::GeluNew>(y, bias, M, N);
    case Act::Relu: return epilogue<HAS_B, true, Act::Relu>(y, bias, M, N);
    case Act::Silu: return epilogue<HAS_B, true, Act::Silu>(y, bias, M, N);
  }
}

}  // namespace
}  // namespace dbf

bool mkl_sgemm_available_cpu() { return dbf::mkl_ok(); }

at::Tensor mkl_sgemm_pack_cpu(const at::Tensor& weight) {
  using namespace dbf;
  TORCH_CHECK(mkl_ok(), "mkl_sgemm_pack: this torch build does not export MKL's cblas_sgemm_pack");
  check_cpu(weight, "mkl_sgemm_pack: weight");
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kFloat,
              "mkl_sgemm_pack: weight must be a 2-D float32 (out_features, in_features) tensor, got ",
              weight.scalar_type(), " of shape ", weight.sizes());
  const int64_t N = weight.size(0), K = weight.size(1);
  check_int_range(N, "mkl_sgemm_pack: out_features");
  check_int_range(K, "mkl_sgemm_pack: in_features");
  TORCH_CHECK(N > 0 && K > 0, "mkl_sgemm_pack: weight must be non-empty, got shape ", weight.sizes());
  const at::Tensor w = weight.contiguous();
  // Opaque bytes. MKL forbids moving a packed buffer (it records aligned internal addresses): the returned
  // tensor is used in place and never copied (a copy would have to be packed again).
  at::Tensor packed = at::empty({kHeader + packed_bytes(N, K)}, weight.options().dtype(at::kByte));
  uint8_t* base = packed.data_ptr<uint8_t>();
  TORCH_CHECK(reinterpret_cast<uintptr_t>(base) % 64 == 0, "mkl_sgemm_pack: the allocator returned an unaligned buffer");
  int64_t* header = reinterpret_cast<int64_t*>(base);
  header[0] = kMagic;
  header[1] = N;
  header[2] = K;
  // B = W^T (K x N): row-major W (N, K) read transposed.
  cblas_sgemm_pack(kRowMajor, kBMatrix, kTrans, kPackM, static_cast<int>(N), static_cast<int>(K), 1.0f,
                   w.data_ptr<float>(), static_cast<int>(K), reinterpret_cast<float*>(base + kHeader));
  return packed;
}

at::Tensor mkl_sgemm_packed_cpu(const at::Tensor& x_in, const at::Tensor& packed, int64_t out_features,
                                const std::optional<at::Tensor>& bias, c10::string_view act) {
  using namespace dbf;
  TORCH_CHECK(mkl_ok(), "mkl_sgemm_packed: this torch build does not export MKL's cblas_sgemm_compute");
  check_cpu(x_in, "mkl_sgemm_packed: x");
  TORCH_CHECK(x_in.dim() == 2 && x_in.scalar_type() == at::kFloat, "mkl_sgemm_packed: x must be a 2-D float32 tensor, got ",
              x_in.scalar_type(), " of shape ", x_in.sizes());
  // row-strided views (a column slice) are read in place; a non-unit last stride is copied once
  const at::Tensor x = (x_in.size(1) <= 1 || x_in.stride(1) == 1) ? x_in : x_in.contiguous();
  const int64_t M = x.size(0), K = x.size(1), N = out_features;
  check_int_range(M, "mkl_sgemm_packed: x.size(0)");
  check_int_range(N, "mkl_sgemm_packed: out_features");
  TORCH_CHECK(N > 0 && K > 0, "mkl_sgemm_packed: out_features and x.size(1) must be > 0, got ", N, " and ", K);
  check_cpu(packed, "mkl_sgemm_packed: packed");
  const bool is_buffer = packed.dim() == 1 && packed.scalar_type() == at::kByte && packed.is_contiguous() &&
                         packed.numel() >= kHeader && reinterpret_cast<uintptr_t>(packed.data_ptr()) % 64 == 0;
  const int64_t* header = is_buffer ? reinterpret_cast<const int64_t*>(packed.data_ptr<uint8_t>()) : nullptr;
  TORCH_CHECK(is_buffer && header[0] == kMagic && header[1] == N && header[2] == K &&
                  packed.numel() == kHeader + packed_bytes(N, K),
              "mkl_sgemm_packed: packed must be the buffer mkl_sgemm_pack made from a (out_features, in_features) = (",
              N, ", ", K, ") weight; got ", packed.scalar_type(), " of shape ", packed.sizes(),
              is_buffer && header[0] == kMagic ? " packed from a (" + std::to_string(header[1]) + ", " +
                                                     std::to_string(header[2]) + ") weight"
                                               : std::string(" that is no packed weight"));
  const bool has_b = bias.has_value() && bias->defined();
  at::Tensor b;
  if (has_b) b = check_vec(*bias, N, at::kFloat, "mkl_sgemm_packed: bias");
  bool has_act;
  const Act a = parse_act("mkl_sgemm_packed", act, true, has_act);
  at::Tensor y = at::empty({M, N}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (M == 0) return y;
  const int64_t lda = row_stride(x);
  check_int_range(lda, "mkl_sgemm_packed: x row stride");
  cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K),
                      x.data_ptr<float>(), static_cast<int>(lda),
                      reinterpret_cast<const float*>(packed.data_ptr<uint8_t>() + kHeader), static_cast<int>(N), 0.0f,
                      y.data_ptr<float>(), static_cast<int>(N));
  float* yp = y.data_ptr<float>();
  if (has_b) {
    epilogue_dispatch<true>(has_act, a, yp, b.data_ptr<float>(), M, N);
  } else if (has_act) {
    epilogue_dispatch<false>(true, a, yp, nullptr, M, N);
  }
  return y;
}
