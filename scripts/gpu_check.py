#!/usr/bin/env python3
"""GPU check of lndeploy's Triton LayerNorm kernel: correctness, bandwidth, a small autotune, AOT PTX.

Runs on a bare CUDA machine with python3, torch and triton only: the kernel is imported by its one name,
``lndeploy.plugins.layernorm``, from an install of lndeploy or from the package layout that gpu_check.sh
makes of this tree (``lndeploy/__init__`` imports only its errors: no onnx, no onnxruntime). Sections:
  (a) correctness vs torch (fp32 reference) for fp32/fp16/bf16 over a grid of N x rows;
  (b) benchmark vs F.layer_norm and torch.clone (the copy-bandwidth ceiling), with targets;
  (c) autotune of ROWS_PER_PROGRAM x ROW_STEPS x num_warps per shape, within a time budget, each
      trial next to a copy of the same tensor (gpu_tune.py);
  (d) AOT: PTX from aot.compile_ptx at the driver's PTX ISA, loaded with the CUDA driver API and
      launched the way TensorRT launches a QDP AOT kernel (in a child process, so a crash there
      cannot lose (a)-(c)).
Writes $OUT/gpu_check.json (./gpu_check_out/ without OUT) after every section and prints tables.
``--interpret`` runs the same code on CPU under TRITON_INTERPRET=1 with tiny shapes.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_tune  # noqa: E402  (a sibling file: this script runs by path on a bare machine)

REPO = Path(__file__).resolve().parents[1]
EPS = 1e-5
TOL = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 1e-2}
GPU_PLAN = {
    "ns": (1, 7, 64, 768, 1000, 4096, 5120, 16384, 65536), "rows": (1, 3, 257),
    "bench": ((32768, 768), (32768, 1024), (16384, 4096), (8192, 8192), (65536, 128), (262144, 64)),
    "bench_dtypes": ("fp16", "bf16", "fp32"), "tune_dtypes": ("fp16", "fp32"),
    "aot_cases": ((1000, 768), (333, 64), (5, 5120)),
}
CPU_PLAN = {
    "ns": (7, 64, 1000), "rows": (1, 3), "bench": ((64, 64), (8, 1024)),
    "bench_dtypes": ("fp16", "fp32"), "tune_dtypes": ("fp16",), "aot_cases": ((3, 64),),
}


def load_plugin(module: str):
    """``lndeploy.plugins.layernorm.<module>``; without lndeploy importable, says how to get it."""
    try:
        return importlib.import_module(f"lndeploy.plugins.layernorm.{module}")
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("lndeploy"):
            raise
        raise SystemExit("gpu_check: lndeploy.plugins is not importable here: run scripts/gpu_check.sh (it lays "
                         "this tree out as the package) or pip install -e . first") from err


def tdtype(name):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def make_inputs(rows, n, dtype, device, loc=0.0, scale=1.0, seed=0):
    import torch

    g = torch.Generator(device=device).manual_seed(seed * 7919 + rows * 131 + n)
    x = (loc + scale * torch.randn(rows, n, device=device, generator=g)).to(tdtype(dtype))
    w = torch.randn(n, device=device, generator=g).to(tdtype(dtype))
    b = torch.randn(n, device=device, generator=g).to(tdtype(dtype))
    return x, w, b


def errors(y, x, w, b):
    """max |y-ref|, max |y-ref|/max(1,|ref|), share of y equal to the rounded fp32 reference."""
    import torch.nn.functional as F

    ref = F.layer_norm(x.float(), (x.shape[-1],), w.float(), b.float(), EPS)
    err = (y.float() - ref).abs()
    return {"max_abs": err.max().item(), "max_scaled": (err / ref.abs().clamp_min(1)).max().item(),
            "frac_exact": (y == ref.to(y.dtype)).float().mean().item(),
            "finite": bool(y.isfinite().all().item())}


def correctness(kernel, plan, device):
    out = []
    cases = [(d, r, n, 0.0, 1.0) for d in TOL for n in plan["ns"] for r in plan["rows"]]
    cases += [(d, r, n, 300.0, 300.0) for d in TOL for r, n in ((257, 768), (3, 16384))]
    for dtype, rows, n, loc, scale in cases:
        x, w, b = make_inputs(rows, n, dtype, device, loc, scale)
        e = errors(kernel.layer_norm(x, w, b, EPS), x, w, b)
        gate = e["max_abs"] if dtype == "fp32" else e["max_scaled"]
        e.update(dtype=dtype, rows=rows, N=n, loc=loc, pass_=e["finite"] and gate <= TOL[dtype],
                 abs_within_1e_2=e["max_abs"] <= 1e-2)
        out.append(e)
    return out


def make_timer(device, quick=False):
    if device == "cuda":
        from triton.testing import do_bench

        warmup, rep = (5, 20) if quick else (25, 100)
        return lambda fn: do_bench(fn, warmup=warmup, rep=rep, return_mode="median")

    def cpu_timer(fn):  # --interpret: exercises the code path, the numbers mean nothing
        times = []
        for _ in range(3):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    return cpu_timer


def bench(kernel, plan, device):
    import torch
    import torch.nn.functional as F

    timer, rows_out = make_timer(device), []
    for dtype in plan["bench_dtypes"]:
        for rows, n in plan["bench"]:
            x, w, b = make_inputs(rows, n, dtype, device)
            ms = {"ours": timer(lambda: kernel.layer_norm(x, w, b, EPS)),
                  "torch": timer(lambda: F.layer_norm(x, (n,), w, b, EPS)),
                  "copy": timer(lambda: torch.clone(x))}
            rows_out.append(bench_row(dtype, rows, n, x.element_size(), ms, kernel))
            del x, w, b
    return rows_out


def bench_row(dtype, rows, n, es, ms, kernel):
    ln_bytes = 2 * rows * n * es + 2 * n * es  # x read, y written, gamma and beta read
    gbps = {k: (ln_bytes if k != "copy" else 2 * rows * n * es) / (v * 1e-3) / 1e9 for k, v in ms.items()}
    pct = gbps["ours"] / gbps["copy"]
    target = 0.90 if n >= 1024 else 0.70 if n <= 256 else None
    speedup = ms["torch"] / ms["ours"]
    return {"dtype": dtype, "rows": rows, "N": n, "ms": ms, "GBps": gbps, "pct_of_copy": pct,
            "pct_target": target, "pct_pass": None if target is None else pct >= target,
            "speedup_vs_torch": speedup, "speedup_pass": speedup >= 1.15,
            "config": {k: v for k, v in kernel.launch_config(rows, n, tdtype(dtype)).items() if k != "grid"}}


# ---- (d) AOT: PTX loaded with the driver API and launched like TensorRT does -----------------------

def _cuda_driver():
    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    lib.cuModuleLoadData.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p]
    lib.cuModuleGetFunction.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_char_p]
    lib.cuFuncSetAttribute.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    return lib


def _check_cu(lib, rc, what):
    if rc != 0:
        msg = ctypes.c_char_p()
        lib.cuGetErrorString(rc, ctypes.byref(msg))
        raise RuntimeError(f"{what}: CUDA error {rc} ({(msg.value or b'?').decode()})")


def driver_ptx_isa(lib, aot):
    version = ctypes.c_int()
    _check_cu(lib, lib.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    major, minor = version.value // 1000, version.value % 1000 // 10
    return f"{major}.{minor}", aot.ptx_isa_for_release(major, minor)


def launch_aot(lib, k, x, w, b, y, rows, n, stream):
    """Load k.ptx and launch with (X, Scale, B, rows, N, Y) plus null scratch pointers, as TensorRT."""
    mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
    _check_cu(lib, lib.cuModuleLoadData(ctypes.byref(mod), k.ptx.encode() + b"\0"), "cuModuleLoadData")
    _check_cu(lib, lib.cuModuleGetFunction(ctypes.byref(fn), mod, k.name.encode()), "cuModuleGetFunction")
    if k.shared_mem > 48 * 1024:  # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        _check_cu(lib, lib.cuFuncSetAttribute(fn, 8, k.shared_mem), "cuFuncSetAttribute")
    args = [ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(w.data_ptr()), ctypes.c_void_p(b.data_ptr()),
            ctypes.c_int32(rows), ctypes.c_int32(n), ctypes.c_void_p(y.data_ptr())]
    args += [ctypes.c_void_p(0)] * (k.num_params - len(args))
    params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args])
    gx, gy, gz = k.grid(rows)
    _check_cu(lib, lib.cuLaunchKernel(fn, gx, gy, gz, k.threads_per_block, 1, 1, k.shared_mem, stream,
                                      ctypes.cast(params, ctypes.c_void_p), None), "cuLaunchKernel")


def aot_section(plan):
    """Child process: compile with this machine's triton, then (with a GPU) load and run the PTX."""
    import torch
    import triton

    aot, kernel = load_plugin("aot"), load_plugin("kernel")
    res = {"triton": triton.__version__, "toolkit_ptxas": aot.find_toolkit_ptxas(), "cases": []}
    if not torch.cuda.is_available():
        k = aot.compile_ptx("fp16", 64, 90)
        res.update(note="no GPU: compiled only", ptx_version=k.ptx_version, name=k.name)
        return res
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # makes the primary context current for the driver API calls
    lib = _cuda_driver()
    res["driver_cuda"], driver_isa = driver_ptx_isa(lib, aot)
    major, minor = torch.cuda.get_device_capability()
    arch = 10 * major + minor
    # The PTX must be no newer than the driver accepts and than the ptxas that assembles it knows.
    ptxas = res["toolkit_ptxas"] or _bundled_ptxas(arch)
    isa = min(driver_isa, aot.ptx_isa_for_release(*aot.ptxas_release(ptxas)))
    res.update(ptxas=ptxas, driver_isa=driver_isa, isa=isa)
    for dtype in ("fp16", "bf16", "fp32"):
        for rows, n in plan["aot_cases"]:
            k = aot.compile_ptx(dtype, kernel.block_n_for(n), arch, ptxas=ptxas, ptx_version=isa,
                                n_multiple_of_16=n % 16 == 0)
            x, w, b = make_inputs(rows, n, dtype, "cuda", seed=5)
            y = torch.full_like(x, float("nan"))
            launch_aot(lib, k, x, w, b, y, rows, n, torch.cuda.current_stream().cuda_stream)
            torch.cuda.synchronize()
            e = errors(y, x, w, b)
            gate = e["max_abs"] if dtype == "fp32" else e["max_scaled"]
            res["cases"].append({**e, "dtype": dtype, "rows": rows, "N": n, "arch": arch,
                                 "ptx_version": k.ptx_version, "num_warps": k.num_warps,
                                 "shared_mem": k.shared_mem, "pass_": e["finite"] and gate <= TOL[dtype]})
    res["default_ptx"] = _try_default_ptx(lib, aot, arch)
    return res


def _bundled_ptxas(arch):
    """The ptxas Triton itself uses (private API, so try the spellings of recent releases)."""
    import triton
    import triton.backends.nvidia.compiler as nv

    for get in (lambda: nv.get_ptxas(arch).path, lambda: nv.get_ptxas().path,
                lambda: triton.knobs.nvidia.ptxas.path):
        try:
            return get()
        except (TypeError, AttributeError):
            continue
    raise RuntimeError("cannot locate Triton's ptxas")


def _try_default_ptx(lib, aot, arch):
    """Does PTX at the ISA of Triton's own ptxas (no override) load on this driver?"""
    try:
        k = aot.compile_ptx("fp16", 1024, arch, ptxas=_bundled_ptxas(arch))
        mod = ctypes.c_void_p()
        rc = lib.cuModuleLoadData(ctypes.byref(mod), k.ptx.encode() + b"\0")
        return {"ptx_version": k.ptx_version, "cuModuleLoadData_rc": rc}
    except Exception as exc:  # informative only
        return {"error": repr(exc)[:500]}


def run_aot_child(interpret: bool, timeout_s: float):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile needs real triton
    cmd = [sys.executable, str(Path(__file__).resolve()), "--aot-child"] + (["--interpret"] if interpret else [])
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(10, timeout_s))
    except subprocess.TimeoutExpired:
        return {"error": f"AOT child exceeded {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"AOT child rc={proc.returncode}", "stderr": proc.stderr[-3000:]}
    return json.loads(lines[-1])


# ---- report ---------------------------------------------------------------------------------------

def env_info(device):
    import torch
    import triton

    info = {"torch": torch.__version__, "triton": triton.__version__, "python": sys.version.split()[0],
            "device": device, "kernel_file": load_plugin("kernel").__file__,
            "imported_onnx": sorted(m for m in ("onnx", "onnxruntime") if m in sys.modules)}
    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", sms=p.multi_processor_count,
                    cuda_runtime=torch.version.cuda)
    return info


def print_tables(report):
    corr = report.get("correctness", [])
    for dtype in TOL:
        sub = [c for c in corr if c["dtype"] == dtype]
        if sub:
            bad = [c for c in sub if not c["pass_"]]
            print(f"correctness {dtype}: {len(sub) - len(bad)}/{len(sub)} pass, "
                  f"max_abs {max(c['max_abs'] for c in sub):.2e}, max_scaled "
                  f"{max(c['max_scaled'] for c in sub):.2e}, min frac_exact "
                  f"{min(c['frac_exact'] for c in sub):.4f}" + (f"  FAIL: {bad[:3]}" if bad else ""))
    print(f"\n{'dtype':5} {'rows':>7} {'N':>6} | {'ours ms':>8} {'torch ms':>8} {'copy ms':>8} | "
          f"{'ours GB/s':>9} {'copy GB/s':>9} {'%copy':>6} {'tgt':>4} {'vs torch':>8} | pass")
    for r in report.get("bench", []):
        tgt = "-" if r["pct_target"] is None else f"{r['pct_target']:.0%}"
        ok = (r["pct_pass"] is not False) and r["speedup_pass"]
        print(f"{r['dtype']:5} {r['rows']:>7} {r['N']:>6} | {r['ms']['ours']:8.4f} {r['ms']['torch']:8.4f} "
              f"{r['ms']['copy']:8.4f} | {r['GBps']['ours']:9.0f} {r['GBps']['copy']:9.0f} "
              f"{r['pct_of_copy']:6.1%} {tgt:>4} {r['speedup_vs_torch']:7.2f}x | {'PASS' if ok else 'FAIL'}")
    for t in report.get("autotune", []):
        print(gpu_tune.describe(t))
    print("aot:", json.dumps(report.get("aot"))[:1500])


def write(report, out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interpret", action="store_true", help="CPU dry run under TRITON_INTERPRET=1")
    ap.add_argument("--budget-s", type=float, default=160.0,
                    help="seconds since start after which autotuning stops (the whole run stays < 4 min)")
    ap.add_argument("--no-autotune", action="store_true")
    ap.add_argument("--tune-dtypes", help="comma list of dtypes to autotune (default: fp16,fp32)")
    ap.add_argument("--tune-n", help="comma list of N: autotune only the benchmark shapes with these N")
    ap.add_argument("--aot-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    plan = dict(CPU_PLAN if args.interpret else GPU_PLAN)
    if args.tune_dtypes:
        plan["tune_dtypes"] = tuple(args.tune_dtypes.split(","))
    if args.tune_n:
        plan["tune_n"] = {int(n) for n in args.tune_n.split(",")}
    if args.aot_child:
        print(json.dumps(aot_section(plan), default=str))
        return 0
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (load_plugin imports it)
    kernel = load_plugin("kernel")
    import torch

    device = "cpu" if args.interpret else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; use --interpret for a CPU dry run", file=sys.stderr)
        return 3  # lndeploy's "cannot run here", not a correctness failure (1)
    out_dir = Path(os.environ.get("OUT") or "gpu_check_out")
    report = {"env": env_info(device)}
    for name, fn in (("correctness", lambda: correctness(kernel, plan, device)),
                     ("bench", lambda: bench(kernel, plan, device))):
        t = time.monotonic()
        report[name] = fn()
        report.setdefault("section_s", {})[name] = round(time.monotonic() - t, 1)
        write(report, out_dir)
    if not args.no_autotune:
        t = time.monotonic()
        report["autotune"] = gpu_tune.autotune(kernel, plan, device, t0 + args.budget_s,
                                               make_inputs, make_timer, EPS)
        report["section_s"]["autotune"] = round(time.monotonic() - t, 1)
        write(report, out_dir)
    t = time.monotonic()
    report["aot"] = run_aot_child(args.interpret, timeout_s=max(45.0, t0 + args.budget_s + 45 - t))
    report["section_s"]["aot"] = round(time.monotonic() - t, 1)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    report["correctness_pass"] = all(c["pass_"] for c in report["correctness"])
    write(report, out_dir)
    print_tables(report)
    print(f"\nwrote {out_dir / 'gpu_check.json'} in {report['elapsed_s']} s; correctness "
          f"{'PASS' if report['correctness_pass'] else 'FAIL'}")
    return 0 if report["correctness_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
