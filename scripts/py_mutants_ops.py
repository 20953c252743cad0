"""Mutants of the op wrappers and their fakes (bnn_kernels/ops) and of serialization, for
plant_py_bugs.py: argument plumbing into torch.ops, defaults, register_fake shapes, dtypes and
memory formats, the fakes' checks; save / load metadata, key prefixes, dtype and config checks.
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

PK, GM, CV = "bnn_kernels/ops/pack.py", "bnn_kernels/ops/gemm.py", "bnn_kernels/ops/conv.py"
LN, BSO, WC = "bnn_kernels/ops/linear.py", "bnn_kernels/ops/bitserial.py", "bnn_kernels/ops/binary_weight_conv.py"
CH, SER = "bnn_kernels/ops/_checks.py", "bnn_kernels/serialization.py"

WRAP = "tests/ops/test_wrappers.py"  # the wrappers' plumbing and defaults
PACK = ["tests/ops/test_pack_edges.py", "tests/ops/test_pack.py", WRAP]
EPI = ["tests/ops/test_epilogue.py", "tests/ops/test_epilogue_dual.py"]
GEMM = ["tests/ops/test_gemm_edges.py", "tests/ops/test_gemm.py", *EPI, WRAP]
CONV = ["tests/ops/test_conv_edges.py", "tests/ops/test_conv.py", *EPI, WRAP]
LINEAR = ["tests/ops/test_linear_edges.py", "tests/ops/test_linear.py", WRAP]
BITSERIAL = ["tests/ops/test_bitserial_edges.py", "tests/ops/test_bitserial.py", WRAP]
WCONV = ["tests/ops/test_binary_weight_conv.py", WRAP]
SERIAL = [
    "tests/test_serialization.py",
    "tests/test_serialization_edges.py",
    "tests/nn/test_binary_fused.py",
    "tests/nn/test_ternary.py",
]

# fmt: off
OPS_MUTANTS = [
    # ---- pack ----
    ("ops_pack_scalar_threshold_ignored", PK,
     "return _native.ops().pack_bits(x, float(threshold), None)", "return _native.ops().pack_bits(x, 0.0, None)", PACK),
    ("ops_pack_0d_threshold_as_scalar_zero", PK,
     "threshold = threshold.reshape(1).expand(x.shape[-1] if x.dim() else 1)",
     "return _native.ops().pack_bits(x, 0.0, None)", PACK),
    ("ops_unpack_default_dtype", PK,
     "def unpack_bits(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float32)",
     "def unpack_bits(bits: torch.Tensor, k: int, dtype: torch.dtype = torch.float16)", PACK),
    ("ops_to_bitplanes_signed_dropped", PK,
     "return _native.ops().to_bitplanes(q, nbits, signed)", "return _native.ops().to_bitplanes(q, nbits, False)", PACK),
    ("ops_fake_pack_words_floor", PK,
     "return x.new_empty((*x.shape[:-1], words(k)), dtype=torch.int32)",
     "return x.new_empty((*x.shape[:-1], k // 32), dtype=torch.int32)", PACK),
    ("ops_fake_unpack_dtype_fixed", PK,
     "dtype=dtype or torch.float32)", "dtype=torch.float32)", PACK),
    ("ops_fake_bitplanes_planes_last", PK,
     "return q.new_empty((nbits, *q.shape[:-1], words(q.shape[-1])), dtype=torch.int32)",
     "return q.new_empty((*q.shape[:-1], nbits, words(q.shape[-1])), dtype=torch.int32)", PACK),
    # ---- xnor_gemm ----
    ("ops_gemm_residual_dropped", GM,
     "k,\n        multiplier=multiplier,\n        bias=bias,\n        residual=residual,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nxnor_gemm.__doc__",
     "k,\n        multiplier=multiplier,\n        bias=bias,\n        residual=None,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nxnor_gemm.__doc__", GEMM),
    ("ops_gemm_dual_multiplier_dropped", GM,
     "k,\n        multiplier=multiplier,\n        bias=bias,\n        residual=residual,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nxnor_gemm_dual.__doc__",
     "k,\n        multiplier=None,\n        bias=bias,\n        residual=residual,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nxnor_gemm_dual.__doc__", GEMM),
    ("ops_fake_gemm_bits_shape", GM,
     'return a_bits.new_empty((m, words(n)) if kind == "bits" else (m, n), dtype=dtype)',
     "return a_bits.new_empty((m, n), dtype=dtype)", GEMM),
    ("ops_fake_gemm_dual_dtype_fixed", GM,
     "return a_bits.new_empty((m, n), dtype=dtype), a_bits.new_empty((m, words(n)), dtype=torch.int32)",
     "return a_bits.new_empty((m, n), dtype=torch.float32), a_bits.new_empty((m, words(n)), dtype=torch.int32)",
     GEMM),
    ("ops_fake_epilogue_float_steps_int32", CH,
     'elif float_steps:\n        return "float", torch.float32', 'elif float_steps:\n        return "int32", torch.int32',
     GEMM),
    ("ops_fake_check_k_words_at_least", CH,
     "t.shape[-1] == words(k),", "t.shape[-1] >= words(k),", GEMM),
    # ---- binary_conv2d ----
    ("ops_conv_padding_dilation_swapped", CV,
     "in_channels,\n        *conv_args(stride, padding, dilation),\n        groups,\n        int_pad_value(pad_value),\n"
     "        multiplier=multiplier,\n        bias=bias,\n        residual=residual,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nbinary_conv2d.__doc__",
     "in_channels,\n        *conv_args(stride, dilation, padding),\n        groups,\n        int_pad_value(pad_value),\n"
     "        multiplier=multiplier,\n        bias=bias,\n        residual=residual,\n        act_slope=act_slope,\n"
     "        act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nbinary_conv2d.__doc__", CONV),
    ("ops_conv_dual_shifts_swapped", CV,
     "act_shift_in=act_shift_in,\n        act_shift_out=act_shift_out,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nbinary_conv2d_dual.__doc__",
     "act_shift_in=act_shift_out,\n        act_shift_out=act_shift_in,\n        out_dtype=out_dtype,\n"
     "        out_threshold=out_threshold,\n    )\n\n\nbinary_conv2d_dual.__doc__", CONV),
    ("ops_fake_conv_height_from_kernel_width", CV,
     "ho = conv_out_size(h, w_bits.shape[1], s[0], p[0], d[0])", "ho = conv_out_size(h, w_bits.shape[2], s[0], p[0], d[0])",
     CONV),
    ("ops_fake_conv_output_contiguous", CV,
     "return x_bits.new_empty((b, o, ho, wo), dtype=dtype).contiguous(memory_format=torch.channels_last)\n\n\n"
     "def _conv_fake_shape",
     "return x_bits.new_empty((b, o, ho, wo), dtype=dtype)\n\n\ndef _conv_fake_shape", CONV),
    ("ops_conv_out_size_dilation_dropped", CV,
     "return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1",
     "return (size + 2 * padding - (kernel - 1) - 1) // stride + 1", CONV),
    # ---- binary_weight_linear / binary_weight_conv2d ----
    ("ops_linear_scale_bias_swapped", LN,
     "return _native.ops().binary_weight_linear(x, w_bits, k, scale, bias)",
     "return _native.ops().binary_weight_linear(x, w_bits, k, bias, scale)", LINEAR),
    ("ops_fake_linear_leading_dims_flattened", LN,
     "return x.new_empty((*x.shape[:-1], w_bits.shape[0]))", "return x.new_empty((x.shape[0], w_bits.shape[0]))",
     LINEAR),
    ("ops_fake_wconv_memory_format", WC,
     "fmt = torch.channels_last if _channels_last(x) else torch.contiguous_format", "fmt = torch.contiguous_format",
     WCONV),
    # ---- bitserial_gemm ----
    ("ops_bitserial_offsets_swapped", BSO,
     '_int_list(w_coefs, "w_coefs"), a_offset, w_offset, reduce', '_int_list(w_coefs, "w_coefs"), w_offset, a_offset, reduce',
     BITSERIAL),
    ("ops_fake_bitserial_unreduced_shape", BSO,
     "shape = (m, n) if reduce else (a_planes.shape[0], m, n)", "shape = (m, n)", BITSERIAL),
    # ---- serialization ----
    ("ser_channels_last_flag_not_saved", SER,
     "if float_layers_channels_last(model_or_state):\n            meta[_CHANNELS_LAST_KEY] = \"1\"", "pass", SERIAL),
    ("ser_wrapper_prefix_off_by_one", SER,
     "return n[len(_WRAPPER) :]", "return n[len(_WRAPPER) - 1 :]", SERIAL),
    ("ser_existing_module_config_not_compared", SER,
     'if type(current) is cls and current.config() == info["config"]:', "if type(current) is cls:", SERIAL),
    ("ser_packed_dtypes_unchecked", SER, "_check_packed_dtypes(path, model, state)\n    model.load_state_dict",
     "model.load_state_dict", SERIAL),
    ("ser_load_not_strict", SER, "model.load_state_dict(state, strict=strict)",
     "model.load_state_dict(state, strict=False)", SERIAL),
    ("ser_load_left_in_train_mode", SER, "return model.eval()", "return model", SERIAL),
    ("ser_format_version_unchecked", SER,
     "if version != _FORMAT:\n        raise", "if False:\n        raise", SERIAL),
    ("ser_config_shape_check_by_rank", SER,
     "if stored is not None and stored.shape != t.shape:", "if stored is not None and stored.dim() != t.dim():", SERIAL),
    ("ser_saved_tensors_share_storage", SER,
     'out[k] = v.detach().to("cpu").contiguous().clone()', 'out[k] = v.detach().to("cpu").contiguous()', SERIAL),
]
# fmt: on
