"""Scorecard: each finding read from planted analysis tables, flipping when the planted effect
flips, and its numbers against plain recomputations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anira.analysis import scorecard
from anira.analysis.dynamics import COLUMNS
from anira.analysis.scorecard import scorecard_table

SIZES = {"test": [3, 4], "interp": [5], "extrap": [7, 8]}


def generalization(
    accuracy, depth_slope=0.5, tasks=("brevo", "mano"), routers=("fixed", "early", "online")
):
    """Rows of generalization.csv: ``accuracy(task, router, split)``, depth rising with size."""
    rows = []
    for task in tasks:
        for router in routers:
            for split, sizes in SIZES.items():
                for size in sizes:
                    depth = 6.0 if router == "fixed" else 2.0 + depth_slope * size
                    rows.append(
                        {
                            "task": task,
                            "router": router,
                            "seed": 0,
                            "split": split,
                            "size": size,
                            "n_examples": 200,
                            "accuracy": accuracy(task, router, split),
                            "mean_depth": depth,
                        }
                    )
    return pd.DataFrame(rows)


def alignment(early=0.6, online=0.4):
    """LANO rows; the pairing with position t (listed first) has the opposite sign, so only the
    paper-comparison pairing t − 1 gives the planted values."""
    return pd.DataFrame(
        [
            {
                "task": "lano",
                "router": router,
                "split": "test",
                "feature": "expansion",
                "pairing": pairing,
                "depth": "expected",
                "method": "spearman",
                "estimate": sign * value,
                "ci_low": sign * value - 0.1,
                "ci_high": sign * value + 0.1,
            }
            for pairing, sign in (("t", -1), ("t-1", 1))
            for router, value in (("early", early), ("online", online))
        ]
    )


def timing(early_shares, online_shares, n_early=300, n_online=100):
    rows = []
    routers = (("early", early_shares, n_early), ("online", online_shares, n_online))
    for router, shares, n in routers:
        base = {"split": "test", "order": "gold", "depth": "expected", "router": router}
        rows.append(base | {"kind": "r2", "term": "all", "estimate": 0.4, "n_examples": n})
        for group, share in zip(("size", "structure", "execution"), shares, strict=True):
            band = {"share_ci_low": share - 0.05, "share_ci_high": share + 0.05}
            rows.append(base | {"kind": "lmg", "term": group, "share": share} | band)
    return pd.DataFrame(rows)


def dynamics(rising=True):
    """Accuracy and the strongest feature's Spearman over three steps, per adaptive router:
    alignment reaches half its rise at step 30, accuracy at step 100 (or both fade)."""
    rows = []
    for router in ("early", "online"):
        for step, accuracy, rho in ((10, 0.1, 0.1), (30, 0.3, 0.5), (100, 0.8, 0.6)):
            if not rising:
                accuracy, rho = 0.9 - accuracy, 0.7 - rho
            base = {"task": "brevo", "router": router, "step": step}
            rows.append(base | {"metric": "accuracy", "estimate": accuracy})
            band = {"ci_low": rho - 0.05, "ci_high": rho + 0.05}
            spearman = {"metric": "spearman", "feature": "height", "feature_rank": 1}
            rows.append(base | spearman | {"estimate": rho} | band)
    return pd.DataFrame(rows)


def paper_like(task, router, split):
    if split == "test":
        return 0.9
    if split == "interp":
        return 0.6
    return {"online": 0.3}.get(router, 0.1) if task == "mano" else 0.2


def card(general, align, time_table, dynamics_table) -> pd.DataFrame:
    return scorecard_table(general, align, time_table, dynamics_table, "mini").set_index("finding")


def test_every_finding_holds_on_tables_planted_like_the_paper():
    table = card(
        generalization(paper_like),
        alignment(),
        timing((0.3, 0.4, 0.3), (0.1, 0.3, 0.6)),
        dynamics(),
    )
    assert (table.loc[table["holds"] != "not testable", "holds"] == "yes").all()
    assert table["scale"].eq("mini").all()
    assert table.loc[table.index.str.startswith("GSM"), "holds"].item() == "not testable"
    # The drop equals the plain difference of pooled accuracies (equal n per size).
    drop = table.loc["accuracy falls sharply on held-out sizes inside the range (interp)"]
    assert drop["ours"] == pytest.approx(0.9 - 0.6)
    assert drop["ci_low"] < 0.3 < drop["ci_high"]
    gentle = table.loc["MANO beyond the training L: ANIRA-O degrades more gently"]
    assert gentle["ours"] == pytest.approx(0.3 / 0.9 - 0.1 / 0.9)
    slope = table.loc["more depth allocated to larger inputs"]
    sizes = np.array([s for split in SIZES.values() for s in split], dtype=float)
    # Depth rises 0.5 per size unit, so 0.5 · sd(size) per within-task standard deviation.
    assert slope["ours"] == pytest.approx(0.5 * sizes.std(), rel=1e-6)
    learning = table.loc["training dynamics: depth aligns with BREVO's strongest feature (ANIRA-E)"]
    assert learning["ours"] == 0.6
    assert "alignment at step 30, accuracy at step 100" in learning["test"]
    assert "alignment emerges before accuracy" in learning["test"]


def test_findings_flip_when_the_planted_effects_flip():
    def flat(task, router, split):
        if task == "mano" and split == "extrap":
            return {"online": 0.1}.get(router, 0.8)
        return 0.5

    table = card(
        generalization(flat, depth_slope=-0.5),
        alignment(early=0.0, online=-0.3),
        timing((0.05, 0.2, 0.75), (0.1, 0.6, 0.3), n_early=50, n_online=80),
        dynamics(rising=False),
    )
    for finding in table.index:
        if not finding.startswith(("GSM", "precondition")):  # no D' = 1 model: not testable
            assert table.loc[finding, "holds"] == "no", finding


def test_missing_tasks_are_not_testable_and_the_cli_writes_markdown(tmp_path):
    general = generalization(paper_like, tasks=("brevo",))
    paths = {}
    for name, frame in (
        ("generalization", general),
        ("alignment", alignment().iloc[:0]),
        ("decision-timing", timing((0.3, 0.4, 0.3), (0.1, 0.3, 0.6))),
        ("dynamics", pd.DataFrame(columns=COLUMNS)),
    ):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    args = [f"--{name}={path}" for name, path in paths.items()]
    out, md = tmp_path / "scorecard.csv", tmp_path / "scorecard.md"
    scorecard.main([*args, "--scale", "mini", "--out", str(out), "--markdown", str(md)])
    table = pd.read_csv(out).set_index("finding")
    assert table.loc[table.index.str.startswith("LANO"), "holds"].eq("not testable").all()
    assert table.loc[table.index.str.startswith("MANO"), "holds"].eq("not testable").all()
    text = md.read_text()
    assert text.count("\n| ") == len(table) + 1  # header and one line per finding


def test_depth_precondition_is_the_fixed_minus_depth_one_difference_per_task():
    def accuracy(task, router, split):
        if router == "fixed1":
            return {"brevo": 0.5, "mano": 0.85}[task]
        return 0.9 if router == "fixed" else 0.7

    routers = ("fixed", "fixed1", "early", "online")
    table = card(
        generalization(accuracy, routers=routers),
        alignment(),
        timing((0.3, 0.4, 0.3), (0.1, 0.3, 0.6)),
        dynamics(),
    )
    brevo = table.loc["precondition: depth changes brevo accuracy (fixed D vs D' = 1)"]
    mano = table.loc["precondition: depth changes mano accuracy (fixed D vs D' = 1)"]
    assert brevo["ours"] == pytest.approx(0.4) and brevo["holds"] == "yes"
    assert brevo["ci_low"] < 0.4 < brevo["ci_high"]
    assert mano["ours"] == pytest.approx(0.05) and mano["holds"] == "no"  # CI > 0, below the bar
    assert mano["ci_low"] > 0
    without = card(
        generalization(accuracy), alignment(), timing((0.3, 0.4, 0.3), (0.1, 0.3, 0.6)), dynamics()
    )
    precondition = without[without.index.str.startswith("precondition")]
    assert precondition["holds"].eq("not testable").all() and len(precondition) == 1


def test_val_rows_never_enter_a_finding():
    general = generalization(paper_like)
    val = general[general["split"] == "test"].assign(split="val", accuracy=0.0, mean_depth=100.0)
    tables = (alignment(), timing((0.3, 0.4, 0.3), (0.1, 0.3, 0.6)), dynamics())
    with_val = card(pd.concat([general, val]), *tables)
    pd.testing.assert_frame_equal(with_val, card(general, *tables))
