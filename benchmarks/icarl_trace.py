"""Per-step trace of iCaRL's training: what happens in a task whose current classes are not learnt.

Runs the Split-CIFAR-10 protocol of ``split_cifar10.py`` (reduced ResNet-18, batch 32, 1 epoch,
bf16, channels_last) for iCaRL at each memory size and seed, and records after every SGD step:

- ``loss``: iCaRL's BCE (classification + distillation);
- ``current_task_il``: on the batch's rows, the share whose larger current-task logit is the right
  one (the task-IL accuracy the test matrix shows, on training data). iCaRL's batches mix in
  exemplars of old classes, which always count as errors, so this is a lower bound;
- ``new_gap``: mean |s_a - s_b| between the two current-task logits on those rows;
- ``feature_std``: the batch's standard deviation of each feature, averaged over features
  (near 0: every image maps to the same representation);
- ``dead_features``: the share of feature dimensions that are 0 for every image of the batch;
- ``grad_norm``: the L2 norm of all gradients of the step.

    python benchmarks/icarl_trace.py --memories 200 500 --seeds 1 --output icarl_trace.json

The values are kept on the device and read once per task, so the trace does not slow the loop.

At the end of each task (before the memory update) it also measures the current task's task-IL
accuracy, on up to ``--check-images`` images, four ways: on the test set in eval mode (what the
accuracy matrix records), on the test set with BatchNorm using each batch's own statistics, on the
training set in eval mode (no augmentation), and on the test set after re-estimating BatchNorm's
running statistics on what the task trained on (``bn_checks``). The batch-statistics check uses
shuffled test batches of 32, as training does.
"""

import argparse
import copy
import time
from pathlib import Path

import torch
from common import SHARED_DATA, provenance, save

from lifelong_kd.cli import build_parser
from lifelong_kd.context import Step, TaskContext
from lifelong_kd.data import Split
from lifelong_kd.run_command import prepare_run

QUANTITIES = ("loss", "current_task_il", "new_gap", "feature_std", "dead_features", "grad_norm")


def trace_steps(runner) -> dict[int, list[torch.Tensor]]:
    """Wrap the strategy's ``loss`` (to keep the step's value) and ``after_step`` so that each step
    appends its quantities (one tensor) per task."""
    strategy = runner.strategy
    after_step, loss = strategy.after_step, strategy.loss
    trace: dict[int, list[torch.Tensor]] = {}
    last_loss: list[torch.Tensor] = []

    def recording_loss(ctx: TaskContext, step: Step) -> torch.Tensor:
        value = loss(ctx, step)
        last_loss[:] = [value.detach()]
        return value

    def recording_after_step(ctx: TaskContext, step: Step) -> None:
        with torch.no_grad():
            current = step.logits[: step.n_current, ctx.n_old : ctx.n_seen].float()
            target = step.y[: step.n_current] - ctx.n_old
            features = step.features.float()
            grads = [p.grad.float().norm() for p in runner.model.parameters() if p.grad is not None]
            trace.setdefault(ctx.task.index, []).append(torch.stack([
                last_loss[0].float(),
                (current.argmax(1) == target).float().mean(),
                (current[:, 0] - current[:, 1]).abs().mean(),
                features.std(0).mean(),
                (features.abs().amax(0) == 0).float().mean(),
                torch.stack(grads).norm(),
            ]))
        after_step(ctx, step)

    strategy.loss, strategy.after_step = recording_loss, recording_after_step
    return trace


def current_task_il(model, ctx: TaskContext, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Task-IL accuracy (%) of ``model`` on uint8 images ``x`` of the current task, in the model's mode."""
    correct = 0
    with torch.no_grad(), ctx.autocast():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
            logits = model(ctx.normalise(xb.to(ctx.device))).float()[:, ctx.n_old : ctx.n_seen]
            correct += int((logits.argmax(1) == yb.to(ctx.device) - ctx.n_old).sum())
    return 100.0 * correct / len(y)


def bn_checks(ctx: TaskContext, split: Split, n_images: int) -> dict[str, float]:
    """The current task's task-IL accuracy in eval mode, and three ways that isolate BatchNorm's statistics.

    ``split`` is what the task trained on (iCaRL: the task's data and the exemplars).
    """
    test, train = ctx.task.test, ctx.task.train
    generator = torch.Generator().manual_seed(0)
    pick = torch.randperm(len(train.y), generator=generator)[:n_images]
    shuffled = torch.randperm(len(test.y), generator=generator)
    mixed = torch.randperm(len(split.y), generator=generator)[:n_images]
    model = ctx.model
    was_training = model.training
    model.eval()
    checks = {
        "test_eval_mode": current_task_il(model, ctx, test.x, test.y),
        "train_eval_mode": current_task_il(model, ctx, train.x[pick], train.y[pick]),
    }
    batch_stats = copy.deepcopy(model).train()
    checks["test_batch_statistics"] = current_task_il(
        batch_stats, ctx, test.x[shuffled], test.y[shuffled], batch_size=32)
    recalibrated = copy.deepcopy(model).train()
    for module in recalibrated.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the batches below
    with torch.no_grad(), ctx.autocast():
        for chunk in split.x[mixed].split(32):
            recalibrated(ctx.normalise(chunk.to(ctx.device)))
    checks["test_recalibrated_bn"] = current_task_il(recalibrated.eval(), ctx, test.x, test.y)
    model.train(was_training)
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA / "cifar10-jpeg.zip")
    parser.add_argument("--memories", nargs="+", type=int, default=[200, 500])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--lr", type=float, help="override iCaRL's lr")
    parser.add_argument("--head", choices=["incremental", "fixed"], default="incremental")
    parser.add_argument("--check-images", type=int, default=2000, help="training images for the BatchNorm checks")
    parser.add_argument("--max-train-per-class", type=int, help="a smaller stream, for a quick check")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/icarl_trace"))
    parser.add_argument("--output", default="icarl_trace.json")
    args = parser.parse_args()
    origin = provenance()
    runs = []
    for memory in args.memories:
        for seed in args.seeds:
            argv = [
                "run", "--benchmark", "split-cifar10", "--data-root", str(args.data_root), "--strategy", "icarl",
                "--model", "reduced-resnet18", "--epochs", "1", "--batch-size", "32", "--seed", str(seed),
                "--amp", "bf16", "--channels-last", "--compile", "off", "--memory", str(memory),
                "--head", args.head, "--out", str(args.runs_dir / f"m{memory}-seed{seed}"), "--overwrite", "--quiet",
            ]
            if args.lr is not None:
                argv += ["--lr", str(args.lr)]
            if args.max_train_per_class:
                argv += ["--max-train-per-class", str(args.max_train_per_class)]
            start = time.perf_counter()
            runner = prepare_run(build_parser().parse_args(argv))
            trace = trace_steps(runner)
            checks: list[dict[str, float]] = []
            after_task = runner.strategy.after_task

            def checked_after_task(
                ctx: TaskContext, after_task=after_task, checks=checks, strategy=runner.strategy
            ) -> None:
                checks.append(bn_checks(ctx, strategy.training_split(ctx), args.check_images))
                after_task(ctx)

            runner.strategy.after_task = checked_after_task
            doc = runner.run()
            steps = {task: torch.stack(values).cpu() for task, values in trace.items()}
            task_il = doc["matrices"]["task_il"]
            runs.append({
                "memory": memory, "seed": seed, "lr": doc["config"]["hparams"]["lr"], "argv": ["lifelong-kd", *argv],
                "class_il_final": doc["metrics"]["class_il"]["final_accuracy"],
                "current_task_test_task_il": [task_il[t][t] for t in range(len(task_il))],
                "bn_checks": checks,
                "steps": {
                    str(task): {name: [round(v, 5) for v in values[:, i].tolist()] for i, name in enumerate(QUANTITIES)}
                    for task, values in steps.items()
                },
                "wall_seconds": time.perf_counter() - start,
            })
            print(f"icarl M={memory} seed {seed}: class-IL {runs[-1]['class_il_final']:.2f}, current-task test "
                  f"task-IL {[round(v, 1) for v in runs[-1]['current_task_test_task_il']]}")
            for task, values in steps.items():
                quarters = values.split((len(values) + 3) // 4)
                summary = "  ".join(
                    f"{name} " + "/".join(f"{chunk[:, i].mean():.3g}" for chunk in quarters)
                    for i, name in enumerate(QUANTITIES)
                )
                print(f"  task {task + 1} (quarters of the task): {summary}", flush=True)
                print("    end of task, current task-IL %: " + "  ".join(
                    f"{name} {value:.1f}" for name, value in checks[task].items()), flush=True)
    print(f"saved {save(args.output, {**origin, 'quantities': QUANTITIES, 'runs': runs})}")


if __name__ == "__main__":
    main()
