// Operator schemas and CPU registrations of the distilbert_fast C++ kernels, plus an empty Python module so
// `import distilbert_fast._C` loads this library (and with it the TORCH_LIBRARY registrations), following
// pytorch/extension-cpp. The kernels themselves live in one file per op.
#include <Python.h>

#include <torch/library.h>

#include "common.h"

extern "C" {
// `import distilbert_fast._C` only needs a module object; the ops are reached through torch.ops.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      "distilbert_fast C++ CPU kernels; the ops live under torch.ops.distilbert_fast",  // doc
      -1,    // per-interpreter state size
      nullptr,
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(distilbert_fast, m) {
  m.def("add_layer_norm(Tensor x, Tensor? residual, Tensor weight, Tensor bias, float eps) -> Tensor");
  m.def("bias_act(Tensor x, Tensor bias, str act) -> Tensor");
  m.def(
      "varlen_attention(Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, int max_seqlen, int n_heads, "
      "float scale, Tensor? head_mask) -> Tensor");
  m.def(
      "embeddings(Tensor input_ids, Tensor position_ids, Tensor word_weight, Tensor pos_weight, "
      "Tensor ln_weight, Tensor ln_bias, float eps) -> Tensor");
}

TORCH_LIBRARY_IMPL(distilbert_fast, CPU, m) {
  m.impl("add_layer_norm", &add_layer_norm_cpu);
  m.impl("bias_act", &bias_act_cpu);
  m.impl("varlen_attention", &varlen_attention_cpu);
  m.impl("embeddings", &embeddings_cpu);
}
