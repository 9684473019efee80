"""Monitoring at the line: capture drift, score drift, review disagreement, retraining triggers."""
