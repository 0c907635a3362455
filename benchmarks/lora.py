"""LoRA vs full fine-tuning, side by side: `train_cls.py` with and without `--lora_rank`, each run in its own
process, on the default BBC News run and (if `../shared/data/sst2` is there) one epoch over 8,000 rows of
SST-2 train (drawn with the seed, `--max_train_examples`) scored on its dev set. Reports accuracy, trainable parameters, training throughput (median examples/s
of the run's steps), peak resident memory of the run's process and the size of what must be kept to
reload the fine-tuned model (`best.weights.h5` for full fine-tuning, `adapters/` for LoRA).

    python benchmarks/lora.py                       # BBC News and SST-2 8k, full vs --lora_rank 8
    python benchmarks/lora.py --data bbc --lora_rank 16 --lora_learning_rate 1e-3

LoRA trains far fewer weights and usually wants a higher learning rate than full fine-tuning
(`--lora_learning_rate`, default 5e-4, as PEFT's examples use); everything else is the pipeline's default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2 = os.path.join(ROOT, "..", "shared", "data", "sst2")


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def run(out_dir: str, flags: list[str]) -> dict:
    """One train_cls.py run in a child process; its metrics.json plus the child's peak RSS."""
    command = [sys.executable, os.path.join(ROOT, "pipelines", "train_cls.py"), "--output_dir", out_dir,
               "--log_dir", os.path.join(out_dir, "tb"), *flags]
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: measure each run in a fresh wrapper.
    wrapper = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    kept = os.path.join(out_dir, "adapters") if "--lora_rank" in flags else os.path.join(out_dir, "best.weights.h5")
    split = "test" if metrics.get("test") else "validation"
    return {"accuracy": metrics[split]["accuracy"], "split": split, "parameters": metrics["parameters"],
            "examples_per_second": metrics["examples_per_second"], "seconds": metrics["seconds"],
            "peak_rss_gb": int(result.stdout.strip().splitlines()[-1]) / 2**20, "checkpoint_mb": size_of(kept) / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=("bbc", "sst2", "both"), default="both")
    parser.add_argument("--lora_rank", type=int, default=8)
    parser.add_argument("--lora_learning_rate", type=float, default=5e-4)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "tfbert-lora"))
    args = parser.parse_args()
    datasets = {"bbc": ("BBC News (default run)", [])}
    if os.path.isdir(SST2):
        datasets["sst2"] = ("SST-2, 8,000 train rows, dev", [
            "--train_file", os.path.join(SST2, "train.tsv"), "--validation_file", os.path.join(SST2, "dev.tsv"),
            "--text_column", "sentence", "--label_column", "label", "--max_train_examples", "8000",
            "--epochs", "1"])
    names = [n for n in datasets if args.data in (n, "both")]
    rows = []
    for name in names:
        title, flags = datasets[name]
        for label, extra in (("full", []), (f"LoRA r={args.lora_rank}", [
                "--lora_rank", str(args.lora_rank), "--learning_rate", str(args.lora_learning_rate)])):
            result = run(os.path.join(args.out, f"{name}-{label.split()[0].lower()}"), flags + extra)
            rows.append({"data": title, "fine-tuning": label, **result})
            print(json.dumps(rows[-1]), flush=True)
    print("| data | fine-tuning | accuracy | trainable parameters | examples/s | peak RSS (GB) | "
          "checkpoint (MB) | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['fine-tuning']} | {r['accuracy']:.4f} ({r['split']}) | "
              f"{r['parameters']['trainable']:,} of {r['parameters']['total']:,} | {r['examples_per_second']:.1f} | "
              f"{r['peak_rss_gb']:.2f} | {r['checkpoint_mb']:.2f} | {r['seconds']:.0f} |")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
