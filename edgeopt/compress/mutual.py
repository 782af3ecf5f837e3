"""Deep mutual learning (Zhang et al. 2018, arXiv 1706.00384): two or more students teach each other.

Each student k minimises

    L_k = CE(y, p_k) + w * T^2 / (K - 1) * sum_{j != k} KL(softmax(z_j / T) || softmax(z_k / T))

where the peers' logits z_j are held fixed (stop-gradient) for student k, as in the paper, where each
network is updated towards the others' current predictions. Here all students are updated in the same
step from one forward pass (the paper alternates); with stop-gradient the losses are independent, so one
optimizer over all variables (Adam keeps per-variable state) is the same as one optimizer per student.
The paper uses T = 1 and w = 1, the defaults.
"""
from __future__ import annotations

from edgeopt._keras import keras, require_keras2_model, tf
from edgeopt.compress.distill import LogitsView, SharedStepModel, check_pair, soft_kl, weighted_mean


@keras.saving.register_keras_serializable(package="edgeopt")
class MutualLearner(SharedStepModel):
    """Trains ``students`` (a list of 2+ classifiers with the same inputs and classes) by deep mutual learning.

    Logs ``loss`` (sum over students), and per student k: ``s{k}_loss``, ``s{k}_ce``, ``s{k}_kl``,
    ``s{k}_accuracy``; plus ``ensemble_accuracy`` (mean of the students' probabilities). ``call`` returns
    the list of the students' own outputs. Students may end in logits or softmax (see
    :class:`~edgeopt.compress.distill.LogitsView`), and may be TF-MOT wrapped.
    """

    def __init__(self, students, student_outputs: str = "auto", **kwargs):
        super().__init__(**kwargs)
        students = list(students)
        if len(students) < 2:
            raise ValueError(f"MutualLearner needs at least 2 students, got {len(students)}")
        if len({id(s) for s in students}) != len(students):
            raise ValueError("MutualLearner got the same model object twice; pass distinct students")
        for s in students:
            require_keras2_model(s, "MutualLearner")
        for s in students[1:]:
            check_pair(s, students[0])
        self.students = students
        self.student_outputs = student_outputs
        object.__setattr__(self, "_views", [LogitsView(s, student_outputs, "student") for s in students])
        self.temperature, self.mimicry_weight = 1.0, 1.0
        self.total_tracker = keras.metrics.Mean(name="loss")
        self.trackers = []
        for k in range(len(students)):
            self.trackers.append(
                (
                    keras.metrics.Mean(name=f"s{k}_loss"),
                    keras.metrics.Mean(name=f"s{k}_ce"),
                    keras.metrics.Mean(name=f"s{k}_kl"),
                    keras.metrics.SparseCategoricalAccuracy(name=f"s{k}_accuracy"),
                )
            )
        self.ensemble_accuracy = keras.metrics.SparseCategoricalAccuracy(name="ensemble_accuracy")

    def compile(self, optimizer="adam", temperature: float = 1.0, mimicry_weight: float = 1.0, **kwargs):
        """``temperature`` T > 0 softens the peer targets (KL scaled by T^2); ``mimicry_weight`` w >= 0 weighs it."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not mimicry_weight >= 0:
            raise ValueError(f"mimicry_weight must be >= 0, got {mimicry_weight}")
        super().compile(optimizer=optimizer, **kwargs)
        self.temperature, self.mimicry_weight = float(temperature), float(mimicry_weight)

    @property
    def metrics(self):
        return [self.total_tracker, *[m for group in self.trackers for m in group], self.ensemble_accuracy]

    def call(self, inputs, training=False):
        return [s(inputs, training=training) for s in self.students]

    def compute_losses(self, y, logits, sample_weight=None):
        """(total, [(loss_k, ce_k, kl_k) per student]) for one batch; kl_k includes w * T^2 / (K - 1)."""
        t, k_count = self.temperature, len(logits)
        fixed = [tf.stop_gradient(z) for z in logits]
        parts = []
        for k, z in enumerate(logits):
            ce = keras.losses.sparse_categorical_crossentropy(y, z, from_logits=True)
            kl = tf.add_n([soft_kl(fixed[j], z, t) for j in range(k_count) if j != k]) / (k_count - 1)
            ce, kl = weighted_mean(ce, sample_weight), self.mimicry_weight * t * t * weighted_mean(kl, sample_weight)
            parts.append((ce + kl, ce, kl))
        return tf.add_n([p[0] for p in parts]), parts

    def _step(self, data, training: bool):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            results = [view(x, training=training) for view in self._views]
            logits = [r[0] for r in results]
            total, parts = self.compute_losses(y, logits, sample_weight)
            extra = [loss for view in self._views for loss in view.losses]
            if extra and training:
                total = total + tf.add_n(extra)
        if training:
            variables = [v for s in self.students for v in s.trainable_variables]
            self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        self.total_tracker.update_state(total)
        for (loss, ce, kl), (m_loss, m_ce, m_kl, m_acc), z in zip(parts, self.trackers, logits):
            m_loss.update_state(loss)
            m_ce.update_state(ce)
            m_kl.update_state(kl)
            m_acc.update_state(y, z, sample_weight)
        ensemble = tf.add_n([tf.nn.softmax(z) for z in logits]) / len(logits)
        self.ensemble_accuracy.update_state(y, ensemble, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def save_student(self, index: int, path, **kwargs):
        """Save student ``index`` alone (e.g. ``student0.keras``)."""
        self.students[index].save(path, **kwargs)

    def get_config(self):
        return {
            "students": [keras.saving.serialize_keras_object(s) for s in self.students],
            "student_outputs": self.student_outputs,
            "temperature": self.temperature,
            "mimicry_weight": self.mimicry_weight,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        students = [keras.saving.deserialize_keras_object(s, custom_objects=custom_objects) for s in config.pop("students")]
        temperature, weight = config.pop("temperature", 1.0), config.pop("mimicry_weight", 1.0)
        obj = cls(students, **config)
        obj.temperature, obj.mimicry_weight = temperature, weight
        return obj

