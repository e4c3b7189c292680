"""Deliverables that install as ``lndeploy.plugins``: the LayerNorm kernel and its TensorRT plugin."""
