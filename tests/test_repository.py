"""The repository stands alone: no tracked file points outside it or to the issue tracker.

A fresh clone holds only what ``git ls-files`` lists, so a tracked file that sends the reader to a
file beside the repository (a planning note, a style guide) or to a tracker number cannot be
followed. The study is explained in ``docs/study.md`` instead. The patterns are assembled from
pieces so that this file does not match them itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from anira.io import combined_digest, config_digests
from tests.factories import ROOT

DOT_MD = r"\.md"
FORBIDDEN = {
    "a path to a sibling folder of notes": re.compile(r"\.\./" + "shared"),
    "the planning note of the study": re.compile("STUDY" + DOT_MD),
    "the planning note of the architecture": re.compile("ARCHITECTURE" + DOT_MD),
    "the planning note of the code style": re.compile("STYLE" + DOT_MD),
    "an issue number": re.compile(r"\b" + "issues?" + r"\s*#?\s*\d+", re.IGNORECASE),
    "a tracker reference": re.compile(r"(?:^|[\s(\[,;])" + "#" + r"\d{1,4}\b"),
    "a machine path": re.compile(r"(?<![\w.])/" + "work" + "/"),
}


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte) or one that is not UTF-8."""
    if path.is_symlink() or not path.is_file():
        return None
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def offending_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, what it refers to, the line) for every forbidden reference in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in FORBIDDEN.items():
            if pattern.search(line):
                found.append((number, what, line.strip()))
    return found


def test_no_tracked_file_refers_outside_the_repository():
    files = tracked_files()
    assert files, "git ls-files listed nothing"
    problems = []
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for number, what, line in offending_lines(text):
            problems.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line}")
    assert not problems, "tracked files refer outside the repository:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "line",
    [
        "see `{}/{}` for the paper".format("..", "shared") + "/notes",
        "the sizing of " + "STUDY" + ".md",
        "layout as in " + "ARCHITECTURE" + ".md",
        "follow " + "STYLE" + ".md",
        "measured choices (" + "issue" + " 2's closing note)",
        "fixed in " + "Issue" + " #" + "12",
        "see " + "issues" + " 3 and 4",
        "(" + "#" + "7)",
        "data in " + "/work" + "/main/results",
    ],
)
def test_each_kind_of_outside_reference_is_caught(line):
    assert offending_lines(line), f"not caught: {line!r}"


@pytest.mark.parametrize(
    "line",
    [
        "# a comment with a number: 3 issues remain open",
        "color: '#1f77b4'",
        "see docs/study.md, section MANO",
        "results/mini/work/x and ../data/brevo",
        "mean depth 4.1 (issue-free run)",
    ],
)
def test_ordinary_lines_pass(line):
    assert not offending_lines(line), f"false alarm: {line!r}"


def test_binary_files_are_skipped(tmp_path):
    binary = tmp_path / "figure.png"
    binary.write_bytes(b"\x89PNG\0" + ("STUDY" + ".md").encode())
    assert text_of(binary) is None


def test_citation_file_agrees_with_the_package():
    """CITATION.cff (CFF 1.2.0) names this software with the package's version and licence."""
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert citation["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):
        assert citation.get(key), f"CITATION.cff lacks {key}"
    assert str(citation["version"]) == project["version"]
    assert citation["license"] == project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    paper = citation["preferred-citation"]
    assert paper["title"] == "Understanding Dynamic Compute Allocation in Recurrent Transformers"
    assert [a["family-names"] for a in paper["authors"]] == [
        "Moosa",
        "Lohit",
        "Wang",
        "Chatterjee",
        "Yin",
    ]
    cited = " ".join(ref["title"] for ref in citation["references"])
    for source in ("Part 1", "Part 4.1", "CLRS Algorithmic Reasoning Benchmark", "CLRS-Text"):
        assert source in cited, f"CITATION.cff does not cite {source}"


# Results quoted in README or docs/ whose configs have changed since they were measured, with why
# they are still quoted. A result regenerated with `measured_on` leaves this list (the test below
# fails until it is removed), and a result whose configs change is flagged until it is
# regenerated or listed here.
STALE_QUOTED = {
    "packed.json": "config/scale/mini.yaml's comments moved to docs/study.md since; no value "
    "changed",
    "memory_plan.json": "provenance recorded after the fact; since then the train/evaluate "
    "configs gained keys and early.yaml lost its lab-note comments, none of which changes a plan",
    "generation_plan.json": "provenance recorded after the fact; the configs changed since do not "
    "reach generation (train/evaluate keys, router comments, the default study file)",
    "router_sweep_lano_compute.json": "provenance recorded after the fact; since then the "
    "train/evaluate/generate configs gained keys (gpu_mem_gb, allow_other_data, shards) that leave "
    "mini runs unchanged",
    "router_sweep_brevo.json": "measured before the train/evaluate/generate configs gained keys "
    "that leave mini runs unchanged and before early.yaml's lab notes moved to docs/study.md",
    "evaluate.json": "configs edited since (scale, router, evaluate); provenance recorded after "
    "the fact",
    "train.json": "scale configs edited since; provenance recorded after the fact",
    "train_steps.json": "scale configs edited since; provenance recorded after the fact",
    "mutation.json": "pyproject.toml edited since; provenance recorded after the fact",
    "decode.json": "task and scale configs edited since; provenance recorded after the fact",
    "calibration/layout_clrs_sort_clrs_text.json": "config/scale/mini.yaml's learning-rate "
    "comment was corrected after the check it reports; no value changed",
} | {
    f"lr/{name}.json": "config/scale/mini.yaml's learning-rate comment was "
    "corrected after this check (the check is what it reports); no value changed"
    for name in (
        "brevo_fixed_lr0.001",
        "brevo_fixed_lr0.01",
        "lano_fixed_lr0.001",
        "lano_fixed_lr0.003",
        "lano_fixed_lr0.01",
    )
}


def benchmark_results() -> dict[str, dict]:
    folder = ROOT / "benchmarks" / "results"
    return {
        str(path.relative_to(folder)): json.loads(path.read_text())
        for path in sorted(folder.rglob("*.json"))
    }


def stale_configs(result: dict, root: Path = ROOT) -> list[str]:
    """The configs a result depends on that differ from those it was measured with (every file
    matching its patterns now or then); ``["provenance"]`` when it records none."""
    recorded = result.get("provenance")
    if not recorded:
        return ["provenance"]
    now, then = config_digests(recorded["config_patterns"], root), recorded["configs"]
    if combined_digest(now) == recorded["config_sha256"]:
        return []
    return sorted(path for path in {*now, *then} if now.get(path) != then.get(path))


def test_every_benchmark_result_says_what_it_was_measured_on():
    for name, result in benchmark_results().items():
        if name in STALE_QUOTED and stale_configs(result) == ["provenance"]:
            continue
        recorded = result["provenance"]
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", recorded["commit"]), name
        assert re.match(r"\d{4}-\d{2}-\d{2}T", recorded["date"]), name
        assert recorded["config_sha256"] == combined_digest(recorded["configs"]), name
        machine = result.get("machine", {})
        if "recorded" in recorded:  # recorded after the fact: what could be, said so
            assert "not recorded" in recorded["recorded"], name
        else:
            assert {"cpu_model", "threads", "torch"} <= set(machine), name


def test_quoted_benchmark_results_match_the_current_configs():
    """A JSON quoted in README or docs/ must have been measured on the current configs, or be
    listed in STALE_QUOTED with the reason it is still quoted."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    quoted_text = "\n".join(path.read_text() for path in texts)
    results = benchmark_results()
    quoted = {name for name in results if f"benchmarks/results/{name}" in quoted_text}
    stale = {name: stale_configs(results[name]) for name in quoted}
    flagged = {name: changed for name, changed in stale.items() if changed}
    unlisted = {name: changed for name, changed in flagged.items() if name not in STALE_QUOTED}
    assert not unlisted, f"quoted results measured on other configs: {unlisted}"
    fresh = sorted(set(STALE_QUOTED) - set(flagged))
    assert not fresh, f"regenerated or no longer quoted, remove from STALE_QUOTED: {fresh}"


def test_a_changed_config_flags_a_result(tmp_path):
    """The check itself: a result measured now is current; editing one of its configs flags it."""
    (tmp_path / "config" / "scale").mkdir(parents=True)
    config = tmp_path / "config" / "scale" / "mini.yaml"
    config.write_text("steps: 800\n")
    digests = config_digests(["config/scale/*.yaml"], tmp_path)
    result = {
        "provenance": {
            "config_patterns": ["config/scale/*.yaml"],
            "configs": digests,
            "config_sha256": combined_digest(digests),
        }
    }
    assert stale_configs(result, tmp_path) == []
    config.write_text("steps: 1600\n")
    assert stale_configs(result, tmp_path) == ["config/scale/mini.yaml"]
    (tmp_path / "config" / "scale" / "paper.yaml").write_text("steps: 1\n")
    assert "config/scale/paper.yaml" in stale_configs(result, tmp_path)
