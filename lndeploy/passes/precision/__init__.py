"""Reduced-precision plans (fp16, bf16) in the graph's own types, LayerNorm and sums in fp32.

``plan`` makes the plan (its doc lists what the converter needed help with), ``bf16`` retypes an fp16
plan to bf16, ``fp32_nodes`` finds the nodes kept fp32 beyond the block list, and ``dtypes`` is the
leaf they all import (element types, the block list, type lookups).
"""

from lndeploy.passes.precision.dtypes import BFLOAT16, FLOAT, FLOAT16, tensor_types
from lndeploy.passes.precision.plan import PRECISIONS, check_plan, fold_cast_round_trips, plan_precision, prepare

__all__ = ["PRECISIONS", "plan_precision", "prepare", "check_plan", "fold_cast_round_trips", "tensor_types",
           "FLOAT", "FLOAT16", "BFLOAT16"]
