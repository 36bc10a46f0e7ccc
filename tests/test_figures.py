"""Figures: each script renders from CSV tables only, and two renders are byte-identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.container import BarContainer

from anira.analysis.alignment import alignment_curves
from anira.analysis.decision_timing import decision_timing_table
from anira.analysis.depth_hist import depth_hist_table
from anira.analysis.dynamics import dynamics_table
from anira.analysis.generalization import generalization_table
from anira.analysis.records import load_records
from anira.figures import (
    fig_alignment,
    fig_decision_timing,
    fig_depth_hist,
    fig_dynamics,
    fig_generalization,
    fig_probes,
)
from anira.figures.style import apply_style
from tests.factories import (
    fake_records,
    planted_records,
    probe_table,
    synthetic_tokens,
    write_eval_dir,
)

FIGURES = {
    "fig_generalization": "generalization.csv",
    "fig_alignment": "curves.csv",
    "fig_depth_hist": "depth_hist.csv",
    "fig_decision_timing": "decision_timing.csv",
    "fig_probes": "probes.csv",
    "fig_dynamics": "dynamics.csv",
}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> Path:
    """The three CSV tables of a synthetic two-task, three-router study."""
    root = tmp_path_factory.mktemp("tables")
    dirs = []
    for task in ("brevo", "mano"):
        for router in ("fixed", "early", "online"):
            tokens, examples = fake_records(task, router, 0, n_per_size=3)
            dirs.append(write_eval_dir(root / task / router, tokens, examples))
    tokens = load_records(dirs, "tokens")
    generalization_table(load_records(dirs, "examples")).to_csv(root / "generalization.csv")
    alignment_curves(tokens[tokens["split"] == "test"]).to_csv(root / "curves.csv")
    depth_hist_table(tokens).to_csv(root / "depth_hist.csv")
    timing = pd.concat(
        [
            synthetic_tokens(lambda f: f["f_graph_size"], 40, router="early"),
            synthetic_tokens(lambda f: f["f_frontier"], 40, router="online"),
            synthetic_tokens(lambda f: 0 * f["f_frontier"] + 6, 40, router="fixed", noise=0),
        ]
    )
    timing = decision_timing_table({"generated": timing}, timing, n_boot=20)
    timing.to_csv(root / "decision_timing.csv")
    probe_table().to_csv(root / "probes.csv")
    examples, tokens = planted_records()
    fixed = {"router": "fixed", "inference_rule": "fixed"}
    examples = pd.concat([examples, examples.assign(**fixed)], ignore_index=True)
    tokens = pd.concat([tokens, tokens.assign(**fixed, expected_depth=6.0)], ignore_index=True)
    dynamics_table(examples, tokens, n_boot=20, ci=0.95, seed=0).to_csv(root / "dynamics.csv")
    return root


def render(name: str, table: Path, out: Path) -> subprocess.CompletedProcess:
    # A different hash seed per render: determinism must not rest on set/dict iteration order.
    env = {**os.environ, "PYTHONHASHSEED": str(abs(hash(str(out))) % 1000)}
    return subprocess.run(
        [sys.executable, "-m", f"anira.figures.{name}", table, "--out", out / f"{name}.pdf"]
        + [out / f"{name}.png"],
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_two_renders_are_byte_identical(name, tables, tmp_path):
    for attempt in ("a", "b"):
        result = render(name, tables / FIGURES[name], tmp_path / attempt)
        assert result.returncode == 0, result.stderr
    for ext in ("pdf", "png"):
        first = (tmp_path / "a" / f"{name}.{ext}").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.{ext}").read_bytes()
        assert len(first) > 5000
    pdf = (tmp_path / "a" / f"{name}.pdf").read_bytes()
    png = (tmp_path / "a" / f"{name}.png").read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Matplotlib" not in pdf
    assert png.startswith(b"\x89PNG") and b"Software" not in png


def test_missing_column_is_a_one_line_error(tables, tmp_path):
    bad = tmp_path / "bad.csv"
    pd.read_csv(tables / "generalization.csv").drop(columns="accuracy").to_csv(bad)
    result = render("fig_generalization", bad, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "accuracy" in result.stderr
    assert not list(tmp_path.glob("*.p*"))


def test_generalization_panels_lines_and_regions(tables):
    apply_style()
    table = pd.read_csv(tables / "generalization.csv")
    fig = fig_generalization.draw(table)
    axes = fig.axes
    assert len(axes) == 2 * 2  # accuracy and depth rows × two tasks
    top = axes[0]
    assert top.get_title() == "brevo"
    # One line per router; one shaded span for the interp size and one for the extrap range.
    lines = [line for line in top.get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 3
    spans = [p for p in top.patches if p.get_label() in ("interpolation", "extrapolation")]
    assert {p.get_label() for p in spans} == {"interpolation", "extrapolation"}
    xs = sorted(set().union(*(set(line.get_xdata()) for line in lines)))
    assert xs == [3, 4, 5, 6, 7]  # test, interp and extrap sizes; never the train split


def test_alignment_and_hist_panels(tables):
    apply_style()
    curves = pd.read_csv(tables / "curves.csv")
    fig = fig_alignment.draw(curves)
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert {ax.get_title() for ax in visible} == {
        f"{task}: {feature}" for task in ("brevo", "mano") for feature in ("graph_size", "height")
    }
    hist = pd.read_csv(tables / "depth_hist.csv")
    fig = fig_depth_hist.draw(hist)
    routers = ("fixed", "early", "online")
    expected = [f"{task} · {router}" for task in ("brevo", "mano") for router in routers]
    assert [ax.get_title() for ax in fig.axes] == expected


def test_decision_timing_bars_per_group_and_router(tables):
    apply_style()
    table = pd.read_csv(tables / "decision_timing.csv")
    fig = fig_decision_timing.draw(table)
    assert [ax.get_title() for ax in fig.axes] == [
        "generated order · executed depth",
        "generated order · expected depth",
    ]
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0] == "fixed: no regression, n=40/240"
    assert labels[1].startswith("early: R²=") and labels[2].startswith("online: R²=")
    heights = {
        bars.get_label().split(":")[0]: [bar.get_height() for bar in bars]
        for bars in ax.containers
        if isinstance(bars, BarContainer)
    }
    assert heights["early"][0] > 0.9 and heights["online"][2] > 0.9  # size vs execution


def test_probe_panels_lines_and_own_halt_markers(tables):
    apply_style()
    fig = fig_probes.draw(pd.read_csv(tables / "probes.csv"))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["brevo: height", "brevo: is_hub"]
    ax = visible[0]
    lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 2 * 2  # feature and control per router
    assert [list(line.get_xdata()) for line in lines][0] == [0, 1, 2]
    markers = [
        line for line in ax.get_lines() if line.get_marker() == "D" and len(line.get_xdata())
    ]
    assert len(markers) == 1  # own halting iteration: the early router only, not fixed


def test_dynamics_panels_a_line_per_router_and_the_strongest_feature(tables):
    apply_style()
    fig = fig_dynamics.draw(pd.read_csv(tables / "dynamics.csv"))
    accuracy, depth, entropy, alignment = fig.axes
    assert accuracy.get_title() == "brevo · accuracy (val)"
    assert accuracy.get_xscale() == "log"
    for ax in (accuracy, depth, entropy):
        assert sorted(line.get_label() for line in ax.get_lines()) == ["early", "fixed"]
        assert all(list(line.get_xdata()) == [10, 30, 100] for line in ax.get_lines())
    # The fixed router's constant depth has no correlation: only early's strongest feature.
    assert [line.get_label() for line in alignment.get_lines()] == ["early"]
    assert [text.get_text() for text in alignment.texts] == ["height"]
