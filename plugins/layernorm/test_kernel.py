"""The Triton LayerNorm kernel against torch, on CPU through the Triton interpreter.

``TRITON_INTERPRET=1`` only takes effect for kernels decorated after it is set, and pytest may already
have imported triton and the kernel (other test modules do). So each dtype runs in a fresh Python
process started with the variable set: this file doubles as that worker (``python test_kernel.py
fp16`` prints one JSON line of per-case errors) and the tests assert on what it reports.

Error measures, against ``F.layer_norm`` computed in fp32 from the very same (rounded) inputs:
* ``max_abs``: max |y - ref|.
* ``max_scaled``: max |y - ref| / max(1, |ref|). For fp16/bf16 this is the gated number: an output
  format with 11 (fp16) or 8 (bf16) significant bits cannot hold |y| >= 4 to 1e-2 absolute (bf16's
  half-ulp there is 0.0156), so the 1e-2 bound is absolute below |y| = 1 and relative above.
* ``max_abs`` on a second run of the required grid with |gamma|, |beta| <= 0.3 (so |y| < 2): gated
  at the issue's literal 1e-5 (fp32) / 1e-2 (fp16, bf16) absolute.
* ``frac_exact``: share of outputs bit-equal to the fp32 reference rounded to the output dtype; a
  kernel that is off by more than rounding noise falls far below 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

N_VALUES = (1, 7, 64, 768, 1000, 4096, 5120, 16384)
ROW_VALUES = (1, 3, 257)
DTYPES = ("fp32", "fp16", "bf16")
ABS_TOL = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 1e-2}
WORKER_TIMEOUT_S = 600


def _torch_dtype(name):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def _case(layer_norm, dtype, rows, n, *, loc=0.0, scale=1.0, param_dtype=None, seed=0, vs_fp64=False,
          bounded=False):
    """Run one shape, return its error measures. Inputs are rounded to ``dtype`` first so that the
    reference sees exactly what the kernel sees."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed * 1_000_003 + rows * 65_537 + n)
    x = (loc + scale * torch.randn(rows, n, generator=gen)).to(dtype)
    param_dtype = param_dtype or dtype
    if bounded:  # |gamma|, |beta| <= 0.3, so |y| < 2 (|x_hat| stays below ~5.5 on these shapes)
        w = (0.6 * torch.rand(n, generator=gen) - 0.3).to(param_dtype)
        b = (0.6 * torch.rand(n, generator=gen) - 0.3).to(param_dtype)
    else:
        w = torch.randn(n, generator=gen).to(param_dtype)
        b = torch.randn(n, generator=gen).to(param_dtype)
    # Every other case writes into a caller-owned buffer, as TensorRT's runtime path does.
    y = layer_norm(x, w, b, 1e-5, out=torch.empty_like(x) if (rows + n) % 2 else None)
    ref = F.layer_norm(x.float(), (n,), w.float(), b.float(), 1e-5)
    err = (y.float() - ref).abs()
    out = {
        "rows": rows,
        "N": n,
        "loc": loc,
        "scale": scale,
        "bounded": bounded,
        "param_dtype": str(param_dtype).replace("torch.", ""),
        "out_dtype": str(y.dtype).replace("torch.", ""),
        "finite": bool(torch.isfinite(y).all()),
        "max_abs": err.max().item(),
        "max_scaled": (err / ref.abs().clamp_min(1.0)).max().item(),
        "frac_exact": _frac_exact(y, ref),
    }
    if vs_fp64:
        # With |mean| >> std the fp32 reference is itself off (the mean is not representable to
        # better than half an fp32 ulp of |mean|): judge kernel and torch-fp32 against fp64 instead.
        ref64 = F.layer_norm(x.double(), (n,), w.double(), b.double(), 1e-5)
        out["kernel_err64"] = (y.double() - ref64).abs().max().item()
        out["torch32_err64"] = (ref.double() - ref64).abs().max().item()
    return out


def _frac_exact(y, ref):
    """Share of y equal to ref rounded to y's dtype. Rounding means round-to-nearest-even (numpy, and
    the GPU's cvt.rn), or for bf16 also round-toward-zero: the Triton 3.9 interpreter casts fp32 to
    bf16 by dropping the low 16 bits."""
    import torch

    frac = (y == ref.to(y.dtype)).float().mean().item()
    if y.dtype == torch.bfloat16:
        truncated = (ref.contiguous().view(torch.int32) & -65536).view(torch.float32).to(y.dtype)
        frac = max(frac, (y == truncated).float().mean().item())
    return frac


def _worker(dtype_name):
    """Body of the child process: every case for one dtype, as a JSON list on stdout."""
    assert os.environ.get("TRITON_INTERPRET") == "1", "the worker must run under TRITON_INTERPRET=1"
    import torch

    from lndeploy.plugins.layernorm.kernel import layer_norm

    dtype = _torch_dtype(dtype_name)
    results = [_case(layer_norm, dtype, rows, n) for n in N_VALUES for rows in ROW_VALUES]
    # The required grid again with |y| < 2, where 1e-2 absolute is within reach of fp16 and bf16.
    results += [_case(layer_norm, dtype, rows, n, seed=4, bounded=True) for n in N_VALUES for rows in ROW_VALUES]
    # Values ~ 300 +- 300: sum(x^2) would overflow fp16 (max 65504) and E[x^2]-E[x]^2 would cancel.
    results += [_case(layer_norm, dtype, rows, n, loc=300.0, scale=300.0, seed=1)
                for n, rows in ((768, 257), (4096, 3), (16384, 3))]
    # A large offset with a small spread: the case where E[x^2]-E[x]^2 loses all precision.
    results.append(_case(layer_norm, dtype, 64, 1000, loc=1000.0, scale=1.0, seed=2, vs_fp64=True))
    if dtype != torch.float32:  # fp32 gamma/beta with a half-precision input
        results.append(_case(layer_norm, dtype, 257, 768, param_dtype=torch.float32, seed=3))
    results += _pipelined_cases(layer_norm, dtype)
    print(json.dumps(results))


def _pipelined_cases(layer_norm, dtype):
    """The autotune's prefetching schedule (ROW_STEPS tiles a program): rows that end mid-program
    and mid-tile, so the prefetch of a tile past the last row must be masked."""
    import functools

    out = []
    for n, rpp, steps in ((7, 4, 3), (1000, 1, 2), (1000, 2, 4), (5120, 1, 4)):
        for rows in (3, 257):
            fn = functools.partial(layer_norm, rows_per_program=rpp, row_steps=steps)
            out.append({**_case(fn, dtype, rows, n, seed=5), "row_steps": steps})
    return out


def run_worker(dtype_name):
    env = dict(os.environ, TRITON_INTERPRET="1")
    # The child must find lndeploy the way this process did (editable install or pytest's rootdir).
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), dtype_name], env=env,
                          capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == 0, f"worker for {dtype_name} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=DTYPES)
def reported(request):
    return request.param, run_worker(request.param)


@pytest.mark.slow
def test_every_required_case_ran(reported):
    _, results = reported
    required = {(rows, n) for n in N_VALUES for rows in ROW_VALUES}
    for bounded in (False, True):
        shapes = {(r["rows"], r["N"]) for r in results
                  if r["loc"] == 0.0 and r["param_dtype"] == r["out_dtype"] and r["bounded"] == bounded}
        assert shapes == required


@pytest.mark.slow
def test_output_dtype_is_input_dtype(reported):
    name, results = reported
    expected = str(_torch_dtype(name)).replace("torch.", "")
    assert {r["out_dtype"] for r in results} == {expected}


@pytest.mark.slow
def test_error_within_tolerance(reported):
    name, results = reported
    measure = "max_abs" if name == "fp32" else "max_scaled"
    gated = [r for r in results if not (name == "fp32" and "kernel_err64" in r)]
    bad = [r for r in gated if not r["finite"] or r[measure] > ABS_TOL[name]]
    assert not bad, f"{name}: {measure} above {ABS_TOL[name]}: {bad}"


@pytest.mark.slow
def test_absolute_error_within_tolerance_where_outputs_fit(reported):
    """The issue's literal gate, max abs <= 1e-5 (fp32) / 1e-2 (fp16, bf16), on the required grid
    with |y| < 2: there one rounding step of the output format is below 1e-2 even in bf16 (0.0078)."""
    name, results = reported
    bounded = [r for r in results if r["bounded"]]
    assert len(bounded) == len(N_VALUES) * len(ROW_VALUES)
    worst = max(bounded, key=lambda r: r["max_abs"])
    assert all(r["finite"] for r in bounded)
    assert worst["max_abs"] <= ABS_TOL[name], worst


@pytest.mark.slow
def test_large_offset_as_accurate_as_torch_fp32(reported):
    """mean = 1000 * std: no better reference than fp64, no better yardstick than torch's own fp32
    LayerNorm, whose error here is ~2e-4. E[x^2]-E[x]^2 in fp32 would be off by ~1e-1."""
    name, results = reported
    (case,) = [r for r in results if "kernel_err64" in r]
    assert case["finite"]
    if name == "fp32":
        assert case["kernel_err64"] <= 2 * case["torch32_err64"] + 1e-6, case
    else:
        assert case["max_scaled"] <= ABS_TOL[name], case


@pytest.mark.slow
def test_output_is_rounding_of_reference(reported):
    """At least 99 % of outputs equal the rounded reference (N=1 is all beta: 100 %). Not for the
    |mean| = 1000 * std case, where the fp32 reference itself is off by more than rounding noise."""
    name, results = reported
    if name == "fp32":
        pytest.skip("fp32 output is compared by max_abs; exact equality is not expected in fp32")
    worst = min((r for r in results if "kernel_err64" not in r), key=lambda r: r["frac_exact"])
    assert worst["frac_exact"] >= 0.99, worst


@pytest.mark.slow
def test_pipelined_schedule_ran(reported):
    """The error tests above gate these cases too; here: they exist and cover a partial program."""
    _, results = reported
    piped = [r for r in results if r.get("row_steps", 1) > 1]
    assert len(piped) == 8 and {r["rows"] for r in piped} == {3, 257}


def test_row_steps_divide_the_grid():
    from lndeploy.plugins.layernorm.kernel import launch_config

    cfg = launch_config(257, 1000, row_steps=4, rows_per_program=2)
    assert (cfg["ROW_STEPS"], cfg["grid"]) == (4, (33,))  # ceil(257 / 8)
    assert launch_config(257, 1000)["ROW_STEPS"] == 1  # the default is the measured schedule
    with pytest.raises(ValueError, match="row_steps"):
        launch_config(8, 1000, row_steps=0)


def test_launch_config_rules():
    import torch

    from lndeploy.plugins.layernorm.kernel import launch_config

    small = launch_config(262144, 64, None)
    assert small["BLOCK_N"] == 64 and small["ROWS_PER_PROGRAM"] > 1
    assert small["grid"] == (262144 // small["ROWS_PER_PROGRAM"],)
    # Few rows: the tile shrinks to the rows there are, not an 8192-element tile of mostly padding.
    assert launch_config(3, 64)["ROWS_PER_PROGRAM"] == 4
    assert launch_config(65536, 128)["ROWS_PER_PROGRAM"] == 64
    # Large N: 32 bytes per thread, so half types get half the warps of fp32.
    assert launch_config(1, 4096, torch.float16)["num_warps"] * 2 == launch_config(1, 4096)["num_warps"]
    big = launch_config(5, 5120)
    assert (big["BLOCK_N"], big["ROWS_PER_PROGRAM"], big["grid"]) == (8192, 1, (5,))
    warps = [launch_config(1, n)["num_warps"] for n in (1024, 4096, 16384, 65536)]
    assert warps == sorted(warps) and warps[-1] <= 32


@pytest.mark.parametrize("n", [0, 65537])
def test_launch_config_rejects_unsupported_n(n):
    from lndeploy.plugins.layernorm.kernel import launch_config

    with pytest.raises(ValueError, match="N="):
        launch_config(4, n)


def test_launcher_validates_inputs_before_launching():
    import torch

    from lndeploy.plugins.layernorm.kernel import layer_norm

    x = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="weight has 4 elements"):
        layer_norm(x, torch.ones(4), torch.zeros(8))
    with pytest.raises(TypeError, match="unsupported dtype"):
        layer_norm(x.double(), torch.ones(8).double(), torch.zeros(8).double())
    with pytest.raises(ValueError, match="cannot be viewed"):
        layer_norm(x, torch.ones(3), torch.zeros(3), normalized_numel=3)
    with pytest.raises(ValueError, match="out must be"):
        layer_norm(x, torch.ones(8), torch.zeros(8), out=torch.empty(8, 2).t())


if __name__ == "__main__":
    _worker(sys.argv[1])
