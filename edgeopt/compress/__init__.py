"""Compression steps, each ``fn(model, Config) -> new model`` (the input is never mutated); TF-MOT is imported only here.

- ``prune`` (magnitude, schedules, 2:4, blocks, global), ``policy`` (which layers: a registry of tables),
  ``structured`` (remove filters), ``lottery`` (iterative pruning, tickets);
- ``cluster`` (weight clustering), ``quantize`` (QAT, PQAT/CQAT/PCQAT schemes) with ``qat_layout``
  (quantize configs TF-MOT lacks), ``lowbit`` (4/2-bit and binary weight QAT) with ``lowbit_quantizers``,
  ``collaborative`` (prune -> cluster -> QAT in one place);
- ``distill`` (Hinton distillation, logits views), ``mutual`` (deep mutual learning);
- ``graph`` (cloning with weights, batch-norm folding, explicit padding).
Submodules are imported by name (``from edgeopt.compress import prune``); nothing is loaded here.
"""
