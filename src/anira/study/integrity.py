"""Which finished outputs of the study must be redone, and why: file times cannot reveal a file
deleted, truncated or modified inside an output directory, nor an output made from a dataset other
than the study's, so each directory is checked against its manifest and the dataset it records."""

from __future__ import annotations

from pathlib import Path

import yaml

from anira import layout
from anira.dataset import manifest_content
from anira.io import failed_files, sha256_file
from anira.spec import dataset_config_sha256
from anira.study.grid import Study, overrides, results_root


class Integrity:
    """The checks of one workflow process, each directory hashed once however often Snakemake
    evaluates the input functions of its job (a class for that cache: a damaged tree is checked
    afresh by a new instance)."""

    def __init__(self, study: Study):
        self.study = study
        self._failed: dict[str, dict[str, str]] = {}

    def failed(self, directory: str) -> dict[str, str]:
        """The files of `directory` failing its manifest (anira.io.failed_files)."""
        if directory not in self._failed:
            self._failed[directory] = failed_files(directory)
        return self._failed[directory]

    def data_problems(self, directory: str) -> dict[str, str]:
        """Why a dataset directory must be regenerated: files failing its manifest, or a manifest
        without the content records that loading checks (written before them)."""
        problems = self.failed(directory)
        if problems or not Path(directory, layout.MANIFEST).is_file():
            return problems
        if not manifest_content(Path(directory)):
            return {layout.MANIFEST: "records no row counts (written before content checks)"}
        return {}

    def study_data_config(self, task: str) -> str:
        """The SHA-256 of the `config.yaml` the study's generate job writes for `task`."""
        study = self.study
        return dataset_config_sha256(
            task, study["scale"], study["data_seed"], overrides(study, "generate")
        )

    def data_digest(self, task: str) -> str | None:
        """The digest of the dataset of `task` on disk (its manifest's SHA-256), or None when it is
        missing or broken (then it is regenerated, and an output's recorded config decides)."""
        directory = layout.data_dir(results_root(self.study), task)
        if not Path(directory, layout.MANIFEST).is_file() or self.data_problems(directory):
            return None
        return sha256_file(Path(directory, layout.MANIFEST))

    def other_data(self, directory: str, task: str) -> str | None:
        """Why the finished output `directory` (a checkpoint or an evaluation, which record the
        dataset they read in their `config.yaml`) was made from data other than the study's
        dataset of `task`, or None: generated from another config (another study file on this
        results_root, an edited `n_train`), or regenerated to other bytes since."""
        try:
            recorded = yaml.safe_load(Path(directory, layout.RUN_CONFIG).read_text())["data"]
            made_from = recorded["config_sha256"], recorded["manifest_sha256"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return "records no dataset it was made from"
        expected = self.study_data_config(task)
        if made_from[0] != expected:
            return (
                f"was made from data generated from another config ({made_from[0][:12]}), "
                f"the study's is {expected[:12]}"
            )
        current = self.data_digest(task)
        if current is not None and current != made_from[1]:
            return f"was made from dataset {made_from[1][:12]}, the study's is now {current[:12]}"
        return None

    def output_problems(self, directory: str, task: str) -> dict[str, str]:
        """Why the finished output `directory`, made from the dataset of `task`, must be redone:
        files failing its manifest, else a dataset other than the study's (`other_data`)."""
        problems = self.failed(directory)
        if problems or not Path(directory, layout.MANIFEST).is_file():
            return problems
        stale = self.other_data(directory, task)
        return {layout.RUN_CONFIG: stale} if stale else {}
