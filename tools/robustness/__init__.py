"""The parts of tools/robustness_report.py, one module each."""
