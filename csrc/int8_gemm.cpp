// int8_gemm_out / int8_gemm_add_ln_out: the int8 linear layers' GEMM (uint8 rows x int8 weight, AVX-512 VNNI)
// with their epilogue fused: each block of rows gets its epilogue (int8_common.h: scale + bias + activation
// + per-token quantization, or + residual LayerNorm) right after the GEMM has produced it, from a buffer
// that stays in L2. The oneDNN path (ops/int8/cpp.py) writes the GEMM's fp32 output to memory and reads it
// back for the epilogue; here it never leaves the core's cache.
//
// Math, equal bit for bit to oneDNN's u8s8 GEMM followed by int8_epilogue_out (tests/test_int8.py):
//   acc[m][n] = float(sum_k (q[m][k] - 128) * w[n][k]) * w_scale[n]      (exact int32 sum, one rounding)
//   then the row epilogue on acc's rows.
// The u8 rows carry zero point 128 (VPDPBUSD multiplies u8 x s8): sum_k q w - comp[n], comp[n] =
// 128 * sum_k w[n][k], precomputed at packing.
//
// Packed weight (int8_gemm_pack): per block of 64 output columns, K/4 groups of [64 columns][4 k]: one
// 64-byte vector holds 4 consecutive k of 16 columns, the layout VPDPBUSD consumes. Columns are zero-padded
// to a multiple of 64 (their outputs are never stored). K must be a multiple of 4 (every DistilBERT width is;
// ops/int8/cpp.py gives other weights to oneDNN).
//
// Register tile: MR = 6 rows x 64 columns = 24 int32 accumulators; per 4 k: 4 weight vectors loaded, one
// 4-byte broadcast per row, 24 VPDPBUSD (the instruction's throughput bound). Loops: each thread takes a
// contiguous range of rows, in blocks (block_rows); a block runs every column block (the weight streams from
// L2/L3 once per block) and then its rows' epilogue. Measured on the 2-core Xeon (VNNI, no AMX), the tile
// alone (no epilogue) vs oneDNN's prepacked u8s8, GOP/s: 512x768x2304 1,335 vs 1,349; 512x3072x768 1,379 vs
// 1,382; 4096x768x3072 1,290 vs 1,212; 128x768x3072 1,260 vs 1,279. With the epilogues: bench/RESULTS_ops.md.
// Few rows (M < kSmallM): the weight streaming dominates, so the threads split the columns instead, into a
// shared buffer, and the rows' epilogues follow in a second parallel pass.
// Where the CPU has AMX-INT8 (tile instructions, several times VPDPBUSD's rate) ops/int8/cpp.py keeps oneDNN.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "int8_common.h"
#include "quantize.h"

#if DBF_AVX512 && defined(__AVX512VNNI__)
#define DBF_VNNI 1
#else
#define DBF_VNNI 0
#endif

namespace dbf {
namespace {

constexpr int64_t kNB = 64;       // output columns per packed block (4 vectors)
constexpr int kMR = 6;            // rows per register tile
// Rows per block: as many as keep the block's fp32 GEMM output and its uint8 input rows within kBlockBytes
// (in L2 beside the weight panel: 1 MB is Zen 4's L2, 2 MB this Xeon's), at most kMaxMB. Each block streams the
// whole weight from L2/L3 once, so taller blocks stream it less often. Measured on the Xeon (4096 rows, 6
// distinct weights as in a forward, ms per GEMM + epilogue, 48 / ~96 / 240-row blocks): QKV 13.5 / 13.3 / 13.7,
// FFN-in + GELU 18.7 / 18.4 / 18.4, FFN-out 15.4 / 14.7 / 14.4: within 2-7%. The rule gives 102 / 78 / 168.
constexpr int64_t kBlockBytes = 1 << 20;
constexpr int64_t kMaxMB = 40 * kMR;
constexpr int64_t kSmallM = 256;  // fewer rows: the threads split the columns (see gemm_rows)
DBF_INLINE int64_t block_rows(int64_t ldo, int64_t K) {
  const int64_t row_bytes = ldo * static_cast<int64_t>(sizeof(float)) + K;
  return std::clamp<int64_t>(kBlockBytes / row_bytes / kMR * kMR, kMR, kMaxMB);
}

// One buffer per thread and slot, kept across calls (OpenMP threads persist): no allocation per call.
template <typename T, int SLOT>
T* thread_scratch(int64_t n) {
  thread_local std::vector<T> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

struct Packed {
  const int8_t* w;       // (NB, K / 4, 64, 4)
  const int32_t* comp;   // (NB * 64,)
  const float* w_scale;  // (N,)
  int64_t N, K, NB;
  int64_t ldb() const { return NB * kNB; }  // row stride of an acc buffer
};

#if DBF_VNNI
#define DBF_DP(c, a, b) c = _mm512_dpbusd_epi32(c, a, b)

// sums[r * 4 + v] = sum_k a[r][k] * w[k][16 v : 16 v + 16] (u8 x s8 -> int32) for r < R (R <= kMR), the 64
// columns of one packed block. Out of line, named accumulators, nothing but the loop: GCC 12 otherwise keeps
// stack copies of the accumulators, stored on every iteration (seen with an array of __m512i, and with the
// scaling epilogue in the same function: 0.4-0.6x oneDNN's rate; this way 0.99-1.1x).
template <int R>
__attribute__((noinline)) void tile_sums(const uint8_t* a, int64_t lda, const int8_t* b, int64_t K, __m512i* sums) {
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z, c20 = z, c21 = z, c22 = z, c23 = z,
          c30 = z, c31 = z, c32 = z, c33 = z, c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
#pragma GCC unroll 2
  for (int64_t k = 0; k < K; k += 4) {  // one group of 4 k: 4 weight vectors, one 4-byte broadcast per row
    const int8_t* bk = b + k * kNB;
    const __m512i b0 = _mm512_loadu_si512(bk), b1 = _mm512_loadu_si512(bk + 64);
    const __m512i b2 = _mm512_loadu_si512(bk + 128), b3 = _mm512_loadu_si512(bk + 192);
#define DBF_ROW(r)                                      \
  if constexpr (R > r) {                                \
    int32_t a4;                                         \
    std::memcpy(&a4, a + r * lda + k, 4);               \
    const __m512i av = _mm512_set1_epi32(a4);           \
    DBF_DP(c##r##0, av, b0);                            \
    DBF_DP(c##r##1, av, b1);                            \
    DBF_DP(c##r##2, av, b2);                            \
    DBF_DP(c##r##3, av, b3);                            \
  }
    DBF_ROW(0) DBF_ROW(1) DBF_ROW(2) DBF_ROW(3) DBF_ROW(4) DBF_ROW(5)
#undef DBF_ROW
  }
#define DBF_SAVE(r)                                                                                      \
  if constexpr (R > r) {                                                                                 \
    sums[4 * r] = c##r##0, sums[4 * r + 1] = c##r##1, sums[4 * r + 2] = c##r##2, sums[4 * r + 3] = c##r##3; \
  }
  DBF_SAVE(0) DBF_SAVE(1) DBF_SAVE(2) DBF_SAVE(3) DBF_SAVE(4) DBF_SAVE(5)
#undef DBF_SAVE
}

// out[r][0:64] = float(sums - comp) * w_scale for the R rows of one tile; columns >= nvalid get w_scale 0.
template <int R>
DBF_INLINE void tile(const uint8_t* a, int64_t lda, const int8_t* b, int64_t K, const int32_t* comp,
                     const float* ws, int64_t nvalid, float* out, int64_t ldo) {
  __m512i sums[kMR * 4];
  tile_sums<R>(a, lda, b, K, sums);
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    const __m512i cv = _mm512_loadu_si512(comp + v * W);
    const __m512 sv = _mm512_maskz_loadu_ps(first_n(nvalid - v * W), ws + v * W);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      _mm512_storeu_ps(out + r * ldo + v * W, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums[4 * r + v], cv)), sv));
    }
  }
}
#undef DBF_DP

// acc rows [m0, m1) x column blocks [nb0, nb1) -> out (row m at out + (m - m0) * ldo).
void gemm_block(const uint8_t* a, int64_t m0, int64_t m1, int64_t nb0, int64_t nb1, const Packed& p, float* out,
                int64_t ldo) {
  const int64_t K = p.K;
  for (int64_t nb = nb0; nb < nb1; ++nb) {
    const int8_t* b = p.w + nb * p.K * kNB;
    const int64_t n0 = nb * kNB, nv = std::min(kNB, p.N - n0);
    const int32_t* comp = p.comp + n0;
    const float* ws = p.w_scale + n0;
    int64_t m = m0;
    for (; m + kMR <= m1; m += kMR) tile<kMR>(a + m * K, K, b, K, comp, ws, nv, out + (m - m0) * ldo + n0, ldo);
    float* o = out + (m - m0) * ldo + n0;
    const uint8_t* am = a + m * K;
    switch (m1 - m) {
      case 0: break;
      case 1: tile<1>(am, K, b, K, comp, ws, nv, o, ldo); break;
      case 2: tile<2>(am, K, b, K, comp, ws, nv, o, ldo); break;
      case 3: tile<3>(am, K, b, K, comp, ws, nv, o, ldo); break;
      case 4: tile<4>(am, K, b, K, comp, ws, nv, o, ldo); break;
      case 5: tile<5>(am, K, b, K, comp, ws, nv, o, ldo); break;
      default: static_assert(kMR == 6, "extend the tail switch"); break;
    }
  }
}

// Runs the GEMM of a (M, K) uint8 rows against p and calls finish(m, acc_row) once per row m, on the thread
// that holds the row, with acc_row (p.N floats) in cache.
template <typename Finish>
void gemm_rows(const uint8_t* a, int64_t M, const Packed& p, const Finish& finish) {
  const int64_t ldo = p.ldb();
  const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (M + kMR - 1) / kMR));
  if (M < kSmallM && nt > 1) {
    // few rows: columns split over the threads into one shared buffer, then the rows' epilogues
    const at::Tensor acc = at::empty({M, ldo}, at::kFloat);  // uninitialised (a std::vector would zero it)
    float* ap = acc.data_ptr<float>();
    at::parallel_for(0, p.NB, 1, [&](int64_t nb0, int64_t nb1) { gemm_block(a, 0, M, nb0, nb1, p, ap, ldo); });
    at::parallel_for(0, M, 1, [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) finish(m, ap + m * ldo);
    });
    return;
  }
  // thread t: rows [t * per, (t + 1) * per), per a multiple of kMR (the last thread takes what is left)
  const int64_t per = ((M + nt - 1) / nt + kMR - 1) / kMR * kMR, MB = block_rows(ldo, p.K);
  at::parallel_for(0, nt, 1, [&](int64_t t0, int64_t t1) {
    float* buf = thread_scratch<float, 0>(MB * ldo);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = std::min(M, t * per), r1 = t + 1 == nt ? M : std::min(M, (t + 1) * per);
      for (int64_t m0 = r0; m0 < r1; m0 += MB) {
        const int64_t m1 = std::min(r1, m0 + MB);
        gemm_block(a, m0, m1, 0, p.NB, p, buf, ldo);
        for (int64_t m = m0; m < m1; ++m) finish(m, buf + (m - m0) * ldo);
      }
    }
  });
}
#endif  // DBF_VNNI

// The arguments shared by both launchers: q (M, K) uint8 rows, x_scale (M,), the packed weight; returns p.
Packed check_gemm_args(const at::Tensor& q, const at::Tensor& x_scale, const at::Tensor& packed,
                       const at::Tensor& comp, const at::Tensor& w_scale, const char* op) {
  TORCH_CHECK(DBF_VNNI, op, ": this build of the C++ kernels has no AVX-512 VNNI (int8_gemm_available() is "
              "false); use the oneDNN int8 GEMM");
  check_cpu(q, (std::string(op) + ": q").c_str());
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == at::kByte && q.is_contiguous(), op,
              ": q must be a contiguous 2-D uint8 tensor (rows of q + 128), got ", q.scalar_type(), " ", q.sizes());
  const int64_t M = q.size(0), K = q.size(1);
  check_scale(x_scale, M, std::string(op) + ": x_scale");
  check_cpu(packed, (std::string(op) + ": packed").c_str());
  TORCH_CHECK(packed.dim() == 4 && packed.scalar_type() == at::kChar && packed.is_contiguous() &&
                  packed.size(1) * 4 == K && packed.size(2) == kNB && packed.size(3) == 4,
              op, ": packed must come from int8_gemm_pack of a weight with ", K, " input features (q's width), got ",
              packed.scalar_type(), " ", packed.sizes());
  const int64_t NB = packed.size(0);
  check_cpu(w_scale, (std::string(op) + ": w_scale").c_str());
  TORCH_CHECK(w_scale.dim() == 1 && w_scale.scalar_type() == at::kFloat && w_scale.is_contiguous() &&
                  w_scale.size(0) > (NB - 1) * kNB && w_scale.size(0) <= NB * kNB,
              op, ": w_scale must be a contiguous float32 vector with one scale per output feature of the packed "
              "weight (", (NB - 1) * kNB + 1, "..", NB * kNB, "), got ", w_scale.scalar_type(), " ", w_scale.sizes());
  check_cpu(comp, (std::string(op) + ": comp").c_str());
  TORCH_CHECK(comp.dim() == 1 && comp.scalar_type() == at::kInt && comp.is_contiguous() && comp.size(0) == NB * kNB,
              op, ": comp must be the int32 vector int8_gemm_pack returned with the packed weight, got ",
              comp.scalar_type(), " ", comp.sizes());
  return {packed.data_ptr<int8_t>(), comp.data_ptr<int32_t>(), w_scale.data_ptr<float>(), w_scale.size(0), K, NB};
}

}  // namespace
}  // namespace dbf

bool int8_gemm_available_cpu() { return DBF_VNNI; }

std::tuple<at::Tensor, at::Tensor> int8_gemm_pack_cpu(const at::Tensor& weight) {
  using namespace dbf;
  check_cpu(weight, "int8_gemm_pack: weight");
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == at::kChar && weight.size(0) > 0 && weight.size(1) > 0,
              "int8_gemm_pack: weight must be a non-empty 2-D int8 tensor (out_features, in_features), got ",
              weight.scalar_type(), " ", weight.sizes());
  TORCH_CHECK(weight.size(1) % 4 == 0, "int8_gemm_pack: in_features must be a multiple of 4, got ", weight.size(1));
  const at::Tensor w = weight.contiguous();
  const int64_t N = w.size(0), K = w.size(1), NB = (N + kNB - 1) / kNB;
  at::Tensor packed = at::zeros({NB, K / 4, kNB, 4}, w.options());
  at::Tensor comp = at::zeros({NB * kNB}, w.options().dtype(at::kInt));
  const int8_t* wp = w.data_ptr<int8_t>();
  int8_t* pp = packed.data_ptr<int8_t>();
  int32_t* cp = comp.data_ptr<int32_t>();
  at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      int32_t sum = 0;
      int8_t* block = pp + (n / kNB) * K * kNB + (n % kNB) * 4;
      for (int64_t k = 0; k < K; ++k) {
        sum += wp[n * K + k];
        block[(k / 4) * kNB * 4 + k % 4] = wp[n * K + k];
      }
      cp[n] = 128 * sum;
    }
  });
  return {packed, comp};
}

void int8_gemm_out_cpu(const at::Tensor& q, const at::Tensor& x_scale, const at::Tensor& packed,
                       const at::Tensor& comp, const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                       c10::string_view act, const std::optional<at::Tensor>& y_opt,
                       const std::optional<at::Tensor>& q_out, const std::optional<at::Tensor>& scale,
                       std::optional<at::ScalarType> rows_dtype) {
  using namespace dbf;
  constexpr const char* op = "int8_gemm_out";
  const Packed p = check_gemm_args(q, x_scale, packed, comp, w_scale, op);
  const int64_t M = q.size(0), N = p.N;
  const bool has_y = y_opt.has_value() && y_opt->defined();
  const bool has_q = check_quant_out(q_out, scale, M, N, op);
  TORCH_CHECK(has_y || has_q, op, ": y may be omitted only when q_out and scale are given");
  if (has_y) check_y(*y_opt, M, N, op);
  const at::ScalarType rows = has_y ? y_opt->scalar_type() : rows_dtype.value_or(at::kFloat);
  TORCH_CHECK(rows == at::kFloat || rows == at::kBFloat16, op, ": rows_dtype must be float32 or bfloat16, got ",
              rows);
  TORCH_CHECK(!has_y || !rows_dtype.has_value() || *rows_dtype == rows, op, ": rows_dtype (", *rows_dtype,
              ") must be y's dtype (", rows, ") when y is given");
  const at::Tensor b = check_bias(bias, N, "int8_gemm_out: bias");
  bool has_act;
  const Act a = parse_act(op, act, true, has_act);
  if (M == 0) return;
#if DBF_VNNI
  const uint8_t* ap = q.data_ptr<uint8_t>();
  const at::Tensor xs_c = x_scale.contiguous();  // a strided view of scales is fine
  const float* xs = xs_c.data_ptr<float>();
  const float* bp = data_or_null<float>(b);
  uint8_t* qp = data_or_null<uint8_t>(q_out);
  float* sp = data_or_null<float>(scale);
  dispatch_float(rows, [&](auto tag) {
    using T = decltype(tag);
    T* yp = has_y ? y_opt->data_ptr<T>() : nullptr;
    dispatch_act(has_act, a, [&](auto has, auto act_c) {
      gemm_rows(ap, M, p, [&](int64_t m, const float* acc) {
        // no y: the row goes through a thread-local row of the rows dtype, quantized from those values
        T* yr = yp != nullptr ? yp + m * N : thread_scratch<T, 1>(N);
        epilogue_quant_row<decltype(has)::value, decltype(act_c)::value>(
            acc, xs[m], bp, N, yr, qp == nullptr ? nullptr : qp + m * N, qp == nullptr ? nullptr : sp + m);
      });
    });
  });
#endif
}

void int8_gemm_add_ln_out_cpu(const at::Tensor& q, const at::Tensor& x_scale, const at::Tensor& packed,
                              const at::Tensor& comp, const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                              const at::Tensor& residual, const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                              double eps, const at::Tensor& y, const std::optional<at::Tensor>& q_out,
                              const std::optional<at::Tensor>& scale) {
  using namespace dbf;
  constexpr const char* op = "int8_gemm_add_ln_out";
  const Packed p = check_gemm_args(q, x_scale, packed, comp, w_scale, op);
  const int64_t M = q.size(0), N = p.N;
  check_y(y, M, N, op);
  check_rows(residual, "int8_gemm_add_ln_out: residual");
  TORCH_CHECK(residual.size(0) == M && residual.size(1) == N && residual.scalar_type() == y.scalar_type(), op,
              ": residual must have shape (", M, ", ", N, ") and y's dtype ", y.scalar_type(), ", got ",
              residual.sizes(), " ", residual.scalar_type());
  check_quant_out(q_out, scale, M, N, op);
  TORCH_CHECK(eps >= 0.0, op, ": eps must be >= 0, got ", eps);
  const at::Tensor b = check_bias(bias, N, "int8_gemm_add_ln_out: bias");
  auto [lw, lb] = ln_params(ln_weight, ln_bias, N, y.scalar_type(), "int8_gemm_add_ln_out: ln_weight",
                            "int8_gemm_add_ln_out: ln_bias");
  if (M == 0) return;
#if DBF_VNNI
  const uint8_t* ap = q.data_ptr<uint8_t>();
  const at::Tensor xs_c = x_scale.contiguous();  // a strided view of scales is fine
  const float* xs = xs_c.data_ptr<float>();
  const float* bp = data_or_null<float>(b);
  uint8_t* qp = data_or_null<uint8_t>(q_out);
  float* sp = data_or_null<float>(scale);
  dispatch_float(y.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const T* rp = residual.data_ptr<T>();
    const int64_t ldr = row_stride(residual);
    T* yp = y.data_ptr<T>();
    auto run = [&](auto ptag) {
      using P = decltype(ptag);
      const P* wp = lw.data_ptr<P>();
      const P* lbp = lb.data_ptr<P>();
      gemm_rows(ap, M, p, [&](int64_t m, const float* acc) {
        epilogue_add_ln_row(acc, xs[m], bp, rp + m * ldr, N, wp, lbp, static_cast<float>(eps),
                            thread_scratch<T, 1>(N), thread_scratch<float, 2>(N + W), yp + m * N,
                            qp == nullptr ? nullptr : qp + m * N, qp == nullptr ? nullptr : sp + m);
      });
    };
    if (lw.scalar_type() == at::kFloat) run(float{}); else run(T{});
  });
#endif
}
