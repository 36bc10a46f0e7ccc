"""What test modules share to BUILD things: tiny configs, workflow copies and subprocess runs,
models and batches, synthetic records and tables for the analyses and figures.

The independent reference implementations the tests compare against are in references.py."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from anira.analysis.decision_timing import FEATURES
from anira.analysis.probes import control_labels, out_of_fold, probes_table
from anira.analysis.records import SPLITS
from anira.compose import compose
from anira.io import write_manifest
from anira.model import AniraModel, ModelConfig

# --- configs shrunk to seconds of CPU work -------------------------------------------------------

# Shrinks a scale to a few seconds of CPU work; the real values live in config/scale/*.yaml.
TINY_SCALE = [
    "scale.model.d_model=32",
    "scale.model.n_heads=2",
    "scale.model.execution=dense",
    "scale.train.steps=12",
    "scale.train.batch_size=16",
    "scale.train.warmup_steps=2",
    "scale.train.checkpoint_every=4",
    "scale.train.log_every=4",
    "scale.eval.batch_size=32",
]


def tiny_task(task: str) -> list[str]:
    return [f"task={task}", "task.scales.mini.n_train=96", "task.scales.mini.n_eval_per_size=4"]


# --- the workflow and its commands ---------------------------------------------------------------

# pytest.approx tolerance for a number read back from an analysis CSV, which keeps 6 significant
# digits (anira.analysis.records.FLOAT_FORMAT)
FROM_CSV = {"rel": 1e-5}
ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd=ROOT, env=None, check=True):
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def study_copy(tmp_path: Path, study: str = "tiny") -> Path:
    """A runnable copy of the workflow whose default config is the named study."""
    for name in ("workflow", "config", "profiles", "src", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "slurm").symlink_to("profiles/slurm")
    grid = yaml.safe_load((ROOT / "config" / "study" / f"{study}.yaml").read_text())
    grid.update(results_root="results/mini", figures_dir="paper_figures")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(grid))
    return tmp_path


# --- stages run as users run them ----------------------------------------------------------------


def train_args(data_dir, out_dir, *extra):
    return [
        *tiny_task("brevo"),
        *TINY_SCALE,
        "router=online",
        "seed=1",
        "threads=1",
        f"data_dir={data_dir}",
        f"out_dir={out_dir}",
        *extra,
    ]


def anira(stage, args, limit_bytes=None):
    """``python -m anira.<stage> args`` with an optional file-size limit (``ulimit -f``)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", f"anira.{stage}", *args],
        capture_output=True,
        text=True,
        preexec_fn=limit if limit_bytes else None,
    )


def one_error_line(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def checksums(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(path.relative_to(root)): path.read_bytes() for path in files}


# --- dataset generation --------------------------------------------------------------------------


def run_generate(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anira.generate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


# --- training ------------------------------------------------------------------------------------


def train_cfg(data_dir, out_dir, router="early", extra=(), own_steps_factor=False):
    """BREVO at the tiny scale; its own mini steps factor (3) is pinned to 1 unless asked for."""
    pin = [] if own_steps_factor else ["task.scales.mini.training.steps_factor=1"]
    overrides = [
        *tiny_task("brevo"),
        *TINY_SCALE,
        f"router={router}",
        "seed=3",
        f"data_dir={data_dir}",
        f"out_dir={out_dir}",
        *pin,
        *extra,
    ]
    return compose("train", overrides)


# --- models and batches --------------------------------------------------------------------------

VOCAB_SIZE = 19


def pair(router: str, **kw) -> tuple[AniraModel, AniraModel]:
    """The same weights under dense and packed execution. The estimator is rescale_final: with
    the default unroll, a training forward of a router runs densely on both (expert_choice trains
    through the unroll only; act ignores the estimator and trains packed)."""
    cfg = dict(
        vocab_size=VOCAB_SIZE,
        max_seq_len=40,
        d_model=32,
        n_heads=4,
        max_depth=5,
        router=router,
        estimator="unroll" if router == "expert_choice" else "rescale_final",
    )
    if router == "random":  # the control's depths spread over 1..D
        cfg["depth_probs"] = (0.3, 0.2, 0.2, 0.2, 0.1)
        cfg["draw_salt"] = 3  # a seeded control: the salt reaches every execution path
    torch.manual_seed(0)
    dense = AniraModel(ModelConfig(**(cfg | kw | {"execution": "dense"})))
    # Spread the router's decisions so both paths see many depths.
    for p in dense.router.parameters():
        torch.nn.init.normal_(p, std=0.5)
    if router in ("online", "act"):  # halting logits around -1: depths spread over 1..D
        torch.nn.init.normal_(dense.router.head[-1].weight, std=0.2)
        torch.nn.init.constant_(dense.router.head[-1].bias, -1.0)
    if router == "expert_choice":  # the predictor's logits near 0: inference depths spread
        torch.nn.init.normal_(dense.router.predictor[-1].weight, std=0.1)
        torch.nn.init.constant_(dense.router.predictor[-1].bias, -0.5)
    packed = AniraModel(ModelConfig(**(cfg | kw | {"execution": kw.get("execution", "packed")})))
    packed.load_state_dict(dense.state_dict())
    return dense, packed


def ragged_batch(seed: int = 1, lengths=(23, 7, 16, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded sequences of different lengths and an answer mask on their last half."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    tokens = torch.zeros(len(lengths), width, dtype=torch.long)
    answer = torch.zeros_like(tokens, dtype=torch.bool)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(1, VOCAB_SIZE, (n,), generator=g)
        answer[row, n // 2 : n] = True
    return tokens, answer


def forward_backward(model, tokens, answer, depth, train: bool, seed: int = 7):
    model.train(train)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the same Gumbel / inverse-CDF draws on both paths
    out = model(tokens, depth=depth)
    loss, _ = model.loss(out, tokens, answer)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, loss, grads


def max_diffs(dense, packed, tokens, answer, depth=None, train=True) -> dict[str, float]:
    a, loss_a, grads_a = forward_backward(dense, tokens, answer, depth, train)
    b, loss_b, grads_b = forward_backward(packed, tokens, answer, depth, train)
    assert torch.equal(a.depth, b.depth), "executed depths differ"
    assert grads_a.keys() == grads_b.keys()
    diffs = {
        "logits": (a.logits - b.logits).abs().max().item(),
        "expected_depth": (a.expected_depth - b.expected_depth).abs().max().item(),
        "kl": (a.kl - b.kl).abs().max().item(),
        "loss": abs(loss_a.item() - loss_b.item()),
        "grad": max((grads_a[n] - grads_b[n]).abs().max().item() for n in grads_a),
    }
    print(f"max diff dense vs packed: {diffs}")
    return diffs


# --- evaluation records --------------------------------------------------------------------------

RECORD_SIZES = {"train": [3, 4], "test": [3, 4], "interp": [5], "extrap": [6, 7]}


def fake_records(task: str, router: str, seed: int, n_per_size: int = 6, max_depth: int = 6):
    """Per-token and per-example records shaped like anira.evaluate's, with depth tracking a
    feature for the adaptive routers and constant D for ``fixed``."""
    rng = np.random.default_rng([seed, len(router), len(task)])
    token_rows, example_rows = [], []
    for split, sizes in RECORD_SIZES.items():
        for size in sizes:
            for k in range(n_per_size):
                example_id = f"{task}-{split}-{size}-{k}"
                n_prompt, n_answer = 2 * size, size
                height = rng.integers(0, size, n_prompt + n_answer)
                if router == "fixed":
                    depth = np.full(n_prompt + n_answer, max_depth)
                else:
                    depth = np.clip(1 + height + rng.integers(-1, 2, len(height)), 1, max_depth)
                expected = depth + rng.uniform(-0.5, 0.5, len(depth))
                # The other pairing: the depth spent at position t itself, reading token t (here
                # the next position's, as in the records), which tracks height less closely.
                depth_at_t = np.roll(depth, -1)
                expected_at_t = np.roll(expected, -1)
                correct_tokens = rng.random(len(depth)) < 0.8
                for position in range(n_prompt + n_answer):
                    is_answer = position >= n_prompt
                    token_rows.append(
                        {
                            "example_id": example_id,
                            "task": task,
                            "router": router,
                            "seed": seed,
                            "split": split,
                            "size": size,
                            "position": position,
                            "token": int(rng.integers(1, 20)),
                            "is_answer": is_answer,
                            "correct": bool(correct_tokens[position]),
                            "executed_depth": int(depth[position]),
                            "expected_depth": float(expected[position]),
                            "executed_depth_at_t": int(depth_at_t[position]),
                            "expected_depth_at_t": float(expected_at_t[position]),
                            "f_height": float(height[position]) if is_answer else None,
                            "f_graph_size": float(size) if is_answer else None,
                        }
                    )
                answer = slice(n_prompt, None)
                example_rows.append(
                    {
                        "example_id": example_id,
                        "task": task,
                        "router": router,
                        "seed": seed,
                        "split": split,
                        "size": size,
                        "correct": bool(rng.random() < 1.0 / (size - 1)),
                        "tf_correct": bool(correct_tokens[answer].all()),
                        "mean_depth": float(depth[answer].mean()),
                        "mean_expected_depth": float(expected[answer].mean()),
                        "n_answer_tokens": n_answer,
                    }
                )
    return pd.DataFrame(token_rows), pd.DataFrame(example_rows)


def write_eval_dir(directory: Path, tokens: pd.DataFrame, examples: pd.DataFrame) -> Path:
    """Write records as ``<split>.{tokens,examples}.parquet`` plus a manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for split in SPLITS:
        for kind, frame in (("tokens", tokens), ("examples", examples)):
            name = f"{split}.{kind}.parquet"
            frame[frame["split"] == split].reset_index(drop=True).to_parquet(directory / name)
            names.append(name)
    write_manifest(directory, names)
    return directory


# --- decision timing -----------------------------------------------------------------------------


def synthetic_tokens(depth_of, n_examples=120, router="early", noise=0.3, seed=0):
    """Answer tokens with random BREVO-like features and depth = ``depth_of(frame)`` + noise."""
    tokens_per_example = 6
    rng = np.random.default_rng(seed)
    n = n_examples * tokens_per_example
    frame = pd.DataFrame(
        {
            "task": "brevo",
            "router": router,
            "split": "test",
            "seed": 0,
            "example_id": np.repeat([f"e{i}" for i in range(n_examples)], tokens_per_example),
        }
    )
    graph_size = rng.integers(3, 9, n_examples)
    frame["f_graph_size"] = np.repeat(graph_size, tokens_per_example).astype(float)
    for feature in FEATURES:
        if feature != "f_graph_size":
            frame[feature] = rng.integers(0, 5, n).astype(float)
    frame["f_is_hub"] = (frame["f_in_degree"] + frame["f_out_degree"] >= 5).astype(float)
    frame["executed_depth"] = depth_of(frame) + rng.normal(0, noise, n)
    frame["expected_depth"] = frame["executed_depth"] + rng.normal(0, noise / 3, n)
    return frame


# --- training dynamics ---------------------------------------------------------------------------

DYNAMICS_STEPS = (10, 30, 100)


def planted_records(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per step, examples and answer tokens of one early router over two seeds: accuracy rises
    with the step, expected depth tracks ``height`` ever more closely (the strongest feature at
    the last step), ``noise`` never."""
    rng = np.random.default_rng(seed)
    examples, tokens = [], []
    for step in DYNAMICS_STEPS:
        weight = step / DYNAMICS_STEPS[-1]
        for model_seed in (0, 1):
            for k in range(30):
                example_id = f"e{k}"
                meta = {"task": "brevo", "router": "early", "inference_rule": "mode"}
                meta |= {"seed": model_seed, "step": step, "last_step": DYNAMICS_STEPS[-1]}
                examples.append(
                    meta | {"example_id": example_id, "correct": bool(rng.random() < weight)}
                )
                height = rng.integers(0, 5, 4).astype(float)
                expected = weight * height + rng.normal(0, 1, 4)
                tokens.append(
                    pd.DataFrame(
                        meta
                        | {
                            "example_id": example_id,
                            "is_answer": True,
                            "executed_depth": np.clip(np.rint(expected), 1, 6).astype(int),
                            "expected_depth": expected,
                            "f_height": height,
                            "f_noise": rng.normal(size=4),
                        }
                    )
                )
    return pd.DataFrame(examples), pd.concat(tokens, ignore_index=True)


# --- probes --------------------------------------------------------------------------------------


def planted_states(n_examples=80, per_example=5, width=16, seed=0):
    """States [tokens, 3 iterations, width]: iteration 0 is noise, 1 holds the feature weakly,
    2 holds it linearly with little noise."""
    rng = np.random.default_rng(seed)
    n = n_examples * per_example
    feature = rng.integers(0, 6, n).astype(float)
    direction = rng.normal(size=width)
    states = rng.normal(size=(n, 3, width))
    states[:, 1] += 0.3 * np.outer(feature, direction)
    states[:, 2] = 0.05 * states[:, 2] + np.outer(feature, direction)
    groups = np.repeat(np.arange(n_examples), per_example)
    return states, feature, groups


def probe_parts(router, feature_name, labels, seeds=(0, 1)):
    """Out-of-fold predictions as ``model_predictions`` returns them, on planted states."""
    states, _, groups = planted_states()
    depth = np.random.default_rng(4).integers(1, 3, len(labels))
    types = np.array([f"n{i % 5}" for i in range(len(labels))])
    control = control_labels(labels, types, [5])
    return [
        {
            "task": "brevo",
            "router": router,
            "adaptive": router != "fixed",
            "inference_rule": "mode" if router == "early" else router,
            "seed": seed,
            "feature": feature_name,
            "labels": labels,
            "examples": groups,
            "depth": depth,
            "feature_pred": out_of_fold(states, labels, groups, 5),
            "control_pred": out_of_fold(states, control, groups, 5),
            "control_labels": control,
        }
        for seed in seeds
    ]


def probe_table() -> pd.DataFrame:
    """A probes table of two routers and a numeric and a 0/1 feature (for the figure tests)."""
    feature = planted_states()[1]
    parts = []
    for router in ("fixed", "early"):
        parts += probe_parts(router, "height", feature, seeds=(0,))
        parts += probe_parts(router, "is_hub", (feature >= 3).astype(float), seeds=(0,))
    return probes_table(parts, n_boot=20, ci=0.95, seed=0)


# --- the scorecard's input tables ----------------------------------------------------------------

GENERALIZATION_SIZES = {"test": [3, 4, 5, 8], "interp": [6], "extrap": [10, 12]}
GENERALIZATION_SEEDS = (0, 1, 2)
GENERALIZATION_ROUTERS = ("fixed", "fixed1", "early", "online")
ALLOCATING = {6: 0.4, 4: 0.3, 2: 0.3}  # executed-depth shares of an allocating router (D = 6)


def seed_noise(task, router, split, size, seed) -> float:
    """A small, fixed seed-to-seed wobble, so intervals across seeds have a width."""
    rng = np.random.default_rng([seed, size, len(task), len(router), len(split)])
    return float(rng.normal(0, 0.01))


def paper_like(task, router, split, size, seed):
    """Flat on the training sizes, a hole at the held-out ones; depth matters (fixed1 lower);
    on MANO beyond the training L online keeps more of its accuracy than the others; on BREVO
    ANIRA-O solves 2/3 as many examples as the others."""
    if router == "fixed1":
        return 0.4
    if task == "brevo" and router == "online":
        return 2 / 3 * paper_like(task, "early", split, size, seed)
    if split == "test":
        return 0.9
    if split == "interp":
        return 0.5
    return {"online": 0.35}.get(router, 0.1) if task == "mano" else 0.2


def generalization(
    accuracy,
    tasks=("brevo", "mano", "lano"),
    seeds=GENERALIZATION_SEEDS,
    sizes=GENERALIZATION_SIZES,
    n=None,
):
    """Rows of generalization.csv; ``n(task, split)`` examples per size (default 200); depth rises
    with size for the adaptive routers."""
    rows = []
    for task in tasks:
        for router in GENERALIZATION_ROUTERS:
            for seed in seeds:
                for split, split_sizes in sizes.items():
                    for size in split_sizes:
                        acc = accuracy(task, router, split, size, seed)
                        acc += seed_noise(task, router, split, size, seed)
                        depth = (
                            6.0
                            if router == "fixed"
                            else 1.0
                            if router == "fixed1"
                            else 2 + size / 4
                        )
                        depth += seed_noise(task, router, split, size, seed + 7)
                        rows.append(
                            {
                                "task": task,
                                "router": router,
                                "seed": seed,
                                "split": split,
                                "size": size,
                                "n_examples": n(task, split) if n else 200,
                                "accuracy": float(np.clip(acc, 0, 1)),
                                "mean_depth": depth,
                                "distinct_share": 0.9 if task == "lano" else np.nan,
                            }
                        )
    return pd.DataFrame(rows)


def depth_hist(tasks=("brevo", "mano", "lano"), shares=None):
    """depth_hist.csv: fixed at D = 6, fixed1 at 1, adaptive routers by ``shares[router]``."""
    shares = {"early": ALLOCATING, "online": ALLOCATING} | (shares or {})
    rows = []
    for task in tasks:
        for router, dist in {"fixed": {6: 1.0}, "fixed1": {1: 1.0}, **shares}.items():
            for depth, share in dist.items():
                base = {"task": task, "router": router, "split": "test", "depth": depth}
                rows.append(base | {"n_tokens": int(share * 10000), "fraction": share})
    return pd.DataFrame(rows)
