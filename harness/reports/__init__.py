"""Reports: paper-shaped tables with reference deltas, figures and provenance from results on disk."""

from harness.reports.build import build_report, build_tables
from harness.reports.collect import ModelRun, load_measured
from harness.reports.reference import load_reference, transcribe, write_reference

__all__ = ["ModelRun", "build_report", "build_tables", "load_measured", "load_reference", "transcribe",
           "write_reference"]
