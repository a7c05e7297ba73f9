"""Item feature extraction: text (sentence-transformers) and images (ONNX / TorchScript models
with local weights, or a weight-free colour descriptor), batched and resumable."""
