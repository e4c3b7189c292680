"""Autotune section of scripts/gpu_check.py: launch configurations of the LayerNorm kernel per shape.

A configuration is (ROWS_PER_PROGRAM, ROW_STEPS, num_warps). Every trial is timed next to a device
copy of the same tensor (torch.clone, the bandwidth ceiling) measured in the same loop, so each shape
reports the best configuration's percent of copy bandwidth directly: the figure the plugin's targets
are stated in. The default configuration is always timed first, so it is measured even when the time
budget runs out. Loaded by gpu_check.py from this folder; imports only torch (through the caller).
"""

from __future__ import annotations

import time

WARPS = (1, 2, 4, 8, 16, 32)


def tune_candidates(kernel, n):
    """Configurations worth timing for rows of ``n`` elements, as dicts. Small N: tiles of 2048 to
    16384 elements. Large N: one or two rows a tile, in sequence 1, 2 or 4 tiles a program (the
    prefetching schedule; see kernel._layer_norm_fwd). Per-thread work is kept between 2 and 32
    elements (64 above 8192, where a row cannot be spread thinner)."""
    block_n = kernel.block_n_for(n)
    if block_n <= kernel.SMALL_N_MAX:
        shapes = [(r, s) for r in (4, 8, 16, 32, 64, 128, 256) if 2048 <= r * block_n <= 16384
                  for s in (1, 2)]
    else:
        shapes = [(r, s) for r in ((1, 2) if block_n <= 8192 else (1,)) for s in (1, 2, 4)]
    for rpp, steps in shapes:
        for warps in WARPS:
            if 2 <= rpp * block_n // (32 * warps) <= (64 if block_n > 8192 else 32):
                yield {"ROWS_PER_PROGRAM": rpp, "ROW_STEPS": steps, "num_warps": warps}


def _key(cfg):
    return cfg["ROWS_PER_PROGRAM"], cfg.get("ROW_STEPS", 1), cfg["num_warps"]


def tune_shape(kernel, x, w, b, eps, timer, deadline):
    """Time the default and then every candidate for one input; returns the shape's result dict."""
    import torch

    rows, n = x.shape
    default = kernel.launch_config(rows, n, x.dtype)
    ref = kernel.layer_norm(x, w, b, eps)
    cands = [default] + [c for c in tune_candidates(kernel, n) if _key(c) != _key(default)]
    trials = []
    for cfg in cands:
        if time.monotonic() > deadline:
            break
        rpp, steps, warps = _key(cfg)

        def run(rpp=rpp, steps=steps, warps=warps):
            return kernel.layer_norm(x, w, b, eps, rows_per_program=rpp, row_steps=steps,
                                     num_warps=warps)

        # Another config may sum in another order (last-bit changes), never more.
        diff = (run().float() - ref.float()).abs().max().item()
        ms, copy_ms = timer(run), timer(lambda: torch.clone(x))
        trials.append({"ROWS_PER_PROGRAM": rpp, "ROW_STEPS": steps, "num_warps": warps, "ms": ms,
                       "copy_ms": copy_ms, "pct_of_copy": copy_ms / ms, "max_diff_vs_default": diff})
    if not trials:
        return {"skipped": "time budget"}
    best = min(trials, key=lambda t: t["ms"])
    dflt = next((t for t in trials if _key(t) == _key(default)), None)
    return {"best": best, "trials": trials,
            "default": {"ROWS_PER_PROGRAM": default["ROWS_PER_PROGRAM"],
                        "ROW_STEPS": default["ROW_STEPS"], "num_warps": default["num_warps"],
                        "ms": dflt["ms"] if dflt else None,
                        "pct_of_copy": dflt["pct_of_copy"] if dflt else None}}


def autotune(kernel, plan, device, deadline, make_inputs, make_timer, eps):
    timer, results = make_timer(device, quick=True), []
    for dtype in plan["tune_dtypes"]:
        for rows, n in plan["bench"]:
            if "tune_n" in plan and n not in plan["tune_n"]:
                continue
            x, w, b = make_inputs(rows, n, dtype, device)
            result = tune_shape(kernel, x, w, b, eps, timer, deadline)
            results.append({"dtype": dtype, "rows": rows, "N": n, **result})
            del x, w, b
    return results


def describe(t) -> str:
    """One line for a shape's tuning result."""
    if "best" not in t:
        return f"tune {t['dtype']} {t['rows']}x{t['N']}: {t.get('skipped', 'no trials')}"
    d, bst = t["default"], t["best"]
    pct = "?" if d["pct_of_copy"] is None else f"{d['pct_of_copy']:.1%}"
    return (f"tune {t['dtype']} {t['rows']}x{t['N']}: best R={bst['ROWS_PER_PROGRAM']} "
            f"S={bst['ROW_STEPS']} w={bst['num_warps']} {bst['ms']:.4f} ms = {bst['pct_of_copy']:.1%} "
            f"of copy; default R={d['ROWS_PER_PROGRAM']} S={d['ROW_STEPS']} w={d['num_warps']} "
            f"{d['ms'] if d['ms'] is None else round(d['ms'], 4)} ms = {pct}")
