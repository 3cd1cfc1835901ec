"""Where a finished run's head sends each class, and how its rows line up with the features now.

Loads a run folder's ``checkpoint.pt`` (the model after the last task) and its ``results.json``
(benchmark, model, head, strategy) and gives, on the test set:
- the class-IL confusion matrix (true class down, predicted class across);
- cos(w_k, mu_c): each head row against each class's mean normalised feature (cosine-type heads);
- each class's mean cosine between its test features and its own row;
- each unit's row norm and its mean logit over all the test images (a linear head's: WA aligns the
  norms, which need not remove the new classes' advantage in the logits).

A class that is never predicted while its task-IL accuracy holds has a row that no longer points
where its features are (the LUCIR rows of benchmarks/README.md: frozen old rows, features that drifted).

    python benchmarks/head_alignment.py runs/split_cifar10/lucir-m500-momentum0-seed0 \
        --output head_alignment_lucir.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from common import provenance, save

from lifelong_kd.augment import BatchAugment
from lifelong_kd.checkpoint import load_checkpoint
from lifelong_kd.data import make_stream
from lifelong_kd.models import build_model
from lifelong_kd.strategies import STRATEGIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder with checkpoint.pt and results.json")
    parser.add_argument("--output", default="head_alignment.json")
    args = parser.parse_args()
    config = json.loads((args.run / "results.json").read_text())["config"]
    checkpoint, notes = load_checkpoint(args.run)
    for note in notes:
        print(note)
    stream = make_stream(config["benchmark"], data_root=Path(config["data_root"]), n_tasks=config["n_tasks"],
                         max_train_per_class=config["max_train_per_class"],
                         first_task_classes=config["first_task_classes"])
    strategy = STRATEGIES[config["strategy"]]
    model = build_model(config["model"], stream.image_shape[0], stream.num_classes, config["head"],
                        last_relu=not strategy.features_before_relu)
    for size in checkpoint["task_sizes"]:
        model.grow(size)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    augment = BatchAugment(stream.mean, stream.std, stream.crop_padding, stream.hflip, torch.device("cpu"), False)
    features, labels = [], []
    with torch.no_grad():
        for task in stream.tasks:
            for begin in range(0, len(task.test.x), 500):
                features.append(model.features(augment.eval(task.test.x[begin : begin + 500])).float())
                labels.append(task.test.y[begin : begin + 500])
        features, labels = torch.cat(features), torch.cat(labels)
        logits = model.head(features)
        predicted = logits.argmax(dim=1)
        n = model.num_classes
        confusion = torch.zeros(n, n, dtype=torch.long)
        confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
        unit = F.normalize(features, dim=1)
        means = F.normalize(torch.stack([unit[labels == c].mean(dim=0) for c in range(n)]), dim=1)
        weight = model.head.weight.float() if hasattr(model.head, "weight") else None
        rows = None if weight is None else F.normalize(weight, dim=1)
        alignment = None if rows is None or rows.shape[0] != n else rows @ means.T
        own = None if alignment is None else [(unit[labels == c] @ rows[c]).mean().item() for c in range(n)]
        mean_logits = logits.mean(dim=0).tolist()
        norms = None if weight is None else weight.norm(dim=1).tolist()
    print("class-IL confusion (true down, predicted across):\n", confusion)
    if alignment is not None:
        torch.set_printoptions(precision=2, linewidth=160)
        print("cos(row k, class-mean c), rows down:\n", alignment)
        print("mean cos of each class's features with its own row:", [round(v, 2) for v in own])
    print("mean logit of each unit over the test images:", [round(v, 2) for v in mean_logits])
    if norms is not None:
        print("row norms:", [round(v, 2) for v in norms])
    payload = {**provenance(), "run": str(args.run), "strategy": config["strategy"], "head": config["head"],
               "confusion": confusion.tolist(),
               "row_class_mean_cosine": None if alignment is None else alignment.tolist(),
               "own_row_cosine": own, "mean_logits": mean_logits, "row_norms": norms}
    print(f"saved {save(args.output, payload)}")


if __name__ == "__main__":
    main()
