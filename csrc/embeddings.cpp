// embeddings: y[n] = LayerNorm(word_weight[input_ids[n]] + pos_weight[position_ids[n]]), one pass per row
// (gather, add, fp32 statistics, affine, store). kernel -> launcher -> registered in ops.cpp.
#include "common.h"

namespace dbf {
namespace {

template <typename T, typename P, typename I>
void embeddings_kernel(const I* ids, const I* pos, const T* word, int64_t ldw, const T* posw,
                       int64_t ldp, const P* w, const P* b, int64_t N, int64_t D, float eps, T* out) {
  at::parallel_for(0, N, row_grain(D), [&](int64_t begin, int64_t end) {
    std::vector<float> buf(D + W);
    for (int64_t n = begin; n < end; ++n) {
      add_ln_row<T, P, true>(word + static_cast<int64_t>(ids[n]) * ldw, posw + static_cast<int64_t>(pos[n]) * ldp,
                             D, w, b, eps, buf.data(), out + n * D);
    }
  });
}

// Every index in [0, limit); reports the first offender by name.
template <typename I>
void check_index_range(const I* p, int64_t n, int64_t limit, const char* name, const char* table) {
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(p[i] >= 0 && p[i] < limit, "embeddings: ", name, "[", i, "] = ", p[i], " is out of range [0, ",
                limit, ") for ", table, " with ", limit, " rows");
  }
}

}  // namespace
}  // namespace dbf

at::Tensor embeddings_cpu(const at::Tensor& input_ids, const at::Tensor& position_ids,
                          const at::Tensor& word_weight, const at::Tensor& pos_weight,
                          const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps) {
  using namespace dbf;
  check_cpu(input_ids, "embeddings: input_ids");
  check_cpu(position_ids, "embeddings: position_ids");
  TORCH_CHECK(input_ids.dim() == 1, "embeddings: input_ids must be 1-D (tokens,), got shape ", input_ids.sizes());
  // int64 or int32, like torch.nn.functional.embedding (transformers and the torch backend accept both).
  TORCH_CHECK(input_ids.scalar_type() == at::kLong || input_ids.scalar_type() == at::kInt,
              "embeddings: input_ids must be int64 or int32, got ", input_ids.scalar_type());
  TORCH_CHECK(position_ids.dim() == 1 && position_ids.size(0) == input_ids.size(0),
              "embeddings: position_ids must have shape (", input_ids.size(0), ",) like input_ids, got ",
              position_ids.sizes());
  TORCH_CHECK(position_ids.scalar_type() == at::kLong || position_ids.scalar_type() == at::kInt,
              "embeddings: position_ids must be int64 or int32, got ", position_ids.scalar_type());
  check_rows(word_weight, "embeddings: word_weight");
  check_rows(pos_weight, "embeddings: pos_weight");
  TORCH_CHECK(pos_weight.scalar_type() == word_weight.scalar_type(), "embeddings: pos_weight dtype ",
              pos_weight.scalar_type(), " must equal word_weight dtype ", word_weight.scalar_type());
  const int64_t D = word_weight.size(1);
  TORCH_CHECK(D > 0, "embeddings: word_weight must have a non-empty last dim, got shape ", word_weight.sizes());
  TORCH_CHECK(pos_weight.size(1) == D, "embeddings: pos_weight dim ", pos_weight.size(1),
              " must equal word_weight dim ", D);
  TORCH_CHECK(eps >= 0.0, "embeddings: eps must be >= 0, got ", eps);
  auto [w, b] = ln_params(ln_weight, ln_bias, D, word_weight.scalar_type(), "embeddings: ln_weight",
                          "embeddings: ln_bias");
  // Mixed index dtypes are widened to int64 (one kernel per index type, not per pair).
  const bool same = input_ids.scalar_type() == position_ids.scalar_type();
  const at::Tensor ids = same ? input_ids.contiguous() : input_ids.to(at::kLong).contiguous();
  const at::Tensor pos = same ? position_ids.contiguous() : position_ids.to(at::kLong).contiguous();
  const int64_t N = ids.size(0);
  auto check_ranges = [&](auto itag) {
    using I = decltype(itag);
    check_index_range(ids.data_ptr<I>(), N, word_weight.size(0), "input_ids", "word_weight");
    check_index_range(pos.data_ptr<I>(), N, pos_weight.size(0), "position_ids", "pos_weight");
  };
  if (ids.scalar_type() == at::kInt) check_ranges(int32_t{}); else check_ranges(int64_t{});
  at::Tensor out = at::empty({N, D}, word_weight.options().memory_format(at::MemoryFormat::Contiguous));
  if (N == 0) return out;
  dispatch_float(word_weight.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    auto run = [&](auto ptag, auto itag) {
      using P = decltype(ptag);
      using I = decltype(itag);
      embeddings_kernel<T, P, I>(ids.data_ptr<I>(), pos.data_ptr<I>(), word_weight.data_ptr<T>(),
                                 row_stride(word_weight), pos_weight.data_ptr<T>(), row_stride(pos_weight),
                                 w.data_ptr<P>(), b.data_ptr<P>(), N, D, static_cast<float>(eps),
                                 out.data_ptr<T>());
    };
    auto run_p = [&](auto itag) {
      if (w.scalar_type() == at::kFloat) run(float{}, itag); else run(T{}, itag);
    };
    if (ids.scalar_type() == at::kInt) run_p(int32_t{}); else run_p(int64_t{});
  });
  return out;
}
