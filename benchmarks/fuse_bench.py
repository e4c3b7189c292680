"""ONNX Runtime CPU latency before and after ``lndeploy fuse``, as a ratio from one run.

    .venv/bin/python benchmarks/fuse_bench.py [--rounds 200] [--threads 2]

Models, each exported by torch's legacy exporter at opset 16 (nine primitive ops per LN), then fused:
  - the channel-first LN of ConvNeXt alone, on a (8, 96, 56, 56) activation;
  - a ConvNeXt block with that LN (tests/passes/convnext_block.py), batch 8 at 56x56;
  - models/cnn.py (LN over (C, H, W): ORT's own fusion does not take it), batch 32;
  - models/transformer.py (LN over the last axis: ORT fuses the unfused graph itself), batch 32, seq 128.

One warm, long-lived process: both sessions are created first, warmed up, and then timed in
alternation (round i runs unfused then fused, the next round the other way round), so drift hits
both equally. Outputs are written into buffers bound once (IOBinding), because a freshly allocated
output page-faults on every call and would swamp the difference (FACTS: CPU speed). Medians; the
ratio is unfused / fused (> 1: fused is faster). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the ConvNeXt block lives under tests/passes

CASES = [  # label, model file, factory or None, input shape
    ("ConvNeXt channel-first LN alone", "tests/passes/convnext_block.py", "ln_alone", (8, 96, 56, 56)),
    ("ConvNeXt block (dwconv, LN, MLP)", "tests/passes/convnext_block.py", None, (8, 64, 56, 56)),
    ("models/cnn.py (LN over C,H,W)", "models/cnn.py", None, (32, 3, 32, 32)),
    ("models/transformer.py (LN over last axis)", "models/transformer.py", None, (32, 128, 128)),
]


def ln_alone():
    from tests.passes.convnext_block import ChannelFirstLayerNorm

    return ChannelFirstLayerNorm(96).eval()


def export_legacy(case, folder: Path) -> tuple[Path, Path, str]:
    """(unfused, fused, input name, FuseResult): legacy export at opset 16, then ``lndeploy.fuse``."""
    import torch

    from lndeploy.modelfile import load
    from lndeploy.pipeline import fuse

    label, model_file, factory, shape = case
    if factory:
        module, names, dynamic = globals()[factory](), ["x"], {"x": {0: "batch"}}
    else:
        spec = load(str(REPO / model_file))
        module, names, dynamic = spec.module, list(spec.inputs), spec.dynamic_axes
    example = torch.randn(*shape)
    stem = f"{len(list(folder.iterdir()))}"
    unfused, fused = folder / f"{stem}_unfused.onnx", folder / f"{stem}_fused.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(unfused), dynamo=False, opset_version=16,
                          input_names=names, dynamic_axes=dynamic)
    result = fuse(unfused, fused)
    return unfused, fused, names[0], result


class Timed:
    """One ORT CPU session with its input and output buffers bound once."""

    def __init__(self, path: Path, name: str, x: np.ndarray, threads: int):
        import onnxruntime as ort

        from lndeploy.backends.onnxruntime import OrtSession

        self.session = OrtSession(str(path), providers=["CPUExecutionProvider"], threads=threads).session
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input(name, x)
        for out in self.session.get_outputs():
            self.binding.bind_output(out.name, "cpu")
        self.session.run_with_iobinding(self.binding)  # learn the output shapes once ...
        self.buffers = [ort.OrtValue.ortvalue_from_numpy(np.empty(v.shape(), np.float32))
                        for v in self.binding.get_outputs()]
        for out, buffer in zip(self.session.get_outputs(), self.buffers):
            self.binding.bind_ortvalue_output(out.name, buffer)  # ... then write into the same buffers

    def __call__(self) -> float:
        start = time.perf_counter()
        self.session.run_with_iobinding(self.binding)
        return time.perf_counter() - start


def measure(unfused: Timed, fused: Timed, rounds: int, warmup: int = 10) -> tuple[float, float]:
    for _ in range(warmup):
        unfused(), fused()
    a, b = [], []
    for i in range(rounds):
        if i % 2:
            b.append(fused()), a.append(unfused())
        else:
            a.append(unfused()), b.append(fused())
    return statistics.median(a), statistics.median(b)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import onnxruntime

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            unfused, fused, name, result = export_legacy(case, Path(tmp))
            x = np.random.default_rng(0).standard_normal(case[3]).astype(np.float32)
            before, after = Timed(unfused, name, x, args.threads), Timed(fused, name, x, args.threads)
            t0, t1 = measure(before, after, args.rounds)
            nodes = f"{sum(result.ops_before.values())} -> {sum(result.ops_after.values())}"
            rows.append((case[0], "x".join(map(str, case[3])), nodes, t0 * 1e3, t1 * 1e3, t0 / t1))
    print(f"ONNX Runtime {onnxruntime.__version__} CPUExecutionProvider, {args.threads} threads, "
          f"median of {args.rounds} alternating runs, legacy export at opset 16 vs lndeploy fuse\n")
    print("| model | input | nodes unfused -> fused | unfused ms | fused ms | speed-up |")
    print("|---|---|---|---:|---:|---:|")
    for label, shape, nodes, a, b, ratio in rows:
        print(f"| {label} | {shape} | {nodes} | {a:.2f} | {b:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
