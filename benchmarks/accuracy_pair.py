"""The command line shared by the accuracy benchmarks (`ner_wnut17.py`, `qa_xquad.py`): tfbert's pipeline
and the transformers/PyTorch reference, each in its own process, one after the other, then one table."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile


def main(script: str, doc: str, recipe: dict, run_tfbert, run_torch, columns: dict[str, str],
         needs: tuple[str, ...] = ("torch", "transformers"), flags: tuple[str, ...] = ("seed",)) -> int:
    """`run_tfbert(out_dir) -> row` and `run_torch() -> row` (in a child process); `columns` maps a
    row key to its table heading (numbers are shown with 4 significant decimals); `flags` are recipe
    keys that may be set on the command line (both runs use them)."""
    name = os.path.splitext(os.path.basename(script))[0]
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("tfbert", "torch"))
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), f"tfbert-{name}"))
    for flag in flags:
        parser.add_argument(f"--{flag}", type=type(recipe[flag]), default=recipe[flag], help="(both runs)")
    parser.add_argument("--_torch_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    recipe.update({flag: getattr(args, flag) for flag in flags})
    if args._torch_child:  # the PyTorch run in its own process, so the two never share memory
        print(json.dumps(run_torch()))
        return 0
    try:
        for module in needs:
            __import__(module)
    except ImportError as e:
        raise SystemExit(f"benchmarks/{name}.py needs {', '.join(needs)}, which come with tfbert's [bench] extra: "
                         f"pip install -e \".[bench]\" ({e.name or e} is missing)")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    if args.only in (None, "tfbert"):
        rows.append(run_tfbert(os.path.join(args.out, "tfbert")))
    if args.only in (None, "torch"):
        passed = [part for flag in flags for part in (f"--{flag}", str(getattr(args, flag)))]
        child = subprocess.run([sys.executable, script, "--_torch_child", *passed], capture_output=True, text=True)
        if child.returncode:
            raise SystemExit(child.stderr[-3000:])
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    keys = ["implementation", *columns, "seconds"]
    print("| " + " | ".join(["implementation", *columns.values(), "seconds"]) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        cells = [f"{row[k]:.4f}" if isinstance(row[k], float) and k != "seconds" else str(row[k]) for k in keys]
        print("| " + " | ".join(cells) + " |")
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    return 0


def run_pipeline(script: str, out_dir: str, recipe: dict) -> dict:
    """Runs a tfbert training pipeline with the recipe's flags; returns its metrics.json."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, os.path.join(root, "pipelines", script), "--output_dir", out_dir,
               "--log_dir", os.path.join(out_dir, "tb")] + [f"--{k}={v}" for k, v in recipe.items()]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    with open(os.path.join(out_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def torch_adamw(model, recipe: dict, examples: int):
    """transformers' fine-tuning optimizer for the recipe: AdamW (no weight decay on biases and LayerNorm)
    with linear warmup and decay over `epochs` passes of `examples` in batches of `batch_size`."""
    import torch
    import transformers

    steps = recipe["epochs"] * -(-examples // recipe["batch_size"])
    no_decay = ("bias", "LayerNorm.weight")
    groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
               "weight_decay": recipe["weight_decay"]},
              {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=recipe["learning_rate"], eps=recipe["adam_epsilon"])
    return optimizer, transformers.get_linear_schedule_with_warmup(optimizer, int(recipe["warmup_ratio"] * steps),
                                                                   steps)


def torch_step(model, loss, optimizer, scheduler) -> float:
    """One PyTorch update as transformers' Trainer makes it: backward, global-norm clip at 1.0, AdamW
    step, schedule step; returns the loss."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    return float(loss.detach())
