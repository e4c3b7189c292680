"""ONNX for ``torch.ops.lndeploy.layer_norm``: one standard ``LayerNormalization`` node.

    lndeploy::layer_norm(x, w, b, k, eps)  ->  LayerNormalization(x, w, b; axis=-k, epsilon=eps, stash_type=1)

A model that calls lndeploy's custom op (e.g. ``lndeploy.nn.LayerNorm(use_kernel=True)`` traced on a
GPU) exports like any other LN; ``--ln plugin`` then rewrites it into the plugin node, inside Scan
bodies too, through the same pass as every other LayerNormalization.
"""

from __future__ import annotations


def translation_table() -> dict:
    import torch
    from onnxscript import opset18 as op

    import lndeploy.nn.custom_op  # noqa: F401  registers torch.ops.lndeploy.layer_norm

    def layer_norm(x, weight, bias, normalized_ndim: int, eps: float):
        # onnxscript hands back every declared output (Y, Mean, InvStdDev); only Y is used
        result = op.LayerNormalization(x, weight, bias, axis=-normalized_ndim, epsilon=eps, stash_type=1)
        return result[0] if isinstance(result, tuple) else result

    return {torch.ops.lndeploy.layer_norm.default: layer_norm}
