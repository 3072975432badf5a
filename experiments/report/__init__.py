"""Theory-vs-practice report: UFM / UFM+ solves beside trained networks.

One module per job: `runs` (finding and reading run folders), `numbers` (provenance
records), `labels` (runs in words), `figures` / `figures_studies` / `tables` / `batching`
(the sections), `checks` (one module per claim, by name), `seeds` (settings run over several
seeds), `html` (the page), `builder` (the driver, `build_report`) and `cli` (`main`).
"""

from experiments.report.builder import THRESHOLDS, Builder, build_report
from experiments.report.cli import main
from experiments.report.labels import run_label, seeds_text, setup_text
from experiments.report.runs import ReportError, Run, discover

__all__ = ["THRESHOLDS", "Builder", "ReportError", "Run", "build_report", "discover", "main",
           "run_label", "seeds_text", "setup_text"]
