"""AOT PTX for the LayerNorm kernel: CUDA 13.0's own ptxas must accept it, for sm_80 and sm_90.

Needs the CUDA toolkit (nvcc and its ptxas on PATH) but no GPU; skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from lndeploy.plugins.layernorm.aot import ABI, TRITON_SCRATCH_PARAMS, find_toolkit_ptxas

PTXAS = find_toolkit_ptxas()
needs_ptxas = pytest.mark.skipif(PTXAS is None, reason="no CUDA toolkit: nvcc/ptxas not on PATH")
# The highest PTX ISA that CUDA 13.0 tools and drivers accept.
MAX_PTX_VERSION = (9, 0)


def _ptxas_accepts(ptx: str, arch: str, tmp_path) -> subprocess.CompletedProcess:
    path = tmp_path / f"ln_{arch}.ptx"
    path.write_text(ptx)
    return subprocess.run([PTXAS, f"-arch={arch}", str(path), "-o", os.devnull],
                          capture_output=True, text=True)


@needs_ptxas
@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("block_n", [64, 4096])
def test_ptx_is_accepted_by_toolkit_ptxas(arch, dtype, block_n, tmp_path):
    from lndeploy.plugins.layernorm.aot import compile_ptx

    k = compile_ptx(dtype, block_n, arch)
    version = tuple(int(v) for v in k.ptx_version.split("."))
    assert version <= MAX_PTX_VERSION, f".version {k.ptx_version} is newer than CUDA 13.0 accepts"
    assert re.search(rf"^\.target sm_{arch}\s*$", k.ptx, re.MULTILINE), "generic (non-'a') target"
    proc = _ptxas_accepts(k.ptx, f"sm_{arch}", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert k.dtype == dtype and k.block_n == block_n and k.arch == arch
    assert k.threads_per_block == 32 * k.num_warps and k.shared_mem >= 0


@needs_ptxas
def test_entry_parameters_follow_the_plugin_abi():
    """X, Scale, B (pointers), rows, N (i32), Y (pointer), then Triton's two scratch pointers."""
    from lndeploy.plugins.layernorm.aot import compile_ptx

    k = compile_ptx("fp16", 1024, 90)
    entry = re.search(r"\.entry\s+(\w+)\s*\((.*?)\)", k.ptx, re.DOTALL)
    assert entry.group(1) == k.name
    kinds = re.findall(r"\.param\s+\.(u64|u32|b32|b64)", entry.group(2))
    expected = ["u64", "u64", "u64", "u32", "u32", "u64"] + ["u64"] * TRITON_SCRATCH_PARAMS
    assert kinds == expected and k.num_params == len(ABI) + TRITON_SCRATCH_PARAMS


@needs_ptxas
def test_launch_parameters_come_from_launch_config():
    from lndeploy.plugins.layernorm.aot import compile_ptx
    from lndeploy.plugins.layernorm.kernel import launch_config

    k = compile_ptx("bf16", 64, 80)
    cfg = launch_config(10**6, 64, "bf16")  # the rule is per dtype: aot must follow it
    assert (k.rows_per_program, k.num_warps) == (cfg["ROWS_PER_PROGRAM"], cfg["num_warps"])
    assert k.grid(10**6) == (cfg["grid"][0], 1, 1) and k.grid(1) == (1, 1, 1)
    tuned = compile_ptx("bf16", 64, 80, rows_per_program=8, num_warps=2)
    assert (tuned.rows_per_program, tuned.num_warps, tuned.grid(17)) == (8, 2, (3, 1, 1))


@needs_ptxas
def test_prefetching_schedule_compiles_without_spills(tmp_path):
    """The autotune candidate for fp16 N = 8192 (two tiles a program, the next one loaded during the
    current one's reductions) fits in registers on sm_90, and its grid counts rows per program."""
    from lndeploy.plugins.layernorm.aot import compile_ptx

    k = compile_ptx("fp16", 8192, 90, num_warps=16, row_steps=2, n_multiple_of_16=True)
    assert (k.row_steps, k.program_rows, k.grid(8192)) == (2, 2, (4096, 1, 1))
    path = tmp_path / "piped.ptx"
    path.write_text(k.ptx)
    proc = subprocess.run([PTXAS, "-v", "-arch=sm_90", str(path), "-o", os.devnull],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    spills = [int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", proc.stderr)]
    assert spills and not any(spills), proc.stderr


@needs_ptxas
def test_arch_specific_target_is_what_sm90_ptxas_refuses(tmp_path):
    """Why compile_ptx rewrites the target: Triton's own sm_90a PTX is refused for sm_90."""
    from lndeploy.plugins.layernorm.aot import compile_ptx

    k = compile_ptx("fp16", 1024, 90, arch_specific=True)
    assert re.search(r"^\.target sm_90a\s*$", k.ptx, re.MULTILINE)
    assert _ptxas_accepts(k.ptx, "sm_90", tmp_path).returncode != 0
    assert _ptxas_accepts(k.ptx, "sm_90a", tmp_path).returncode == 0


@needs_ptxas
def test_eps_is_baked_in():
    from lndeploy.plugins.layernorm.aot import compile_ptx

    a, b = compile_ptx("fp32", 256, 90, eps=1e-5), compile_ptx("fp32", 256, 90, eps=1e-3)
    assert a.ptx != b.ptx and a.eps == 1e-5 and b.eps == 1e-3


def test_rejects_bad_arguments():
    from lndeploy.plugins.layernorm.aot import compile_ptx

    with pytest.raises(ValueError, match="power of two"):
        compile_ptx("fp16", 1000, 90)
    with pytest.raises(ValueError, match="arch"):
        compile_ptx("fp16", 1024, 75)
    with pytest.raises(ValueError, match="unsupported dtype"):
        compile_ptx("fp64", 1024, 90)


def test_refuses_clearly_in_a_process_running_the_interpreter():
    """With TRITON_INTERPRET=1 at import, triton.language itself is interpreted and nothing can be
    lowered: compile_ptx must say so instead of failing deep inside Triton's code generator."""
    code = ("from lndeploy.plugins.layernorm.aot import compile_ptx\n"
            "compile_ptx('fp16', 128, 90)\n")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "RuntimeError: compile_ptx cannot run in a process where triton was imported with " \
           "TRITON_INTERPRET=1" in proc.stderr, proc.stderr[-3000:]
