"""The ONNX standard's own LayerNormalization and RMSNormalization node test cases
(``test_layer_normalization_*``, ``test_rms_normalization_*``).

From the data folder that some onnx wheels ship (``onnx/backend/test/data/node``); where the wheel
has only the generators (``onnx/backend/test/case/node/layernormalization.py``, as here), from them:
the expected outputs are then ONNX's numpy reference, computed with the inputs, as in the files.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

import numpy as np


@dataclass
class Case:
    name: str
    model: object
    inputs: list
    outputs: list

    def feed(self) -> dict:
        return {v.name: a for v, a in zip(self.model.graph.input, self.inputs, strict=True)}

    def only_y(self) -> Case:
        """The same case with the Mean and InvStdDev outputs dropped (no longer graph outputs)."""
        import onnx

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        del model.graph.output[1:]
        return Case(self.name + "_y_only", model, self.inputs, self.outputs[:1])


def layer_norm_cases() -> dict:
    """name -> Case. An onnx version whose wheel has neither the data nor the generators (a private
    API) raises here, so that the 80 tests built on these cases fail instead of silently vanishing."""
    return node_cases("LayerNormalization", "layer_normalization", "layernormalization", least=10)  # 57 in 1.23


def rms_norm_cases() -> dict:
    """name -> Case for ONNX's RMSNormalization node tests (opset 23; 38 in onnx 1.23)."""
    return node_cases("RMSNormalization", "rms_normalization", "rmsnormalization", least=10)


def node_cases(op_type: str, stem: str, module: str, least: int) -> dict:
    import onnx

    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test")
    folders = sorted(glob.glob(os.path.join(root, "data", "node", f"test_{stem}_*")))
    cases = {os.path.basename(f): _from_folder(f) for f in folders} if folders else _generated(op_type, module)
    if len(cases) < least:
        raise RuntimeError(f"only {len(cases)} ONNX {op_type} node test cases found under {root}")
    return cases


def _from_folder(folder: str) -> Case:
    import onnx
    from onnx import numpy_helper

    def tensors(kind):
        paths = sorted(glob.glob(os.path.join(folder, "test_data_set_0", f"{kind}_*.pb")))
        return [numpy_helper.to_array(onnx.load_tensor(p)) for p in paths]

    return Case(os.path.basename(folder), onnx.load(os.path.join(folder, "model.onnx")),
                tensors("input"), tensors("output"))


def _generated(op_type: str, module: str) -> dict:
    import importlib

    from onnx.backend.test.case import node as registry

    generator = getattr(importlib.import_module(f"onnx.backend.test.case.node.{module}"), op_type)
    saved = registry._TargetOpType, list(registry._NodeTestCases), dict(registry._existing_names)
    registry._TargetOpType = op_type
    del registry._NodeTestCases[:]
    registry._existing_names.clear()
    try:
        np.random.seed(0)  # the generators draw from numpy's global generator
        for name in sorted(n for n in vars(generator) if n.startswith("export")):
            getattr(generator, name)()
        made = list(registry._NodeTestCases)
    finally:
        registry._TargetOpType = saved[0]
        registry._NodeTestCases[:] = saved[1]
        registry._existing_names.clear()
        registry._existing_names.update(saved[2])
    return {c.name: Case(c.name, c.model, list(c.data_sets[0][0]), list(c.data_sets[0][1])) for c in made}
