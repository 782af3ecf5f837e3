"""Compression steps: pruning, clustering, quantization-aware training, distillation."""
