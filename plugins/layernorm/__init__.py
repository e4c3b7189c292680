"""LayerNorm plugin: the Triton kernel (``kernel``), its ahead-of-time PTX compiler (``aot``) and the
TensorRT plugin built on them. See README.md in this folder.

Nothing is imported here on purpose: importing the package must not import triton (the custom op and
the ONNX tooling import this package on machines without triton).
"""
