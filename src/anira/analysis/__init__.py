"""Analyses: tidy CSV tables computed from the evaluation records.

Each module is a small command-line program (``python -m anira.analysis.<table> --out CSV
EVAL_DIR...``) that reads the Parquet records of ``python -m anira.evaluate`` (verifying their
checksum manifests first) and writes one long-format CSV table atomically:

- ``generalization``: accuracy and mean depth per task × router × seed × split × size;
- ``alignment``: Spearman and Pearson correlation of depth with every complexity feature, with
  example-level bootstrap intervals (paper Table 1), and binned depth-versus-feature curves;
- ``depth_hist``: the distribution of executed depth over answer tokens;
- ``decision_timing``: depth regressed on BREVO features on correct samples, with the Shapley
  (LMG) shares of R² of size, static structure and execution state (paper Table 2).

Figures (``anira.figures``) read only these tables.
"""
