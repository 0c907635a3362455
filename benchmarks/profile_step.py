"""Where the time of one tfbert training step goes, from TensorFlow's profiler.

Profiles `--steps` training steps of MiniLM (all-MiniLM-L6-v2, the `minilm-l6` preset) with a 2-class
head, batch 32, synthetic ids without padding (the step `benchmarks/compare.py` times), and reads the
profiler's own trace (`plugins/profile/*/*.xplane.pb`, also viewable in TensorBoard's Profile tab) to
sum the time of every TensorFlow op by what it belongs to: the matmuls, the attention softmax,
LayerNorm, GELU, dropout, the embeddings (lookup and gradient), the optimizer update, the rest. Ops
run on both cores at once, so the op time is CPU time; the wall time of the steps is printed beside it.

    python benchmarks/profile_step.py                            # float32, seq 128
    python benchmarks/profile_step.py --policy mixed_bfloat16 --seq 32
    python benchmarks/profile_step.py --trainer keras_hub        # KerasHub's BertTextClassifier, for comparison
    tensorboard --logdir /tmp/tfbert-profile                     # the same trace, op by op

Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (category, pattern on the op's "scope/name:Type"), first match wins
CATEGORIES = [
    ("optimizer update", re.compile(r"(?i)^(bert_)?adam(_w)?/|^loss_scale_optimizer/|clip_by_global_norm|"
                                    r":(ResourceApplyAdam|AssignVariableOp|AssignAddVariableOp|AssignSubVariableOp)$")),
    ("embeddings (lookup, gradient)", re.compile(r"(?i)embedding|UnsortedSegmentSum|ResourceGather|GatherV2")),
    # oneDNN's kernels too (tfbert turns them on): _MklMatMul, _MklFusedMatMul, _MklNativeBatchMatMulV2, ...
    ("matmuls", re.compile(r":(_Mkl(Native)?)?(_?Fused)?(MatMul|BatchMatMulV2|BatchMatMulV3|Einsum)$")),
    ("attention softmax", re.compile(r"(?i)softmax")),
    ("LayerNorm", re.compile(r"(?i)layer_?norm|moments|rsqrt|batchnorm")),
    # tfbert's training GELU (fused_exact_gelu) and dropout masking run as XLA executables, unnamed in the trace
    ("GELU and dropout masking (XLA-fused)", re.compile(r":XlaCpuExecutable$")),
    ("GELU", re.compile(r"(?i)gelu|:Erf$|:Erfc$")),
    ("dropout", re.compile(r"(?i)dropout|StatelessRandom|RandomUniform")),
    ("loss", re.compile(r"(?i)loss|cross_?entropy|SparseSoftmax")),
]


OP_EVENT = re.compile(r"^[^\s:]+:[A-Za-z0-9_]+$")
XLA_EVENT = "CpuExecutable::ExecuteAsyncOnStream"  # one run of an XLA-compiled cluster, its fusions inside


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other (elementwise, reshapes, bias adds)"


def op_times(logdir: str) -> collections.Counter:
    """Seconds per TF op ("scope/name:Type") on the host, summed over the trace in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not paths:
        raise SystemExit(f"profile_step.py: the profiler wrote no trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    times = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                # TF op events are "scope/name:Type"; the executor and function events around them are not
                if OP_EVENT.match(name):
                    times[name] += event.duration_ps * 1e-12
                elif name == XLA_EVENT:
                    times["xla:XlaCpuExecutable"] += event.duration_ps * 1e-12
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", choices=["tfbert", "keras_hub"], default="tfbert")
    parser.add_argument("--policy", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=20, help="list the N slowest ops too")
    parser.add_argument("--keras_adam", action="store_true",
                        help="tfbert with Keras' element-wise Adam update instead of the fused kernel")
    parser.add_argument("--logdir", default=os.path.join(tempfile.gettempdir(), "tfbert-profile"))
    args = parser.parse_args()

    import tensorflow as tf

    import compare

    if args.keras_adam:
        from tfbert.training.optimization import BertAdamW

        BertAdamW._fused_adam_update = lambda self, *_: False
    if args.trainer == "tfbert":
        model = compare.compile_tfbert(compare.tfbert_classifier(None if args.policy == "float32" else args.policy),
                                       1000)
        names = None
    else:
        import keras

        from tfbert.checkpoints import resolve

        model = compare.keras_hub_classifier(resolve(compare.PRESET), None)
        model.compile(keras.optimizers.AdamW(compare.RECIPE["learning_rate"]),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        names = compare.KERAS_HUB_INPUTS
    step = compare.keras_step(model, *compare.synthetic_batch(args.seq), names=names)
    for _ in range(3):  # trace, compile and warm up outside the profile
        step()
    logdir = os.path.join(args.logdir, f"{args.trainer}-{args.policy}-seq{args.seq}"
                                       + ("-keras_adam" if args.keras_adam else ""))
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = (time.perf_counter() - start) / args.steps
    tf.profiler.experimental.stop()

    times = op_times(logdir)
    total = sum(times.values()) / args.steps
    by_category = collections.Counter()
    for name, seconds in times.items():
        by_category[category(name)] += seconds / args.steps
    print(f"{args.trainer} {args.policy}, batch {compare.BATCH} x seq {args.seq}: {wall * 1000:.0f} ms per step "
          f"(wall), {total * 1000:.0f} ms of op time per step on {os.cpu_count()} cores\n")
    print("| part of the step | op time per step | share |\n|---|---|---|")
    for label, seconds in by_category.most_common():
        print(f"| {label} | {seconds * 1000:.1f} ms | {seconds / total:.1%} |")
    print(f"\nslowest {args.top} ops (per step):")
    for name, seconds in times.most_common(args.top):
        print(f"  {seconds / args.steps * 1000:7.2f} ms  {category(name):<30} {name}")
    print(f"\ntrace: tensorboard --logdir {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
