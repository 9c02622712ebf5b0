// Operator schemas and CPU registrations of the distilbert_fast C++ kernels, plus an empty Python module so
// `import distilbert_fast._C` loads this library (and with it the TORCH_LIBRARY registrations), following
// pytorch/extension-cpp. The kernels themselves live in one file per op.
#include <Python.h>

#include <torch/library.h>

#include "common.h"
#include "quantize.h"

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
      "float scale, Tensor? head_mask, Tensor? seqused=None) -> Tensor");
  m.def(
      "embeddings(Tensor input_ids, Tensor position_ids, Tensor word_weight, Tensor pos_weight, "
      "Tensor ln_weight, Tensor ln_bias, float eps) -> Tensor");
  // Reads metadata and a few raw elements of any tensor (CPU, meta, inference tensors): one kernel for every
  // dispatch key, no autograd (it returns an int).
  // int8 dynamic quantization fused into the producing kernels (quantize.cpp); rows are uint8 q + 128.
  m.def("quantize_rows(Tensor x) -> (Tensor, Tensor)");
  m.def(
      "add_layer_norm_quant(Tensor x, Tensor? residual, Tensor weight, Tensor bias, float eps) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "embeddings_quant(Tensor input_ids, Tensor position_ids, Tensor word_weight, Tensor pos_weight, "
      "Tensor ln_weight, Tensor ln_bias, float eps) -> (Tensor, Tensor, Tensor)");
  m.def(
      "int8_epilogue(Tensor acc, Tensor x_scale, Tensor? bias, str act, ScalarType out_dtype, bool quantize) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "int8_epilogue_out(Tensor acc, Tensor x_scale, Tensor? bias, str act, Tensor(a!)? y, Tensor(b!)? q, "
      "Tensor(c!)? scale, ScalarType? rows_dtype=None) -> ()");
  m.def(
      "int8_epilogue_add_ln_out(Tensor acc, Tensor x_scale, Tensor? bias, Tensor residual, Tensor ln_weight, "
      "Tensor ln_bias, float eps, Tensor(a!) y, Tensor(b!)? q, Tensor(c!)? scale) -> ()");
  // the int8 GEMM with its epilogue fused (int8_gemm.cpp); packed: int8_gemm_pack's (packed, comp)
  m.def("int8_gemm_available() -> bool", &int8_gemm_available_cpu);
  m.def("int8_gemm_pack(Tensor weight) -> (Tensor, Tensor)");
  m.def(
      "int8_gemm_out(Tensor q, Tensor x_scale, Tensor packed, Tensor comp, Tensor w_scale, Tensor? bias, str act, "
      "Tensor(a!)? y, Tensor(b!)? q_out, Tensor(c!)? scale, ScalarType? rows_dtype=None) -> ()");
  m.def(
      "int8_gemm_add_ln_out(Tensor q, Tensor x_scale, Tensor packed, Tensor comp, Tensor w_scale, Tensor? bias, "
      "Tensor residual, Tensor ln_weight, Tensor ln_bias, float eps, Tensor(a!) y, Tensor(b!)? q_out, "
      "Tensor(c!)? scale) -> ()");
  m.def("weights_fingerprint(Tensor[] tensors, int samples) -> int", &weights_fingerprint_cpu);
  // fp32 GEMM on a weight packed once by MKL (mkl_gemm.cpp); packed is an opaque uint8 buffer.
  m.def("mkl_sgemm_available() -> bool", &mkl_sgemm_available_cpu);
  m.def("mkl_sgemm_pack(Tensor weight) -> Tensor");
  m.def("mkl_sgemm_packed(Tensor x, Tensor packed, int out_features, Tensor? bias, str act) -> Tensor");
}

TORCH_LIBRARY_IMPL(distilbert_fast, CPU, m) {
  m.impl("add_layer_norm", &add_layer_norm_cpu);
  m.impl("bias_act", &bias_act_cpu);
  m.impl("varlen_attention", &varlen_attention_cpu);
  m.impl("embeddings", &embeddings_cpu);
  m.impl("quantize_rows", &quantize_rows_cpu);
  m.impl("add_layer_norm_quant", &add_layer_norm_quant_cpu);
  m.impl("embeddings_quant", &embeddings_quant_cpu);
  m.impl("int8_epilogue", &int8_epilogue_cpu);
  m.impl("int8_epilogue_out", &int8_epilogue_out_cpu);
  m.impl("int8_epilogue_add_ln_out", &int8_epilogue_add_ln_out_cpu);
  m.impl("int8_gemm_pack", &int8_gemm_pack_cpu);
  m.impl("int8_gemm_out", &int8_gemm_out_cpu);
  m.impl("int8_gemm_add_ln_out", &int8_gemm_add_ln_out_cpu);
  m.impl("mkl_sgemm_pack", &mkl_sgemm_pack_cpu);
  m.impl("mkl_sgemm_packed", &mkl_sgemm_packed_cpu);
}
