"""Mutants of the graph fusion (bnn_kernels/fusion.py, _fusion_chain.py, _fusion_dual.py), for
plant_py_bugs.py: the order of the epilogue's slots, which aten ops a chain accepts, operand
checks (dtype, per channel, computed before the op), the rewrite (scalar signs, residual
layout, cat slices) and the dual outputs.
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

FU, CHAIN, DUAL = "bnn_kernels/fusion.py", "bnn_kernels/_fusion_chain.py", "bnn_kernels/_fusion_dual.py"

FUSION = ["tests/test_fusion.py", "tests/test_fusion_dual.py", "tests/test_fusion_edges.py"]
COMPILED = [*FUSION, "tests/test_compile_fused.py"]
CONV1D = ["tests/test_fusion_conv1d.py", *FUSION]

# fmt: off
FUSION_MUTANTS = [
    # ---- the chain walk: slot order ----
    ("fuse_mul_after_bias", CHAIN,
     'if self.last >= MULT:\n            return "mul after an add (the epilogue multiplies first)"\n'
     "        spec, why = self.channel_operand(other)",
     'if self.last > BIAS:\n            return "mul after an add (the epilogue multiplies first)"\n'
     "        spec, why = self.channel_operand(other)", FUSION),
    ("fuse_slot_residual_after_shift_in", CHAIN,
     "MULT, BIAS, RESIDUAL, SHIFT_IN, ACT, SHIFT_OUT, OUT = range(7)",
     "MULT, BIAS, SHIFT_IN, RESIDUAL, ACT, SHIFT_OUT, OUT = range(7)", FUSION),
    ("fuse_second_shift_out", CHAIN,
     'if self.last == ACT:\n            return self.take("act_shift_out", vec, u)',
     'if self.last >= ACT:\n            return self.take("act_shift_out", vec, u)', FUSION),
    ("fuse_activation_after_activation", CHAIN,
     'if self.dtype != torch.float32 or self.last >= ACT:\n            return "activation on a value',
     'if self.dtype != torch.float32 or self.last > ACT:\n            return "activation on a value', FUSION),
    ("fuse_half_cast_while_shift_pending", CHAIN,
     "if dt in (torch.float16, torch.bfloat16) and self.dtype == torch.float32 and not self.pending:",
     "if dt in (torch.float16, torch.bfloat16) and self.dtype == torch.float32:", FUSION,
     "the rewrite uses the last commit, taken only while no shift is pending: the fused graph is "
     "the same, only the report's reason differs"),
    # ---- which ops and operands a chain accepts ----
    ("fuse_reversed_sub_accepted", CHAIN,
     'if neg and not first:\n            return "c - y (the epilogue adds to y)"', "pass", FUSION),
    ("fuse_add_alpha_ignored", CHAIN,
     "if got is None or alpha != 1:", "if got is None:", FUSION),
    ("fuse_relu_as_prelu", CHAIN,
     "if t in _PRELU or t is aten.leaky_relu.default:",
     "if t in _PRELU or t in (aten.leaky_relu.default, aten.relu.default):", FUSION),
    ("fuse_div_as_mul", CHAIN,
     "if t in _MUL:\n            return self.on_mul",
     "if t in _MUL or t in (aten.div.Tensor, aten.div.Scalar):\n            return self.on_mul", FUSION),
    ("fuse_where_threshold_not_zero", CHAIN,
     "or gt.args[1] != 0 or gt.args[0] is not self.cur:", "or gt.args[0] is not self.cur:", FUSION),
    ("fuse_where_ge_as_gt", CHAIN,
     "gt, where = by.get(aten.gt.Scalar), by.get(aten.where.self)",
     "gt, where = by.get(aten.gt.Scalar) or by.get(aten.ge.Scalar), by.get(aten.where.self)", FUSION),
    ("fuse_float64_operand_accepted", CHAIN,
     "if v.dtype != torch.float32:\n            return None, f\"operand {x.name} is {v.dtype}",
     "if False:\n            return None, f\"operand {x.name} is {v.dtype}", FUSION),
    ("fuse_per_sample_operand_accepted", CHAIN,
     "ones = all(_known(s == 1) for i, s in enumerate(shape) if i != cdim)", "ones = True", FUSION),
    ("fuse_operand_from_output_accepted", CHAIN,
     'if self._depends_on_op(x):\n            return None, f"operand {x.name} depends on the op\'s own output"',
     "pass", FUSION,
     "unreachable: every node of a chain has exactly one user (step() stops otherwise), so no "
     "operand can depend on the op's output"),
    ("fuse_pack_over_other_dim", CHAIN,
     'if self.perm != self.bits_perm:\n            return "pack_bits over a dim', 'if False:\n            return "pack_bits over a dim',
     FUSION),
    ("fuse_shared_value_taken", CHAIN,
     "if len(users) != 1:\n            self.reason", "if not users:\n            self.reason", FUSION),
    # ---- the rewrite ----
    ("fuse_scalar_sub_sign_lost", FU, "v = -x if neg else x", "v = x", FUSION),
    ("fuse_residual_permuted_forward", FU,
     "inv = [perm.index(d) for d in range(len(perm))]", "inv = list(perm)", FUSION),
    ("fuse_int32_out_dtype_kept", FU,
     'if kw.get("out_dtype") == torch.int32:\n        del kw["out_dtype"]', "pass", FUSION),
    ("fuse_cat_slices_not_advanced", FU,
     "outs.append(_emit(m, m.steps, m.perm, False, builder)[1])\n            lo += m.nchan",
     "outs.append(_emit(m, m.steps, m.perm, False, builder)[1])", FUSION),
    ("fuse_existing_bits_extended", FU,
     'if args.get("out_threshold") is not None or args.get("out_dtype") in (torch.float16, torch.bfloat16):',
     'if args.get("out_threshold") is not None:', FUSION,
     "an op that already rounds to float16 / bfloat16 gives a value of that dtype, on which every "
     "handler stops (float_ok and the float32 checks): nothing more is taken"),
    # ---- dual outputs ----
    ("dual_threshold_after_op_accepted", DUAL,
     'if order.get(thr, len(order)) > order[op]:\n        return None, "its pack_bits threshold is computed after the op"',
     "pass", FUSION),
    ("dual_float64_threshold_accepted", DUAL,
     "if not isinstance(v, torch.Tensor) or v.dtype != torch.float32 or v.dim() != 1",
     "if not isinstance(v, torch.Tensor) or v.dim() != 1", FUSION),
    ("dual_cat_split_words_accepted", DUAL,
     "if any(v.shape[1] % 32 for v in vals[:-1]):", "if False:", FUSION),
    ("dual_through_half_cast", DUAL,
     "return u.target in _CONVERT and _convert_dtype(u) == torch.float32", "return u.target in _CONVERT", FUSION),
    ("dual_pack_over_any_dim", DUAL,
     "packs = [(p, path) for p, perm, path in _packs(node) if perm == want]",
     "packs = [(p, path) for p, perm, path in _packs(node)]", FUSION),
    ("dual_half_output_accepted", DUAL,
     "if node not in entries or not isinstance(val, torch.Tensor) or val.dtype != torch.float32:",
     "if node not in entries or not isinstance(val, torch.Tensor):", FUSION),
    ("dual_keeps_eager_input_vals", DUAL,
     'skip = ("val", "tensor_meta", "eager_input_vals")', 'skip = ("val", "tensor_meta")', COMPILED),
    # ---- the 1-D convs' squeeze / unsqueeze views ----
    ("fuse_unsqueeze_dim_appended", CHAIN,
     "return perm[:d] + (gone[0],) + perm[d:]", "return perm + (gone[0],)", CONV1D),
    ("fuse_squeeze_of_any_size", CHAIN,
     "if any(not _known(shape[d] == 1) or perm[d] == 1 for d in dims):", "if any(perm[d] == 1 for d in dims):",
     CONV1D),
    ("fuse_residual_not_unsqueezed", FU,
     "for _ in range(len(perm) - _val(spec[1]).dim()):", "for _ in range(0):", CONV1D),
    ("fuse_output_not_squeezed", FU,
     "if not bits and len(full) > len(perm):", "if False:", CONV1D),
    ("fuse_out_dtype_kept_with_bits", FU,
     'if "out_threshold" in steps and kw.get("out_dtype") == torch.float32:', "if False:", CONV1D),
]
# fmt: on
