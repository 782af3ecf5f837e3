"""The recipe stages, one module each; importing this package registers every stage type in ``STAGES``.

- ``train``: fit the model. ``compress``: prune, prune_structured, cluster, qat, distill.
- ``export``: verified .tflite files. ``bench``: size, latency and accuracy of those files.
A new stage is one module here with a ``@stage(...)`` function, imported below.
"""
from edgeopt.pipeline.stages import bench, compress, export, train  # noqa: F401  (each registers its stages)
