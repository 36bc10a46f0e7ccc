"""Figures: one script per figure (``python -m anira.figures.<name> TABLE --out PDF PNG``).

Each script reads only the tidy CSV tables of :mod:`anira.analysis`, draws with the shared seaborn
style of :mod:`anira.figures.style`, and writes a PDF and a PNG whose bytes depend only on the table
(no dates, no software versions in the metadata).
"""
