"""Derivatives of a classifier's cross-entropy over the kernels of some layers: the one implementation that saliency
criteria (Taylor, OBD), SNIP, GraSP and RigL share. Each derivative is traced once (``tf.function``) and reused for
every batch.

``training=False`` (saliency criteria) runs batch norms on their moving statistics, so images do not interact;
``training=True`` (SNIP, GraSP, RigL: the gradient a training step sees, as their code takes it) uses batch
statistics, and :class:`KeepState` puts the moving statistics back afterwards. ``temperature`` divides the logits
(GraSP's T; a model ending in softmax gets its log-probabilities, logits up to a constant, divided instead).
"""
from __future__ import annotations

from edgeopt._keras import ends_in_softmax, keras, tf
from edgeopt.compress.masks import kernel_of


def losses(model, x, y, training: bool = False, temperature: float = 1.0) -> tf.Tensor:
    """Per-image sparse cross-entropy of ``model``'s output on ``x`` (logits or probabilities, as the model ends)."""
    out = model(tf.cast(x, model.inputs[0].dtype), training=training)
    softmax = ends_in_softmax(model)
    if temperature == 1.0:
        return keras.losses.sparse_categorical_crossentropy(y, out, from_logits=not softmax)
    logits = tf.math.log(tf.clip_by_value(out, 1e-12, 1.0)) if softmax else out
    return keras.losses.sparse_categorical_crossentropy(y, logits / temperature, from_logits=True)


class KeepState:
    """Restores the non-trainable weights (batch-norm moving statistics) after forward passes in training mode."""

    def __init__(self, model: keras.Model):
        self.model = model

    def __enter__(self):
        self.saved = [w.numpy() for w in self.model.non_trainable_weights]
        return self

    def __exit__(self, *exc):
        for w, value in zip(self.model.non_trainable_weights, self.saved):
            w.assign(value)


class LossDerivatives:
    """``gradient(x, y)``: gradient of the batch's mean loss per kernel; ``squared_per_image(x, y)``: per kernel, the
    sum over images of each image's squared gradient; ``hvp(x, y, vectors)``: Hessian-vector products of the mean
    loss, ``vectors`` per kernel shaped (samples, *kernel shape), the same layout returned."""

    def __init__(self, model, names: list[str], training: bool = False, temperature: float = 1.0):
        self.kernels = [kernel_of(model, n) for n in names]
        zero = tf.UnconnectedGradients.ZERO

        def per_image(x, y):
            return losses(model, x, y, training, temperature)

        @tf.function(reduce_retracing=True)
        def gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(self.kernels)
                loss = tf.reduce_mean(per_image(x, y))
            return tape.gradient(loss, self.kernels, unconnected_gradients=zero)

        @tf.function(reduce_retracing=True)
        def squared_per_image(x, y):
            with tf.GradientTape() as tape:
                tape.watch(self.kernels)
                each = per_image(x, y)
            jac = tape.jacobian(each, self.kernels, unconnected_gradients=zero)  # each (images, *kernel shape)
            return [tf.reduce_sum(tf.square(j), axis=0) for j in jac]

        @tf.function(reduce_retracing=True)
        def hvp(x, y, vectors):
            with tf.GradientTape(persistent=True) as outer:
                outer.watch(self.kernels)
                with tf.GradientTape() as inner:
                    inner.watch(self.kernels)
                    loss = tf.reduce_mean(per_image(x, y))
                grads = inner.gradient(loss, self.kernels, unconnected_gradients=zero)
                dots = [tf.add_n([tf.reduce_sum(g * v[s]) for g, v in zip(grads, vectors)]) for s in range(vectors[0].shape[0])]
            return [tf.stack(h) for h in zip(*[outer.gradient(d, self.kernels, unconnected_gradients=zero) for d in dots])]

        self.gradient, self.squared_per_image, self.hvp = gradient, squared_per_image, hvp
