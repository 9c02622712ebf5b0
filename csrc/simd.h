// SIMD layer shared by the CPU kernels: one small vocabulary of float vectors, two implementations.
//
// * AVX-512 (F+BW+VL+DQ, what -march=native gives on Zen 4/5 and Ice Lake+): W = 16 fp32 lanes, masked
//   loads/stores for row tails, bf16 <-> fp32 in registers (RNE rounding, hardware VCVTNEPS2BF16 when
//   AVX512_BF16 is there).
// * Scalar fallback (any other target, or -DDISTILBERT_FAST_NO_SIMD to test it): W = 1, same API, so every
//   kernel is written once against this header and stays correct on a portable build.
//
// Not ATen's at::vec::Vectorized: an extension TU is not compiled with ATen's CPU_CAPABILITY_* macros, so
// Vectorized<float> would silently be the generic 8-wide emulation. Compute is always fp32; bf16 only
// exists in memory.
#pragma once

#include <c10/util/BFloat16.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#if !defined(DISTILBERT_FAST_NO_SIMD) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512DQ__)
#define DBF_AVX512 1
// GCC 12's AVX-512 headers build some intrinsics on _mm512_undefined_*(), which trips a false
// -Wmaybe-uninitialized once inlined; the values are fully overwritten by the instruction.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#else
#define DBF_AVX512 0
#endif

#define DBF_INLINE inline __attribute__((always_inline))

namespace dbf {

using bf16 = c10::BFloat16;

#if DBF_AVX512

constexpr int W = 16;  // fp32 lanes per vector
using vf = __m512;
using vmask = __mmask16;

DBF_INLINE vmask first_n(int64_t n) {  // lanes [0, n) set; n >= W -> all
  return n >= 16 ? (vmask)0xFFFF : (vmask)((1u << (n > 0 ? n : 0)) - 1u);
}
DBF_INLINE vf vzero() { return _mm512_setzero_ps(); }
DBF_INLINE vf vset1(float x) { return _mm512_set1_ps(x); }
DBF_INLINE vf vadd(vf a, vf b) { return _mm512_add_ps(a, b); }
DBF_INLINE vf vsub(vf a, vf b) { return _mm512_sub_ps(a, b); }
DBF_INLINE vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
DBF_INLINE vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
DBF_INLINE vf vfma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }  // a*b + c
// max/min: NaN in `a` propagates (the x86 instructions return the second operand on NaN).
DBF_INLINE vf vmax(vf a, vf b) { return _mm512_max_ps(b, a); }
DBF_INLINE vf vmin(vf a, vf b) { return _mm512_min_ps(b, a); }
DBF_INLINE vf vsub_z(vf a, vf b, vmask m) { return _mm512_maskz_sub_ps(m, a, b); }  // a-b in m, else 0
DBF_INLINE float hsum(vf a) { return _mm512_reduce_add_ps(a); }
DBF_INLINE float hmax(vf a) { return _mm512_reduce_max_ps(a); }

DBF_INLINE vf bf16x16_to_f32(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
DBF_INLINE __m256i f32_to_bf16x16(vf v) {
#if defined(__AVX512BF16__)
  __m256bh b = _mm512_cvtneps_pbh(v);  // round to nearest even, like c10::BFloat16(float)
  __m256i r;
  std::memcpy(&r, &b, sizeof(r));
  return r;
#else
  __m512i x = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb), 16);
  __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(r);
#endif
}

DBF_INLINE vf vload(const float* p) { return _mm512_loadu_ps(p); }
DBF_INLINE vf vload(const bf16* p) { return bf16x16_to_f32(_mm256_loadu_si256((const __m256i*)p)); }
DBF_INLINE vf vload(const float* p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
DBF_INLINE vf vload(const bf16* p, vmask m) { return bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, p)); }
DBF_INLINE void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
DBF_INLINE void vstore(bf16* p, vf v) { _mm256_storeu_si256((__m256i*)p, f32_to_bf16x16(v)); }
DBF_INLINE void vstore(float* p, vf v, vmask m) { _mm512_mask_storeu_ps(p, m, v); }
DBF_INLINE void vstore(bf16* p, vf v, vmask m) { _mm256_mask_storeu_epi16(p, m, f32_to_bf16x16(v)); }

// exp(x), ~1 ulp (Cephes expf polynomial), range reduction x = n ln2 + r, 2^n applied with scalef so
// large negative x underflows gracefully to 0 and the result never overflows to inf below 88.7.
DBF_INLINE vf vexp(vf x) {
  x = vmax(x, vset1(-104.0f));
  x = vmin(x, vset1(88.7f));
  vf n = _mm512_roundscale_ps(_mm512_mul_ps(x, vset1(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  vf r = _mm512_fnmadd_ps(n, vset1(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, vset1(-2.12194440e-4f), r);
  vf p = vset1(1.9875691500e-4f);
  p = vfma(p, r, vset1(1.3981999507e-3f));
  p = vfma(p, r, vset1(8.3334519073e-3f));
  p = vfma(p, r, vset1(4.1665795894e-2f));
  p = vfma(p, r, vset1(1.6666665459e-1f));
  p = vfma(p, r, vset1(5.0000001201e-1f));
  p = vfma(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, vset1(1.0f)));
  return _mm512_scalef_ps(p, n);
}

#else  // scalar fallback

constexpr int W = 1;
using vf = float;
using vmask = bool;

DBF_INLINE vmask first_n(int64_t n) { return n > 0; }
DBF_INLINE vf vzero() { return 0.0f; }
DBF_INLINE vf vset1(float x) { return x; }
DBF_INLINE vf vadd(vf a, vf b) { return a + b; }
DBF_INLINE vf vsub(vf a, vf b) { return a - b; }
DBF_INLINE vf vmul(vf a, vf b) { return a * b; }
DBF_INLINE vf vdiv(vf a, vf b) { return a / b; }
DBF_INLINE vf vfma(vf a, vf b, vf c) { return a * b + c; }
DBF_INLINE vf vmax(vf a, vf b) { return (a != a || a > b) ? a : b; }
DBF_INLINE vf vmin(vf a, vf b) { return (a != a || a < b) ? a : b; }
DBF_INLINE vf vsub_z(vf a, vf b, vmask m) { return m ? a - b : 0.0f; }
DBF_INLINE float hsum(vf a) { return a; }
DBF_INLINE float hmax(vf a) { return a; }
DBF_INLINE vf vload(const float* p) { return *p; }
DBF_INLINE vf vload(const bf16* p) { return static_cast<float>(*p); }
DBF_INLINE vf vload(const float* p, vmask m) { return m ? *p : 0.0f; }
DBF_INLINE vf vload(const bf16* p, vmask m) { return m ? static_cast<float>(*p) : 0.0f; }
DBF_INLINE void vstore(float* p, vf v) { *p = v; }
DBF_INLINE void vstore(bf16* p, vf v) { *p = bf16(v); }
DBF_INLINE void vstore(float* p, vf v, vmask m) { if (m) *p = v; }
DBF_INLINE void vstore(bf16* p, vf v, vmask m) { if (m) *p = bf16(v); }
DBF_INLINE vf vexp(vf x) { return std::exp(x); }

#endif

// ---- math built on the vocabulary above --------------------------------------------------------------

// erf(x): rational minimax approximation (Eigen's generic_fast_erf_float), max abs error ~1e-7 on fp32;
// |x| >= 4 is +-1 in fp32.
DBF_INLINE vf verf(vf x) {
#if DBF_AVX512
  x = vmin(vmax(x, vset1(-4.0f)), vset1(4.0f));
  vf x2 = vmul(x, x);
  vf p = vfma(x2, vset1(-2.72614225801306e-10f), vset1(2.77068142495902e-08f));
  p = vfma(x2, p, vset1(-2.10102402082508e-06f));
  p = vfma(x2, p, vset1(-5.69250639462346e-05f));
  p = vfma(x2, p, vset1(-7.34990630326855e-04f));
  p = vfma(x2, p, vset1(-2.95459980854025e-03f));
  p = vfma(x2, p, vset1(-1.60960333262415e-02f));
  p = vmul(x, p);
  vf q = vfma(x2, vset1(-1.45660718464996e-05f), vset1(-2.13374055278905e-04f));
  q = vfma(x2, q, vset1(-1.68282697438203e-03f));
  q = vfma(x2, q, vset1(-7.37332916720468e-03f));
  q = vfma(x2, q, vset1(-1.42647390514189e-02f));
  // p / q as p * (1/q): rcp14 refined by one Newton step (r (2 - q r), ~1 ulp), q in [-0.11, -0.014] never
  // near 0. vdivps zmm is the slowest instruction here (measured: the int8 FFN-in epilogue, bias + GELU +
  // quantize on cached rows, was bound by it).
  vf r = _mm512_rcp14_ps(q);
  r = vmul(r, vfma(vsub(vzero(), q), r, vset1(2.0f)));
  return vmul(p, r);
#else
  return std::erf(x);
#endif
}

// x * sigmoid(a) = x / (1 + exp(-a)); exp clamps at 88.7 so the denominator stays finite.
DBF_INLINE vf vmul_sigmoid(vf x, vf a) {
  return vdiv(x, vadd(vset1(1.0f), vexp(vsub(vzero(), a))));
}

enum class Act : int { Gelu = 0, GeluNew = 1, Relu = 2, Silu = 3 };

template <Act A>
DBF_INLINE vf vact(vf x) {
  if constexpr (A == Act::Gelu) {  // 0.5 x (1 + erf(x / sqrt 2)), the exact (erf) GELU
    vf e = verf(vmul(x, vset1(0.70710678118654752440f)));
    return vmul(vmul(vset1(0.5f), x), vadd(vset1(1.0f), e));
  } else if constexpr (A == Act::GeluNew) {
    // 0.5 x (1 + tanh(u)) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): same function, no
    // cancellation in 1 + tanh for negative u.
    vf x3 = vmul(vmul(x, x), x);
    vf u = vmul(vset1(0.79788456080286535588f), vfma(vset1(0.044715f), x3, x));
    return vmul_sigmoid(x, vadd(u, u));
  } else if constexpr (A == Act::Relu) {
#if DBF_AVX512
    return vmax(x, vzero());  // NaN propagates like torch.relu
#else
    return (x != x) ? x : (x > 0.0f ? x : 0.0f);
#endif
  } else {  // Silu
    return vmul_sigmoid(x, x);
  }
}

}  // namespace dbf
