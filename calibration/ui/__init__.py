"""The technician calibration wizard (the only Qt code under calibration/)."""
