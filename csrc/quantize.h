// int8 dynamic-quantization kernels (quantize.cpp): launchers registered in ops.cpp.
// Every kernel writes the int8 rows and their per-token scales itself, in the same pass that produces the
// floating-point row (which stays in L1 between the two), so no separate pass over memory quantizes.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

// (N, D) float rows -> (uint8 q+128 (N, D), fp32 scale (N,)): symmetric per-token, scale = max|row| / 127.
std::tuple<at::Tensor, at::Tensor> quantize_rows_cpu(const at::Tensor& x);
// LayerNorm(x (+ residual)) in x's dtype, plus its rows quantized: (y, q, scale).
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_layer_norm_quant_cpu(const at::Tensor& x,
                                                                        const std::optional<at::Tensor>& residual,
                                                                        const at::Tensor& weight,
                                                                        const at::Tensor& bias, double eps);
// LayerNorm(word[ids] + pos[positions]) plus its rows quantized: (y, q, scale).
std::tuple<at::Tensor, at::Tensor, at::Tensor> embeddings_quant_cpu(
    const at::Tensor& input_ids, const at::Tensor& position_ids, const at::Tensor& word_weight,
    const at::Tensor& pos_weight, const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps);
// The int8 GEMM epilogue on its fp32 output acc (acc = int32 sum * weight scale, from oneDNN):
// y = act(acc * x_scale[row] + bias) in out_dtype, and when `quantize`, y's rows quantized (else q and
// scale are empty tensors).
std::tuple<at::Tensor, at::Tensor, at::Tensor> int8_epilogue_cpu(const at::Tensor& acc, const at::Tensor& x_scale,
                                                                 const std::optional<at::Tensor>& bias,
                                                                 c10::string_view act, at::ScalarType out_dtype,
                                                                 bool quantize);
// The same epilogue writing into given tensors (row slices of a larger output: the int8 GEMM runs on row
// chunks so that its fp32 output is still in cache when the epilogue reads it). q and scale: both or neither;
// y may be omitted when they are given (the rows are quantized from float32 values and not stored).
// int8_epilogue (no activation) fused with the residual LayerNorm after it:
// y = LayerNorm(acc * x_scale + bias + residual) (+ q, scale: its rows quantized, both or neither).
void int8_epilogue_add_ln_out_cpu(const at::Tensor& acc, const at::Tensor& x_scale,
                                  const std::optional<at::Tensor>& bias, const at::Tensor& residual,
                                  const at::Tensor& ln_weight, const at::Tensor& ln_bias, double eps, const at::Tensor& y,
                                  const std::optional<at::Tensor>& q, const std::optional<at::Tensor>& scale);
void int8_epilogue_out_cpu(const at::Tensor& acc, const at::Tensor& x_scale, const std::optional<at::Tensor>& bias,
                           c10::string_view act, const std::optional<at::Tensor>& y, const std::optional<at::Tensor>& q,
                           const std::optional<at::Tensor>& scale, std::optional<at::ScalarType> rows_dtype);

// The int8 GEMM with its epilogue fused (int8_gemm.cpp, AVX-512 VNNI): q (M, K) uint8 rows (q + 128) with
// per-row x_scale times a weight packed by int8_gemm_pack ((packed, comp)), w_scale (N,) per output column;
// then int8_epilogue_out's / int8_epilogue_add_ln_out's row epilogue, equal to the oneDNN GEMM + those ops bit
// for bit. int8_gemm_available(): whether this build has the kernel (the launchers refuse otherwise).
bool int8_gemm_available_cpu();
std::tuple<at::Tensor, at::Tensor> int8_gemm_pack_cpu(const at::Tensor& weight);
void int8_gemm_out_cpu(const at::Tensor& q, const at::Tensor& x_scale, const at::Tensor& packed,
                       const at::Tensor& comp, const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                       c10::string_view act, const std::optional<at::Tensor>& y, const std::optional<at::Tensor>& q_out,
                       const std::optional<at::Tensor>& scale, std::optional<at::ScalarType> rows_dtype);
void int8_gemm_add_ln_out_cpu(const at::Tensor& q, const at::Tensor& x_scale, const at::Tensor& packed,
                              const at::Tensor& comp, const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                              const at::Tensor& residual, const at::Tensor& ln_weight, const at::Tensor& ln_bias,
                              double eps, const at::Tensor& y, const std::optional<at::Tensor>& q_out,
                              const std::optional<at::Tensor>& scale);
