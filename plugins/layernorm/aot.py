"""Ahead-of-time PTX for the LayerNorm kernel, for a TensorRT Quickly-Deployable-Plugin ``aot_impl``.

No GPU is needed: ``triton.compile`` lowers the kernel for an explicit ``GPUTarget``. Two things
make the PTX loadable where it will run:

* PTX ISA version. Triton stamps ``.version`` from the ptxas it uses; its bundled ptxas is newer
  than CUDA 13.0 and gives ``.version 9.4``, which CUDA 13.0 tools and drivers reject. We point
  Triton at a chosen ptxas (default: the CUDA toolkit's, next to ``nvcc`` on PATH) and pass the
  matching ``ptx_version`` as a compile option, so it is also part of Triton's cache key (a cached
  9.4 build is never reused).
* Target. Triton targets ``sm_90a`` on Hopper, which ptxas refuses for ``-arch=sm_90`` and no other
  GPU can load. The LayerNorm kernel uses no arch-specific instruction, so the ``.target`` line is
  rewritten to plain ``sm_90`` (forward compatible), and the result is checked with ``ptxas
  -arch=sm_90`` whenever a ptxas is known.

Kernel ABI (the QDP AOT convention: input pointers, i32 extra args, output pointers):
``X, Scale, B, rows: i32, N: i32, Y`` followed by two scratch pointers that Triton always appends
(global and profile scratch, size 0 here: TensorRT pads unused parameter slots with null). ``eps``,
``BLOCK_N``, ``ROWS_PER_PROGRAM`` and ``ROW_STEPS`` are baked in. Launch:
``grid_x = ceil(rows / program_rows)`` (``program_rows = rows_per_program * row_steps``),
``block_x = num_warps * 32``, dynamic shared memory ``shared_mem`` bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

DTYPES = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16",
          "float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
ARCHS = (80, 86, 89, 90, 100, 120)
# Non-constexpr kernel parameters in order, as TensorRT passes them.
ABI = ("X", "Scale", "B", "rows", "N", "Y")
TRITON_SCRATCH_PARAMS = 2


@dataclass(frozen=True)
class AotKernel:
    """What a TensorRT ``aot_impl`` returns, plus the facts needed to launch it by hand."""

    name: str  # PTX entry name
    ptx: str
    arch: int  # compute capability, e.g. 90
    dtype: str  # X / Y element type: fp32, fp16, bf16
    weight_dtype: str  # Scale / B element type
    block_n: int  # N must satisfy 1 <= N <= block_n
    rows_per_program: int  # rows of one tile
    num_warps: int
    shared_mem: int  # bytes of dynamic shared memory to request at launch
    eps: float
    ptx_version: str  # e.g. "9.0"
    num_params: int  # PTX entry parameters: len(ABI) + Triton's scratch pointers
    row_steps: int = 1  # tiles one program handles in sequence
    abi: tuple = field(default=ABI)
    grid_rule: str = "grid_x = ceil(rows / (rows_per_program * row_steps)), grid_y = grid_z = 1"

    @property
    def program_rows(self) -> int:
        """Rows one program covers: the grid divisor."""
        return self.rows_per_program * self.row_steps

    @property
    def threads_per_block(self) -> int:
        return self.num_warps * 32

    def grid(self, rows: int) -> tuple[int, int, int]:
        """Launch grid for ``rows`` rows (with TensorRT symbolic shapes use
        ``trtp.cdiv(rows_expr, program_rows)`` instead)."""
        return (max(1, -(-int(rows) // self.program_rows)), 1, 1)


def find_toolkit_ptxas() -> str | None:
    """The CUDA toolkit's ptxas: next to ``nvcc`` on PATH, else ``ptxas`` on PATH."""
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidate = os.path.join(os.path.dirname(os.path.realpath(nvcc)), "ptxas")
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("ptxas")


def ptxas_release(ptxas: str) -> tuple[int, int]:
    """(major, minor) of a ptxas, from ``ptxas --version`` ("... release 13.0, V13.0.88")."""
    out = subprocess.run([ptxas, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        raise RuntimeError(f"cannot read the release of {ptxas}: {out!r}")
    return int(m.group(1)), int(m.group(2))


def ptx_isa_for_release(major: int, minor: int) -> int:
    """Highest PTX ISA a CUDA release accepts, as Triton encodes it (90 = 9.0). Same table as
    Triton's ``ptx_get_version``, restated because that is a private helper."""
    if major >= 13:
        return 90 + (major - 13) * 10 + minor
    if major == 12:
        return 80 + minor if minor < 6 else 80 + minor - 1
    if major == 11:
        return 70 + minor
    raise ValueError(f"CUDA {major}.{minor} is too old for Triton")


@contextlib.contextmanager
def _use_ptxas(ptxas: str | None):
    """Make Triton's compiler run ``ptxas`` for every arch (TRITON_PTXAS_PATH is used below sm_90,
    TRITON_PTXAS_BLACKWELL_PATH from sm_90 up), restoring the environment afterwards."""
    keys = ("TRITON_PTXAS_PATH", "TRITON_PTXAS_BLACKWELL_PATH")
    saved = {k: os.environ.get(k) for k in keys}
    if ptxas:
        for k in keys:
            os.environ[k] = ptxas
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_with_ptxas(ptx: str, arch, ptxas: str) -> None:
    """Assemble ``ptx`` for ``sm_<arch>`` (arch: 90 or "90a"); raise with ptxas's message if it is refused."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        proc = subprocess.run([ptxas, f"-arch=sm_{arch}", path, "-o", os.devnull],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{ptxas} -arch=sm_{arch} refused the PTX: {proc.stderr.strip()}")


def _signature(dtype: str, weight_dtype: str) -> dict:
    return {"X": f"*{dtype}", "W": f"*{weight_dtype}", "B": f"*{weight_dtype}", "rows": "i32",
            "N": "i32", "Y": f"*{dtype}", "eps": "constexpr", "BLOCK_N": "constexpr",
            "ROWS_PER_PROGRAM": "constexpr", "ROW_STEPS": "constexpr"}


def _divisibility_attrs(n_multiple_of_16: bool) -> dict:
    """Alignment hints Triton's JIT would derive itself: 16-byte aligned pointers (TensorRT allocates
    device buffers with far larger alignment) let loads be vectorised; N % 16 == 0 additionally makes
    every row start aligned. Only claim what the caller guarantees."""
    pointer_args = (0, 1, 2, 5)  # X, W, B, Y
    hinted = pointer_args + ((4,) if n_multiple_of_16 else ())
    return {(i,): [["tt.divisibility", 16]] for i in hinted}


def compile_ptx(dtype: str, block_n: int, arch: int, *, eps: float = 1e-5,
                weight_dtype: str | None = None, rows_per_program: int | None = None,
                num_warps: int | None = None, row_steps: int | None = None,
                n_multiple_of_16: bool = False,
                ptxas: str | None = None, ptx_version: int | None = None,
                arch_specific: bool = False) -> AotKernel:
    """PTX of the LayerNorm kernel for rows of 1..block_n elements on ``sm_<arch>``.

    ``block_n``: a power of two (``kernel.block_n_for(N)``). ``ptxas``: the ptxas whose CUDA release
    fixes the PTX ISA version (default :func:`find_toolkit_ptxas`; ``None`` found means Triton's
    bundled one, whose PTX may be too new for the driver). ``ptx_version`` (e.g. 87 for a CUDA 12.8
    driver) overrides the ISA that ptxas implies. Launch parameters default to
    ``kernel.launch_config`` for a large row count.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from . import kernel

    _require_compiler_mode(JITFunction)
    dtype, weight_dtype = _dtype_name(dtype), _dtype_name(weight_dtype or dtype)
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch}")
    if kernel.block_n_for(block_n) != block_n:
        raise ValueError(f"block_n must be a power of two, got {block_n}")
    cfg = kernel.launch_config(1 << 30, block_n, dtype, rows_per_program=rows_per_program,
                               num_warps=num_warps, row_steps=row_steps)
    ptxas = ptxas or find_toolkit_ptxas()
    options = {"num_warps": cfg["num_warps"], "num_stages": 1, "enable_fp_fusion": True}
    if ptx_version is not None:
        options["ptx_version"] = int(ptx_version)
    elif ptxas:
        options["ptx_version"] = ptx_isa_for_release(*ptxas_release(ptxas))
    # A JITFunction made here, not kernel.layer_norm_fwd_kernel, which is an interpreter object if
    # TRITON_INTERPRET was set only when the kernel module was imported.
    src = ASTSource(fn=JITFunction(kernel._layer_norm_fwd), signature=_signature(dtype, weight_dtype),
                    constexprs={"eps": float(eps), "BLOCK_N": block_n,
                                "ROWS_PER_PROGRAM": cfg["ROWS_PER_PROGRAM"],
                                "ROW_STEPS": cfg["ROW_STEPS"]},
                    attrs=_divisibility_attrs(n_multiple_of_16))
    with _use_ptxas(ptxas):
        compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    return _finish(compiled, arch, dtype, weight_dtype, block_n, cfg, eps, ptxas, arch_specific)


def _require_compiler_mode(jit_function_type) -> None:
    """With TRITON_INTERPRET=1 set when triton was imported, triton.language's own helpers (tl.sum is
    a jitted function) are interpreter objects, and no kernel can be lowered in this process."""
    import triton.language.standard as std

    if not isinstance(getattr(std, "sum", None), jit_function_type):
        raise RuntimeError("compile_ptx cannot run in a process where triton was imported with "
                           "TRITON_INTERPRET=1; run it in a process without that variable")


def _finish(compiled, arch, dtype, weight_dtype, block_n, cfg, eps, ptxas, arch_specific):
    meta = compiled.metadata
    # Fail closed on anything the plain QDP launch cannot provide.
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise RuntimeError("kernel needs global/profile scratch memory, which a QDP launch lacks")
    if getattr(meta, "num_ctas", 1) != 1:
        raise RuntimeError("kernel uses CTA clusters, which a QDP launch lacks")
    ptx = compiled.asm["ptx"]
    if not arch_specific:
        ptx = re.sub(rf"^\.target sm_{arch}a\b", f".target sm_{arch}", ptx, flags=re.MULTILINE)
    if ptxas:
        check_with_ptxas(ptx, f"{arch}a" if arch_specific and arch >= 90 else str(arch), ptxas)
    return AotKernel(
        name=meta.name, ptx=ptx, arch=arch, dtype=dtype, weight_dtype=weight_dtype, block_n=block_n,
        rows_per_program=cfg["ROWS_PER_PROGRAM"], num_warps=meta.num_warps, shared_mem=meta.shared,
        eps=float(eps), ptx_version=ptx_version_of(ptx), num_params=count_entry_params(ptx),
        row_steps=cfg["ROW_STEPS"],
    )


def _dtype_name(dtype) -> str:
    key = str(dtype).replace("torch.", "")
    if key not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; expected fp32, fp16 or bf16")
    return DTYPES[key]


def ptx_version_of(ptx: str) -> str:
    m = re.search(r"^\.version (\d+\.\d+)", ptx, re.MULTILINE)
    if not m:
        raise ValueError("no .version line in PTX")
    return m.group(1)


def count_entry_params(ptx: str) -> int:
    m = re.search(r"\.entry\s+\w+\s*\((.*?)\)", ptx, re.DOTALL)
    if not m:
        raise ValueError("no .entry in PTX")
    return len(re.findall(r"\.param\b", m.group(1)))
