"""``lndeploy bench``."""

from __future__ import annotations

import sys

import click

from lndeploy.cli.options import FINITE_POSITIVE
from lndeploy.errors import BadInputError


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInputError(f"{what} {text!r}: expected comma-separated integers, e.g. 1,32") from None
    if not values or any(v < 1 for v in values):
        raise BadInputError(f"{what} {text!r}: sizes must be positive integers")
    return values


def _dims(items) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.strip().isdigit() or int(value) < 1:
            raise BadInputError(f"--dim {item!r}: expected NAME=SIZE with a positive size, e.g. seq=128")
        out[name.strip()] = int(value)
    return out


def _backends(items) -> list | None:
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    return names or None


@click.command("bench")
@click.argument("target", required=False)
@click.option("--backend", "backends", multiple=True, metavar="NAME[,NAME]",
              help="pytorch, onnxruntime, onnxruntime-fused, onnxruntime-plugin, tensorrt (repeat or comma-separate). "
                   "Default: every backend that can run here; the others are listed as skipped.")
@click.option("--batch", "batch", default="1,32", show_default=True, help="Batch sizes, comma-separated.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads for PyTorch and ONNX Runtime.  [default: every usable core]")
@click.option("--budget", type=FINITE_POSITIVE, default=3.0, show_default=True,
              help="Timed seconds per batch size, shared by the backends (warm-up not counted).")
@click.option("--max-runs", type=click.IntRange(min=1), default=None,
              help="Stop a batch size once every backend has this many timed runs.")
@click.option("--dim", "dims", multiple=True, metavar="NAME=SIZE",
              help="Size of a non-batch dynamic dim (default: the model's example size), e.g. seq=128.")
@click.option("--malloc-defaults", is_flag=True,
              help="Keep glibc malloc's defaults: freed large blocks go back to the kernel and are faulted "
                   "in again on every call (by default the process keeps them; see docs/bench.md).")
@click.option("--ort-defaults", is_flag=True,
              help="Create ONNX Runtime sessions with ORT's default options (by default lndeploy turns off "
                   "SkipLayerNormFusion on CPU, measured slower; see docs/bench.md).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every figure to this file.")
@click.option("--strict", is_flag=True,
              help="Exit 3 when the timings are unreliable (rounds disagree, a busy machine): for CI gates "
                   "on speed. The table and --json are written first.")
@click.option("--compare", nargs=2, type=click.Path(dir_okay=False), metavar="A.json B.json",
              help="Print B's speed-up over A for every (batch, backend) both reports have; runs nothing.")
def command(target, backends, batch, threads, budget, max_runs, dims, malloc_defaults, ort_defaults, json_path,
            strict, compare):
    """Latency and throughput of TARGET per backend, PyTorch eager as the baseline.

    TARGET is a model file (exported here, in this process, LN native and plugin), an .onnx file
    (no PyTorch baseline), or a TensorRT engine. onnxruntime-fused runs ONNX Runtime on an ORT-only
    fused graph (attention, skip-LN, bias-GELU), only where it is proven within 1e-4 of the plain
    one. Every backend runs on the same inputs, after warm-up, in interleaved rounds; the ratio to
    PyTorch comes from the same run. Figures: median, p90 and p99 latency (ms), throughput
    (samples/s = batch / median). The process keeps freed memory (glibc malloc thresholds), so that
    no backend is timed re-faulting its pages.

    \b
    Example:
      lndeploy bench models/fnn.py --json fnn.json
      lndeploy bench models/transformer.py --batch 1,32 --threads 2 --dim seq=128
      lndeploy bench --compare before.json after.json
    """
    if compare:
        if target:
            raise BadInputError("--compare reads two reports and runs nothing: give no TARGET with it")
        from lndeploy.benchmark.report import format_compare, load_report

        a, b = (load_report(path) for path in compare)
        click.echo(format_compare(a, b, *compare))
        return
    if not target:
        raise BadInputError("give a TARGET (model file, .onnx or engine) or --compare A.json B.json")
    from lndeploy.benchmark import bench

    bar = _ProgressBar()
    try:
        result = bench(target, backends=_backends(backends), batches=_ints(batch, "--batch"), threads=threads,
                       budget=budget, max_runs=max_runs, dims=_dims(dims),
                       keep_freed_memory=not malloc_defaults, ort_tuned=not ort_defaults,
                       json_path=json_path, progress=bar.update, log=bar.log)
    finally:
        bar.close()
    click.echo(result.table())
    if json_path:
        click.echo(f"wrote {json_path}")
    if strict and not result.reliable:
        from lndeploy.errors import UnavailableError

        raise UnavailableError("--strict: the timings are unreliable on this machine now: "
                               + "; ".join(result.data["reliability"]["reasons"]))


class _ProgressBar:
    """click.progressbar on stderr, opened at the first timed slice. Set-up steps ("preparing
    onnxruntime") are held until then: a run that ends in an error prints one line (SPEC section 2),
    not the steps that led to it."""

    STEPS = 1000

    def __init__(self):
        self._bar, self._shown, self._held = None, 0, []

    def log(self, line: str) -> None:
        if self._bar is None:
            self._held.append(line)

    def update(self, done: float, total: float) -> None:
        if self._bar is None:
            for line in self._held:
                click.echo(line, err=True)
            self._held = []
            self._bar = click.progressbar(length=self.STEPS, label="timing", file=sys.stderr)
            self._bar.__enter__()
        step = int(self.STEPS * done / total) if total else self.STEPS
        if step > self._shown:
            self._bar.update(step - self._shown)
            self._shown = step

    def close(self) -> None:
        self._held = []
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
