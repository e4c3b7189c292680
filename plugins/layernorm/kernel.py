"""LayerNorm forward in Triton: ``y = w * (x - mean) / sqrt(var + eps) + b`` over the last N elements.

x is viewed as a contiguous (rows, N) matrix. Each program loads a [ROWS_PER_PROGRAM, BLOCK_N] tile
once into registers, so a row is read from memory exactly once and written once: the kernel is a
pure streaming kernel whose ceiling is the copy bandwidth of the GPU.

* Statistics are fp32 whatever the input dtype, and the variance is the mean of the *centred* values
  (two passes over registers, not over memory). E[x^2] - E[x]^2 cancels catastrophically when
  |mean| >> std and would overflow if it were accumulated in fp16.
* Small rows (N <= SMALL_N_MAX) share a program (ROWS_PER_PROGRAM > 1) so that each program still
  moves enough bytes to hide latency; large rows get one program each, num_warps grows with BLOCK_N
  to keep the per-thread register footprint bounded.
* BLOCK_N = next_power_of_2(N); lanes >= N are masked, so any N in [1, MAX_N] works.
* ROW_STEPS > 1 (an autotune candidate, default 1) runs several tiles per program in sequence,
  prefetching the next tile during the current one's reductions.

This file imports only torch and triton (nothing from the rest of lndeploy), so a bare GPU machine
runs it with torch and triton alone (scripts/gpu_check.sh). ``launch_config`` is a pure function shared by
the JIT launcher and the ahead-of-time compiler (aot.py). Set ``TRITON_INTERPRET=1`` before triton is
first imported to run the kernel on CPU tensors.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_N = 65536
# At or below this N, several rows share one program.
SMALL_N_MAX = 512
# Elements one small-N program handles (ROWS_PER_PROGRAM * BLOCK_N), with SMALL_N_WARPS warps.
# Measured on an H200 (scripts/gpu_check.sh autotune): 8192-element tiles on 8 warps reach 89-99 % of
# copy bandwidth at N = 64 and 128, where 4096-element tiles on 16 warps reached 36-61 %.
SMALL_N_TILE = 8192
SMALL_N_WARPS = 8
# fp16/bf16 at small N: the H200 autotune's best at N = 128 was 2048-element tiles on 2 warps
# (R=16, w=2: ~99 % of copy, in both types), where 8192-element tiles on 8 warps gave 58-69 %.
SMALL_N_TILE_HALF = 2048
SMALL_N_WARPS_HALF = 2
# Bytes per thread that the large-N num_warps rule aims for: 16 fp16/bf16 or 8 fp32 elements. The
# H200 autotune picked exactly this at N = 1024, 4096 and 8192 in both fp16 and fp32 (fewer threads,
# each with two 16-byte vectors in flight); more once 32 warps are reached.
BYTES_PER_THREAD = 32
ELEMS_PER_THREAD = 8  # fp32 equivalent of BYTES_PER_THREAD, kept for callers that size by elements
MAX_WARPS = 32
# Tiles a program handles in sequence, prefetching the next while it reduces the current one. 1 (no
# pipelining) is the measured default; larger values are autotune candidates not yet measured on a GPU.
DEFAULT_ROW_STEPS = 1
MAX_ROW_STEPS = 8

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _layer_norm_fwd(X, W, B, rows, N, Y, eps, BLOCK_N: tl.constexpr, ROWS_PER_PROGRAM: tl.constexpr,
                    ROW_STEPS: tl.constexpr):
    """ROW_STEPS tiles of [ROWS_PER_PROGRAM, BLOCK_N] per program, one after the other.

    The argument order is TensorRT's AOT plugin ABI: input pointers, i32 extra args, output pointers.
    ``eps`` comes last because the AOT path bakes it in as a constant (QDP extra args are i32 only),
    which removes it from the parameter list; the JIT launcher passes it at run time.

    With ROW_STEPS > 1 the next tile's load is issued before this tile's two reductions, so the
    memory system stays busy while a program waits on its barriers (software pipelining by hand:
    the loop is unrolled at compile time). With ROW_STEPS = 1 this is exactly the one-tile kernel
    that was measured on the H200 (same PTX register count)."""
    pid = tl.program_id(0)
    row = pid * (ROWS_PER_PROGRAM * ROW_STEPS) + tl.arange(0, ROWS_PER_PROGRAM)
    col = tl.arange(0, BLOCK_N)
    row_ok = row < rows
    col_ok = col < N
    mask = row_ok[:, None] & col_ok[None, :]
    # 64-bit row offsets: rows * N may pass 2**31 for large activations.
    offs = row.to(tl.int64)[:, None] * N + col[None, :]
    x_raw = tl.load(X + offs, mask=mask, other=0.0)
    for step in tl.static_range(ROW_STEPS):
        if step + 1 < ROW_STEPS:  # compile-time: prefetch the next tile in its storage dtype
            next_row = row + ROWS_PER_PROGRAM
            next_mask = (next_row < rows)[:, None] & col_ok[None, :]
            next_offs = offs + ROWS_PER_PROGRAM * N
            next_raw = tl.load(X + next_offs, mask=next_mask, other=0.0)
        x = x_raw.to(tl.float32)
        mean = tl.sum(x, axis=1) / N
        # Masked lanes must not add (0 - mean)^2 to the variance.
        xc = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / N
        rstd = 1.0 / tl.sqrt(var + eps)
        # gamma/beta are (re)loaded after the reductions, from L1/L2 after the first tile: holding
        # them in registers across the reductions cost 12 more registers a thread (ptxas, sm_90).
        w = tl.load(W + col, mask=col_ok, other=0.0).to(tl.float32)
        b = tl.load(B + col, mask=col_ok, other=0.0).to(tl.float32)
        y = xc * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
        if step + 1 < ROW_STEPS:
            row, mask, offs, x_raw = next_row, next_mask, next_offs, next_raw


# The raw function stays importable so that aot.py can wrap it in a JITFunction even in a process
# where TRITON_INTERPRET=1 turned ``triton.jit`` into the interpreter.
# ``rows`` is not specialised (Triton would otherwise compile separate variants for rows == 1 and
# rows % 16 == 0, i.e. per batch size); N keeps its divisibility specialisation, which enables
# vectorised loads.
layer_norm_fwd_kernel = triton.jit(_layer_norm_fwd, do_not_specialize=["rows"])


def block_n_for(N: int) -> int:
    if not 1 <= N <= MAX_N:
        raise ValueError(f"LayerNorm kernel supports 1 <= N <= {MAX_N}, got N={N}")
    return triton.next_power_of_2(N)


def launch_config(rows: int, N: int, dtype=torch.float32, *, rows_per_program: int | None = None,
                  num_warps: int | None = None, row_steps: int | None = None) -> dict:
    """Launch parameters for ``rows`` rows of ``N`` elements: BLOCK_N, ROWS_PER_PROGRAM, ROW_STEPS,
    num_warps, grid. Pure (no tensors, no GPU), so the AOT path and the benchmark use the same rule.
    The keyword overrides exist for autotuning; ``dtype`` (of x; None means fp32) sets the bytes per
    element that the warp rule counts. A program handles ROWS_PER_PROGRAM * ROW_STEPS rows."""
    elem_bytes = 2 if dtype in (torch.float16, torch.bfloat16, "fp16", "bf16") else 4
    block_n = block_n_for(N)
    half_small = elem_bytes == 2 and block_n <= SMALL_N_MAX
    if rows_per_program is None:
        tile = SMALL_N_TILE_HALF if half_small else SMALL_N_TILE
        rows_per_program = _default_rows_per_program(rows, block_n, tile)
    if num_warps is None:
        num_warps = (min(SMALL_N_WARPS_HALF, max(1, rows_per_program * block_n // 32)) if half_small else
                     _default_num_warps(rows_per_program * block_n, elem_bytes, block_n <= SMALL_N_MAX))
    row_steps = DEFAULT_ROW_STEPS if row_steps is None else row_steps
    _check_pow2("rows_per_program", rows_per_program)
    _check_pow2("num_warps", num_warps)
    if not 1 <= row_steps <= MAX_ROW_STEPS:
        raise ValueError(f"row_steps must be in [1, {MAX_ROW_STEPS}], got {row_steps}")
    return {
        "BLOCK_N": block_n,
        "ROWS_PER_PROGRAM": rows_per_program,
        "ROW_STEPS": row_steps,
        "num_warps": num_warps,
        "grid": (max(1, triton.cdiv(rows, rows_per_program * row_steps)),),
    }


def _default_rows_per_program(rows: int, block_n: int, tile: int = 8192) -> int:
    if block_n > SMALL_N_MAX:
        return 1
    # Never more rows per program than there are rows (rounded up to a power of two): a 3-row input
    # must not compile and run an 8192-element tile. (A rule aiming at >= 2048 programs helped fp16
    # at (65536 x 128) on the H200 but cost bf16 and fp32 more: not adopted, see the README.)
    return max(1, min(tile // block_n, triton.next_power_of_2(max(rows, 1))))


def _default_num_warps(tile: int, elem_bytes: int = 4, small_n: bool = False) -> int:
    """Small N: SMALL_N_WARPS (fewer for tiles of few rows). Large N: BYTES_PER_THREAD per thread
    (two 16-byte vectors in flight), at least 2 warps, at most 32 (1024 threads), so rows above
    8192 fp32 elements hold more per thread (and spill a little above 16384 in fp32)."""
    if small_n:
        return max(1, min(SMALL_N_WARPS, triton.next_power_of_2(max(tile // 32, 1))))
    return min(MAX_WARPS, max(2, tile * elem_bytes // (32 * BYTES_PER_THREAD)))


def _check_pow2(name: str, value: int) -> None:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, got {value}")


def _check_inputs(x, weight, bias, n: int) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"unsupported dtype {x.dtype}; expected one of {SUPPORTED_DTYPES}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t.numel() != n:
            raise ValueError(f"{name} has {t.numel()} elements, expected {n}")
        if t.dtype not in (x.dtype, torch.float32):
            raise TypeError(f"{name} dtype {t.dtype} must be {x.dtype} or float32")
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device}, x on {x.device}")


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5,
               normalized_numel: int | None = None, *, out: torch.Tensor | None = None,
               rows_per_program: int | None = None, num_warps: int | None = None,
               row_steps: int | None = None) -> torch.Tensor:
    """LayerNorm over the last ``normalized_numel`` elements of each row (default: x.shape[-1]).

    ``weight``/``bias`` hold ``normalized_numel`` values, of x's dtype or fp32. Returns a tensor of
    x's shape and dtype: ``out`` if given (contiguous, e.g. a buffer TensorRT owns), else a new one.
    Works on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1. Callers should use this
    rather than the raw kernel, whose parameter order follows the TensorRT ABI and may change.
    """
    n = int(x.shape[-1] if normalized_numel is None else normalized_numel)
    if x.dim() == 0 or n < 1 or x.numel() % n:
        raise ValueError(f"x of shape {tuple(x.shape)} cannot be viewed as rows of {n} elements")
    _check_inputs(x, weight, bias, n)
    # The kernel indexes a dense (rows, N) matrix; a copy is cheaper than a strided kernel variant.
    x = x.contiguous()
    weight, bias = weight.contiguous(), bias.contiguous()
    y = torch.empty_like(x) if out is None else out
    if y.shape != x.shape or y.dtype != x.dtype or not y.is_contiguous() or y.device != x.device:
        raise ValueError("out must be a contiguous tensor of x's shape, dtype and device")
    rows = x.numel() // n
    if rows == 0:
        return y
    cfg = launch_config(rows, n, x.dtype, rows_per_program=rows_per_program, num_warps=num_warps,
                        row_steps=row_steps)
    layer_norm_fwd_kernel[cfg["grid"]](
        x, weight, bias, rows, n, y, float(eps),
        BLOCK_N=cfg["BLOCK_N"], ROWS_PER_PROGRAM=cfg["ROWS_PER_PROGRAM"], ROW_STEPS=cfg["ROW_STEPS"],
        num_warps=cfg["num_warps"],
    )
    return y
