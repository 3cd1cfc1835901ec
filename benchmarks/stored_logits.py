"""How good the logits DER and DER++ replay are: for each run folder, the share of the memory's samples
whose stored logits (over the units they cover) put the label first, and their mean top probability.

    python benchmarks/stored_logits.py runs/budget/der-m500-budget6.6e11-seed0 ... --output stored_logits.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import provenance, save

from lifelong_kd.checkpoint import CHECKPOINT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of der, derpp or xder")
    parser.add_argument("--output", default="stored_logits.json")
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        # the buffer alone, from a checkpoint of any format version
        buffer = torch.load(run / CHECKPOINT, weights_only=True, map_location="cpu")["strategy"]["buffer"]
        size = buffer["size"]
        logits, labels, units = buffer["logits"][:size], buffer["y"][:size], buffer["logit_units"][:size]
        first = [int(row[:u].argmax()) == int(label) for row, label, u in zip(logits, labels, units)]
        top = [float(row[:u].softmax(0).max()) for row, u in zip(logits, units)]
        rows.append({"run": str(run), "samples": size, "label_first_percent": 100 * sum(first) / size,
                     "mean_top_probability": sum(top) / size})
        print(f"{run}: label first {rows[-1]['label_first_percent']:.1f} % of {size}, "
              f"mean top probability {rows[-1]['mean_top_probability']:.3f}")
    print(f"saved {save(args.output, {**provenance(), 'runs': rows})}")


if __name__ == "__main__":
    main()
