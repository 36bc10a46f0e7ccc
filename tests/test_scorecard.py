"""Scorecard: each finding read from planted analysis tables. Every artefact the old pooled
scorecard passed (a smooth decline with size, a task mix, a router that never allocates, a feature
picked by its own strength, a task where depth does not matter, one seed) is planted here, and the
verdict must come from the effect the finding names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from anira.analysis import scorecard
from anira.analysis.scorecard import scorecard_table
from tests.factories import (
    GENERALIZATION_SEEDS,
    GENERALIZATION_SIZES,
    depth_hist,
    generalization,
    paper_like,
    seed_noise,
)


def alignment(early=0.6, online=0.4, n_seeds=3):
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
                "depth": depth,
                "method": "spearman",
                "estimate": sign * value,
                "ci_low": sign * value - 0.1,
                "ci_high": sign * value + 0.1,
                "n_seeds": n_seeds,
            }
            for pairing, sign in (("t", -1), ("t-1", 1))
            for router, value in (("early", early), ("online", online))
            for depth in ("expected", "executed")
        ]
    )


def timing(early_shares, online_shares, r2_size=0.3, n_seeds=3, moved=None):
    """decision_timing.csv rows of every population and grouping: ``*_shares`` are the LMG
    shares of (size, structure, execution), ±0.05; ``moved``: the shares under the moved grouping
    (default: the same)."""
    rows = []
    for order in ("generated", "gold"):
        for depth in ("executed", "expected"):
            for grouping in ("paper", "moved"):
                for router, shares in (("early", early_shares), ("online", online_shares)):
                    if grouping == "moved" and moved:
                        shares = moved[router]
                    base = {"task": "brevo", "split": "test", "order": order, "depth": depth}
                    base |= {"grouping": grouping, "router": router, "n_seeds": n_seeds}
                    rows.append(base | {"kind": "r2", "term": "all", "estimate": 0.5})
                    band = {"ci_low": r2_size - 0.05, "ci_high": r2_size + 0.05}
                    rows.append(
                        base | {"kind": "r2_size", "term": "size", "estimate": r2_size} | band
                    )
                    for group, share in zip(
                        ("size", "structure", "execution"), shares, strict=True
                    ):
                        band = {"share_ci_low": share - 0.05, "share_ci_high": share + 0.05}
                        rows.append(base | {"kind": "lmg", "term": group, "share": share} | band)
    return pd.DataFrame(rows)


def dynamics(rising=True, n_seeds=3, features=None):
    """Accuracy and the Spearman with each feature over three steps, per adaptive router:
    ``features`` maps a feature to its (first, middle, last) Spearman (default: the fixed
    features rising; alignment reaches half its rise at step 30, accuracy at step 100)."""
    rising_rho = (0.1, 0.5, 0.6) if rising else (0.6, 0.2, 0.1)
    features = features or {"graph_size": rising_rho, "dfs_depth": rising_rho}
    rows = []
    for router in ("early", "online"):
        for i, (step, accuracy) in enumerate(((10, 0.1), (30, 0.3), (100, 0.8))):
            base = {"task": "brevo", "router": router, "step": step, "n_seeds": n_seeds}
            rows.append(
                base | {"metric": "accuracy", "estimate": accuracy if rising else 0.9 - accuracy}
            )
            for feature, rhos in features.items():
                rho = rhos[i]
                band = {"ci_low": rho - 0.05, "ci_high": rho + 0.05}
                spearman = {"metric": "spearman", "feature": feature}
                rows.append(base | spearman | {"estimate": rho} | band)
    return pd.DataFrame(rows)


def controls(difference=0.1, low=0.05, high=0.15, n_seeds=3, kind="random"):
    """controls.csv: every adaptive router against its control, test split, at D = 6."""
    rows = []
    for task in ("brevo", "mano", "lano"):
        for adaptive in ("early", "online"):
            rows.append(
                {"task": task, "adaptive": adaptive, "control": f"random_{adaptive}"}
                | {"control_kind": kind, "split": "test", "n_seeds": n_seeds, "max_depth": 6}
                | {"compute_adaptive": 3.0, "compute_control": 3.0, "difference": difference}
                | {"ci_low": low, "ci_high": high}
            )
    return pd.DataFrame(rows)


def card(general=None, align=None, time_table=None, dyn=None, hist=None, ctrl=None) -> pd.DataFrame:
    tables = {
        "generalization": generalization(paper_like) if general is None else general,
        "alignment": alignment() if align is None else align,
        "decision_timing": timing((0.3, 0.4, 0.3), (0.1, 0.2, 0.7))
        if time_table is None
        else time_table,
        "dynamics": dynamics() if dyn is None else dyn,
        "depth_hist": depth_hist() if hist is None else hist,
        "controls": controls() if ctrl is None else ctrl,
    }
    return scorecard_table(tables, "mini", n_boot=400)


def one(table, finding, task=None, router=None) -> pd.Series:
    rows = table[table["finding"] == finding]
    if task is not None:
        rows = rows[rows["task"] == task]
    if router is not None:
        rows = rows[rows["router"] == router]
    assert len(rows) == 1, (finding, task, router, rows)
    return rows.iloc[0]


INTERP = "accuracy falls sharply on held-out sizes inside the range (interp)"
EXTRAP = "accuracy falls sharply on larger sizes (extrap)"


def test_every_finding_holds_on_tables_planted_like_the_paper():
    table = card()
    verdicts = table.set_index(["finding", "task", "router"])["holds"]
    gsm = table["finding"].str.startswith("GSM")
    assert (table.loc[~gsm, "holds"] == "yes").all(), verdicts[verdicts != "yes"]
    assert table["scale"].eq("mini").all()
    # One row per task × router for the drops, and a summary row with its rule.
    drop = one(table, f"{INTERP}: brevo", router="early")
    noise = [
        seed_noise("brevo", "early", s, 6, seed)
        for seed in GENERALIZATION_SEEDS
        for s in ("interp",)
    ]
    assert drop["ours"] == pytest.approx(0.9 - 0.5 - np.mean(noise), abs=0.02)
    assert drop["n_seeds"] == 3 and drop["ci_low"] < drop["ours"] < drop["ci_high"]
    summary = one(table, INTERP, task="all")
    assert summary["ours"] == 1.0 and "majority" in summary["test"]
    gentle = one(table, "MANO beyond the training L: ANIRA-O degrades more gently")
    assert gentle["ours"] == pytest.approx(0.35 / 0.9 - 0.1 / 0.9, abs=0.03)
    population = one(table, "Table 2: more correct samples for ANIRA-E than ANIRA-O")
    assert population["ours"] == pytest.approx(1.5, abs=0.05)


def test_a_smooth_decline_with_size_is_no_drop_and_a_hole_is():
    """Accuracy falling linearly with size: the pooled test mean lies above the interp size's
    accuracy (the old test called that a drop); its training neighbours predict it exactly."""

    def smooth(task, router, split, size, seed, hole=0.0):
        if router == "fixed1":
            return 0.1
        return 1.0 - 0.08 * size - (hole if split == "interp" else 0.0)

    table = card(generalization(smooth))
    row = one(table, f"{INTERP}: brevo", router="early")
    assert row["holds"] == "no" and abs(row["ours"]) < 0.03
    # The old reference, the mean over the training sizes, lies well above the interp accuracy.
    assert (
        np.mean([smooth("brevo", "early", "test", s, 0) for s in GENERALIZATION_SIZES["test"]])
        > 1 - 0.08 * 6 + 0.05
    )
    assert one(table, INTERP, task="all")["holds"] == "no"
    holed = card(generalization(lambda *a: smooth(*a, hole=0.3)))
    row = one(holed, f"{INTERP}: brevo", router="early")
    assert row["holds"] == "yes" and row["ours"] == pytest.approx(0.3, abs=0.03)
    assert one(holed, INTERP, task="all")["holds"] == "yes"


def test_a_smooth_logistic_decline_beyond_the_range_is_no_drop():
    def logistic(task, router, split, size, seed, cliff=0.0):
        if router == "fixed1":
            return 0.05
        return stats.logistic.cdf(3.0 - 0.3 * size) - (cliff if split == "extrap" else 0.0)

    table = card(generalization(logistic))
    row = one(table, f"{EXTRAP}: brevo", router="online")
    assert row["holds"] == "no" and abs(row["ours"]) < 0.05
    cliff = card(generalization(lambda *a: logistic(*a, cliff=0.2)))
    assert one(cliff, f"{EXTRAP}: brevo", router="online")["holds"] == "yes"


def test_a_task_mix_is_no_drop():
    """Two tasks, one accurate with many test examples and few interp ones, one poor with the
    reverse, neither with any drop: pooled, test − interp is large; per task it is 0."""

    def flat(task, router, split, size, seed):
        if router == "fixed1":
            return 0.0
        return 0.95 if task == "brevo" else 0.3

    def counts(task, split):
        return (
            {"brevo": 400, "mano": 40}[task]
            if split == "test"
            else {"brevo": 20, "mano": 600}[task]
        )

    general = generalization(flat, tasks=("brevo", "mano"), n=counts)
    pooled = {}
    for split in ("test", "interp"):
        part = general[general["split"] == split]
        pooled[split] = (part["accuracy"] * part["n_examples"]).sum() / part["n_examples"].sum()
    assert pooled["test"] - pooled["interp"] > 0.4  # what the pooled test read as a drop
    table = card(general)
    drops = table[table["finding"].str.startswith(f"{INTERP}: ")]
    assert len(drops) == 6 and drops["holds"].eq("no").all()
    assert drops["ours"].abs().max() < 0.03
    assert one(table, INTERP, task="all")["holds"] == "no"


def test_a_router_that_never_allocates_is_not_testable():
    """ANIRA-E executes D on 99 % of tokens while its expected depth tracks the features: every
    ANIRA-E alignment and timing row is not testable, and says why with the numbers."""
    table = card(hist=depth_hist(shares={"early": {6: 0.99, 5: 0.01}}))
    early = [
        one(table, "LANO: expected depth tracks expansion (ANIRA-E)"),
        one(
            table, "Table 2: graph size alone explains ANIRA-E's depth variance (R², paper ≈ 0.28)"
        ),
        one(table, "Table 2: ANIRA-E's depth follows static structure (size + structure > 1/2)"),
        one(table, "training dynamics: depth aligns with BREVO's graph_size (ANIRA-E)"),
        one(table, "more depth allocated to larger inputs: brevo", router="early"),
    ]
    for row in early:
        assert row["holds"] == "not testable", row["finding"]
        assert (
            "ANIRA-E allocates depth" in row["test"] and "1.0% of test answer tokens" in row["test"]
        )
    # ANIRA-O still allocates: its rows keep their verdicts.
    assert one(table, "LANO: expected depth tracks expansion (ANIRA-O)")["holds"] == "yes"
    # A router at depth 1 on almost every token does not allocate either.
    shallow = card(hist=depth_hist(shares={"online": {1: 0.95, 6: 0.05}}))
    row = one(shallow, "Table 2: ANIRA-O's depth follows execution state (its largest share)")
    assert row["holds"] == "not testable" and "95.0% at its most common depth" in row["test"]


def test_a_feature_strongest_by_chance_does_not_pass_the_dynamics_row():
    """A noise feature whose last-step |rho| is the largest (the old rank-1 choice) rises; the
    features fixed in advance do not: no pass."""
    flat = (0.05, 0.04, 0.05)
    planted = dynamics(features={"noise": (0.0, 0.2, 0.45), "graph_size": flat, "dfs_depth": flat})
    table = card(dyn=planted)
    for router in ("E", "O"):
        feature = "graph_size" if router == "E" else "dfs_depth"
        row = one(table, f"training dynamics: depth aligns with BREVO's {feature} (ANIRA-{router})")
        assert row["holds"] == "no" and row["ours"] == 0.05
    faded = card(dyn=dynamics(rising=False))
    assert (
        one(faded, "training dynamics: depth aligns with BREVO's dfs_depth (ANIRA-O)")["holds"]
        == "no"
    )


def test_a_task_failing_its_depth_precondition_makes_every_finding_on_it_not_testable():
    def shallow_brevo(task, router, split, size, seed):
        if task == "brevo" and router == "fixed1":
            return paper_like(task, "fixed", split, size, seed) - 0.05
        return paper_like(task, router, split, size, seed)

    table = card(generalization(shallow_brevo))
    brevo = table[(table["task"] == "brevo") & ~table["finding"].str.startswith("precondition")]
    assert len(brevo) >= 10
    assert brevo["holds"].eq("not testable").all(), brevo[["finding", "holds"]]
    assert brevo["test"].str.contains("depth matters on brevo").all()
    gate = one(table, "precondition: depth changes brevo accuracy (fixed D vs D' = 1)")
    assert gate["holds"] == "no" and gate["ours"] == pytest.approx(0.05, abs=0.02)
    # MANO still passes its precondition: its rows keep their verdicts.
    mano = table[(table["task"] == "mano") & (table["holds"] != "yes")]
    assert mano.empty, mano[["finding", "holds", "test"]]


def test_fewer_than_three_seeds_never_hold():
    table = card(
        generalization(paper_like, seeds=(0,)),
        alignment(n_seeds=1),
        timing((0.3, 0.4, 0.3), (0.1, 0.2, 0.7), n_seeds=1),
        dynamics(n_seeds=1),
        ctrl=controls(n_seeds=1),
    )
    findings = table[~table["finding"].str.startswith(("precondition", "GSM"))]
    assert findings["holds"].eq("not testable").all()
    per_row = findings[findings["task"] != "all"]
    assert per_row["test"].str.contains("n seeds = 1 < 3").all()
    # The single-seed estimate is still shown, with its example-noise interval (Newcombe, Wilson,
    # parametric bootstrap).
    drop = one(table, f"{INTERP}: mano", router="online")
    assert drop["ours"] == pytest.approx(0.4, abs=0.03) and drop["ci_low"] < drop["ours"]
    assert "would hold" in drop["test"]
    gate = one(table, "precondition: depth changes mano accuracy (fixed D vs D' = 1)")
    assert gate["holds"] == "yes" and gate["n_seeds"] == 1


def test_seed_spread_widens_the_interval():
    """Per-seed estimates that disagree give a Student-t interval of their spread."""

    def wobbly(task, router, split, size, seed):
        hole = {0: 0.0, 1: 0.3, 2: 0.6}[seed] if split == "interp" else 0.0
        return paper_like(task, router, "test", size, seed) - hole

    row = one(card(generalization(wobbly)), f"{INTERP}: brevo", router="fixed")
    points = []
    for seed in GENERALIZATION_SEEDS:
        hole = {0: 0.0, 1: 0.3, 2: 0.6}[seed]
        wobble = seed_noise("brevo", "fixed", "interp", 6, seed)
        neighbours = [seed_noise("brevo", "fixed", "test", s, seed) for s in (5, 8)]
        points.append(hole - wobble + np.interp(6, [5, 8], neighbours))
    half = stats.t.ppf(0.975, 2) * np.std(points, ddof=1) / np.sqrt(3)
    assert row["ours"] == pytest.approx(np.mean(points), abs=1e-6)
    assert row["ci_low"] == pytest.approx(np.mean(points) - half, abs=1e-6)
    assert row["holds"] == "no"  # 0.3 on average, but the seeds disagree too much to say


def test_table_2_reads_the_primary_population_and_reports_the_moved_grouping():
    moved = {"early": (0.3, 0.1, 0.6), "online": (0.1, 0.6, 0.3)}
    table = card(time_table=timing((0.3, 0.4, 0.3), (0.1, 0.2, 0.7), r2_size=0.6, moved=moved))
    size = one(
        table, "Table 2: graph size alone explains ANIRA-E's depth variance (R², paper ≈ 0.28)"
    )
    assert size["ours"] == 0.6 and size["holds"] == "no"  # 0.28 outside [0.55, 0.65]
    assert "LMG size share 0.300" in size["test"] and "gold order, expected depth" in size["test"]
    static = one(
        table, "Table 2: ANIRA-E's depth follows static structure (size + structure > 1/2)"
    )
    assert static["holds"] == "yes" and static["ours"] == pytest.approx(0.7)
    assert "moved grouping (height ↔ dist_from_query): 0.400" in static["test"]
    assert "does not hold" in static["test"]
    execution = one(table, "Table 2: ANIRA-O's depth follows execution state (its largest share)")
    assert execution["holds"] == "yes" and "does not hold" in execution["test"]

    # The E/O population: the ratio with an interval and its distance from the paper's 15.5.
    def fewer_online(task, router, split, size, seed):
        return 0.1 if router == "online" else paper_like(task, router, split, size, seed)

    population = one(
        card(generalization(fewer_online)), "Table 2: more correct samples for ANIRA-E than ANIRA-O"
    )
    assert population["ours"] == pytest.approx(9.0, rel=0.15) and population["ci_low"] > 1
    assert population["holds"] == "yes" and "of it" in population["test"]


def test_missing_tables_are_not_testable_and_the_cli_writes_markdown(tmp_path):
    general = generalization(paper_like, tasks=("brevo",))
    paths = {}
    for name, frame in (
        ("generalization", general),
        ("alignment", alignment().iloc[:0]),
        ("decision-timing", timing((0.3, 0.4, 0.3), (0.1, 0.2, 0.7))),
        ("dynamics", pd.DataFrame(columns=["task", "router", "step", "metric"])),
        ("controls", controls().iloc[:0]),
        ("depth-hist", depth_hist()),
    ):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    args = [f"--{name}={path}" for name, path in paths.items()]
    out, md = tmp_path / "scorecard.csv", tmp_path / "scorecard.md"
    scorecard.main([*args, "--scale", "mini", "--out", str(out), "--markdown", str(md)])
    table = pd.read_csv(out)
    assert table.loc[table["finding"].str.startswith("LANO"), "holds"].eq("not testable").all()
    assert table.loc[table["finding"].str.startswith("MANO"), "holds"].eq("not testable").all()
    control = table[table["finding"].str.startswith("adaptive depth spends compute")]
    assert control["holds"].eq("not testable").all() and len(control) == 1
    text = md.read_text()
    assert text.count("\n| ") == len(table) + 1  # header and one line per finding
    bad = tmp_path / "missing.csv"
    code = scorecard.run_cli(
        scorecard.main,
        [
            *args[:-1],
            f"--depth-hist={bad}",
            "--scale",
            "mini",
            "--out",
            str(tmp_path / "x.csv"),
            "--markdown",
            str(tmp_path / "x.md"),
        ],
    )
    assert code == 2 and not (tmp_path / "x.csv").exists()


def test_val_rows_never_enter_a_finding():
    general = generalization(paper_like)
    val = general[general["split"] == "test"].assign(split="val", accuracy=0.0, mean_depth=100.0)
    pd.testing.assert_frame_equal(card(pd.concat([general, val])), card(general))


def test_lano_samples_never_enter_a_size_finding():
    """LANO's accuracy is a share of unconditional samples: a planted 'drop' there is ignored."""

    def lano_drop(task, router, split, size, seed):
        return (
            0.0
            if task == "lano" and split != "test"
            else paper_like(task, router, split, size, seed)
        )

    table = card(generalization(lano_drop, tasks=("brevo", "mano", "lano")))
    assert (
        not table["finding"]
        .str.startswith("accuracy falls")
        .where(table["task"] == "lano")
        .fillna(False)
        .any()
    )
    assert one(table, INTERP, task="all")["test"].endswith("6 of 6 testable rows hold")


CONTROL = "adaptive depth spends compute where it helps (ANIRA-E, lano)"


@pytest.mark.parametrize(
    ("ctrl", "holds"),
    [
        (controls(0.1, 0.02, 0.18), "yes"),
        (controls(0.05, -0.01, 0.11), "no"),  # no better than the same compute spent blindly
        (controls(0.1, 0.02, 0.18, n_seeds=1), "not testable"),
        (controls(0.1, 0.02, 0.18, kind="fixed"), "not testable"),  # no random control
    ],
)
def test_adaptive_depth_helps_only_when_it_beats_its_random_control(ctrl, holds):
    got = one(card(ctrl=ctrl), CONTROL)
    assert got["holds"] == holds
    if holds != "not testable":
        assert (got["ours"], got["ci_low"], got["ci_high"]) == (
            0.1 if holds == "yes" else 0.05,
            *ctrl.iloc[0][["ci_low", "ci_high"]],
        )


def test_a_control_of_a_router_that_does_not_allocate_is_not_testable():
    hist = depth_hist(shares={"early": {6: 0.99, 5: 0.01}})
    got = one(card(hist=hist), CONTROL)
    assert got["holds"] == "not testable" and "allocates" in got["test"]
