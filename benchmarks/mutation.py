"""Mutation testing of the code that produces the study's numbers (slow; never run in CI).

    python benchmarks/mutation.py --budget-minutes 40

Runs mutmut 3 (settings in ``pyproject.toml`` under ``[tool.mutmut]``: the files it may mutate and
the fast, non-``slow`` tests it runs) on the functions of the groups below: one bounded
``mutmut run`` per group, in order, each given an equal share of what is left of the budget.
mutmut keeps every verdict under ``mutants/``, so a stopped run resumes when started again. Writes
``benchmarks/results/mutation.json``: per module, the mutants killed, survived, timed out and not
yet checked, the score killed / (checked − equivalent), and every survivor, either explained as
equivalent (``EQUIVALENT`` below, one line each) or listed as a gap in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from anira.io import measured_on

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"

# Mutant name patterns (mutmut's ``module.x_function`` / ``module.xǁClassǁmethod``) per group: the
# routers and the loss, the evaluation records, the alignment statistics and the task scorers.
GROUPS = {
    "scorers": [
        "anira.tasks.base.xǁTaskǁis_correct*",
        "anira.tasks.base.xǁTaskǁtoken_correct*",
        "anira.tasks.brevo.xǁBrevoGraphǁis_valid_order*",
        "anira.tasks.brevo.xǁBrevoTaskǁis_correct*",
        "anira.tasks.lano.xǁLanoǁis_correct*",
        "anira.tasks.lano.xǁLanoǁtoken_correct*",
        "anira.tasks.lano.xǁLanoǁ_score*",
    ],
    "alignment": [
        "anira.analysis.alignment.x_weighted_ranks*",
        "anira.analysis.alignment.x_weighted_pearson*",
        "anira.analysis.alignment.x_bootstrap_weights*",
        "anira.analysis.alignment.x__estimates*",
        "anira.analysis.alignment.x_group_correlations*",
    ],
    "routers_and_loss": [
        "anira.model.routers.x_log_prior*",
        "anira.model.routers.x_kl_to_prior*",
        "anira.model.routers.x_online_log_q*",
        "anira.model.routers.x_halt_now*",
        "anira.model.routers.xǁEarlyRouterǁfinish*",
        "anira.model.routers.xǁOnlineRouterǁfinish*",
        "anira.model.model.xǁAniraModelǁloss*",
    ],
    # teacher_forced and greedy_generate are decorated (torch.no_grad), which mutmut skips.
    "evaluate": [
        "anira.inference.x_batches_by_length*",
        "anira.inference.x_inference_rule*",
        "anira.inference.x_evaluate_split*",
    ],
}

# Survivors that no test can kill: the mutant computes the same function. Name → one-line reason.
EQUIVALENT: dict[str, str] = {}

LINE = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")


def mutant_module(name: str) -> str:
    """``anira.model.routers.xǁOnlineRouterǁobserve__mutmut_3`` → ``anira.model.routers``."""
    return name.split(".x_")[0].split(".xǁ")[0]


def in_group(name: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, pattern) for pattern in patterns)


def run_mutmut(patterns: list[str], seconds: float) -> bool:
    """``mutmut run`` on ``patterns``, stopped with its workers after ``seconds``; True if done."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mutmut", "run", "--max-children", "1", *patterns],
        cwd=ROOT,
        # Subprocesses that tests start import the copy under mutants/, not an installed anira.
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "mutants" / "src")},
        start_new_session=True,
    )
    try:
        process.wait(timeout=seconds)
        return process.returncode == 0
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        return False


def verdicts() -> dict[str, str]:
    """Every generated mutant → mutmut's status (killed, survived, timeout, not checked, ...)."""
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m.group(1): m.group(2).strip() for m in map(LINE.match, out.splitlines()) if m}


def summarize(status: dict[str, str], finished: dict[str, bool], minutes: float) -> dict:
    modules: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    survivors: dict[str, list] = defaultdict(list)
    for group, patterns in GROUPS.items():
        for name, verdict in sorted(status.items()):
            if not in_group(name, patterns):
                continue
            module = modules[f"{group}: {mutant_module(name)}"]
            if verdict == "survived" and name in EQUIVALENT:
                module["equivalent"] += 1
            else:
                module[verdict.replace(" ", "_")] += 1
            if verdict == "survived":
                survivors[group].append({"mutant": name, "equivalent": EQUIVALENT.get(name)})
    table = {}
    for key, counts in sorted(modules.items()):
        killed = counts.get("killed", 0)
        decided = killed + counts.get("survived", 0) + counts.get("timeout", 0)
        counts = dict(counts)
        counts["score"] = round(killed / decided, 4) if decided else None
        table[key] = counts
    killed = sum(c.get("killed", 0) for c in table.values())
    decided = sum(
        c.get("killed", 0) + c.get("survived", 0) + c.get("timeout", 0) for c in table.values()
    )
    return {
        "command": "python benchmarks/mutation.py",
        "budget_minutes": minutes,
        "finished": finished,
        "killed": killed,
        "checked_not_equivalent": decided,
        "score": round(killed / decided, 4) if decided else None,
        "goal": 0.9,
        "modules": table,
        "survivors": dict(survivors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-minutes", type=float, default=40.0)
    parser.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS))
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget_minutes * 60
    finished = {}
    for i, group in enumerate(args.groups):  # in order: a later group gets what is left
        share = (deadline - time.monotonic()) / (len(args.groups) - i)
        print(f"[{group}] mutmut for at most {share / 60:.1f} min", flush=True)
        finished[group] = share > 0 and run_mutmut(GROUPS[group], share)
    report = summarize(verdicts(), finished, args.budget_minutes)
    report |= measured_on(["pyproject.toml"])  # its settings: [tool.mutmut]
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(RESULTS)
    for module, counts in report["modules"].items():
        print(f"{module}: {counts}")
    print(f"score {report['score']} ({report['killed']}/{report['checked_not_equivalent']})")


if __name__ == "__main__":
    main()
