"""Saliency criteria: how much each weight, or each output channel (filter), matters; one registry for
unstructured pruning (a score per kernel weight, for :func:`edgeopt.compress.masks.prune_by_score`) and
structured pruning (a score per output channel of a producer layer, combined over a channel group by
:func:`edgeopt.compress.structured.group_scores`). Higher score = keep.

========================  ======  ======  ======  =====================================================
criterion                 data    labels  weight  filter (per output channel ``c`` of a producer)
========================  ======  ======  ======  =====================================================
``l1``                    no      no      |w|     sum |w| over the filter (Li et al. 2016)
``l2``                    no      no      w^2     sqrt(sum w^2) over the filter
``fpgm``                  no      no      -       ||F_c - GM||_2, GM = geometric median of the layer's
                                                  filters (He et al. 2019): filters near it are redundant
``activation``            yes     no      -       mean |a_c| over images and positions
``apoz``                  yes     no      -       1 - APoZ: share of a_c's entries that are not exactly 0
``variance``              yes     no      -       variance of a_c over all images and positions (ddof 0)
``wanda``                 yes     no      |w|n_j  - (Sun et al. 2023, arXiv 2306.11695): n_j = L2 norm of
                                                  the layer's input channel j that w multiplies
``taylor``                yes     yes     |w g|   Molchanov et al. 2016: mean over images n of
                                                  |mean over positions of a_c * dl_n/da_c|
``obd_fisher``            yes     yes     OBD     sum over the filter of the weight scores
``obd_hutchinson``        yes     yes     OBD     sum over the filter of the weight scores
========================  ======  ======  ======  =====================================================

**A channel's output** ``a_c`` (activation criteria and Taylor): the output of the producer (a Conv2D or Dense
of :mod:`structured`'s channel groups) after the ``BatchNormalization`` and then the activation layer
(``ReLU``, ``Activation``, ``LeakyReLU``, ``ELU``, ``PReLU``) that follow it, each taken only when it is the
sole reader of the tensor before: :func:`channel_output_layer`. These layers are members of the producer's
channel group, so channel ``c`` there is channel ``c`` of the group. A residual projection (conv -> BN -> Add)
is measured after its BN; a convolution with a fused ``activation=`` after that activation.

**Wanda** scores each kernel weight by its magnitude times the L2 norm of the input channel it multiplies,
over every image and position of the data read (a 3x3 kernel's nine weights of channel ``j`` share ``j``'s
norm): a weight that multiplies a large input matters more than one of the same size that multiplies a small one.
It is the activation-based criterion for single weights; the ``activation``, ``apoz`` and ``variance`` criteria
describe a whole output channel, so they score filters only.

**Losses and gradients**: the model's sparse cross-entropy (logits or probabilities, as
:func:`edgeopt.train.loss_for` decides), the model run in inference mode (``training=False``: batch norms
use their moving statistics, so images do not interact). ``g = dL/dw`` is the gradient of a batch's mean
loss; per-weight Taylor is the mean over batches of ``|w * g|``. Taylor per channel uses each image's own
loss ``l_n`` (the paper's per-example criterion, averaged over the examples); Molchanov's per-layer L2
normalization is :func:`normalize` with ``"l2"``, applied where layers are ranked together.

**OBD** (LeCun et al. 1990): ``h_ii w_i^2 / 2`` with ``h_ii`` the diagonal of the Hessian of the mean loss,
estimated by the empirical Fisher (``fisher="sample"``: mean over images of the squared per-image gradient;
``"batch"``: mean over batches of the squared batch-mean gradient, which is smaller by about the batch size;
per image takes a vectorized Jacobian of ``fisher_chunk`` images at a time, traced once, so its memory is bounded by
the chunk whatever the batch size: :class:`~edgeopt.compress.derivatives.LossDerivatives`)
or by Hutchinson's method (mean over batches and ``hutchinson_samples`` Rademacher vectors ``z`` of
``z * Hz``, ``Hz`` a Hessian-vector product from nested ``tf.GradientTape``s; ``z`` drawn with NumPy's
``default_rng(seed)``, one ``integers(0, 2, shape) * 2 - 1`` per kernel in order, per sample, per batch).
Hutchinson's estimates are unbiased but noisy and can be negative; such weights rank lowest.

``data``: a ``tf.data.Dataset`` of ``(images, labels)`` batches (or images only), an array of images, an
``(images, labels)`` pair of arrays (split into batches of 32), a :class:`edgeopt.data.Splits` (its train
split), or any iterable of batches; at most ``SaliencyOptions.batches`` batches are used.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from edgeopt._keras import ends_in_softmax, keras, tf
from edgeopt.compress.derivatives import CHUNK, LossDerivatives
from edgeopt.compress.masks import kernel_of, prunable_layers
from edgeopt.config import Config
from edgeopt.registry import Registry

L = keras.layers
FISHER = ("sample", "batch")
NORMALIZATIONS = ("l2", "mean", "none")
ARRAY_BATCH = 32  # images per batch when data is given as arrays
_FOLLOW_ACTIVATIONS = (L.ReLU, L.Activation, L.LeakyReLU, L.ELU, L.PReLU)

Batch = tuple[tf.Tensor, "tf.Tensor | None"]


@dataclass(frozen=True)
class SaliencyOptions(Config):
    """``batches``: at most this many batches of data feed a data criterion; ``fisher``: ``sample`` (per-image
    squared gradients) or ``batch``; ``fisher_chunk``: images per vectorized Jacobian of the per-image Fisher (its
    memory grows with it; the result does not change); ``hutchinson_samples``: Rademacher vectors per batch; ``seed``
    draws them."""

    batches: int = 8
    fisher: str = "sample"
    fisher_chunk: int = CHUNK
    hutchinson_samples: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.batches < 1:
            raise ValueError(f"batches must be >= 1 (batches of data a data criterion reads), got {self.batches}")
        if self.fisher not in FISHER:
            raise ValueError(f"fisher must be one of {', '.join(FISHER)}; got {self.fisher!r}")
        if self.fisher_chunk < 1:
            raise ValueError(f"fisher_chunk must be >= 1 (images per vectorized Jacobian, e.g. {CHUNK}), got {self.fisher_chunk}")
        if self.hutchinson_samples < 1:
            raise ValueError(f"hutchinson_samples must be >= 1, got {self.hutchinson_samples}")


class Criterion:
    """A saliency criterion. Subclasses set ``needs_data`` / ``needs_labels`` and implement
    ``weight_scores`` (unstructured), ``filter_scores`` (structured) or both."""

    needs_data = False
    needs_labels = False

    def weight_scores(self, model, names: list[str], batches: list[Batch], options: SaliencyOptions) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def filter_scores(self, model, producers: list[str], batches: list[Batch], options: SaliencyOptions) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def scores_weights(cls) -> bool:
        return cls.weight_scores is not Criterion.weight_scores

    @classmethod
    def scores_filters(cls) -> bool:
        return cls.filter_scores is not Criterion.filter_scores


CRITERIA: Registry[type[Criterion]] = Registry("saliency criterion")


def weight_criteria() -> list[str]:
    """Names of the criteria that score single weights (unstructured pruning)."""
    return [n for n in CRITERIA.names() if CRITERIA.get(n).scores_weights()]


def filter_criteria() -> list[str]:
    """Names of the criteria that score output channels (structured pruning)."""
    return [n for n in CRITERIA.names() if CRITERIA.get(n).scores_filters()]


# ---- public entry points ---------------------------------------------------------------------------------


def weight_scores(model, criterion: str, names: list[str] | None = None, data=None, options: SaliencyOptions = SaliencyOptions()) -> dict[str, np.ndarray]:
    """``{layer: score per kernel weight}`` (float arrays shaped like each kernel) of ``criterion`` for the
    layers ``names`` (default: :func:`edgeopt.compress.masks.prunable_layers`)."""
    if criterion not in weight_criteria():
        raise ValueError(f"criterion {criterion!r} does not score single weights; weight criteria: {', '.join(weight_criteria())}")
    crit = CRITERIA.get(criterion)()
    names = prunable_layers(model) if names is None else list(names)
    return crit.weight_scores(model, names, _batches_for(crit, criterion, data, options), options)


def filter_scores(model, criterion: str, producers: list[str], data=None, options: SaliencyOptions = SaliencyOptions()) -> dict[str, np.ndarray]:
    """``{producer: score per output channel}`` of ``criterion`` for Conv2D / Dense layers ``producers``."""
    if criterion not in filter_criteria():
        raise ValueError(f"criterion {criterion!r} does not score filters; filter criteria: {', '.join(filter_criteria())}")
    producers = list(dict.fromkeys(producers))
    if not producers:
        return {}
    for name in producers:
        _producer_kernel(model, name)  # refuses a layer that is not a producer
    crit = CRITERIA.get(criterion)()
    return crit.filter_scores(model, producers, _batches_for(crit, criterion, data, options), options)


def combine(per_producer: Mapping[str, np.ndarray], producers: list[str], channels: int) -> np.ndarray:
    """One score per channel of a group from its producers' scores: each divided by its mean absolute value
    (so producers of different sizes weigh alike), then summed."""
    total = np.zeros(channels)
    for name in producers:
        s = per_producer[name]
        total += s / (np.abs(s).mean() or 1.0)
    return total


def normalize(scores: Mapping[str, np.ndarray], how: str, masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-layer normalized copies of ``scores`` so that layers can be ranked together: ``l2`` divides by the
    L2 norm of the layer's scores (Molchanov et al. 2016), ``mean`` by their mean absolute value, ``none``
    leaves them. Only the entries alive in ``masks`` (when given) enter the norm; an all-zero layer is left."""
    if how not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}; got {how!r}")
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, np.float64)
        alive = s[masks[name] > 0] if masks is not None else s.ravel()
        scale = 1.0 if how == "none" or alive.size == 0 else float(np.sqrt(np.sum(alive**2)) if how == "l2" else np.abs(alive).mean())
        out[name] = s / (scale or 1.0)
    return out


def channel_output_layer(model, producer: str) -> str:
    """The layer whose output is "the channel's output" of ``producer`` (see the module docstring): the
    producer, then its batch norm, then its activation, each only when it alone reads the tensor before."""
    layers = set(id(layer) for layer in model.layers)
    current = model.get_layer(producer)
    for kinds in ((L.BatchNormalization,), _FOLLOW_ACTIVATIONS):
        readers = [n.outbound_layer for n in current.outbound_nodes if id(n.outbound_layer) in layers]
        if len(readers) == 1 and isinstance(readers[0], kinds) and len(readers[0].inbound_nodes) == 1:
            current = readers[0]
    return current.name


def as_batches(data, limit: int) -> list[Batch]:
    """At most ``limit`` ``(images, labels or None)`` batches from any form of ``data`` the module accepts."""
    if hasattr(data, "train") and isinstance(getattr(data, "train"), tf.data.Dataset):
        data = data.train  # a Splits
    if isinstance(data, (np.ndarray, tf.Tensor)):
        data = (data, None)
    if isinstance(data, tuple) and len(data) == 2 and hasattr(data[0], "shape") and (data[1] is None or hasattr(data[1], "shape")):
        x, y = data
        return [(x[i : i + ARRAY_BATCH], None if y is None else y[i : i + ARRAY_BATCH]) for i in range(0, len(x), ARRAY_BATCH)][:limit]
    source = data.take(limit) if isinstance(data, tf.data.Dataset) else data
    out = []
    for element in source:
        if len(out) == limit:
            break
        if isinstance(element, (tuple, list)):
            out.append((element[0], element[1] if len(element) > 1 else None))
        else:
            out.append((element, None))
    return out


def _batches_for(crit: Criterion, name: str, data, options: SaliencyOptions) -> list[Batch]:
    if not crit.needs_data:
        return []
    if data is None:
        raise ValueError(f"criterion {name!r} needs data: pass a batch, array or dataset of real images" + (" with labels" if crit.needs_labels else ""))
    batches = as_batches(data, options.batches)
    if not batches:
        raise ValueError(f"criterion {name!r} got data that gave no batch of images")
    if crit.needs_labels and any(y is None for _, y in batches):
        raise ValueError(f"criterion {name!r} needs labels: pass (images, labels) batches, not images alone")
    return batches


# ---- shared computations ---------------------------------------------------------------------------------


def _producer_kernel(model, name: str) -> np.ndarray:
    layer = model.get_layer(name)
    if not isinstance(layer, (L.Conv2D, L.Dense)) or isinstance(layer, (L.Conv2DTranspose, L.SeparableConv2D, L.DepthwiseConv2D)):
        raise ValueError(f"layer {name!r} ({type(layer).__name__}) is not a filter producer; filters are scored on Conv2D or Dense layers")
    return layer.kernel.numpy()


def _per_filter(kernel: np.ndarray) -> np.ndarray:
    """The kernel as rows of one filter each: (output channels, weights per filter)."""
    return kernel.reshape(-1, kernel.shape[-1]).T


def _filter_sums(producers: list[str], weight: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per output channel, the sum of a per-weight score over the channel's filter."""
    return {n: np.asarray(weight[n]).reshape(-1, weight[n].shape[-1]).sum(axis=0) for n in producers}


def hessian_vector_products(model, names: list[str], x, y, vectors: list[np.ndarray]) -> list[np.ndarray]:
    """``H v`` for ``samples`` vectors ``v``, given per kernel of ``names`` as an array (samples, *kernel shape);
    ``H`` is the Hessian of the mean loss on the batch ``(x, y)`` over those kernels. Same layout returned."""
    return [h.numpy() for h in LossDerivatives(model, names).hvp(x, y, [tf.constant(v, tf.float32) for v in vectors])]


def hessian_diagonal(model, names: list[str], batches: list[Batch], method: str, options: SaliencyOptions) -> dict[str, np.ndarray]:
    """Estimate of the diagonal of the loss Hessian for the kernels of ``names``: ``fisher`` (empirical Fisher,
    per image or per batch as ``options.fisher`` says) or ``hutchinson`` (see the module docstring)."""
    d = LossDerivatives(model, names)
    total = [np.zeros(k.shape, np.float64) for k in d.kernels]
    count = 0
    rng = np.random.default_rng(options.seed)
    for x, y in batches:
        if method == "hutchinson":
            zs = [[(rng.integers(0, 2, k.shape) * 2 - 1).astype(np.float32) for k in d.kernels] for _ in range(options.hutchinson_samples)]
            stacked = [np.stack(z) for z in zip(*zs)]  # per kernel: (samples, *kernel shape)
            hz = d.hvp(x, y, [tf.constant(z) for z in stacked])
            total = [t + np.sum(z * h.numpy().astype(np.float64), axis=0) for t, z, h in zip(total, stacked, hz)]
            count += options.hutchinson_samples
        elif options.fisher == "batch":
            total = [t + g.numpy().astype(np.float64) ** 2 for t, g in zip(total, d.gradient(x, y))]
            count += 1
        else:
            total = [t + g.numpy().astype(np.float64) for t, g in zip(total, d.squared_per_image(x, y, options.fisher_chunk))]
            count += len(x)
    return {n: t / count for n, t in zip(names, total)}


def _channel_outputs(model, producers: list[str], batches: list[Batch], with_gradients: bool):
    """For each batch, ``{producer: its channel output}`` (NumPy, channels last) and, ``with_gradients``, the
    gradient of the *sum* of per-image losses (so each image's slice is the gradient of its own loss)."""
    outs = {p: channel_output_layer(model, p) for p in producers}
    names = list(dict.fromkeys(outs.values()))
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.outputs[0]])
    from_logits = not ends_in_softmax(model)
    for x, y in batches:
        with tf.GradientTape() as tape:
            *acts, out = probe(tf.cast(x, model.inputs[0].dtype), training=False)
            loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(y, out, from_logits=from_logits)) if with_gradients else None
        grads = tape.gradient(loss, acts) if with_gradients else [None] * len(acts)
        by_name = {n: (a.numpy(), None if g is None else g.numpy()) for n, a, g in zip(names, acts, grads)}
        yield {p: by_name[outs[p]] for p in producers}


def _channel_sums(per_batch: Iterable[Mapping[str, np.ndarray]]) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]:
    """Per name and channel, over all images and positions of the arrays (channels last) that ``per_batch`` yields
    batch by batch: the sums of |a| (``abs``), of entries not exactly 0 (``nonzero``), of a (``mean``) and of a^2
    (``square``) in float64, and each name's count of entries per channel."""
    sums: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, int] = {}
    for per in per_batch:
        for name, a in per.items():
            flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
            batch = {"abs": np.abs(flat).sum(0), "nonzero": (flat != 0).sum(0).astype(np.float64), "mean": flat.sum(0), "square": np.square(flat).sum(0)}
            sums[name] = {k: sums.get(name, {}).get(k, 0.0) + v for k, v in batch.items()}
            counts[name] = counts.get(name, 0) + flat.shape[0]
    return sums, counts


def _channel_moments(model, producers, batches) -> dict[str, dict[str, np.ndarray]]:
    """Per producer and channel, over all images and positions: mean |a| (``abs``), share of entries not
    exactly 0 (``nonzero``), mean (``mean``) and mean square (``square``) of the channel output, in float64."""
    outputs = ({p: a for p, (a, _) in per.items()} for per in _channel_outputs(model, producers, batches, with_gradients=False))
    sums, counts = _channel_sums(outputs)
    return {p: {k: v / counts[p] for k, v in s.items()} for p, s in sums.items()}


# ---- the criteria ----------------------------------------------------------------------------------------


@CRITERIA.register("l1")
class L1(Criterion):
    """|w| per weight; the L1 norm of each filter (Li et al. 2016)."""

    def weight_scores(self, model, names, batches, options):
        return {n: np.abs(kernel_of(model, n).numpy()) for n in names}

    def filter_scores(self, model, producers, batches, options):
        out = {}
        for n in producers:
            kernel = _producer_kernel(model, n)
            out[n] = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)  # as structured.py always computed it
        return out


@CRITERIA.register("l2")
class L2(Criterion):
    """w^2 per weight; the L2 norm of each filter."""

    def weight_scores(self, model, names, batches, options):
        return {n: np.square(kernel_of(model, n).numpy()) for n in names}

    def filter_scores(self, model, producers, batches, options):
        return {n: np.linalg.norm(_per_filter(_producer_kernel(model, n)).astype(np.float64), axis=1) for n in producers}


def geometric_median(points: np.ndarray, tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    """The point minimizing the sum of Euclidean distances to the rows of ``points`` (Weiszfeld's algorithm,
    with the Vardi-Zhang step when an iterate lands on a data point)."""
    points = np.asarray(points, np.float64)
    x = points.mean(axis=0)
    for _ in range(max_iter):
        d = np.linalg.norm(points - x, axis=1)
        near = d < 1e-12
        w = 1.0 / np.where(near, 1.0, d)
        w[near] = 0.0
        t = (w[:, None] * points).sum(axis=0) / w.sum()
        if near.any():  # Vardi & Zhang (2000): move off a data point only if that lowers the objective
            r = np.linalg.norm((w[:, None] * (points - x)).sum(axis=0))
            eta = float(near.sum())
            t = x if r <= eta else (1 - eta / r) * t + (eta / r) * x
        if np.linalg.norm(t - x) <= tol * (1.0 + np.linalg.norm(x)):
            return t
        x = t
    return x


@CRITERIA.register("fpgm")
class FPGM(Criterion):
    """Distance of each filter to the geometric median of its layer's filters (He et al., CVPR 2019): a filter
    near the median is well represented by the others, so it scores low. (The paper approximates the median by
    the filter with the least summed distance to the others; this computes the median itself.)"""

    def filter_scores(self, model, producers, batches, options):
        out = {}
        for n in producers:
            filters = _per_filter(_producer_kernel(model, n)).astype(np.float64)
            out[n] = np.linalg.norm(filters - geometric_median(filters), axis=1)
        return out


@CRITERIA.register("activation")
class MeanActivation(Criterion):
    """Mean absolute value of each channel's output over the images and positions."""

    needs_data = True

    def filter_scores(self, model, producers, batches, options):
        return {p: m["abs"] for p, m in _channel_moments(model, producers, batches).items()}


@CRITERIA.register("apoz")
class APoZ(Criterion):
    """1 - APoZ (Hu et al. 2016): the share of each channel's output entries that are not exactly zero. It tells
    channels apart after ReLU-like activations only: after swish, sigmoid or a bare batch norm every entry is
    non-zero, every channel scores 1 and the ranking falls back to channel order."""

    needs_data = True

    def filter_scores(self, model, producers, batches, options):
        return {p: m["nonzero"] for p, m in _channel_moments(model, producers, batches).items()}


@CRITERIA.register("variance")
class Variance(Criterion):
    """Variance (ddof 0) of each channel's output over all images and positions: a constant channel carries
    nothing the next layer's bias could not."""

    needs_data = True

    def filter_scores(self, model, producers, batches, options):
        return {p: np.maximum(m["square"] - m["mean"] ** 2, 0.0) for p, m in _channel_moments(model, producers, batches).items()}


def _layer_inputs(model, names: list[str], batches: list[Batch]):
    """For each batch, ``{layer: its input}`` (NumPy, channels last) of the layers ``names``."""
    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
    for x, _ in batches:
        outs = probe(tf.cast(x, model.inputs[0].dtype), training=False)
        yield {n: a.numpy() for n, a in zip(names, outs if len(names) > 1 else [outs])}


def _input_channel_norms(model, names: list[str], batches: list[Batch]) -> dict[str, np.ndarray]:
    """Per layer, the L2 norm of each channel of its input over all images and positions (float64)."""
    sums, _ = _channel_sums(_layer_inputs(model, names, batches))
    return {n: np.sqrt(s["square"]) for n, s in sums.items()}


@CRITERIA.register("wanda")
class Wanda(Criterion):
    """|w| times the L2 norm of the input channel the weight multiplies (Sun et al. 2023, arXiv 2306.11695)."""

    needs_data = True

    def weight_scores(self, model, names, batches, options):
        norms = _input_channel_norms(model, names, batches)
        out = {}
        for n in names:
            kernel = kernel_of(model, n).numpy().astype(np.float64)
            if kernel.shape[-2] != norms[n].size:
                raise ValueError(f"wanda: layer {n!r} has a kernel for {kernel.shape[-2]} input channels but {norms[n].size} come in "
                                 "(a grouped convolution?); score it with l1, taylor or obd_fisher")
            out[n] = np.abs(kernel) * norms[n][:, None]  # the input-channel axis is the kernel's second to last
        return out


@CRITERIA.register("taylor")
class Taylor(Criterion):
    """First-order Taylor expansion of the loss (Molchanov et al. 2016, arXiv 1611.06440): per channel the mean
    over images of |mean over positions of a * dl/da|; per weight the mean over batches of |w * dL/dw|."""

    needs_data = True
    needs_labels = True

    def weight_scores(self, model, names, batches, options):
        d = LossDerivatives(model, names)
        total = [np.zeros(k.shape, np.float64) for k in d.kernels]
        for x, y in batches:
            total = [t + np.abs(k.numpy() * g.numpy()) for t, k, g in zip(total, d.kernels, d.gradient(x, y))]
        return {n: t / len(batches) for n, t in zip(names, total)}

    def filter_scores(self, model, producers, batches, options):
        sums: dict[str, np.ndarray] = {}
        images = 0
        for (x, _), per in zip(batches, _channel_outputs(model, producers, batches, with_gradients=True)):
            for p, (a, g) in per.items():
                prod = (a.astype(np.float64) * g).reshape(a.shape[0], -1, a.shape[-1])  # (images, positions, channels)
                sums[p] = sums.get(p, 0.0) + np.abs(prod.mean(axis=1)).sum(axis=0)
            images += len(x)
        return {p: s / images for p, s in sums.items()}


class _OBD(Criterion):
    needs_data = True
    needs_labels = True
    method = ""

    def weight_scores(self, model, names, batches, options):
        h = hessian_diagonal(model, names, batches, self.method, options)
        return {n: h[n] * kernel_of(model, n).numpy().astype(np.float64) ** 2 / 2 for n in names}

    def filter_scores(self, model, producers, batches, options):
        return _filter_sums(producers, self.weight_scores(model, producers, batches, options))


@CRITERIA.register("obd_fisher")
class OBDFisher(_OBD):
    """Optimal Brain Damage, h_ii w_i^2 / 2, with the Hessian diagonal from the empirical Fisher."""

    method = "fisher"


@CRITERIA.register("obd_hutchinson")
class OBDHutchinson(_OBD):
    """Optimal Brain Damage, h_ii w_i^2 / 2, with the Hessian diagonal from Hutchinson's estimator."""

    method = "hutchinson"


def criterion_needs(name: str) -> tuple[bool, bool]:
    """(needs data, needs labels) of criterion ``name``."""
    crit = CRITERIA.get(name)
    return crit.needs_data, crit.needs_labels


__all__ = [
    "CRITERIA", "Criterion", "SaliencyOptions", "as_batches", "channel_output_layer", "combine", "criterion_needs", "filter_criteria",
    "filter_scores", "geometric_median", "hessian_diagonal", "hessian_vector_products", "normalize", "weight_criteria", "weight_scores",
]
