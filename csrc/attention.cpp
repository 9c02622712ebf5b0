// varlen_attention: multi-head softmax(scale Q K^T) V over packed sequences (cu_seqlens), no padding.
// seqused (optional, (B,) int32): sequence s's queries are all its rows, its keys only the first seqused[s]
// of them (flash-attn's seqused_k). The model puts a sequence's real tokens first and any padded positions
// a loss reads after them, so those padded rows attend to the real keys only, as transformers computes them.
//
// Work item = (sequence s, head h, block of up to BQ = 4*W queries). For an item with m queries and L keys:
//   1. Qt  (hd x mpad)  = scale * Q_block^T in fp32, by 16x16 in-register transposes (the only repacking
//                          for fp32 inputs; bf16 K/V rows of the head are also widened once per (s, h)
//                          into thread-local fp32 buffers).
//   2. S^T (L x mpad)   = K Qt: register tile of JR keys x NQ query-vectors, each K element broadcast
//                          straight from its row (row-strided views such as slices of a fused QKV work
//                          in place), Qt rows loaded as vectors.
//   3. softmax over keys = over the rows of S^T: the reductions are vertical (one lane per query), so
//      max / exp / sum need no horizontal shuffles. Normalisation (and head_mask) is deferred to the output.
//   4. O (m x hd)       = P V: register tile of MR queries x DV head_dim-vectors, P^T broadcast, V rows
//                          loaded (masked for a head_dim tail), scaled by head_mask[h] / rowsum at store.
// Items are split over threads in contiguous runs of balanced cost (so a thread keeps one (s, h) for its
// consecutive query blocks; tiny problems stay on one thread), and each item software-prefetches the rows
// of the next one. All arithmetic is fp32. kernel -> launcher -> registered in ops.cpp.
// bf16 inputs on a CPU with AVX512_BF16 take attention_kernel_bf16dp instead (same items and split): VDPBF16PS
// for Q K^T (pairs along head_dim) and for P V (probabilities rounded to bf16, pairs along keys, V repacked
// once per (s, h)), fp32 accumulation and fp32 softmax statistics; see the comment above it.
#include <algorithm>
#include <vector>

#include "common.h"

#if DBF_AVX512 && defined(__AVX512BF16__)
#define DBF_BF16DP 1
#else
#define DBF_BF16DP 0
#endif

#if !DBF_AVX512
// Scalar fallback only: GCC 12's loop vectorizer turns the j-loops of the W=1 micro-kernels below into
// vector code that reads one row past the end of the probability / V buffers (seen with valgrind, and as a
// segfault, at -O2 and -O3 for x86-64-v3 and native). The AVX-512 path is explicit intrinsics and unaffected.
#pragma GCC optimize("no-tree-vectorize")
#endif



namespace dbf {
namespace {

constexpr int NQMAX = 4;         // query vectors per work item
constexpr int BQ = NQMAX * W;    // queries per work item (64 with AVX-512)
constexpr int JR = 6;            // keys per QK^T register tile (6 x 4 accumulators + 4 Q vectors)
constexpr int MR = 6;            // queries per PV register tile
constexpr int DV = 4;            // head_dim vectors per PV register tile

// st[r][0 : NQ*W] = sum_d k[r][d] * qt[d][0 : NQ*W], r < R.
template <int NQ, int R>
DBF_INLINE void qk_tile(const float* __restrict qt, int64_t ldqt, const float* __restrict k, int64_t ldk,
                        int64_t hd, float* __restrict st, int64_t ldst) {
  vf acc[R][NQ];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) acc[r][n] = vzero();
  for (int64_t d = 0; d < hd; ++d) {
    vf qv[NQ];
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) qv[n] = vload(qt + d * ldqt + n * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf kb = vset1(k[r * ldk + d]);
#pragma GCC unroll 4
      for (int n = 0; n < NQ; ++n) acc[r][n] = vfma(qv[n], kb, acc[r][n]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) vstore(st + r * ldst + n * W, acc[r][n]);
}

template <int NQ>
void qk_rows(const float* qt, int64_t ldqt, const float* k, int64_t ldk, int64_t hd, int64_t L, float* st,
             int64_t ldst) {
  int64_t j = 0;
  for (; j + JR <= L; j += JR) qk_tile<NQ, JR>(qt, ldqt, k + j * ldk, ldk, hd, st + j * ldst, ldst);
  const float* kj = k + j * ldk;
  float* sj = st + j * ldst;
  switch (L - j) {
    case 0: break;
    case 1: qk_tile<NQ, 1>(qt, ldqt, kj, ldk, hd, sj, ldst); break;
    case 2: qk_tile<NQ, 2>(qt, ldqt, kj, ldk, hd, sj, ldst); break;
    case 3: qk_tile<NQ, 3>(qt, ldqt, kj, ldk, hd, sj, ldst); break;
    case 4: qk_tile<NQ, 4>(qt, ldqt, kj, ldk, hd, sj, ldst); break;
    case 5: qk_tile<NQ, 5>(qt, ldqt, kj, ldk, hd, sj, ldst); break;
    default: static_assert(JR == 6, "extend the tail switch"); break;
  }
}

void qk(int nq, const float* qt, int64_t ldqt, const float* k, int64_t ldk, int64_t hd, int64_t L, float* st,
        int64_t ldst) {
  switch (nq) {
    case 1: return qk_rows<1>(qt, ldqt, k, ldk, hd, L, st, ldst);
    case 2: return qk_rows<2>(qt, ldqt, k, ldk, hd, L, st, ldst);
    case 3: return qk_rows<3>(qt, ldqt, k, ldk, hd, L, st, ldst);
    default: return qk_rows<4>(qt, ldqt, k, ldk, hd, L, st, ldst);
  }
}

// out[r][c0*W : (c0+NV)*W] = inv[r] * sum_j pt[j][r] * v[j][c0*W ...], r < R; `tail` masks the last vector.
template <int R, int NV, typename T>
DBF_INLINE void pv_tile(const float* __restrict pt, int64_t ldpt, int64_t L, const float* __restrict v,
                        int64_t ldv, vmask tail, const float* inv, T* __restrict out, int64_t ldo) {
  vf acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[r][n] = vzero();
  for (int64_t j = 0; j < L; ++j) {
    vf vv[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV - 1; ++n) vv[n] = vload(v + j * ldv + n * W);
    vv[NV - 1] = vload(v + j * ldv + (NV - 1) * W, tail);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf p = vset1(pt[j * ldpt + r]);
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) acc[r][n] = vfma(vv[n], p, acc[r][n]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const vf s = vset1(inv[r]);
#pragma GCC unroll 4
    for (int n = 0; n < NV - 1; ++n) vstore(out + r * ldo + n * W, vmul(acc[r][n], s));
    vstore(out + r * ldo + (NV - 1) * W, vmul(acc[r][NV - 1], s), tail);
  }
}

template <int NV, typename T>
void pv_rows(const float* pt, int64_t ldpt, int64_t L, const float* v, int64_t ldv, vmask tail,
             const float* inv, int64_t m, T* out, int64_t ldo) {
  int64_t i = 0;
  for (; i + MR <= m; i += MR) pv_tile<MR, NV>(pt + i, ldpt, L, v, ldv, tail, inv + i, out + i * ldo, ldo);
  const float* pi = pt + i;
  const float* ii = inv + i;
  T* oi = out + i * ldo;
  switch (m - i) {
    case 0: break;
    case 1: pv_tile<1, NV>(pi, ldpt, L, v, ldv, tail, ii, oi, ldo); break;
    case 2: pv_tile<2, NV>(pi, ldpt, L, v, ldv, tail, ii, oi, ldo); break;
    case 3: pv_tile<3, NV>(pi, ldpt, L, v, ldv, tail, ii, oi, ldo); break;
    case 4: pv_tile<4, NV>(pi, ldpt, L, v, ldv, tail, ii, oi, ldo); break;
    case 5: pv_tile<5, NV>(pi, ldpt, L, v, ldv, tail, ii, oi, ldo); break;
    default: static_assert(MR == 6, "extend the tail switch"); break;
  }
}

template <typename T>
void pv(const float* pt, int64_t ldpt, int64_t L, const float* v, int64_t ldv, int64_t hd, const float* inv,
        int64_t m, T* out, int64_t ldo) {
  const int64_t nvec = (hd + W - 1) / W;
  for (int64_t c0 = 0; c0 < nvec; c0 += DV) {
    const int nv = static_cast<int>(std::min<int64_t>(DV, nvec - c0));
    const vmask tail = (c0 + nv == nvec) ? first_n(hd - (nvec - 1) * W) : first_n(W);
    const float* vc = v + c0 * W;
    T* oc = out + c0 * W;
    switch (nv) {
      case 1: pv_rows<1>(pt, ldpt, L, vc, ldv, tail, inv, m, oc, ldo); break;
      case 2: pv_rows<2>(pt, ldpt, L, vc, ldv, tail, inv, m, oc, ldo); break;
      case 3: pv_rows<3>(pt, ldpt, L, vc, ldv, tail, inv, m, oc, ldo); break;
      default: pv_rows<4>(pt, ldpt, L, vc, ldv, tail, inv, m, oc, ldo); break;
    }
  }
}

// Softmax over the L rows of st (ld = ldst) for nq query vectors: st <- exp(st - colmax), and
// inv[i] = gain / colsum[i].
void softmax_cols(float* st, int64_t ldst, int64_t L, int nq, float gain, float* inv) {
  for (int n = 0; n < nq; ++n) {
    float* col = st + n * W;
    vf mx0 = vset1(-INFINITY), mx1 = vset1(-INFINITY);
    int64_t j = 0;
    for (; j + 2 <= L; j += 2) {
      mx0 = vmax(vload(col + j * ldst), mx0);
      mx1 = vmax(vload(col + (j + 1) * ldst), mx1);
    }
    if (j < L) mx0 = vmax(vload(col + j * ldst), mx0);
    const vf mx = vmax(mx0, mx1);
    vf s0 = vzero(), s1 = vzero();
    j = 0;
    for (; j + 2 <= L; j += 2) {
      vf e0 = vexp(vsub(vload(col + j * ldst), mx));
      vf e1 = vexp(vsub(vload(col + (j + 1) * ldst), mx));
      vstore(col + j * ldst, e0);
      vstore(col + (j + 1) * ldst, e1);
      s0 = vadd(s0, e0);
      s1 = vadd(s1, e1);
    }
    if (j < L) {
      vf e0 = vexp(vsub(vload(col + j * ldst), mx));
      vstore(col + j * ldst, e0);
      s0 = vadd(s0, e0);
    }
    vstore(inv + n * W, vdiv(vset1(gain), vadd(s0, s1)));
  }
}

#if DBF_AVX512
// In-register transpose of 16 vectors (rows) into 16 vectors (columns): r[k] <- column k.
DBF_INLINE void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {  // rows 4i..4i+3: r[4i + c] holds columns c, c+4, c+8, c+12
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);       // columns c, c+8 of rows 0-7
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);   // columns c+4, c+12 of rows 0-7
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
  }
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xdd);
  }
}
#endif

// qt[d][i] = scale * qb[i][d] for i < m, zero for m <= i < mpad (mpad a multiple of W).
template <typename T>
void pack_qt(const T* qb, int64_t ldq, int64_t m, int64_t hd, float scale, float* qt, int64_t mpad) {
#if DBF_AVX512
  const vf vs = vset1(scale);
  for (int64_t i0 = 0; i0 < mpad; i0 += 16) {
    for (int64_t d0 = 0; d0 < hd; d0 += 16) {
      const vmask cm = first_n(hd - d0);
      __m512 r[16];
#pragma GCC unroll 16
      for (int ii = 0; ii < 16; ++ii) {
        r[ii] = (i0 + ii < m) ? vmul(vload(qb + (i0 + ii) * ldq + d0, cm), vs) : vzero();
      }
      transpose16(r);
      const int64_t nc = std::min<int64_t>(16, hd - d0);
      for (int64_t c = 0; c < nc; ++c) vstore(qt + (d0 + c) * mpad + i0, r[c]);
    }
  }
#else
  for (int64_t i = 0; i < mpad; ++i) {
    for (int64_t d = 0; d < hd; ++d) qt[d * mpad + i] = i < m ? static_cast<float>(qb[i * ldq + d]) * scale : 0.0f;
  }
#endif
}

// Keys of sequence s: all of its rows, or the first kv[s] of them (clamped to [0, rows]).
DBF_INLINE int64_t key_count(const int32_t* cu, const int32_t* kv, int64_t s) {
  const int64_t L = cu[s + 1] - cu[s];
  return kv == nullptr ? L : std::max<int64_t>(0, std::min<int64_t>(kv[s], L));
}

struct Item {
  int64_t s, h, q0;  // sequence, head, first query of the block (relative to the sequence)
};

// Software prefetch (to L2) of the rows the next work item reads: its Q block, and K/V when it starts a
// new (s, h). The head's columns are a 2*hd-byte (bf16) or 4*hd-byte slice of rows 3*D wide, a pattern
// the hardware prefetchers do not follow; this hides most of the DRAM/L3 latency of a cold QKV.
template <typename T>
DBF_INLINE void prefetch_rows(const T* base, int64_t ld, int64_t rows, int64_t hd) {
  const int64_t bytes = hd * static_cast<int64_t>(sizeof(T));
  for (int64_t j = 0; j < rows; ++j) {
    const char* p = reinterpret_cast<const char*>(base + j * ld);
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 2);
  }
}

template <typename T>
DBF_INLINE void prefetch_item(const Item& nx, const Item& cur, const T* q, int64_t ldq, const T* k, int64_t ldk,
                              const T* v, int64_t ldv, const int32_t* cu, const int32_t* kv, int64_t hd) {
  const int64_t row0 = cu[nx.s], L = cu[nx.s + 1] - cu[nx.s], Lk = key_count(cu, kv, nx.s);
  const int64_t m = std::min<int64_t>(BQ, L - nx.q0), col = nx.h * hd;
  prefetch_rows(q + (row0 + nx.q0) * ldq + col, ldq, m, hd);
  if (nx.s != cur.s || nx.h != cur.h) {
    prefetch_rows(k + row0 * ldk + col, ldk, Lk, hd);
    prefetch_rows(v + row0 * ldv + col, ldv, Lk, hd);
  }
}

// Work items in (s, h, block) order with their cost, then a balanced contiguous split over threads:
// thread t runs items [first[t], first[t + 1]).
struct Plan {
  std::vector<Item> items;
  std::vector<int64_t> first;
  int64_t nt = 0, maxL = 0;
};

Plan make_plan(const int32_t* cu, const int32_t* kv, int64_t B, int64_t H, const float* head_mask) {
  Plan p;
  std::vector<double> cost_end;  // inclusive prefix sum of the item costs
  double total = 0.0;
  for (int64_t s = 0; s < B; ++s) {
    const int64_t L = cu[s + 1] - cu[s], Lk = key_count(cu, kv, s);
    p.maxL = std::max(p.maxL, L);
    for (int64_t h = 0; h < H; ++h) {
      const bool off = head_mask != nullptr && head_mask[h] == 0.0f;
      for (int64_t q0 = 0; q0 < L; q0 += BQ) {
        const int64_t m = std::min<int64_t>(BQ, L - q0);
        p.items.push_back({s, h, q0});
        total += off ? static_cast<double>(m) : static_cast<double>(m + 4) * static_cast<double>(Lk) + 16.0;
        cost_end.push_back(total);
      }
    }
  }
  const int64_t n_items = static_cast<int64_t>(p.items.size());
  if (n_items == 0) return p;
  // One thread for tiny problems (a few short sequences): a parallel region costs more than it saves.
  constexpr double kMinParallelCost = 4096.0;  // ~1 MFLOP at head_dim 64
  const int64_t nt =
      total < kMinParallelCost ? 1 : std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n_items));
  // Thread t takes the items whose cost midpoint lies in [t, t+1) * total / nt.
  p.nt = nt;
  p.first.assign(nt + 1, n_items);
  p.first[0] = 0;
  int64_t t = 1;
  for (int64_t i = 0; i < n_items && t < nt; ++i) {
    const double start = i ? cost_end[i - 1] : 0.0;
    const double mid = 0.5 * (start + cost_end[i]);
    while (t < nt && mid >= total * static_cast<double>(t) / static_cast<double>(nt)) p.first[t++] = i;
  }
  return p;
}

#if DBF_BF16DP
// ---- bf16 inputs on AVX512_BF16: VDPBF16PS (two bf16 products per fp32 lane, fp32 accumulation) ------
//
// Same work items and split as the generic kernel; per (s, h) the K and V rows of the head are packed once
// into thread-local scratch, and per item:
//   1. Qt  (hd/2 x mpad words) = Q_block^T as bf16 pairs along head_dim (a 32-bit transpose of the rows;
//                                unscaled, so exact), zero-padded (odd head_dim, queries >= m).
//   2. S^T (L x mpad, fp32)    = scale * K Qt: register tile of keys x query-vectors, each K pair
//                                (k[j][d], k[j][d+1]) broadcast as one 32-bit word; the column max is kept
//                                on the fly.
//   3. softmax over keys in fp32 (max subtracted, exp), the probabilities rounded to bf16 (as PyTorch's bf16
//      attention does) and stored as key pairs: pp[j/2][i] = (p[i][j], p[i][j+1]). The normaliser sums the
//      rounded values, so the weights actually used sum to exactly 1 (up to fp32 rounding).
//   4. O (m x hd) = P V: register tile of queries x head_dim-vectors, P pairs broadcast, V packed as key
//      pairs vp[j/2][c] = (v[j][c], v[j+1][c]) (zero row past an odd L), scaled by head_mask[h] / rowsum.
using u32 = uint32_t;

DBF_INLINE __mmask32 first_n32(int64_t n) {
  return n >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (n > 0 ? n : 0)) - 1u);
}
DBF_INLINE vf dp(vf acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

// The rows of the next work item, prefetched (to L2) `per` cache lines at a time by step() and the rest by
// flush(): up to 3 row blocks (Q of the next block; K and V when it starts a new (s, h)).
struct Prefetcher {
  const char* base[3];
  int64_t ld[3], rows[3];
  int n = 0, cur = 0;
  int64_t row = 0, off = 0, bytes = 0, per = 0;
  void reset(int64_t row_bytes) {
    n = cur = 0;
    row = off = 0;
    bytes = row_bytes;
  }
  template <typename T>
  void add(const T* p, int64_t ldt, int64_t r) {
    base[n] = reinterpret_cast<const char*>(p);
    ld[n] = ldt * static_cast<int64_t>(sizeof(T));
    rows[n++] = r;
  }
  void plan(int64_t steps) {
    int64_t lines = 0;
    for (int i = 0; i < n; ++i) lines += rows[i] * ((bytes + 63) / 64);
    per = (lines + steps - 1) / std::max<int64_t>(steps, 1);
  }
  DBF_INLINE void issue(int64_t count) {
    while (count > 0 && cur < n) {
      if (row == rows[cur]) {
        ++cur;
        row = 0;
        continue;
      }
      __builtin_prefetch(base[cur] + row * ld[cur] + off, 0, 2);
      --count;
      off += 64;
      if (off >= bytes) {
        off = 0;
        ++row;
      }
    }
  }
  DBF_INLINE void step() { issue(per); }
  void flush() { issue(INT64_MAX); }
};

// Keys per S^T tile for NQ query vectors, queries per O tile for NV head_dim vectors (<= 24 accumulators).
template <int NQ> constexpr int kJR = NQ >= 4 ? 6 : NQ == 3 ? 8 : 12;
template <int NV> constexpr int kMR = NV >= 4 ? 6 : NV == 3 ? 8 : 12;

// st[r][0 : NQ*W] = scale * sum_dp <k[r][dp], qt[dp][0 : NQ*W]>, r < R; mx[n] = max(mx[n], column n).
template <int NQ, int R>
DBF_INLINE void qk_tile_dp(const u32* __restrict qt, int64_t ldqt, const u32* __restrict k, int64_t ldk,
                           int64_t ndp, vf vscale, float* __restrict st, int64_t ldst, vf* mx) {
  vf acc[R][NQ];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) acc[r][n] = vzero();
  for (int64_t d = 0; d < ndp; ++d) {
    __m512i qv[NQ];
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) qv[n] = _mm512_loadu_si512(qt + d * ldqt + n * W);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512i kb = _mm512_set1_epi32(static_cast<int>(k[r * ldk + d]));
#pragma GCC unroll 4
      for (int n = 0; n < NQ; ++n) acc[r][n] = dp(acc[r][n], qv[n], kb);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NQ; ++n) {
      const vf x = vmul(acc[r][n], vscale);
      mx[n] = vmax(x, mx[n]);
      vstore(st + r * ldst + n * W, x);
    }
}

template <int NQ, int R>
DBF_INLINE void qk_tail_dp(int64_t rem, const u32* qt, int64_t ldqt, const u32* k, int64_t ldk, int64_t ndp,
                           vf vscale, float* st, int64_t ldst, vf* mx) {
  if constexpr (R > 0) {
    if (rem == R) return qk_tile_dp<NQ, R>(qt, ldqt, k, ldk, ndp, vscale, st, ldst, mx);
    return qk_tail_dp<NQ, R - 1>(rem, qt, ldqt, k, ldk, ndp, vscale, st, ldst, mx);
  }
}

template <int NQ>
void qk_rows_dp(const u32* qt, int64_t ldqt, const u32* k, int64_t ldk, int64_t ndp, int64_t L, float scale,
                float* st, int64_t ldst, vf* mx, Prefetcher& pf) {
  constexpr int R = kJR<NQ>;
  const vf vscale = vset1(scale);
  int64_t j = 0;
  for (; j + R <= L; j += R) {
    qk_tile_dp<NQ, R>(qt, ldqt, k + j * ldk, ldk, ndp, vscale, st + j * ldst, ldst, mx);
    pf.step();
  }
  if (j < L) qk_tail_dp<NQ, R - 1>(L - j, qt, ldqt, k + j * ldk, ldk, ndp, vscale, st + j * ldst, ldst, mx);
}

void qk_dp(int nq, const u32* qt, int64_t ldqt, const u32* k, int64_t ldk, int64_t ndp, int64_t L, float scale,
           float* st, int64_t ldst, vf* mx, Prefetcher& pf) {
  switch (nq) {
    case 1: return qk_rows_dp<1>(qt, ldqt, k, ldk, ndp, L, scale, st, ldst, mx, pf);
    case 2: return qk_rows_dp<2>(qt, ldqt, k, ldk, ndp, L, scale, st, ldst, mx, pf);
    case 3: return qk_rows_dp<3>(qt, ldqt, k, ldk, ndp, L, scale, st, ldst, mx, pf);
    default: return qk_rows_dp<4>(qt, ldqt, k, ldk, ndp, L, scale, st, ldst, mx, pf);
  }
}

// out[r][0 : NV*W] = inv[r] * sum_jp <pp[jp][r], vp[jp][0 : NV*W]>, r < R; `tail` masks the last vector.
template <int R, int NV>
DBF_INLINE void pv_tile_dp(const u32* __restrict pp, int64_t ldpp, int64_t njp, const u32* __restrict vp,
                           int64_t ldvp, vmask tail, const float* inv, bf16* __restrict out, int64_t ldo) {
  vf acc[R][NV];
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) acc[r][n] = vzero();
  for (int64_t j = 0; j < njp; ++j) {
    __m512i vv[NV];
#pragma GCC unroll 4
    for (int n = 0; n < NV; ++n) vv[n] = _mm512_loadu_si512(vp + j * ldvp + n * W);
#pragma GCC unroll 12
    for (int r = 0; r < R; ++r) {
      const __m512i pb = _mm512_set1_epi32(static_cast<int>(pp[j * ldpp + r]));
#pragma GCC unroll 4
      for (int n = 0; n < NV; ++n) acc[r][n] = dp(acc[r][n], vv[n], pb);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < R; ++r) {
    const vf s = vset1(inv[r]);
#pragma GCC unroll 4
    for (int n = 0; n < NV - 1; ++n) vstore(out + r * ldo + n * W, vmul(acc[r][n], s));
    vstore(out + r * ldo + (NV - 1) * W, vmul(acc[r][NV - 1], s), tail);
  }
}

template <int R, int NV>
DBF_INLINE void pv_tail_dp(int64_t rem, const u32* pp, int64_t ldpp, int64_t njp, const u32* vp, int64_t ldvp,
                           vmask tail, const float* inv, bf16* out, int64_t ldo) {
  if constexpr (R > 0) {
    if (rem == R) return pv_tile_dp<R, NV>(pp, ldpp, njp, vp, ldvp, tail, inv, out, ldo);
    return pv_tail_dp<R - 1, NV>(rem, pp, ldpp, njp, vp, ldvp, tail, inv, out, ldo);
  }
}

template <int NV>
void pv_rows_dp(const u32* pp, int64_t ldpp, int64_t njp, const u32* vp, int64_t ldvp, vmask tail,
                const float* inv, int64_t m, bf16* out, int64_t ldo, Prefetcher& pf) {
  constexpr int R = kMR<NV>;
  int64_t i = 0;
  for (; i + R <= m; i += R) {
    pv_tile_dp<R, NV>(pp + i, ldpp, njp, vp, ldvp, tail, inv + i, out + i * ldo, ldo);
    pf.step();
  }
  if (i < m) pv_tail_dp<R - 1, NV>(m - i, pp + i, ldpp, njp, vp, ldvp, tail, inv + i, out + i * ldo, ldo);
}

void pv_dp(const u32* pp, int64_t ldpp, int64_t njp, const u32* vp, int64_t ldvp, int64_t hd, const float* inv,
           int64_t m, bf16* out, int64_t ldo, Prefetcher& pf) {
  const int64_t nvec = (hd + W - 1) / W;
  for (int64_t c0 = 0; c0 < nvec; c0 += DV) {
    const int nv = static_cast<int>(std::min<int64_t>(DV, nvec - c0));
    const vmask tail = (c0 + nv == nvec) ? first_n(hd - (nvec - 1) * W) : first_n(W);
    const u32* vc = vp + c0 * W;
    bf16* oc = out + c0 * W;
    switch (nv) {
      case 1: pv_rows_dp<1>(pp, ldpp, njp, vc, ldvp, tail, inv, m, oc, ldo, pf); break;
      case 2: pv_rows_dp<2>(pp, ldpp, njp, vc, ldvp, tail, inv, m, oc, ldo, pf); break;
      case 3: pv_rows_dp<3>(pp, ldpp, njp, vc, ldvp, tail, inv, m, oc, ldo, pf); break;
      default: pv_rows_dp<4>(pp, ldpp, njp, vc, ldvp, tail, inv, m, oc, ldo, pf); break;
    }
  }
}

// 2^t for t <= 0 (t = log2-scaled score minus the column max): t = n + f, |f| <= 1/2, 2^f by a degree-5
// minimax polynomial (relative error 2.3e-7 in fp32, far below the bf16 rounding of the result), 2^n by
// scalef. NaN propagates; t below -126 gives at most 2^-126.
DBF_INLINE vf vexp2_neg(vf t) {
  t = vmax(t, vset1(-126.0f));
  const vf n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = vsub(t, n);
  vf p = vset1(1.327644451521337e-3f);
  p = vfma(p, f, vset1(9.67553723603487e-3f));
  p = vfma(p, f, vset1(5.550713464617729e-2f));
  p = vfma(p, f, vset1(2.4022120237350464e-1f));
  p = vfma(p, f, vset1(6.931469440460205e-1f));
  p = vfma(p, f, vset1(1.0000001192092896f));
  return _mm512_scalef_ps(p, n);
}

// For each of the nq query vectors: p = 2^(st - mx) (st holds log2(e) * scale * QK^T) over the L rows of st, rounded to bf16 and stored as
// key pairs into pp (ld ldpp words; a zero second half past an odd L); inv = gain / sum of the rounded p.
void softmax_pairs(const float* st, int64_t ldst, int64_t L, int nq, const vf* mx, float gain, u32* pp,
                   int64_t ldpp, float* inv) {
  // Word i of the result = (low: word i of the first source half, high: word i of the second half).
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                              22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i himask = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  const int64_t npairs = L / 2;
  for (int n = 0; n < nq; ++n) {
    const float* col = st + n * W;
    u32* pc = pp + n * W;
    const vf m = mx[n];
    vf s0 = vzero(), s1 = vzero();
    for (int64_t jp = 0; jp < npairs; ++jp) {
      const vf e0 = vexp2_neg(vsub(vload(col + 2 * jp * ldst), m));
      const vf e1 = vexp2_neg(vsub(vload(col + (2 * jp + 1) * ldst), m));
      // cvtne2ps: words 0-15 = e0, 16-31 = e1 (RNE); then interleave to (e0[i], e1[i]) per 32-bit lane.
      const __m512i w = _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(e1, e0));
      _mm512_storeu_si512(pc + jp * ldpp, w);
      s0 = vadd(s0, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
      s1 = vadd(s1, _mm512_castsi512_ps(_mm512_and_si512(w, himask)));
    }
    if (L & 1) {
      const vf e0 = vexp2_neg(vsub(vload(col + (L - 1) * ldst), m));
      const __m512i w = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(e0));
      _mm512_storeu_si512(pc + npairs * ldpp, w);
      s0 = vadd(s0, _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)));
    }
    vstore(inv + n * W, vdiv(vset1(gain), vadd(s0, s1)));
  }
}

// qt[dp][i] = (qb[i][2dp], qb[i][2dp+1]) for i < m, zero for m <= i < mpad and past head_dim.
void pack_qt_pairs(const bf16* qb, int64_t ldq, int64_t m, int64_t hd, u32* qt, int64_t mpad) {
  const int64_t ndp = (hd + 1) / 2;
  for (int64_t i0 = 0; i0 < mpad; i0 += 16) {
    for (int64_t d0 = 0; d0 < hd; d0 += 32) {  // 32 bf16 = 16 pairs per row
      const __mmask32 cm = first_n32(hd - d0);
      __m512 r[16];
#pragma GCC unroll 16
      for (int ii = 0; ii < 16; ++ii) {
        r[ii] = (i0 + ii < m) ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(cm, qb + (i0 + ii) * ldq + d0))
                              : vzero();
      }
      transpose16(r);
      const int64_t nc = std::min<int64_t>(16, ndp - d0 / 2);
      for (int64_t c = 0; c < nc; ++c) vstore(reinterpret_cast<float*>(qt + (d0 / 2 + c) * mpad + i0), r[c]);
    }
  }
}

void attention_kernel_bf16dp(const bf16* q, int64_t ldq, const bf16* k, int64_t ldk, const bf16* v,
                             int64_t ldv, const int32_t* cu, const int32_t* kv, int64_t B, int64_t H, int64_t hd,
                             float scale, const float* head_mask, bf16* out, int64_t D) {
  const Plan plan = make_plan(cu, kv, B, H, head_mask);
  if (plan.items.empty()) return;
  const std::vector<Item>& items = plan.items;
  const std::vector<int64_t>& first = plan.first;
  const int64_t maxL = plan.maxL;
  const int64_t ndp = (hd + 1) / 2;              // head_dim pairs: words per packed K row
  const int64_t hdpad = (hd + W - 1) / W * W;    // words per packed V key-pair row
  const int64_t maxjp = (maxL + 1) / 2;

  at::parallel_for(0, plan.nt, 1, [&](int64_t tb, int64_t te) {
    std::vector<u32> qt(static_cast<size_t>(ndp) * BQ);
    std::vector<float> st(static_cast<size_t>(std::max<int64_t>(maxL, 1)) * BQ);
    std::vector<u32> pp(static_cast<size_t>(std::max<int64_t>(maxjp, 1)) * BQ);
    std::vector<float> inv(BQ);
    std::vector<u32> kp(static_cast<size_t>(maxL) * ndp + W);
    std::vector<u32> vp(static_cast<size_t>(maxjp) * hdpad + W);
    Prefetcher pf;
    int64_t cached_s = -1, cached_h = -1;
    for (int64_t idx = first[tb]; idx < first[te]; ++idx) {
      const Item it = items[idx];
      // The next item's rows are prefetched a few lines at a time between the register tiles of this one
      // (a burst of hundreds of prefetches would fill the miss buffers and stall this item's loads).
      if (idx + 1 < first[te]) {
        const Item& nx = items[idx + 1];
        const int64_t nrow0 = cu[nx.s], nL = cu[nx.s + 1] - cu[nx.s], nLk = key_count(cu, kv, nx.s);
        const int64_t nm = std::min<int64_t>(BQ, nL - nx.q0);
        pf.reset(hd * static_cast<int64_t>(sizeof(bf16)));
        pf.add(q + (nrow0 + nx.q0) * ldq + nx.h * hd, ldq, nm);
        if (nx.s != it.s || nx.h != it.h) {
          pf.add(k + nrow0 * ldk + nx.h * hd, ldk, nLk);
          pf.add(v + nrow0 * ldv + nx.h * hd, ldv, nLk);
        }
        const int64_t Lc = key_count(cu, kv, it.s), mc = std::min<int64_t>(BQ, cu[it.s + 1] - cu[it.s] - it.q0);
        pf.plan(Lc / 6 + mc / 6 * ((hd + 63) / 64) + 2);
      } else {
        pf.reset(0);
      }
      const int64_t row0 = cu[it.s], Lq = cu[it.s + 1] - cu[it.s], L = key_count(cu, kv, it.s);
      const int64_t m = std::min<int64_t>(BQ, Lq - it.q0);
      const int64_t col = it.h * hd;
      bf16* o = out + (row0 + it.q0) * D + col;
      const float gain = head_mask != nullptr ? head_mask[it.h] : 1.0f;
      if (gain == 0.0f || L == 0) {  // probabilities * 0 (or no keys at all): exactly zero, never NaN
        for (int64_t i = 0; i < m; ++i) std::fill(o + i * D, o + i * D + hd, bf16(0.0f));
        continue;
      }
      const int64_t njp = (L + 1) / 2;
      if (it.s != cached_s || it.h != cached_h) {
        // K rows -> kp[j][0 : ndp] words (zero half-word past an odd head_dim).
        for (int64_t j = 0; j < L; ++j) {
          const bf16* kr = k + (row0 + j) * ldk + col;
          bf16* kd = reinterpret_cast<bf16*>(kp.data() + j * ndp);
          for (int64_t d = 0; d < 2 * ndp; d += 32) {
            const __m512i x = _mm512_maskz_loadu_epi16(first_n32(hd - d), kr + d);
            _mm512_mask_storeu_epi16(kd + d, first_n32(2 * ndp - d), x);
          }
        }
        // V rows -> vp[jp][c] = (v[2jp][c], v[2jp+1][c]), c < hdpad, zero past head_dim and past an odd L.
        for (int64_t jp = 0; jp < njp; ++jp) {
          const bf16* va = v + (row0 + 2 * jp) * ldv + col;
          const bool has_b = 2 * jp + 1 < L;
          const bf16* vb = has_b ? va + ldv : va;
          u32* vd = vp.data() + jp * hdpad;
          for (int64_t c = 0; c < hdpad; c += W) {
            const __mmask16 cm = first_n(hd - c);
            const __m512i a = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(cm, va + c));
            const __m512i b = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(has_b ? cm : 0, vb + c));
            _mm512_storeu_si512(vd + c, _mm512_or_si512(a, _mm512_slli_epi32(b, 16)));
          }
        }
        cached_s = it.s;
        cached_h = it.h;
      }
      const int nq = static_cast<int>((m + W - 1) / W);
      const int64_t mpad = static_cast<int64_t>(nq) * W;
      pack_qt_pairs(q + (row0 + it.q0) * ldq + col, ldq, m, hd, qt.data(), mpad);
      vf mx[NQMAX];
      for (int n = 0; n < NQMAX; ++n) mx[n] = vset1(-INFINITY);
      qk_dp(nq, qt.data(), mpad, kp.data(), ndp, ndp, L, scale * 1.44269504088896341f, st.data(), mpad, mx, pf);
      softmax_pairs(st.data(), mpad, L, nq, mx, gain, pp.data(), mpad, inv.data());
      pv_dp(pp.data(), mpad, njp, vp.data(), hdpad, hd, inv.data(), m, o, D, pf);
      pf.flush();
    }
  });
}
#endif  // DBF_BF16DP

template <typename T>
void attention_kernel(const T* q, int64_t ldq, const T* k, int64_t ldk, const T* v, int64_t ldv,
                      const int32_t* cu, const int32_t* kv, int64_t B, int64_t H, int64_t hd, float scale,
                      const float* head_mask, T* out, int64_t D) {
#if DBF_BF16DP
  if constexpr (std::is_same_v<T, bf16>) {
    return attention_kernel_bf16dp(q, ldq, k, ldk, v, ldv, cu, kv, B, H, hd, scale, head_mask, out, D);
  }
#endif
  const Plan plan = make_plan(cu, kv, B, H, head_mask);
  if (plan.items.empty()) return;
  const std::vector<Item>& items = plan.items;
  const std::vector<int64_t>& first = plan.first;
  const int64_t nt = plan.nt, maxL = plan.maxL;
  constexpr bool kWiden = !std::is_same_v<T, float>;  // bf16 K/V are widened to fp32 once per (s, h)

  at::parallel_for(0, nt, 1, [&](int64_t tb, int64_t te) {
    std::vector<float> qt(static_cast<size_t>(hd) * BQ);
    std::vector<float> st(static_cast<size_t>(std::max<int64_t>(maxL, 1)) * BQ);
    std::vector<float> inv(BQ);
    std::vector<float> kbuf, vbuf;
    if (kWiden) {
      kbuf.resize(static_cast<size_t>(maxL) * hd + W);
      vbuf.resize(static_cast<size_t>(maxL) * hd + W);
    }
    int64_t cached_s = -1, cached_h = -1;
    for (int64_t idx = first[tb]; idx < first[te]; ++idx) {
      const Item it = items[idx];
      if (idx + 1 < first[te]) prefetch_item(items[idx + 1], it, q, ldq, k, ldk, v, ldv, cu, kv, hd);
      const int64_t row0 = cu[it.s], Lq = cu[it.s + 1] - cu[it.s], L = key_count(cu, kv, it.s);
      const int64_t m = std::min<int64_t>(BQ, Lq - it.q0);
      const int64_t col = it.h * hd;
      T* o = out + (row0 + it.q0) * D + col;
      const float gain = head_mask != nullptr ? head_mask[it.h] : 1.0f;
      if (gain == 0.0f || L == 0) {  // probabilities * 0 (or no keys at all): exactly zero, never NaN
        for (int64_t i = 0; i < m; ++i) std::fill(o + i * D, o + i * D + hd, T(0.0f));
        continue;
      }
      // K, V of this (s, h) as fp32 rows.
      const float* kf;
      const float* vf_;
      int64_t ldkf, ldvf;
      if constexpr (kWiden) {
        if (it.s != cached_s || it.h != cached_h) {
          for (int64_t j = 0; j < L; ++j) {
            const T* kr = k + (row0 + j) * ldk + col;
            const T* vr = v + (row0 + j) * ldv + col;
            float* kd = kbuf.data() + j * hd;
            float* vd = vbuf.data() + j * hd;
            int64_t d = 0;
            for (; d + W <= hd; d += W) {
              vstore(kd + d, vload(kr + d));
              vstore(vd + d, vload(vr + d));
            }
            if (d < hd) {
              const vmask mk = first_n(hd - d);
              vstore(kd + d, vload(kr + d, mk), mk);
              vstore(vd + d, vload(vr + d, mk), mk);
            }
          }
          cached_s = it.s;
          cached_h = it.h;
        }
        kf = kbuf.data();
        vf_ = vbuf.data();
        ldkf = ldvf = hd;
      } else {
        kf = k + row0 * ldk + col;
        vf_ = v + row0 * ldv + col;
        ldkf = ldk;
        ldvf = ldv;
      }
      // 1. Qt = scale * Q_block^T, zero-padded to whole vectors.
      const int nq = static_cast<int>((m + W - 1) / W);
      const int64_t mpad = static_cast<int64_t>(nq) * W;
      pack_qt(q + (row0 + it.q0) * ldq + col, ldq, m, hd, scale, qt.data(), mpad);
      // 2. S^T = K Qt.   3. column softmax.   4. O = P V, normalised at the store.
      qk(nq, qt.data(), mpad, kf, ldkf, hd, L, st.data(), mpad);
      softmax_cols(st.data(), mpad, L, nq, gain, inv.data());
      pv<T>(st.data(), mpad, L, vf_, ldvf, hd, inv.data(), m, o, D);
    }
  });
}

}  // namespace
}  // namespace dbf

at::Tensor varlen_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& cu_seqlens, int64_t max_seqlen, int64_t n_heads,
                                double scale, const std::optional<at::Tensor>& head_mask,
                                const std::optional<at::Tensor>& seqused) {
  using namespace dbf;
  check_rows(q, "varlen_attention: q");
  check_rows(k, "varlen_attention: k");
  check_rows(v, "varlen_attention: v");
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), "varlen_attention: q, k, v must have the same "
              "shape (tokens, dim), got q ", q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "varlen_attention: q, k, v must have the same dtype, got q ", q.scalar_type(), ", k ",
              k.scalar_type(), ", v ", v.scalar_type());
  const int64_t N = q.size(0), D = q.size(1);
  TORCH_CHECK(n_heads > 0, "varlen_attention: n_heads must be positive, got ", n_heads);
  TORCH_CHECK(D % n_heads == 0 && D > 0, "varlen_attention: dim ", D, " of q must be a positive multiple of n_heads ",
              n_heads);
  const int64_t hd = D / n_heads;
  check_cpu(cu_seqlens, "varlen_attention: cu_seqlens");
  TORCH_CHECK(cu_seqlens.dim() == 1 && cu_seqlens.size(0) >= 1,
              "varlen_attention: cu_seqlens must be 1-D (batch + 1,), got shape ", cu_seqlens.sizes());
  TORCH_CHECK(cu_seqlens.scalar_type() == at::kInt, "varlen_attention: cu_seqlens must be int32, got ",
              cu_seqlens.scalar_type());
  TORCH_CHECK(max_seqlen >= 0, "varlen_attention: max_seqlen must be >= 0, got ", max_seqlen);
  const at::Tensor cu = cu_seqlens.contiguous();
  const int32_t* cup = cu.data_ptr<int32_t>();
  const int64_t B = cu.size(0) - 1;
  TORCH_CHECK(cup[0] == 0, "varlen_attention: cu_seqlens[0] must be 0, got ", cup[0]);
  for (int64_t s = 0; s < B; ++s) {
    const int64_t len = static_cast<int64_t>(cup[s + 1]) - cup[s];
    TORCH_CHECK(len >= 0, "varlen_attention: cu_seqlens must be non-decreasing, got cu_seqlens[", s, "] = ", cup[s],
                " > cu_seqlens[", s + 1, "] = ", cup[s + 1]);
    TORCH_CHECK(len <= max_seqlen, "varlen_attention: sequence ", s, " has length ", len, " > max_seqlen ",
                max_seqlen, " (cu_seqlens and max_seqlen disagree)");
  }
  TORCH_CHECK(cup[B] == N, "varlen_attention: cu_seqlens[-1] = ", cup[B], " must equal the number of tokens ", N,
              " (rows of q)");
  at::Tensor hm;
  if (head_mask.has_value() && head_mask->defined()) {
    check_cpu(*head_mask, "varlen_attention: head_mask");
    TORCH_CHECK(head_mask->dim() == 1 && head_mask->size(0) == n_heads,
                "varlen_attention: head_mask must have shape (n_heads,) = (", n_heads, ",), got ",
                head_mask->sizes());
    TORCH_CHECK(at::isFloatingType(head_mask->scalar_type()),
                "varlen_attention: head_mask must be floating point, got ", head_mask->scalar_type());
    hm = head_mask->to(at::kFloat).contiguous();
  }
  at::Tensor kvt;
  if (seqused.has_value() && seqused->defined()) {
    check_cpu(*seqused, "varlen_attention: seqused");
    TORCH_CHECK(seqused->dim() == 1 && seqused->size(0) == B, "varlen_attention: seqused must have shape (batch,) = (",
                B, ",), got ", seqused->sizes());
    TORCH_CHECK(seqused->scalar_type() == at::kInt, "varlen_attention: seqused must be int32, got ",
                seqused->scalar_type());
    kvt = seqused->contiguous();
  }
  at::Tensor out = at::empty({N, D}, q.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0) return out;
  dispatch_float(q.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    attention_kernel<T>(q.data_ptr<T>(), row_stride(q), k.data_ptr<T>(), row_stride(k), v.data_ptr<T>(),
                        row_stride(v), cup, kvt.defined() ? kvt.data_ptr<int32_t>() : nullptr, B, n_heads, hd,
                        static_cast<float>(scale),
                        hm.defined() ? hm.data_ptr<float>() : nullptr, out.data_ptr<T>(), D);
  });
  return out;
}
