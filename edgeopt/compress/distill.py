"""Knowledge distillation (Hinton et al. 2015, arXiv 1503.02531) as a tf_keras Model with its own train step.

``Distiller(student, teacher)`` trains the student on

    loss = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))

The T^2 keeps the gradient scale of the soft term independent of T. The teacher is never trained: it runs
in inference mode and only the student's variables get gradients. Models may end in logits or in a softmax:
for a softmax-ending model the logits are the input of its final softmax layer (read from the graph, so
softmax is never applied twice); a model whose softmax is fused into another layer falls back to
``log(probabilities)``, which equals the logits up to a per-sample constant and so gives the same
temperature-scaled softmax (exact except where a probability underflows to 0 in float32).

The student may be pruning-wrapped (``tfmot.sparsity.keras.prune_low_magnitude``) or QAT-wrapped
(``tfmot.quantization.keras.quantize_model``): its wrapper layers run in training mode inside the
student, and ``Distiller.layers`` exposes the student, so TF-MOT's ``UpdatePruningStep`` callback (which
walks ``model.layers`` recursively) finds its pruning wrappers.
"""
from __future__ import annotations

from dataclasses import dataclass

from edgeopt._keras import is_softmax, keras, output_layer, require_keras2_model, tf, unwrap_layer
from edgeopt.config import Config

OUTPUT_KINDS = ("auto", "logits", "probabilities")
_PROB_FLOOR = 1e-30  # log(p) fallback: floor so underflowed probabilities stay finite


@dataclass(frozen=True)
class DistillConfig(Config):
    """Distillation knobs: ``alpha`` weighs the hard-label cross-entropy (1 - alpha the soft KL term),
    ``temperature`` T > 0 softens both distributions."""

    alpha: float = 0.1
    temperature: float = 4.0

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"DistillConfig.alpha must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"DistillConfig.temperature must be > 0, got {self.temperature}")


def output_kind(model: keras.Model) -> str:
    """``"probabilities"`` when the model's output layer applies softmax (also through a TF-MOT wrapper),
    else ``"logits"``."""
    return "probabilities" if is_softmax(output_layer(model)) else "logits"


def _check_single_output(model: keras.Model, role: str) -> None:
    if len(model.outputs or []) != 1:
        raise ValueError(f"the {role} must have exactly one output (class scores), it has {len(model.outputs or [])}")


class LogitsView:
    """Calls a classifier and returns ``(logits, outputs)`` from one forward pass.

    ``kind`` is what the model outputs: ``"logits"``, ``"probabilities"`` or ``"auto"`` (detected with
    :func:`output_kind`). For a functional model ending in a softmax-only layer (an ``Activation`` or
    ``Softmax``, wrapped or not) the logits are that layer's input; otherwise probabilities are turned
    into ``log(p)``. The view shares the model's layers, so training through it trains the model.
    """

    def __init__(self, model: keras.Model, kind: str = "auto", role: str = "model"):
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"{role}_output must be one of {', '.join(OUTPUT_KINDS)}; got {kind!r}")
        _check_single_output(model, role)
        self.model = model
        self.kind = output_kind(model) if kind == "auto" else kind
        self.logits_from = "outputs"
        self._graph = None
        if self.kind == "probabilities":
            last = output_layer(model)
            only_softmax = isinstance(unwrap_layer(last), (keras.layers.Activation, keras.layers.Softmax))
            if only_softmax and is_softmax(last) and getattr(model, "_is_graph_network", False):
                self._graph = keras.Model(model.inputs, [last.input, model.outputs[0]], name=f"{model.name}_logits_view")
                self.logits_from = "softmax_input"
            else:
                self.logits_from = "log_probabilities"

    def __call__(self, x, training: bool = False):
        if self._graph is not None:
            logits, outputs = self._graph(x, training=training)
            return logits, outputs
        outputs = self.model(x, training=training)
        if self.kind == "logits":
            return outputs, outputs
        return tf.math.log(tf.maximum(tf.cast(outputs, tf.float32), _PROB_FLOOR)), outputs

    @property
    def losses(self):
        return (self._graph or self.model).losses


def soft_kl(target_logits, logits, temperature: float):
    """Per-sample KL(softmax(target / T) || softmax(logits / T)), computed with log-softmax for stability."""
    target_log_p = tf.nn.log_softmax(tf.cast(target_logits, tf.float32) / temperature, axis=-1)
    log_p = tf.nn.log_softmax(tf.cast(logits, tf.float32) / temperature, axis=-1)
    return tf.reduce_sum(tf.exp(target_log_p) * (target_log_p - log_p), axis=-1)


def weighted_mean(values, sample_weight=None):
    """Mean of per-sample ``values``, weighted by ``sample_weight`` when given."""
    if sample_weight is None:
        return tf.reduce_mean(values)
    w = tf.cast(tf.reshape(sample_weight, tf.shape(values)), values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values * w), tf.reduce_sum(w))


def _check_from_logits(loss_fn, name: str) -> None:
    if getattr(loss_fn, "_fn_kwargs", {}).get("from_logits") is False:
        raise ValueError(
            f"{name} receives the student's logits (the Distiller extracts them even from softmax-ending models); "
            "build it with from_logits=True, e.g. keras.losses.SparseCategoricalCrossentropy(from_logits=True)"
        )


def check_pair(student: keras.Model, teacher: keras.Model) -> None:
    """Raise a ValueError naming both shapes when the teacher cannot teach the student (inputs or classes differ)."""
    _check_single_output(student, "student")
    _check_single_output(teacher, "teacher")
    s_out, t_out = tuple(student.outputs[0].shape[1:]), tuple(teacher.outputs[0].shape[1:])
    if s_out != t_out:
        raise ValueError(
            f"teacher {teacher.name!r} outputs shape {t_out} but student {student.name!r} outputs {s_out}: "
            "distillation needs the same classes in the same order (build both with the same `classes`)"
        )
    s_in, t_in = tuple(student.inputs[0].shape[1:]), tuple(teacher.inputs[0].shape[1:])
    if s_in != t_in:
        raise ValueError(
            f"teacher {teacher.name!r} takes inputs {t_in} but student {student.name!r} takes {s_in}: both must "
            "read the same images (build both with the same input_shape)"
        )


def split_targets(y):
    """``y`` is labels, or a dict ``{"labels": ..., "teacher_logits": ...}`` carrying precomputed teacher logits."""
    if isinstance(y, dict):
        return y["labels"], y.get("teacher_logits")
    return y, None


class SharedStepModel(keras.Model):
    """A training harness whose ``train_step`` and ``test_step`` are one ``_step(data, training)``."""

    def train_step(self, data):
        return self._step(data, training=True)

    def test_step(self, data):
        return self._step(data, training=False)


@keras.saving.register_keras_serializable(package="edgeopt")
class Distiller(SharedStepModel):
    """Trains ``student`` to match ``teacher`` (frozen, inference mode) and the labels; see the module docstring.

    ``student_output`` / ``teacher_output``: ``"auto"`` (detect a final softmax), ``"logits"`` or
    ``"probabilities"``. ``call`` returns the student's own outputs, so ``predict``/``evaluate`` see the
    student. Targets may carry precomputed teacher logits (see :func:`split_targets`); the teacher then
    does not run, which is exact because it is frozen and deterministic in inference mode (no augmentation).
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, student_output: str = "auto", teacher_output: str = "auto", **kwargs):
        super().__init__(**kwargs)
        require_keras2_model(student, "Distiller (student)")
        require_keras2_model(teacher, "Distiller (teacher)")
        check_pair(student, teacher)
        self.student, self.teacher = student, teacher
        self.student_output, self.teacher_output = student_output, teacher_output
        # Views share the models' layers; bypass attribute tracking so Distiller.layers stays [student, teacher].
        object.__setattr__(self, "_student_view", LogitsView(student, student_output, "student"))
        object.__setattr__(self, "_teacher_view", LogitsView(teacher, teacher_output, "teacher"))
        self.distill_config = DistillConfig()
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.student_tracker = keras.metrics.Mean(name="student_loss")
        self.distill_tracker = keras.metrics.Mean(name="distillation_loss")

    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None, alpha: float = 0.1, temperature: float = 4.0, **kwargs):
        """``student_loss_fn(y, student_logits)`` defaults to sparse CE from logits; ``distillation_loss_fn(p_teacher,
        p_student)`` (probabilities at temperature T) defaults to an exact log-softmax KL; it is multiplied by T^2."""
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.distill_config = DistillConfig(alpha=float(alpha), temperature=float(temperature))
        self.student_loss_fn = student_loss_fn or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        _check_from_logits(self.student_loss_fn, "student_loss_fn")
        self.distillation_loss_fn = distillation_loss_fn

    alpha = property(lambda self: self.distill_config.alpha, doc="weight of the hard-label loss")
    temperature = property(lambda self: self.distill_config.temperature, doc="softmax temperature of the soft targets")

    @property
    def student_logits_from(self) -> str:
        """How the student's logits are obtained: ``outputs``, ``softmax_input`` or ``log_probabilities``."""
        return self._student_view.logits_from

    @property
    def teacher_logits_from(self) -> str:
        return self._teacher_view.logits_from

    @property
    def metrics(self):
        metrics = [self.total_tracker, self.student_tracker, self.distill_tracker]
        if getattr(self, "compiled_metrics", None) is not None:
            metrics += self.compiled_metrics.metrics
        return metrics

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def teacher_logits(self, x):
        """The frozen teacher's logits for a batch (inference mode, no gradient)."""
        logits, _ = self._teacher_view(x, training=False)
        return tf.stop_gradient(logits)

    def compute_losses(self, y, student_logits, teacher_logits, sample_weight=None):
        """(total, student_loss, distillation_loss) for one batch; distillation_loss already includes T^2."""
        t = self.distill_config.temperature
        student_loss = self.student_loss_fn(y, student_logits, sample_weight=sample_weight)
        if self.distillation_loss_fn is None:
            soft = weighted_mean(soft_kl(teacher_logits, student_logits, t), sample_weight)
        else:
            soft = self.distillation_loss_fn(tf.nn.softmax(teacher_logits / t), tf.nn.softmax(student_logits / t), sample_weight=sample_weight)
        distill_loss = (t**2) * soft
        total = self.distill_config.alpha * student_loss + (1.0 - self.distill_config.alpha) * distill_loss
        return total, student_loss, distill_loss

    def _step(self, data, training: bool):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, t_logits = split_targets(y)
        if t_logits is None:
            t_logits = self.teacher_logits(x)
        with tf.GradientTape() as tape:
            s_logits, s_out = self._student_view(x, training=training)
            total, s_loss, d_loss = self.compute_losses(y, s_logits, t_logits, sample_weight)
            extra = self._student_view.losses
            if extra and training:
                total = total + tf.add_n(extra)
        if training:
            variables = self.student.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        self.total_tracker.update_state(total)
        self.student_tracker.update_state(s_loss)
        self.distill_tracker.update_state(d_loss)
        self.compiled_metrics.update_state(y, s_out, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def save_student(self, path, **kwargs):
        """Save the student alone (e.g. ``student.keras``); the Distiller itself is a training harness."""
        self.student.save(path, **kwargs)

    def get_config(self):
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "student_output": self.student_output,
            "teacher_output": self.teacher_output,
            "distill": self.distill_config.to_dict(),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        student = keras.saving.deserialize_keras_object(config.pop("student"), custom_objects=custom_objects)
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"), custom_objects=custom_objects)
        distill = DistillConfig.from_dict(config.pop("distill", {}))
        obj = cls(student, teacher, **config)
        obj.distill_config = distill
        return obj
