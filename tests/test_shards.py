"""Sharded generation: the training split drawn in blocks by parallel shards, gathered into the
bytes a single process writes, whatever the number of shards."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import anira.generate as generate
from anira.compose import CONFIG_DIR
from anira.dataset import load_split
from anira.generate import generate_dataset, generate_part, split_rng
from anira.io import AniraInputError
from anira.layout import TRAIN, part_file
from anira.spec import DatasetSpec
from tests.factories import ROOT, run_generate

BLOCK = 40  # examples per block here (CHUNK is 10,000): several blocks per size


def brevo(n_train: int = 330, n_eval: int = 6) -> dict:
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "task" / "brevo.yaml"))
    cfg["scales"]["mini"] |= {"n_train": n_train, "n_eval_per_size": n_eval}
    return cfg


def files(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def sharded(cfg: dict, tmp_path: Path, shards: int) -> Path:
    parts = [tmp_path / f"parts{shards}" / f"part{k}.parquet" for k in range(shards)]
    for shard, path in enumerate(parts):
        generate_part(DatasetSpec.resolve(cfg, "mini", 5), shard, shards, path)
    generate_dataset(
        DatasetSpec.resolve(cfg, "mini", 5), tmp_path / f"gathered{shards}", parts=parts
    )
    return tmp_path / f"gathered{shards}"


def test_one_and_three_shards_write_the_same_bytes_and_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "CHUNK", BLOCK)
    cfg = brevo()
    generate_dataset(DatasetSpec.resolve(cfg, "mini", 5), tmp_path / "single")
    single = files(tmp_path / "single")
    assert files(sharded(cfg, tmp_path, 1)) == single
    assert files(sharded(cfg, tmp_path, 3)) == single
    plan = DatasetSpec.resolve(cfg, "mini").plan
    blocks = generate.train_blocks(plan)
    assert len(blocks) > 3 and {count for _, _, count in blocks} != {BLOCK}  # partial blocks


def test_a_size_of_one_block_draws_what_its_split_stream_draws(tmp_path, monkeypatch):
    """Block 0 of a size is the (train, size) stream: the examples an unblocked generator drew,
    so datasets of at most CHUNK training examples per size (mini) keep their bytes."""
    monkeypatch.setattr(generate, "CHUNK", BLOCK)
    cfg = brevo(n_train=3 * BLOCK)
    spec = DatasetSpec.resolve(cfg, "mini")
    task, plan = spec.task, spec.plan
    size = next(size for split, size, _ in plan if split == TRAIN)
    generate_dataset(DatasetSpec.resolve(cfg, "mini", 5), tmp_path / "d")
    rows = load_split(tmp_path / "d", TRAIN)
    rows = rows[rows["size"] == size]
    rng = split_rng(5, TRAIN, size)
    expected = [task.sample(size, rng).token_str for _ in range(min(BLOCK, len(rows)))]
    assert [list(tokens) for tokens in rows["token_str"][: len(expected)]] == expected
    if len(rows) > BLOCK:  # the next block starts a stream of its own
        assert list(rows["token_str"].iloc[BLOCK]) != task.sample(size, rng).token_str


def test_parts_of_another_shard_count_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "CHUNK", BLOCK)
    cfg = brevo()
    parts = [tmp_path / f"part{k}.parquet" for k in range(3)]
    for shard, path in enumerate(parts):
        generate_part(DatasetSpec.resolve(cfg, "mini", 5), shard, 3, path)
    with pytest.raises(AniraInputError, match="blocks, not the"):
        generate_dataset(DatasetSpec.resolve(cfg, "mini", 5), tmp_path / "d", parts=parts[:2])
    with pytest.raises(AniraInputError, match="is not size"):
        generate_dataset(
            DatasetSpec.resolve(cfg, "mini", 5),
            tmp_path / "e",
            parts=[parts[1], parts[0], parts[2]],
        )
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_cli_shards_then_gathers(tmp_path):
    small = ["task=brevo", "scale=mini", "seed=2"]
    small += ["task.scales.mini.n_train=300", "task.scales.mini.n_eval_per_size=5"]
    parts = tmp_path / "parts"
    for shard in range(2):
        result = run_generate(ROOT, *small, "shards=2", f"shard={shard}", f"parts_dir={parts}")
        assert result.returncode == 0, result.stderr
        assert Path(part_file(parts, shard)).is_file()
    result = run_generate(ROOT, *small, "shards=2", f"parts_dir={parts}", f"out_dir={tmp_path}/d")
    assert result.returncode == 0, result.stderr
    result = run_generate(ROOT, *small, f"out_dir={tmp_path}/single")
    assert files(tmp_path / "d") == files(tmp_path / "single")
    missing = run_generate(ROOT, *small, "shards=2", f"out_dir={tmp_path}/x")
    assert missing.returncode != 0 and "parts_dir" in missing.stdout + missing.stderr
