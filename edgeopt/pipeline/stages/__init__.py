"""The recipe stages, one module each; importing this package registers every stage type in ``STAGES``.

- ``train``: fit the model. ``compress``: prune, prune_structured, cluster, qat, distill.
  ``saliency``: prune_saliency (iterative pruning by any saliency criterion, weights or filters).
  ``sparse``: sparse_train (SNIP, GraSP, SET, RigL from scratch; early-bird tickets).
  ``budget``: prune_budget (filter removal in rounds until a MAC, parameter or int8-latency budget or an accuracy floor).
  ``nas``: differentiable architecture search; the next stage gets the derived network.
  ``lowbit``: weight QAT at 8/4/2/1 bits, fixed or mixed under a packed-size budget; the next stage gets it stripped.
- ``export``: verified .tflite files. ``bench``: size, latency and accuracy of those files.
A new stage is one module here with a ``@stage(...)`` function, imported below.
"""
from edgeopt.pipeline.stages import bench, budget, compress, export, lowbit, nas, saliency, sparse, train  # noqa: F401  (each registers its stages)
