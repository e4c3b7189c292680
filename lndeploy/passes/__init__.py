"""Graph rewrites on ONNX models, one rule per module."""
