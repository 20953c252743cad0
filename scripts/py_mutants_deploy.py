"""Mutants of the deployment entry points (bnn_kernels/compile_fused.py, export_pt2.py), for
plant_py_bugs.py: what reaches torch.compile, torch.export and AOTInductor (the fusion pass,
the caller's options, the dynamic batch, the package metadata), the model's mode, and the
errors that name the failing module.
Entries: (name, file, original snippet, replacement, test files[, why it is equivalent])."""

CF, EX = "bnn_kernels/compile_fused.py", "bnn_kernels/export_pt2.py"

ARGS = ["tests/test_compile_args.py"]
EXPORT = [*ARGS, "tests/test_export_pt2.py"]
COMPILED = [*ARGS, "tests/test_compile_fused.py"]

# fmt: off
DEPLOY_MUTANTS = [
    # ---- bnn_kernels.compile ----
    ("compile_pass_not_installed", CF,
     'options["post_grad_custom_post_pass"] = fusion_pass\n        kwargs["options"] = options',
     'kwargs["options"] = options', COMPILED),
    ("compile_callers_options_dropped", CF,
     'options = dict(kwargs.pop("options", None) or {})', 'kwargs.pop("options", None)\n        options = {}', ARGS),
    ("compile_callers_options_changed", CF,
     'options = dict(kwargs.pop("options", None) or {})', 'options = kwargs.pop("options", None) or {}', ARGS),
    ("compile_fuse_false_fuses", CF,
     "return FusionPass() if fuse else None", "return FusionPass()", ARGS),
    ("compile_callers_pass_replaced", CF,
     "if isinstance(fuse, FusionPass):\n        return fuse", "if isinstance(fuse, FusionPass):\n        return FusionPass()",
     ARGS),
    ("compile_other_backend_accepted", CF,
     'if kwargs.get("backend", "inductor") != "inductor":', 'if kwargs.get("backend", "inductor") == "none":', COMPILED),
    ("compile_existing_pass_overwritten", CF,
     'if options.get("post_grad_custom_post_pass") is not None:', "if False:", COMPILED),
    ("compile_report_first_graph_only", CF,
     "for r in self.reports:\n            out.merge(r)", "for r in self.reports[:1]:\n            out.merge(r)", ARGS),
    ("compile_pass_deep_copied", CF,
     "return self  # AOTInductor deep-copies", "return FusionPass()  # AOTInductor deep-copies", ARGS),
    ("compile_uuid_misses_chain", CF,
     '("fusion.py", "_fusion_chain.py", "_fusion_dual.py")', '("fusion.py", "_fusion_dual.py")', ARGS),
    # ---- bnn_kernels.export ----
    ("export_batch_one_traced", EX,
     "if batches.pop() < 2:", "if batches.pop() < 1:", EXPORT),
    ("export_static_batch", EX,
     "dynamic_shapes = tuple({0: batch} for _ in inputs)", "dynamic_shapes = None", EXPORT),
    ("export_strict_mode", EX, "strict=False)", "strict=True)", ARGS),
    ("export_traced_in_train_mode", EX, "    model.eval()\n    try:", "    try:", EXPORT),
    ("export_mode_not_restored", EX, "        model.train(was_training)\n", "        pass\n", EXPORT),
    ("export_mode_restored_only_on_success", EX,
     "    try:\n        with torch.no_grad():\n            program = _trace(model, inputs)\n    finally:\n"
     "        model.train(was_training)",
     "    with torch.no_grad():\n        program = _trace(model, inputs)\n    model.train(was_training)", ARGS),
    ("export_no_version_metadata", EX,
     'configs = {"aot_inductor.metadata": {"bnn_kernels_version": __version__}}', "configs = {}", EXPORT),
    ("export_callers_configs_ignored", EX, "configs.update(inductor_configs or {})", "pass", ARGS),
    ("export_fuse_ignored", EX,
     'if fusion_pass is not None:\n        configs["post_grad_custom_post_pass"]', 'if False:\n        configs["post_grad_custom_post_pass"]',
     [*ARGS, "tests/test_compile_fused.py"]),
    ("export_bare_tensor_refused", EX,
     "if isinstance(example_inputs, torch.Tensor):\n        example_inputs = (example_inputs,)",
     "if False:\n        example_inputs = (example_inputs,)", ARGS),
    ("export_devices_unchecked", EX, "if len(devices) != 1:", "if len(devices) > 2:", ARGS),
    ("export_tracker_never_pops", EX,
     "if id(module) in self.names and self.stack:\n                self.stack.pop()",
     "if False:\n                self.stack.pop()", EXPORT),
    ("export_tracker_outermost", EX, "return self.stack[-1] if self.stack", "return self.stack[0] if self.stack", EXPORT),
    ("export_error_not_chained", EX,
     '(torch.export traced it): "\n            f"{_first_line(e)} (the full error is chained below)"\n        ) from e',
     '(torch.export traced it): "\n            f"{_first_line(e)} (the full error is chained below)"\n        ) from None',
     ARGS),
]
# fmt: on
