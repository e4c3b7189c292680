#!/usr/bin/env python3
"""GPU check of ``lndeploy::layer_norm`` inside real models: the zoo's LayerNorms switched to the
Triton kernel (``use_kernel=True``) on CUDA, against the same model in fp32 on the CPU.

Needs lndeploy importable with its plugins (``lndeploy.plugins``): an install of this tree, or the package
layout that gpu_check.sh makes of it.
Writes $OUT/gpu_custom_op.json (./gpu_check_out/ without OUT).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_zoo(name: str):
    spec = importlib.util.spec_from_file_location(f"zoo_{name}", REPO / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(name: str, dtype, torch) -> dict:
    import torch.utils._pytree as pytree

    from lndeploy.nn import LayerNorm

    zoo = load_zoo(name)
    reference = zoo.build().eval()
    examples = zoo.example_inputs()
    with torch.no_grad():
        expected = [t.double() for t in pytree.tree_leaves(reference(*examples))]
    model = zoo.build().eval().to("cuda", dtype)
    switched = 0
    for module in model.modules():
        if isinstance(module, LayerNorm):
            module.use_kernel = True
            switched += 1
    with torch.no_grad():
        got = pytree.tree_leaves(model(*(t.to("cuda", dtype) for t in examples)))
    errors = [float((g.double().cpu() - e).abs().max()) for g, e in zip(got, expected)]
    return {"model": name, "dtype": str(dtype).replace("torch.", ""), "layernorms_on_kernel": switched,
            "max_abs_vs_cpu_fp32": max(errors)}


def main() -> int:
    import torch

    out_dir = Path(os.environ.get("OUT") or REPO / "gpu_check_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("gpu_custom_op: no CUDA device, nothing to check")
        return 0
    rows = []
    for name in ("fnn", "cnn", "transformer", "rnn", "lstm", "gru"):
        for dtype in (torch.float32, torch.float16):
            try:
                rows.append(run(name, dtype, torch))
            except Exception as err:  # keep the other rows
                rows.append({"model": name, "dtype": str(dtype), "error": f"{type(err).__name__}: {err}"[:300]})
            print(rows[-1], flush=True)
    (out_dir / "gpu_custom_op.json").write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "rows": rows},
                                                           indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
