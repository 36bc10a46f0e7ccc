"""The paper study's memory plan, per task and router, and its validation against CPU peaks.

    python benchmarks/memory_plan.py [--configfile config/study/paper.yaml] [--gpu-mem-gb 80]
                                     [--out benchmarks/results/memory_plan.json]

- ``plan``: for every task × router of the study, what the workflow plans before submitting
  (``anira.memory``): the estimated longest training sequence, the micro-batch that fits
  ``--gpu-mem-gb`` and the training's planned peak; the longest sequence of any split, the
  evaluation batch that fits and its planned peak.
- ``validation``: the plan of a CPU training step (float32, no autocast copies) against its peak
  measured with ``torch.profiler``'s memory timeline (``anira.memory.measured_peak``), at paper
  width (d_model 384) and shapes like the study's (BREVO, LANO, Floyd–Warshall, MANO's D = 14):
  the relative error (plan − measured) / measured. The GPU's peak is measured by
  ``benchmarks/gpu_check.py`` when a GPU is lent.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from omegaconf import OmegaConf

from anira.io import atomic_write_json, measured_on
from anira.memory import (
    GB,
    estimated_shapes,
    fit_evaluation,
    fit_training,
    measured_peak,
    training_plan,
)
from anira.model import ModelConfig
from anira.spec import compose_run, study_configs

ROOT = Path(__file__).resolve().parents[1]
PAPER = ModelConfig(d_model=384, n_heads=6)
VALIDATION = [  # (label, model, batch, length)
    ("brevo-like", dataclasses.replace(PAPER, router="early", vocab_size=35), 8, 154),
    ("lano-like", dataclasses.replace(PAPER, router="online", vocab_size=7), 2, 422),
    ("floyd-warshall-like", dataclasses.replace(PAPER, router="fixed", vocab_size=69), 2, 455),
    ("mano-like", dataclasses.replace(PAPER, router="early", vocab_size=46, max_depth=14), 16, 33),
]


def plan_rows(study, limit_gb: float) -> list[dict]:
    rows = []
    for task in study.tasks:
        vocab, train_len, eval_len = estimated_shapes(task, study.scale, 0)
        for router in study.routers:
            spec = compose_run(task, router, study.scale, 0)
            mcfg = spec.model_for(vocab, eval_len)
            what = f"task {task} router {router}"
            train = fit_training(mcfg, spec.train.batch_size, train_len, limit_gb, what)
            evaluate = fit_evaluation(mcfg, spec.eval_batch_size, eval_len, limit_gb, what)
            rows.append(
                {
                    "task": task,
                    "router": router,
                    "longest_train_sequence": train_len,
                    "batch": train.batch,
                    "micro_batch": train.micro_batch,
                    "train_peak_gb": train.total / GB,
                    "longest_sequence": eval_len,
                    "eval_batch": evaluate.batch,
                    "eval_peak_gb": evaluate.total / GB,
                }
            )
            print(
                f"{task:26} {router:7} train T={train_len:5} micro {train.micro_batch:3}/"
                f"{train.batch} {train.total / GB:6.2f} GB | eval T={eval_len:5} batch "
                f"{evaluate.batch:4} {evaluate.total / GB:6.2f} GB",
                flush=True,
            )
    return rows


def validation_rows() -> list[dict]:
    rows = []
    for label, mcfg, batch, length in VALIDATION:
        start = time.perf_counter()
        planned = training_plan(mcfg, batch, batch, length, cuda=False).total
        measured = measured_peak(mcfg, batch, length)
        row = {
            "shape": label,
            "router": mcfg.router,
            "max_depth": mcfg.max_depth,
            "batch": batch,
            "length": length,
            "planned_mb": planned / 1e6,
            "measured_mb": measured / 1e6,
            "relative_error": (planned - measured) / measured,
        }
        rows.append(row)
        print(f"validation {row} ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configfile", default="config/study/paper.yaml")
    parser.add_argument("--gpu-mem-gb", type=float, default=80.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/memory_plan.json"))
    args = parser.parse_args()
    study = OmegaConf.load(ROOT / args.configfile)
    result = {
        **measured_on(study_configs(args.configfile)),
        "configfile": args.configfile,
        "gpu_mem_gb": args.gpu_mem_gb,
        "plan": plan_rows(study, args.gpu_mem_gb),
        "validation": validation_rows(),
    }
    errors = [abs(row["relative_error"]) for row in result["validation"]]
    print(f"validation: plan within {max(errors):.1%} of the measured CPU peak")
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
