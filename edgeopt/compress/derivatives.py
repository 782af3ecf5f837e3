"""Derivatives of a classifier's cross-entropy over the kernels of some layers: the one implementation that saliency
criteria (Taylor, OBD), SNIP, GraSP and RigL share.

**Traced once per instance.** Each derivative is a ``tf.function`` built in the constructor with an
``input_signature`` whose batch dimension is ``None`` (images cast to the model's input dtype, labels to a flat
int64 vector), so every batch size, chunk size and label dtype reuses the one trace; Hessian-vector products keep one
trace per number of vectors (their graph unrolls the vectors). Build one :class:`LossDerivatives` per model and reuse
it: a new instance (or a new model, whose variables differ) traces again.

**Per-image squared gradients in chunks.** ``squared_per_image`` takes each image's gradient with a vectorized
Jacobian (``pfor``), whose memory grows with the images it vectorizes over (5.7 GB for 32 images of MobileNetV2
0.35 at 28x28, measured by benchmarks/pruning_criteria.py). It runs ``chunk`` images at a time (default :data:`CHUNK`)
and adds up their squared gradients in float64, so memory is bounded by the chunk, not by the batch. On
mobilenet_v2_tiny at 28x28 (304k kernel weights, 32 images, 2 CPU cores) the peak resident memory grew by 0.15 GB
with chunks of 1, 0.2 GB of 4, 0.34 GB of 8 and 2.5 GB with all 32 at once, and a call (once traced) took 1.1 s with chunks
of 4 against 6.7 s unchunked: small chunks cost no speed.

``training=False`` (saliency criteria) runs batch norms on their moving statistics, so images do not interact;
``training=True`` (SNIP, GraSP, RigL: the gradient a training step sees, as their code takes it) uses batch
statistics, and :class:`KeepState` puts the moving statistics back afterwards. ``temperature`` divides the logits
(GraSP's T; a model ending in softmax gets its log-probabilities, logits up to a constant, divided instead).
"""
from __future__ import annotations

from edgeopt._keras import ends_in_softmax, keras, tf
from edgeopt.compress.masks import kernel_of

CHUNK = 4  # images per vectorized Jacobian (measured on mobilenet_v2_tiny: see the module docstring)


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
    """``gradient(x, y)``: gradient of the batch's mean loss per kernel; ``squared_per_image(x, y, chunk)``: per kernel,
    the sum over images of each image's squared gradient (float64), ``chunk`` images per Jacobian;
    ``hvp(x, y, vectors)``: Hessian-vector products of the mean loss, ``vectors`` per kernel shaped
    (samples, *kernel shape), the same layout returned. ``x``: images (any dtype, cast to the model's input dtype),
    ``y``: sparse labels. Each is traced once per instance (see the module docstring): :meth:`tracing_counts`."""

    def __init__(self, model, names: list[str], training: bool = False, temperature: float = 1.0):
        self.kernels = [kernel_of(model, n) for n in names]
        self._x_spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], model.inputs[0].dtype)
        self._y_spec = tf.TensorSpec([None], tf.int64)
        zero = tf.UnconnectedGradients.ZERO

        def per_image(x, y):
            return losses(model, x, y, training, temperature)

        def gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(self.kernels)
                loss = tf.reduce_mean(per_image(x, y))
            return tape.gradient(loss, self.kernels, unconnected_gradients=zero)

        def squared_per_image(x, y):
            with tf.GradientTape() as tape:
                tape.watch(self.kernels)
                each = per_image(x, y)
            jac = tape.jacobian(each, self.kernels, unconnected_gradients=zero)  # each (images, *kernel shape)
            return [tf.reduce_sum(tf.square(j), axis=0) for j in jac]

        def hvp(x, y, vectors):
            with tf.GradientTape(persistent=True) as outer:
                outer.watch(self.kernels)
                with tf.GradientTape() as inner:
                    inner.watch(self.kernels)
                    loss = tf.reduce_mean(per_image(x, y))
                grads = inner.gradient(loss, self.kernels, unconnected_gradients=zero)
                dots = [tf.add_n([tf.reduce_sum(g * v[s]) for g, v in zip(grads, vectors)]) for s in range(vectors[0].shape[0])]
            return [tf.stack(h) for h in zip(*[outer.gradient(d, self.kernels, unconnected_gradients=zero) for d in dots])]

        signature = [self._x_spec, self._y_spec]
        self._gradient = tf.function(gradient, input_signature=signature)
        self._squared = tf.function(squared_per_image, input_signature=signature)
        self._hvp_python = hvp
        self._hvp: dict = {}  # a tf.function per number of vectors

    def _inputs(self, x, y) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.cast(x, self._x_spec.dtype), tf.reshape(tf.cast(y, tf.int64), [-1])

    def gradient(self, x, y) -> list[tf.Tensor]:
        """Per kernel, the gradient of the mean loss over the batch ``(x, y)``."""
        return self._gradient(*self._inputs(x, y))

    def squared_per_image(self, x, y, chunk: int = CHUNK) -> list[tf.Tensor]:
        """Per kernel, ``sum_n (dl_n/dw)^2`` over the images ``n`` of ``(x, y)`` (float64), computed ``chunk`` images
        at a time: memory is that of one chunk's Jacobian whatever the batch size."""
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1 (images per vectorized Jacobian), got {chunk}")
        x, y = self._inputs(x, y)
        total = [tf.zeros(k.shape, tf.float64) for k in self.kernels]
        for start in range(0, int(x.shape[0]), chunk):
            part = self._squared(x[start:start + chunk], y[start:start + chunk])
            total = [t + tf.cast(s, tf.float64) for t, s in zip(total, part)]
        return total

    def hvp(self, x, y, vectors) -> list[tf.Tensor]:
        """Hessian of the mean loss on ``(x, y)`` times each of ``samples`` vectors, given and returned per kernel as
        (samples, *kernel shape)."""
        samples = int(vectors[0].shape[0])
        if samples not in self._hvp:
            specs = [tf.TensorSpec((samples, *k.shape), k.dtype) for k in self.kernels]
            self._hvp[samples] = tf.function(self._hvp_python, input_signature=[self._x_spec, self._y_spec, specs])
        vectors = [tf.cast(v, k.dtype) for v, k in zip(vectors, self.kernels)]
        return self._hvp[samples](*self._inputs(x, y), vectors)

    def tracing_counts(self) -> dict[str, int]:
        """How many times each derivative has been traced (``hvp``: summed over the numbers of vectors used)."""
        return {"gradient": self._gradient.experimental_get_tracing_count(), "squared_per_image": self._squared.experimental_get_tracing_count(),
                "hvp": sum(f.experimental_get_tracing_count() for f in self._hvp.values())}
