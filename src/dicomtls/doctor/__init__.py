"""Diagnostics: tell a person exactly why a secure DICOM connection fails, and how to fix it."""

from dicomtls.doctor.probes import DoctorOptions, diagnose
from dicomtls.doctor.report import Report, Step, Verdict

__all__ = ["DoctorOptions", "Report", "Step", "Verdict", "diagnose"]
