"""Text and JSON summaries of a fit, shared by the CLI and the quickstart (implemented in
`scalelaw.fits.text`, which `FitResult.fit_report` uses too)."""

from __future__ import annotations

from scalelaw.fits.text import fit_report, fit_text, parameter_rows, print_fit

__all__ = ["fit_report", "fit_text", "parameter_rows", "print_fit"]
