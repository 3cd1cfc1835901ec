"""Does a process's thread count change the arithmetic of a bf16 run, or only the order of its sums?

On Split-CIFAR-10 (1,000 images per class, reduced ResNet-18, bf16 autocast, channels_last), in one
child process per thread count (1 and 2):
- ``gradients``: on the same model (DER++ after one task, trained once in a child of its own) and
  the same 6 batches of 96 training images, the bf16 gradient against the float64 one: its relative
  error ||g - g64|| / ||g64|| and its scale <g, g64> / <g64, g64> (below 1: shrunk on average);
- ``steps``: the first two tasks of DER++ (seed 1), step by step: a hash of each step's images and
  labels, and its loss.
The same error and scale at both thread counts, with the same inputs at every step, leave no
systematic difference between the runs: only float rounding, which bf16 turns into a different
trajectory within a few steps.

    python benchmarks/thread_numerics.py          # ~3 min on 2 EPYC cores; writes thread_numerics.json
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import SHARED_DATA, derpp_first_tasks, provenance, save

import lifelong_kd.phase_training as phase_training
from lifelong_kd.data import make_stream
from lifelong_kd.models import build_model
from lifelong_kd.runner import Runner
from lifelong_kd.training import TrainConfig


def run_derpp(data_root: Path, tasks: int, seed: int) -> Runner:
    config = TrainConfig(amp="bf16", compile="off", channels_last=True, eval_batch_size=1000, seed=seed)
    return derpp_first_tasks(data_root, 1000, tasks, seed, config)


def gradients(data_root: Path, model_path: Path) -> list[dict]:
    model = build_model("reduced-resnet18", 3, 10, "fixed")
    model.load_state_dict(torch.load(model_path, weights_only=True))
    data = make_stream("split-cifar10", data_root=data_root, n_tasks=5, max_train_per_class=1000)
    xs, ys = torch.cat([t.train.x for t in data.tasks]), torch.cat([t.train.y for t in data.tasks])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (data.mean, data.std))

    def gradient(x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, bf16: bool) -> torch.Tensor:
        net = copy.deepcopy(model).to(dtype).train().to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = net.backbone(x.to(dtype).contiguous(memory_format=torch.channels_last))
        torch.nn.functional.cross_entropy(net.head(features.to(dtype)), y).backward()
        return torch.cat([p.grad.double().flatten() for p in net.parameters()])

    rows = []
    for batch in range(6):
        index = torch.randperm(len(ys), generator=torch.Generator().manual_seed(batch))[:96]
        x, y = (xs[index].float() / 255 - mean) / std, ys[index]
        exact, bf16 = gradient(x, y, torch.float64, False), gradient(x, y, torch.float32, True)
        rows.append({"relative_error": ((bf16 - exact).norm() / exact.norm()).item(),
                     "scale": ((bf16 @ exact) / (exact @ exact)).item()})
    return rows


def steps(data_root: Path) -> list[dict]:
    trace = []
    train_step = phase_training.train_step

    def traced(runner, ctx, phase, forward, optimizer, raw, y):
        value = train_step(runner, ctx, phase, forward, optimizer, raw, y)
        digest = hashlib.sha256(raw.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]
        trace.append({"task": ctx.task.index, "inputs": digest, "loss": value.item()})
        return value

    phase_training.train_step = traced
    run_derpp(data_root, 2, seed=1)
    return trace


def child(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.child == "train":
        torch.save(run_derpp(args.data_root, 1, seed=0).model.state_dict(), args.model)
        return
    result = {"gradients": gradients(args.data_root, args.model), "steps": steps(args.data_root)}
    Path(args.result).write_text(json.dumps(result))


def in_child(mode: str, threads: int, data_root: Path, model: Path, result: Path | None = None) -> None:
    argv = [sys.executable, __file__, "--child", mode, "--threads", str(threads), "--data-root", str(data_root),
            "--model", str(model), "--result", str(result)]
    subprocess.run(argv, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    parser.add_argument("--child", choices=["train", "measure"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--result", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    origin = provenance()
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "model.pt"
        in_child("train", 2, args.data_root, model)
        measured = {}
        for threads in (1, 2):
            in_child("measure", threads, args.data_root, model, Path(scratch) / f"{threads}.json")
            measured[threads] = json.loads((Path(scratch) / f"{threads}.json").read_text())
    one, two = measured[1]["steps"], measured[2]["steps"]
    same_inputs = [a["inputs"] == b["inputs"] for a, b in zip(one, two)]
    first_loss_difference = next((i for i, (a, b) in enumerate(zip(one, two)) if a["loss"] != b["loss"]), None)
    summary = {
        threads: {key: [row[key] for row in measured[threads]["gradients"]] for key in ("relative_error", "scale")}
        for threads in (1, 2)
    }
    for threads, values in summary.items():
        print(f"{threads} thread(s): bf16 gradient relative error "
              + " ".join(f"{v:.4f}" for v in values["relative_error"])
              + ", scale " + " ".join(f"{v:.4f}" for v in values["scale"]))
    print(f"steps with the same inputs: {sum(same_inputs)} of {len(same_inputs)}; "
          f"first step whose loss differs: {first_loss_difference}")
    for index in (0, 1, 2, 5, 30, 60, len(one) - 1):
        print(f"  step {index}: loss {one[index]['loss']:.5f} (1 thread), {two[index]['loss']:.5f} (2 threads)")
    path = save("thread_numerics.json", {**origin, "gradients": summary, "same_inputs": all(same_inputs),
                                         "steps_compared": len(same_inputs),
                                         "first_loss_difference": first_loss_difference,
                                         "losses": {"1": [s["loss"] for s in one], "2": [s["loss"] for s in two]}})
    print(f"-> {path} ({origin['machine']['cpu']})")


if __name__ == "__main__":
    main()
