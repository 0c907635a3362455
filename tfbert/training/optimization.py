"""BERT fine-tuning optimizer: AdamW, warmup + linear (cosine, constant) decay, layer-wise LR decay,
accumulation.

`create_optimizer` is the one entry point the pipelines need. It builds a `BertAdamW`
(a thin `keras.optimizers.AdamW` subclass) and leans on Keras for everything Keras already
does: decoupled weight decay and its exclusion list (`exclude_from_weight_decay`), global-norm
clipping (`global_clipnorm`), gradient accumulation (`gradient_accumulation_steps`) and dynamic
loss scaling (`keras.optimizers.LossScaleOptimizer`). The subclass adds only these:

1. Layer-wise learning-rate decay (LLRD): each variable's learning rate (and so its decoupled
   weight decay, which Keras scales by the learning rate) is multiplied by a factor looked up
   from its path. Scaling the *gradient* instead would do nothing under Adam, whose update is
   invariant to the gradient's scale; scaling the learning rate is what param-group LLRD does.
2. Step counting under gradient accumulation. Keras keeps two counters: `optimizer._iterations`
   counts `apply()` calls, i.e. micro-batches, and `optimizer.iterations` (the public property)
   is `_iterations // gradient_accumulation_steps`, i.e. optimizer updates applied so far. Keras
   evaluates a `LearningRateSchedule` on the micro-batch counter; `BertAdamW` evaluates it on
   `optimizer.iterations`, so `total_steps` and `warmup_steps` are always counted in optimizer
   updates and a run with accumulation k sees the same learning-rate curve, update by update,
   as a run with a k-times larger batch. (Adam's bias correction already uses the update count.)
3. Dense embedding gradients. On the TF backend an embedding lookup's gradient is a
   `tf.IndexedSlices` with one row per token occurrence, and Keras's Adam squares those rows
   one by one (`ops.square` keeps the slices), so a token seen n times in a batch gets a second
   moment of sum(g_i^2) instead of (sum g_i)^2 and an update up to sqrt(n) times the learning
   rate; global-norm clipping sees the same wrong norm. `BertAdamW.apply` densifies such
   gradients first (duplicates summed), which is the update of the original BERT optimizer and
   of PyTorch AdamW, at the cost of a dense [vocab, hidden] gradient per step.

4. Several replicas (`tf.distribute`). Keras clips each replica's gradient (its share of the
   global batch's) before summing them, so global-norm clipping sees the wrong norm, and its
   gradient accumulation fails under `MirroredStrategy` (a `merge_call` inside a `cond`).
   `BertAdamW.apply` sums the replicas' gradients first; every replica then clips, accumulates
   and applies the same update to its own copy of each variable, so a run on N replicas takes
   the steps of a one-device run with the same global batch.

5. One kernel per Adam update. Keras' `Adam.update_step` is eleven element-wise ops, each a pass
   over the variable and its moments in memory; over MiniLM's 22.7M weights (the 30522 x 384 word
   embeddings, updated densely, are half of them) that was 8.5% of the op time of a float32 step at
   batch 32 x 128 here (benchmarks/profile_step.py), and 9% of the wall time of a step at length 32.
   `adamw_update` computes the same formula (m += (g - m)(1 - b1), v += (g^2 - v)(1 - b2),
   w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)) in one XLA-compiled pass, together with
   the decoupled weight decay (w -= lr wd w) and the global-norm clip (g *= scale) that Keras runs as
   passes of their own. With clipping, the norm is one more pass (`tf.nn.l2_loss`, no temporary).
   Per step over MiniLM's weights (Intel Xeon, 2 cores): 47 ms for Keras' clip and decay around
   TensorFlow's one-pass `ResourceApplyAdam`, 33 ms fused. The Adam pass alone (4 reads and 3 writes
   of the word embeddings' 11.7M floats: 11.7 ms) runs at the memory's speed, so this is the floor.
   Keras' own ops remain where the kernel does not apply (`_kernel_variables`); under gradient
   accumulation, EMA and per-variable clipping the clip stays Keras' own pass.

6. Gradient accumulation weighted by items. Keras applies the mean of the k accumulated gradients,
   each its batch's mean: batches with more labelled tokens (NER, masked LM) or examples (the last,
   partial batch of an epoch) count no more than the others, so k accumulated batches did not update
   as one batch k times the size. In a model's `train_step` that tells it each batch's items
   (`tfbert.tasks.losses.weighting_batch`, as `BertTaskModel` does) `BertAdamW` accumulates each
   gradient times its batch's items and divides the sum by the group's items: the gradient of the mean
   over every item of the k batches. The running count of items is an optimizer variable, saved with
   the accumulated gradients, so a run resumed between two updates goes on with the same group.

Why not `keras.optimizers.MultiOptimizer` with one AdamW per layer group: it clips each group
by its own norm rather than the global norm, hides `learning_rate`, and does not compose with
`gradient_accumulation_steps` counting or `LossScaleOptimizer`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import keras
import tensorflow as tf
from keras import ops

from tfbert.tasks.losses import batch_weight
from tfbert.training.run_config import LR_SCHEDULES

# Variables excluded from weight decay, by their last path component: LayerNorm scale and
# offset, and every bias (as in the original BERT `AdamWeightDecayOptimizer`).
NO_WEIGHT_DECAY_NAMES = ("gamma", "beta", "bias")

# Path patterns for layer-wise LR decay, matching `tfbert.layers` / `BertBackbone` naming. Each
# may be preceded by outer scopes (a nested model), so they match whole path components.
_ENCODER_LAYER_PATTERN = re.compile(r"(?:^|/)encoder_layer_(\d+)/")
_EMBEDDINGS_PATTERN = re.compile(r"(?:^|/)embeddings/")


@keras.saving.register_keras_serializable(package="tfbert")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to a peak, then linear decay to 0 at `total_steps`, 0 afterwards.

    The schedule of the original BERT and of `transformers.get_linear_schedule_with_warmup`:
    `lr(step) = peak * step / warmup_steps` while `step < warmup_steps`, then
    `peak * (total_steps - step) / (total_steps - warmup_steps)`, clipped at 0. `step` is
    0-based, so the very first update uses learning rate 0 when there is a warmup.

    Args:
        peak_learning_rate: learning rate reached at the end of warmup.
        total_steps: optimizer updates over the whole run (not micro-batches; see the module
            docstring for gradient accumulation).
        warmup_steps: optimizer updates of linear warmup, `0 <= warmup_steps <= total_steps`.

    Raises:
        ValueError: if an argument is out of range.

    Example:
        >>> schedule = WarmupLinearDecay(1e-3, total_steps=100, warmup_steps=10)
        >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 55, 100, 150)]
        [0.0, 0.0005, 0.001, 0.0005, 0.0, 0.0]
    """

    def __init__(self, peak_learning_rate: float, total_steps: int, warmup_steps: int):
        if not peak_learning_rate >= 0:
            raise ValueError(f"WarmupLinearDecay: peak_learning_rate must be >= 0, got {peak_learning_rate!r}")
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"WarmupLinearDecay: total_steps must be an integer >= 1, got {total_steps!r}")
        if int(warmup_steps) != warmup_steps or not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"WarmupLinearDecay: warmup_steps must be an integer in [0, total_steps="
                             f"{total_steps}], got {warmup_steps!r}")
        self.peak_learning_rate = float(peak_learning_rate)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        decay_span = float(max(self.total_steps - self.warmup_steps, 1))
        warmup_lr = self.peak_learning_rate * step / max(warmup, 1.0)
        decay_lr = self.peak_learning_rate * ops.maximum(0.0, (float(self.total_steps) - step) / decay_span)
        return ops.where(step < warmup, warmup_lr, decay_lr)

    def get_config(self) -> dict:
        return {"peak_learning_rate": self.peak_learning_rate, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps}


def learning_rate_schedule(kind: str, peak_learning_rate: float, total_steps: int,
                           warmup_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The learning rate over `total_steps` optimizer updates: a linear warmup from 0 to the peak over
    `warmup_steps`, then, by `kind` (transformers' `get_scheduler` names and curves):

    - "linear": down to 0 at `total_steps` (`WarmupLinearDecay`, the original BERT's);
    - "cosine": half a cosine down to 0 at `total_steps` (Keras' `CosineDecay` with its warmup);
    - "constant_with_warmup": the peak until the end (`CosineDecay` whose floor `alpha` is the peak).

    Raises:
        ValueError: an unknown `kind`, or steps out of range.

    Example:
        >>> schedule = learning_rate_schedule("cosine", 1e-3, total_steps=110, warmup_steps=10)
        >>> [round(float(schedule(s)), 6) for s in (0, 5, 10, 60, 110)]
        [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    if kind not in LR_SCHEDULES:
        raise ValueError(f"learning_rate_schedule: kind must be one of {', '.join(LR_SCHEDULES)}, got {kind!r}")
    schedule = WarmupLinearDecay(peak_learning_rate, total_steps, warmup_steps)  # checks the arguments
    if kind == "linear":
        return schedule
    # CosineDecay: `initial_learning_rate` rising linearly to `warmup_target` over `warmup_steps`, then
    # warmup_target * ((1 - alpha) * (1 + cos(pi * min(t, decay_steps) / decay_steps)) / 2 + alpha) at t
    # updates after the warmup: alpha = 0 is transformers' cosine, alpha = 1 a constant rate.
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(total_steps - warmup_steps, 1),
        alpha=0.0 if kind == "cosine" else 1.0, warmup_target=float(peak_learning_rate), warmup_steps=warmup_steps)


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """Number of warmup updates for a warmup fraction, rounded down as in the original BERT.

    Args:
        total_steps: optimizer updates over the whole run.
        warmup_ratio: fraction of `total_steps` spent warming up, in [0, 1].

    Returns:
        `int(total_steps * warmup_ratio)`.

    Raises:
        ValueError: if `total_steps < 1` or `warmup_ratio` is outside [0, 1].

    Example:
        >>> warmup_steps_for(1000, 0.1)
        100
    """
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"warmup_steps_for: total_steps must be an integer >= 1, got {total_steps!r}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_steps_for: warmup_ratio must be in [0, 1], got {warmup_ratio!r}")
    return int(total_steps * warmup_ratio)


def layerwise_lr_factor(variable_path: str, *, num_layers: int, decay: float | None) -> float:
    """Learning-rate multiplier of one variable under layer-wise LR decay.

    Encoder layer `i` (0-based) of `num_layers` gets `decay ** (num_layers - i)`, the embeddings
    get `decay ** (num_layers + 1)`, everything else (pooler, task head) gets 1.

    Args:
        variable_path: a Keras variable path, e.g. `"encoder_layer_3/query/kernel"`.
        num_layers: number of encoder layers in the model.
        decay: per-layer decay in (0, 1]; `None` means no decay (factor 1).

    Returns:
        The multiplier, a Python float.

    Raises:
        ValueError: if the path names an encoder layer index >= `num_layers`.

    Example:
        >>> layerwise_lr_factor("encoder_layer_1/query/kernel", num_layers=2, decay=0.5)
        0.5
        >>> layerwise_lr_factor("embeddings/word_embeddings/embeddings", num_layers=2, decay=0.5)
        0.125
    """
    if decay is None or decay == 1.0:
        return 1.0
    layer = _ENCODER_LAYER_PATTERN.search(variable_path)
    if layer is not None:
        index = int(layer.group(1))
        if index >= num_layers:
            raise ValueError(f"layerwise_lr_factor: variable {variable_path!r} is in encoder layer {index}, "
                             f"but num_layers={num_layers}; expected an index in [0, {num_layers - 1}]")
        return float(decay ** (num_layers - index))
    if _EMBEDDINGS_PATTERN.search(variable_path):
        return float(decay ** (num_layers + 1))
    return 1.0


def count_encoder_layers(variables) -> int:
    """Number of encoder layers among `variables`: 1 + the largest `encoder_layer_<i>` index, or 0."""
    indices = [int(m.group(1)) for v in variables if (m := _ENCODER_LAYER_PATTERN.search(_path_of(v)))]
    return max(indices) + 1 if indices else 0


def _path_of(variable) -> str:
    # Keras variables have `path`; a raw tf.Variable only has `name`, e.g. "encoder_layer_0/query/kernel:0".
    path = getattr(variable, "path", None) or variable.name
    return re.sub(r":\d+$", "", path)


# Which optimizer is applying gradients in the replica-local path, per replica thread.
_replica_local_path = threading.local()


@keras.saving.register_keras_serializable(package="tfbert")
class BertAdamW(keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with layer-wise LR decay, update-counted LR schedules, dense embedding grads.

    Everything else (clipping, accumulation, EMA, loss scaling) is Keras's own; see the module
    docstring. The whole configuration, including the weight-decay exclusions, round-trips through
    `get_config` / `from_config`, so `model.save` / `keras.models.load_model` restore it; optimizer
    state (moments, accumulators, step counter) is saved with the model's weights, which is what
    `keras.callbacks.BackupAndRestore` and `model.save_weights` rely on.

    Args:
        layerwise_lr_decay: per-layer decay in (0, 1], or `None` for none; see `layerwise_lr_factor`.
        num_layers: encoder layers in the model; inferred from the variable paths when `None`.
        no_weight_decay_names: last path components of variables excluded from weight decay.
        **kwargs: any `keras.optimizers.AdamW` argument.

    Raises:
        ValueError: if `layerwise_lr_decay` is out of range, or at `build` time if LLRD is on
            and no variable is in an encoder layer.
    """

    def __init__(self, *, layerwise_lr_decay: float | None = None, num_layers: int | None = None,
                 no_weight_decay_names: Sequence[str] = NO_WEIGHT_DECAY_NAMES, **kwargs):
        super().__init__(**kwargs)
        if layerwise_lr_decay is not None and not 0.0 < layerwise_lr_decay <= 1.0:
            raise ValueError(f"BertAdamW: layerwise_lr_decay must be in (0, 1] or None, got {layerwise_lr_decay!r}")
        if num_layers is not None and (int(num_layers) != num_layers or num_layers < 1):
            raise ValueError(f"BertAdamW: num_layers must be an integer >= 1 or None, got {num_layers!r}")
        self.layerwise_lr_decay = layerwise_lr_decay
        self.num_layers = num_layers
        self.no_weight_decay_names = tuple(no_weight_decay_names)
        if self.no_weight_decay_names:
            # Keras matches these regexes with `re.search` against `variable.name`, which is the
            # bare name ("gamma") for a Keras variable but the scoped TF name
            # ("encoder_layer_0/attention_layer_norm/gamma:0") for the tf.Variable the TF backend
            # passes; anchor on the last path component so both match and "beta_x" would not.
            self.exclude_from_weight_decay(var_names=[
                rf"(?:^|/){re.escape(name)}(?::\d+)?$" for name in self.no_weight_decay_names])

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        num_layers = self.num_layers
        if self.layerwise_lr_decay not in (None, 1.0) and num_layers is None:
            num_layers = count_encoder_layers(var_list)
            if num_layers == 0:
                raise ValueError("BertAdamW: layerwise_lr_decay is set but no trainable variable path contains "
                                 "'encoder_layer_<i>/'; pass num_layers or use a tfbert BertBackbone")
        if self.gradient_accumulation_steps:  # the items of the batches accumulated so far (module docstring, 6)
            self._accumulated_items = self.add_variable((), dtype="float32", name="accumulated_items")
        # Indexed like Keras's own per-variable slots (`_get_variable_index`); a tuple of floats.
        self._lr_factors = tuple(
            layerwise_lr_factor(_path_of(v), num_layers=num_layers or 0, decay=self.layerwise_lr_decay)
            for v in var_list)

    def learning_rate_factor(self, variable) -> float:
        """The layer-wise multiplier applied to `variable`'s learning rate (the optimizer must be built)."""
        return self._lr_factors[self._get_variable_index(variable)]

    def apply(self, grads, trainable_variables=None):
        # Sum duplicate rows of sparse embedding gradients before Keras squares them (module docstring, 3).
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:
            return super().apply(grads, trainable_variables)
        # Several replicas (module docstring, 4): sum their gradients first, then every replica
        # applies the same update to its own copy of each variable.
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = replica.all_reduce(tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
        grads = list(grads)
        for i, g in zip(present, summed):
            grads[i] = g
        _replica_local_path.optimizer = self
        try:
            return super().apply(grads, trainable_variables)
        finally:
            _replica_local_path.optimizer = None

    @property
    def _replica_local(self) -> bool:
        """Whether this replica is in the replica-local update path. With the gradients already
        summed, Keras' own all-reduce would sum them again, and its merge_call-based updates cannot
        run inside the `cond` that gradient accumulation uses ("merge_call called while defining a
        new graph"). Per thread: MirroredStrategy runs (and traces) each replica in its own thread."""
        return getattr(_replica_local_path, "optimizer", None) is self

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars) if self._replica_local else super()._all_reduce_sum_gradients(grads_and_vars)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if not self._replica_local:
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        for grad, variable in zip(grads, trainable_variables):
            self.update_step(grad, variable, learning_rate)

    def _backend_increment_gradient_accumulators(self, grads, acc_grads):
        if not self._replica_local:
            return super()._backend_increment_gradient_accumulators(grads, acc_grads)
        for grad, accumulator in zip(grads, acc_grads):
            self.assign_add(accumulator, grad)

    def _backend_reset_gradient_accumulators(self):
        if not self._replica_local:
            return super()._backend_reset_gradient_accumulators()
        for accumulator in self._accumulated_gradients:
            if accumulator is not None:
                self.assign(accumulator, ops.zeros(accumulator.shape, dtype=accumulator.dtype))

    def _local(self, variable):
        """In the replica-local path, this replica's own copy of a mirrored variable."""
        if not self._replica_local:
            return variable
        variable = variable.value if isinstance(variable, keras.Variable) else variable
        if isinstance(variable, tf.distribute.DistributedValues):
            variable = variable._get_on_device_or_primary()  # noqa: SLF001 (what tf.distribute's own updates use)
        return variable

    def assign(self, variable, value):
        super().assign(self._local(variable), value)

    def assign_add(self, variable, value):
        super().assign_add(self._local(variable), value)

    def assign_sub(self, variable, value):
        super().assign_sub(self._local(variable), value)

    def _get_current_learning_rate(self):
        # Keras calls a schedule with the micro-batch counter `_iterations`; count updates instead.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _apply_weight_decay(self, variables):
        # Decoupled weight decay moves into `update_step`, where the per-variable learning rate is
        # known. Keras decays every variable before any update; doing it per variable just before
        # that variable's Adam update is the same, since the Adam update does not read the weights.
        return

    @property
    def weighs_batches(self) -> bool:
        """Whether accumulated gradients are weighted by their batches' items (`weighting_batch`; module
        docstring, 6): Keras' exponential moving average keeps its own accumulation."""
        return not self.use_ema

    def load_own_variables(self, store):
        # A backup written before the count of accumulated items existed (module docstring, 6) has every
        # variable but it, the last: load them; gradients accumulated then are unweighted, so a group in
        # progress is applied without its batches so far.
        if not self.gradient_accumulation_steps or len(store.keys()) != len(self.variables) - 1:
            return super().load_own_variables(store)
        for i, variable in enumerate(self.variables[:-1]):
            variable.assign(store[str(i)])
        pending = int(self._iterations.numpy()) % self.gradient_accumulation_steps
        if pending:
            self._backend_reset_gradient_accumulators()
            print(f"WARNING: this backup was written by an older tfbert, whose gradient accumulation did not weigh "
                  f"batches by their items: the {pending} batch(es) accumulated in it are not applied", flush=True)

    def _backend_apply_gradients(self, grads, trainable_variables):
        items = batch_weight()
        if self.gradient_accumulation_steps and items is not None and self.weighs_batches:
            return self._accumulate_weighted(grads, trainable_variables, ops.cast(items, "float32"))
        # The plain step (no gradient accumulation, no EMA, global-norm clipping or none, no strategy
        # or the replica-local path of several replicas): the clip's scale is computed here and
        # applied inside each variable's fused update, not as a pass of its own (module docstring, 5).
        plain = (not self.gradient_accumulation_steps and not self.use_ema and not self.clipnorm
                 and not self.clipvalue and (self._replica_local or not tf.distribute.has_strategy()))
        if not plain:
            return super()._backend_apply_gradients(grads, trainable_variables)
        scale = None
        if self.global_clipnorm and self.global_clipnorm > 0:
            # Keras' `clip_by_global_norm`: min(1, clipnorm / norm), NaN for a non-finite norm.
            norm = ops.sqrt(2.0 * ops.sum(ops.stack([tf.nn.l2_loss(ops.cast(g, "float32")) for g in grads])))
            scale = self.global_clipnorm * ops.minimum(1.0 / norm, 1.0 / self.global_clipnorm) + (norm - norm)
        learning_rate = self.learning_rate
        constants = self._step_constants(learning_rate, scale)
        for grad, variable in zip(grads, trainable_variables):
            self._update(grad, variable, learning_rate, scale, constants)

    def _accumulate_weighted(self, grads, trainable_variables, items):
        """Keras' gradient accumulation with each gradient weighted by its batch's `items` (module docstring, 6)."""
        accumulators = [self._accumulated_gradients[self._get_variable_index(v)] for v in trainable_variables]

        def update():
            total = ops.maximum(self._accumulated_items + items, 1.0)  # 0 items: every gradient is 0
            summed = [(g * ops.cast(items, g.dtype) + a) / ops.cast(total, g.dtype)
                      for g, a in zip(grads, accumulators)]
            summed = self._clip_gradients(summed)
            self._apply_weight_decay(trainable_variables)
            self._backend_update_step(summed, trainable_variables, self.learning_rate)
            self._backend_reset_gradient_accumulators()
            self.assign(self._accumulated_items, ops.zeros((), "float32"))

        def accumulate():
            self._backend_increment_gradient_accumulators([g * ops.cast(items, g.dtype) for g in grads], accumulators)
            self.assign_add(self._accumulated_items, items)

        ops.cond((self._iterations + 1) % self.gradient_accumulation_steps == 0, update, accumulate)

    def update_step(self, gradient, variable, learning_rate):
        self._update(gradient, variable, learning_rate, None)

    def _step_constants(self, learning_rate, gradient_scale) -> dict:
        """The float32 scalars every variable's `adamw_update` in one step shares, computed once per step:
        per variable they were a quarter of the training graph's ops (issue 12: MiniLM's 3,991 -> 2,808),
        traced and optimized before the first step."""
        step = ops.cast(self.iterations + 1, "float32")
        beta_1, beta_2 = ops.cast(self.beta_1, "float32"), ops.cast(self.beta_2, "float32")
        learning_rate = ops.cast(learning_rate, "float32")
        weight_decay = ops.cast(self.weight_decay or 0.0, "float32")
        return {"gradient_scale": ops.ones((), "float32") if gradient_scale is None else gradient_scale,
                "learning_rate": learning_rate,
                "weight_decay": weight_decay, "decay_rate": weight_decay * learning_rate,
                "no_decay": ops.zeros((), "float32"), "beta_1": beta_1, "beta_2": beta_2,
                "epsilon": ops.cast(self.epsilon, "float32"),
                "beta_1_power": ops.power(beta_1, step), "beta_2_power": ops.power(beta_2, step)}

    def _update(self, gradient, variable, learning_rate, gradient_scale, constants: dict | None = None):
        """Weight decay and Adam's update of one variable by `gradient` (times `gradient_scale`, the
        global-norm clip's, unless None): one `adamw_update` where `_kernel_variables` allows, with the
        step's `constants` (`_step_constants`; computed here when None)."""
        factor = self.learning_rate_factor(variable)
        decay = bool(self.weight_decay) and self._use_weight_decay(variable)
        parts = self._kernel_variables(variable)
        if parts is None:  # Keras' own ops
            learning_rate = ops.cast(learning_rate, variable.dtype)
            if factor != 1.0:
                learning_rate = learning_rate * factor
            if gradient_scale is not None:
                gradient = gradient * ops.cast(gradient_scale, gradient.dtype)
            if decay:
                self.assign_sub(variable, variable * ops.cast(self.weight_decay, variable.dtype) * learning_rate)
            return super().update_step(gradient, variable, learning_rate)
        c = constants or self._step_constants(learning_rate, gradient_scale)
        learning_rate, decay_rate = c["learning_rate"], c["decay_rate"] if decay else c["no_decay"]
        if factor != 1.0:  # layer-wise decay: this variable's own rate, and its decay with it
            learning_rate = learning_rate * factor
            decay_rate = c["weight_decay"] * learning_rate if decay else decay_rate
        adamw_update(*parts, gradient, c["gradient_scale"], learning_rate, decay_rate, c["beta_1"], c["beta_2"],
                     c["epsilon"], c["beta_1_power"], c["beta_2_power"])

    def _kernel_variables(self, variable):
        """The resource handles of the weights and moments that `adamw_update` updates for
        `variable`, or None for Keras' own update: amsgrad, TPUs, variables that are not float32 or
        are distributed (Keras' own distributed update; the replica-local path of several replicas
        passes each replica's own copy)."""
        if self.amsgrad or isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
            return None  # (TPUs: packed variables, Keras' own update)
        index = self._get_variable_index(variable)
        parts = []
        for part in (variable, self._momentums[index], self._velocities[index]):
            part = self._local(part)
            part = part.value if isinstance(part, keras.Variable) else part
            if (not isinstance(part, tf.Variable) or isinstance(part, tf.distribute.DistributedValues)
                    or part.dtype != tf.float32):
                return None
            parts.append(part.handle)
        return parts

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"layerwise_lr_decay": self.layerwise_lr_decay, "num_layers": self.num_layers,
                       "no_weight_decay_names": list(self.no_weight_decay_names)})
        return config


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def adamw_update(variable, momentum, velocity, gradient, gradient_scale, learning_rate, decay_rate, beta_1, beta_2,
                 epsilon, beta_1_power, beta_2_power):
    """One AdamW step in one XLA-compiled pass over a float32 variable and its two moments (the resource
    handles of tf.Variables, so that one trace serves every variable): the gradient times `gradient_scale`
    (a global-norm clip's, or 1), the decoupled weight decay `w -= decay_rate * w` (weight decay x learning
    rate, or 0), then Keras' Adam update term for term (`keras.optimizers.Adam.update_step`). XLA compiles
    it once per variable shape."""
    def read(handle):
        return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)

    weights, momentum_t, velocity_t = read(variable), read(momentum), read(velocity)
    gradient = tf.cast(gradient, tf.float32) * gradient_scale
    weights = weights - weights * decay_rate
    momentum_t = momentum_t + (gradient - momentum_t) * (1.0 - beta_1)
    velocity_t = velocity_t + (tf.square(gradient) - velocity_t) * (1.0 - beta_2)
    alpha = learning_rate * tf.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
    tf.raw_ops.AssignVariableOp(resource=momentum, value=momentum_t)
    tf.raw_ops.AssignVariableOp(resource=velocity, value=velocity_t)
    weights = weights - (momentum_t * alpha) / (tf.sqrt(velocity_t) + epsilon)
    tf.raw_ops.AssignVariableOp(resource=variable, value=weights)


def create_optimizer(model: keras.Model, *, learning_rate: float, total_steps: int, warmup_ratio: float = 0.1,
                     weight_decay: float = 0.01, clipnorm: float | None = 1.0, layerwise_lr_decay: float | None = None,
                     epsilon: float = 1e-6, schedule: str = "linear",
                     num_layers: int | None = None, gradient_accumulation_steps: int = 1,
                     loss_scale: bool = False) -> keras.optimizers.Optimizer:
    """The BERT fine-tuning optimizer for `model`.

    AdamW with warmup + linear decay (or another `schedule`), no weight decay on LayerNorm weights and
    biases, global-norm clipping, optional layer-wise LR decay, gradient accumulation and dynamic loss scaling.

    Steps: `total_steps` counts optimizer *updates*. With `gradient_accumulation_steps=k` and
    `model.fit` over `n` batches in total, pass `total_steps = n // k`. Keras applies an update on
    every k-th batch (with the mean of the k gradients, clipped after averaging); in between the
    weights do not move. `optimizer.iterations` reports updates, the learning-rate schedule is
    evaluated on updates, and any leftover `n % k` batches at the end are accumulated but never
    applied. With `loss_scale=True`, a batch with non-finite gradients is dropped entirely (not
    counted, not accumulated), so an update happens after k finite batches.

    Args:
        model: the model to train; used to infer `num_layers` for layer-wise LR decay.
        learning_rate: peak learning rate, reached at the end of warmup.
        total_steps: optimizer updates over the whole run (see above).
        warmup_ratio: fraction of `total_steps` spent in linear warmup.
        weight_decay: decoupled weight decay (multiplied by the learning rate, as in Keras AdamW).
        clipnorm: global gradient-norm clip (`global_clipnorm`), or `None` for no clipping.
        schedule: the learning rate after the warmup, one of `LR_SCHEDULES` (`learning_rate_schedule`).
        epsilon: Adam's epsilon (1e-6 as the original BERT; transformers' Trainer uses 1e-8).
        layerwise_lr_decay: per-layer decay in (0, 1] (e.g. 0.9), or `None` for no LLRD.
        num_layers: encoder layers; inferred from `model`'s variable paths when `None`.
        gradient_accumulation_steps: micro-batches per optimizer update; 1 = no accumulation.
        loss_scale: wrap in `keras.optimizers.LossScaleOptimizer` (for "mixed_float16"; note that
            `model.compile` already does this by itself when the model's policy is mixed_float16).

    Returns:
        A `BertAdamW`, or a `LossScaleOptimizer` wrapping one.

    Raises:
        ValueError: if an argument is out of range, or if LLRD is requested for a model without
            `encoder_layer_<i>` variables and no `num_layers` is given.

    Example:
        >>> from tfbert import BertBackbone, BertConfig
        >>> backbone = BertBackbone(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                                    num_attention_heads=2, intermediate_size=64))
        >>> optimizer = create_optimizer(backbone, learning_rate=2e-5, total_steps=1000, layerwise_lr_decay=0.9)
        >>> optimizer.learning_rate.numpy().item()  # step 0 of the warmup
        0.0
    """
    if int(gradient_accumulation_steps) != gradient_accumulation_steps or gradient_accumulation_steps < 1:
        raise ValueError(f"create_optimizer: gradient_accumulation_steps must be an integer >= 1, "
                         f"got {gradient_accumulation_steps!r}")
    if clipnorm is not None and not clipnorm > 0:
        raise ValueError(f"create_optimizer: clipnorm must be > 0 or None, got {clipnorm!r}")
    if layerwise_lr_decay not in (None, 1.0) and num_layers is None:
        num_layers = count_encoder_layers(model.trainable_variables)
        if num_layers == 0:
            raise ValueError(f"create_optimizer: layerwise_lr_decay={layerwise_lr_decay} needs encoder layers, "
                             f"but no trainable variable of model {model.name!r} has 'encoder_layer_<i>/' in its "
                             "path; pass num_layers explicitly")
    rates = learning_rate_schedule(schedule, learning_rate, total_steps, warmup_steps_for(total_steps, warmup_ratio))
    optimizer = BertAdamW(
        learning_rate=rates,
        weight_decay=weight_decay,
        # Adam hyper-parameters of the original BERT (`AdamWeightDecayOptimizer`): beta_1 0.9,
        # beta_2 0.999, epsilon 1e-6 by default (Keras's default is 1e-7, PyTorch's and transformers' 1e-8).
        beta_1=0.9, beta_2=0.999, epsilon=epsilon,
        global_clipnorm=clipnorm,
        # Keras rejects 1 ("must be >= 2"); None means "update every batch".
        gradient_accumulation_steps=gradient_accumulation_steps if gradient_accumulation_steps > 1 else None,
        layerwise_lr_decay=layerwise_lr_decay,
        num_layers=num_layers,
    )
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
