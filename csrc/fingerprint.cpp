// weights_fingerprint: one 64-bit hash of a list of weight tensors, cheap enough to run on every inference
// call. It lets the cpp backend notice that a weight its prepacked (oneDNN) copy came from has changed,
// including edits autograd's version counter never sees (`w.data.mul_(3)`, numpy views, ctypes).
//
// Per tensor it mixes: identity (data_ptr, storage offset, dtype, sizes, strides), the autograd version
// counter (0 for inference tensors, which have none), and the raw bits of `samples` elements spread evenly
// over the tensor (first and last included). Any change of identity or version, and any whole-tensor edit
// (scale, copy, fill, re-init), changes the hash; an edit of a few elements that happen not to be sampled
// does not (see distilbert_fast/ops/gemm.py for what that means for callers and the measured cost).
#include "common.h"

namespace dbf {
namespace {

// splitmix64 finaliser: every input bit affects every output bit.
inline uint64_t mix(uint64_t h, uint64_t v) {
  uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Byte offset of the element with flat (row-major) index i of a strided tensor.
inline int64_t byte_offset(const at::Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    const int64_t n = t.size(d);
    off += (i % n) * t.stride(d);
    i /= n;
  }
  return off * static_cast<int64_t>(t.element_size());
}

}  // namespace
}  // namespace dbf

int64_t weights_fingerprint_cpu(at::TensorList tensors, int64_t samples) {
  using namespace dbf;
  TORCH_CHECK(samples >= 0, "weights_fingerprint: samples must be >= 0, got ", samples);
  uint64_t h = 0x6a09e667f3bcc909ULL;
  for (const at::Tensor& t : tensors) {
    if (!t.defined()) {
      h = mix(h, 0);
      continue;
    }
    h = mix(h, static_cast<uint64_t>(t.scalar_type()));
    h = mix(h, static_cast<uint64_t>(t.device().type()));
    for (int64_t d = 0; d < t.dim(); ++d) {
      h = mix(h, static_cast<uint64_t>(t.size(d)));
      h = mix(h, static_cast<uint64_t>(t.stride(d)));
    }
    if (t.is_meta()) continue;  // no data to identify
    h = mix(h, reinterpret_cast<uintptr_t>(t.data_ptr()));
    h = mix(h, t.is_inference() ? 0 : t._version());
    const int64_t n = t.numel();
    if (n == 0 || samples == 0 || !t.device().is_cpu()) continue;
    const auto* base = static_cast<const unsigned char*>(t.data_ptr());
    const int64_t es = t.element_size(), k = std::min(samples, n);
    for (int64_t s = 0; s < k; ++s) {
      const int64_t i = k == 1 ? 0 : s * (n - 1) / (k - 1);
      uint64_t bits = 0;
      std::memcpy(&bits, base + byte_offset(t, i), static_cast<size_t>(std::min<int64_t>(es, 8)));
      h = mix(h, bits);
    }
  }
  return static_cast<int64_t>(h >> 1);  // non-negative: fits a Python int without surprises
}
