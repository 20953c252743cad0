"""Mutants of the converter (bnn_kernels/convert/), for plant_py_bugs.py: the rules that keep a
wrongly converted layer out (the integer check, the tolerance, the derived, reshaped and widened
inputs, data-dependent binarization, random and in-place forwards), the detection of +-alpha
weights and binary inputs, thresholds at ties, folding, the restored buffers and strict=True.
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

D = "bnn_kernels/convert/"
VERIFY, CLASSIFY, FUSE, CONVERT = D + "_verify.py", D + "_classify.py", D + "_fuse.py", D + "_convert.py"
PLAN, PROBE, RANDOM, INPLACE = D + "_plan.py", D + "_probe.py", D + "_random.py", D + "_inplace.py"

# the converter's tests: each converted model is checked on fresh inputs, never the examples
TESTS = ["tests/test_convert.py", "tests/convert"]

# fmt: off
CONVERT_MUTANTS = [
    # ---- verification ----
    ("conv_integer_part_not_checked", VERIFY,
     "if integer and chk.int_check is not None and not chk.int_check(new, inv):",
     "if False:", TESTS),
    ("conv_tolerance_ignored", VERIFY, "if not exact or rel > tol:", "if not exact:", TESTS),
    ("conv_no_derived_inputs", VERIFY,
     "for label, xd in derived_inputs(invs[0].args[0]):", "for label, xd in []:", TESTS),
    ("conv_no_reshaped_inputs", VERIFY,
     "for label, xd in reshaped_inputs(invs[0].args[0]):", "for label, xd in []:", TESTS),
    ("conv_no_check_in_model", VERIFY,
     "layers = {n: v for n, v in layers.items() if v[1].upstream}", "layers = {}", TESTS),
    ("conv_examples_not_widened", VERIFY, "_WIDENED = (16.0, 256.0)", "_WIDENED = (1.0,)", TESTS),
    # ---- classification ----
    ("conv_detect_tol_loose", CLASSIFY, "_DETECT_ULPS = 32", "_DETECT_ULPS = 2**20", TESTS),
    ("conv_real_weights_accepted", CLASSIFY, "if bool((dev > tol).any()):", "if False:", TESTS),
    ("conv_alpha_counts_zeros", CLASSIFY,
     "alpha = torch.where(cnt > 0, (a * nz).sum(1) / cnt.clamp(min=1)",
     "alpha = torch.where(cnt > 0, a.sum(1) / a.shape[1]", TESTS),
    ("conv_zero_one_input_as_sign", CLASSIFY,
     "(not has_zero or float(zd.min()) < -amax * tol)", "True", TESTS),
    ("conv_strict_threshold_not_strict", CLASSIFY,
     "return torch.nextafter(td, torch.full_like(td, math.inf)).float()", "return td.float()", TESTS),
    # ---- the layer's own rules ----
    ("conv_data_dependent_binarization", PLAN,
     "        if call.z_mixed:\n            raise Skip(\n                f\"data-dependent binarization:",
     "        if False:\n            raise Skip(\n                f\"data-dependent binarization:", TESTS),
    ("conv_window_op_before_call", PLAN,
     "if call.z_mixed in _LAYOUT_OPS or call.z_mixed in _WINDOW_OPS:", "if call.z_mixed in _LAYOUT_OPS:", TESTS),
    ("conv_input_read_into_python", PLAN,
     "if call.z_from_x and inv.pre_escape:", "if False:", TESTS),
    ("conv_random_forward", RANDOM,
     'RANDOM = DROPOUT | {"rand", "rand_like", "randn",', 'RANDOM = DROPOUT | {"randn",', TESTS),
    ("conv_inplace_argument_missed", INPLACE,
     "return 0 <= i < len(args) and args[i] is True", "return False", TESTS,
     "unreachable with torch's functional API: every function with an inplace parameter hands it to "
     "__torch_function__ as a keyword, even when the caller wrote it positionally (F.leaky_relu(x, 0.1, "
     "True): tests/convert/test_verification.py), which the keyword branch catches"),
    ("conv_tie_taken_high", PROBE, "tp = strict_threshold(t, x.dtype)", "tp = t.clone()", TESTS),
    # ---- folding ----
    ("conv_bn_batch_stats_folded", FUSE,
     'if bn["training"] or bn["running_mean"] is None', 'if bn["running_mean"] is None', TESTS,
     "unreachable: a batch_norm with batch statistics already breaks the module's affinity in the "
     "tracking (_trace.py names it so), and fold_bn takes only affine modules"),
    ("conv_bn_shared_input_folded", FUSE,
     "if len(uses) != 1 or id(inv) not in uses[0][1]:", "if not uses:", TESTS),
    ("conv_sign_fold_examples_only", FUSE,
     "for _, xd in derived_inputs(inv.args[0]):\n            if not torch.equal(trial.int_forward(xd)",
     "for _, xd in []:\n            if not torch.equal(trial.int_forward(xd)", TESTS,
     "redundant in practice: only an elementwise binarizer folds, and tie_threshold's probes test its "
     "rule at the threshold, across the gap the examples leave and far beyond them; no test model found "
     "that the derived inputs alone catch (kept as a second check)"),
    # ---- the returned model and the report ----
    ("conv_buffers_not_restored", CONVERT,
     "                    obj.copy_(copy_)\n", "                    pass\n", TESTS),
    ("conv_strict_ignores_skips", CONVERT,
     "if strict and e.evidence:\n                problems.append", "if False:\n                problems.append", TESTS),
    ("conv_strict_ignores_model_check", CONVERT,
     "if strict and evidence:\n            problems.append", "if False:\n            problems.append", TESTS),
]
# fmt: on
