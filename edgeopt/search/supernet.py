"""The supernet of a search space: every block holds all its candidate operations and mixes their outputs.

Each part is a small tf_keras Functional model built with the zoo's blocks (:mod:`edgeopt.search.nas_space`): the
stem, one model per candidate operation of each block (at that block's input shape; ``skip`` is the identity and
has none) and the head (head conv and classifier, logits). Block ``i`` outputs ``sum_j w_ij * op_ij(x)`` with
mixing weights ``w_i`` from its architecture parameters ``alpha_i``:

* ``softmax`` (DARTS, Liu et al. 2019): ``w_i = softmax(alpha_i / tau)``;
* ``gumbel`` (FBNet, Wu et al. 2019): ``w_i = softmax((alpha_i + g) / tau)`` with Gumbel(0, 1) noise ``g`` drawn at
  every call, or with ``hard`` its one-hot argmax in the forward pass and the soft sample's gradient
  (straight-through estimator).

The architecture parameters are plain ``tf.Variable`` s apart from the parts' weights (:attr:`Supernet.arch_variables`
vs :attr:`Supernet.weight_variables`), so each has its own optimizer. :meth:`Supernet.derive` takes the argmax of
every block; :meth:`Supernet.subnet` builds any architecture as a plain network (:func:`build_network`) holding the
supernet's weights of its operations: layer names are the same in both, so weights are copied by name.
:meth:`Supernet.path` runs one architecture's operations only (single-path training: :mod:`edgeopt.search.single_path`).
"""
from __future__ import annotations

import numpy as np

from edgeopt._keras import keras, tf
from edgeopt.search.nas_space import SKIP, Architecture, NasSpace, block_layers, build_network, head_layers, stem_layers

__all__ = ["MIXINGS", "Supernet"]

MIXINGS = ("softmax", "gumbel")


def _assign_overlap(target: tf.Variable, source: tf.Variable) -> None:
    """Assign the part of ``source`` that overlaps ``target``: the centre along a 4-D kernel's two spatial axes, the
    first entries along every other axis."""
    rank = len(source.shape)
    src, dst = [], []
    for axis, (a, b) in enumerate(zip(source.shape, target.shape)):
        n = min(a, b)
        if rank == 4 and axis < 2:
            src.append(slice((a - n) // 2, (a - n) // 2 + n))
            dst.append(slice((b - n) // 2, (b - n) // 2 + n))
        else:
            src.append(slice(0, n))
            dst.append(slice(0, n))
    if tuple(source.shape) == tuple(target.shape):
        target.assign(source)
    else:
        target[tuple(dst)].assign(source[tuple(src)])


def _part(name: str, shape, layers) -> keras.Model:
    inputs = keras.Input(shape=tuple(shape))
    return keras.Model(inputs, layers(inputs), name=name.replace(".", "p"))


class Supernet:
    """All candidate operations of ``space`` for ``input_shape`` images and ``classes`` classes, mixed per block by
    architecture parameters (zeros at the start: every candidate equally likely). Call it as
    ``supernet(images, weights, training)`` with ``weights`` from :meth:`mixing_weights` (or one-hot rows) to get logits."""

    def __init__(self, space: NasSpace, input_shape: tuple[int, int, int], classes: int, bn_momentum: float = 0.9, seed: int = 0):
        self.space, self.input_shape, self.classes = space, tuple(int(v) for v in input_shape), int(classes)
        self.blocks = space.blocks()
        shapes = space.input_shapes(self.input_shape)
        self.stem = _part("stem", self.input_shape, lambda x: stem_layers(space, x, bn_momentum))
        self.candidates: list[list[keras.Model | None]] = [
            [None if op == SKIP else _part(f"{b.name}_{op}", shape, lambda x, b=b, op=op: block_layers(space, b, op, x, bn_momentum)) for op in b.ops]
            for b, shape in zip(self.blocks, shapes)]
        self.head = _part("head", shapes[-1], lambda x: head_layers(space, x, self.classes, 0.0, None, bn_momentum))
        self.alphas = [tf.Variable(tf.zeros([len(b.ops)]), trainable=True, name=f"arch_{b.name}") for b in self.blocks]
        self.generator = tf.random.Generator.from_seed(seed)  # Gumbel noise; its state is checkpointed with the rest

    # ---- variables ------------------------------------------------------------------------------------------

    def parts(self) -> list[tuple[str, keras.Model]]:
        """``(key, model)`` of every part with layers: ``stem``, ``<block>/<op>`` per candidate, ``head``."""
        out = [("stem", self.stem)]
        out += [(f"{b.name}/{op}", m) for b, ms in zip(self.blocks, self.candidates) for op, m in zip(b.ops, ms) if m is not None]
        return out + [("head", self.head)]

    @property
    def weight_variables(self) -> list[tf.Variable]:
        """The trainable weights of every part (never an architecture parameter)."""
        return [v for _, m in self.parts() for v in m.trainable_variables]

    @property
    def arch_variables(self) -> list[tf.Variable]:
        """The architecture parameters, one vector per block (length: its number of candidates)."""
        return list(self.alphas)

    @property
    def batch_norm_statistics(self) -> list[tf.Variable]:
        """Moving means and variances of every batch-norm layer (the parts' non-trainable weights)."""
        return [v for _, m in self.parts() for v in m.non_trainable_variables]

    def state(self) -> dict[str, np.ndarray]:
        """Every weight (trainable or not), architecture parameter and the noise generator's state, by stable key."""
        out = {f"w/{key}/{i}": v.numpy() for key, m in self.parts() for i, v in enumerate(m.weights)}
        out.update({f"alpha/{b.name}": a.numpy() for b, a in zip(self.blocks, self.alphas)})
        out["rng"] = self.generator.state.numpy()
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Assign what :meth:`state` returned (exactly); a missing key or a wrong shape is an error naming it."""
        targets = {f"w/{key}/{i}": v for key, m in self.parts() for i, v in enumerate(m.weights)}
        targets.update({f"alpha/{b.name}": a for b, a in zip(self.blocks, self.alphas)})
        targets["rng"] = self.generator.state
        for key, var in targets.items():
            if key not in state:
                raise ValueError(f"the saved state has no {key}: it comes from another search space")
            if tuple(state[key].shape) != tuple(var.shape):
                raise ValueError(f"saved {key} has shape {tuple(state[key].shape)}, the supernet's has {tuple(var.shape)}")
            var.assign(state[key])

    # ---- mixing ---------------------------------------------------------------------------------------------

    def probabilities(self, tau: float = 1.0) -> list[tf.Tensor]:
        """``softmax(alpha_i / tau)`` of every block."""
        return [tf.nn.softmax(a / tau) for a in self.alphas]

    def mixing_weights(self, mixing: str = "softmax", tau: float = 1.0, hard: bool = False) -> list[tf.Tensor]:
        """Each block's mixing weights: ``softmax(alpha / tau)``, or a Gumbel-softmax sample (``hard``: one-hot forward,
        straight-through gradient)."""
        if mixing == "softmax":
            return self.probabilities(tau)
        if mixing != "gumbel":
            raise ValueError(f"mixing must be one of {', '.join(MIXINGS)}; got {mixing!r}")
        out = []
        for a in self.alphas:
            u = self.generator.uniform(a.shape, minval=1e-10, maxval=1.0)
            soft = tf.nn.softmax((a - tf.math.log(-tf.math.log(u))) / tau)
            if hard:
                onehot = tf.one_hot(tf.argmax(soft), tf.size(soft), dtype=soft.dtype)
                soft = onehot + soft - tf.stop_gradient(soft)
            out.append(soft)
        return out

    def one_hot(self, arch: Architecture) -> list[tf.Tensor]:
        """Mixing weights that select ``arch``'s operation in every block."""
        return [tf.one_hot(i, len(b.ops)) for i, b in zip(arch.indices(self.space), self.blocks)]

    def mixed_op(self, index: int, x, weights, training: bool = False):
        """Block ``index`` on ``x``: ``sum_j weights[j] * op_j(x)`` (``skip``: ``x``)."""
        outputs = [x if m is None else m(x, training=training) for m in self.candidates[index]]
        if len(outputs) == 1:
            return outputs[0]
        return tf.add_n([weights[j] * y for j, y in enumerate(outputs)])

    def __call__(self, images, weights: list, training: bool = False):
        """Logits of the mixed network for ``images`` with per-block mixing ``weights``."""
        x = self.stem(images, training=training)
        for i, w in enumerate(weights):
            x = self.mixed_op(i, x, w, training)
        return self.head(x, training=training)

    def path(self, images, arch: Architecture, training: bool = False):
        """Logits of ``arch`` alone: the stem, each block's chosen candidate (``skip``: its input) and the head; the
        other candidates are not run (single-path, as Single Path One-Shot trains and FBNet / ProxylessNAS sample). Equal
        to ``self(images, self.one_hot(arch), training)`` at a fraction of its cost."""
        x = self.stem(images, training=training)
        for m in self.path_parts(arch):
            x = x if m is None else m(x, training=training)
        return self.head(x, training=training)

    def path_parts(self, arch: Architecture) -> list[keras.Model | None]:
        """Each block's candidate model chosen by ``arch`` (None for ``skip``), in block order."""
        return [ms[j] for ms, j in zip(self.candidates, arch.indices(self.space))]

    def path_variables(self, arch: Architecture) -> list[tf.Variable]:
        """The trainable weights :meth:`path` uses: the stem's, the chosen candidates' and the head's."""
        models = [self.stem, *(m for m in self.path_parts(arch) if m is not None), self.head]
        return [v for m in models for v in m.trainable_variables]

    # ---- weight sharing between a block's candidates ---------------------------------------------------------

    def share_weights_from(self, index: int, op: str) -> None:
        """Copy block ``index``'s candidate ``op`` into the part every other candidate of the block shares with it
        (OFA / FBNetV2-style sharing kept by copies): layers of the same name (candidates of a block name their layers
        alike), each weight's overlap, kernels' spatial axes centred (a 3x3 depthwise kernel is the centre of a 7x7 one)
        and channel axes from the first (an expansion of 3 is the first half of an expansion of 6's channels); batch-norm
        statistics included. Layers one of them lacks (squeeze-excite, an expansion of 1) are left as they are."""
        block = self.blocks[index]
        source = self.candidates[index][block.ops.index(op)]
        if source is None:
            return
        for target in self.candidates[index]:
            if target is None or target is source:
                continue
            by_name = {layer.name: layer for layer in target.layers}
            for layer in source.layers:
                if layer.weights and layer.name in by_name:
                    for src, dst in zip(layer.weights, by_name[layer.name].weights):
                        _assign_overlap(dst, src)

    def tie_candidates(self) -> None:
        """Start every block's candidates from shared weights: the candidate with the most weights of each block is
        copied into the others (:meth:`share_weights_from`)."""
        for i, (block, models) in enumerate(zip(self.blocks, self.candidates)):
            sizes = [-1 if m is None else m.count_params() for m in models]
            if sum(size >= 0 for size in sizes) > 1:
                self.share_weights_from(i, block.ops[int(np.argmax(sizes))])

    def expected_cost(self, costs: list, tau: float = 1.0) -> tf.Tensor:
        """``sum_i softmax(alpha_i / tau) . costs[i]``: differentiable in the architecture parameters."""
        return tf.add_n([tf.reduce_sum(p * tf.cast(c, p.dtype)) for p, c in zip(self.probabilities(tau), costs)])

    # ---- discrete networks ----------------------------------------------------------------------------------

    def derive(self) -> Architecture:
        """The architecture of each block's largest architecture parameter (the first one on a tie)."""
        return Architecture(tuple(b.ops[int(np.argmax(a.numpy()))] for b, a in zip(self.blocks, self.alphas)))

    def subnet(self, arch: Architecture, classifier_activation: str | None = "softmax", name: str = "nas") -> keras.Model:
        """``arch`` as a plain Functional network (:func:`build_network`) holding the supernet's weights of its
        operations, stem and head (batch-norm statistics included, as the supernet learnt them under mixing)."""
        model = build_network(self.space, arch, self.input_shape, self.classes, classifier_activation=classifier_activation, name=name)
        chosen = {"stem", "head"} | {f"{b.name}/{op}" for b, op in zip(self.blocks, arch.choices) if op != SKIP}
        copied = set()
        for key, part in self.parts():
            if key not in chosen:
                continue
            for layer in part.layers:
                if layer.weights:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
                    copied.add(layer.name)
        left = [layer.name for layer in model.layers if layer.weights and layer.name not in copied]
        if left:  # the names of build_network and the parts agree by construction; this guards that they stay so
            raise RuntimeError(f"subnet layers without supernet weights: {', '.join(left)}")
        return model
