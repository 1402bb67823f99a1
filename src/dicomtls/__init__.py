"""dicomtls: secure DICOM networking with a complete TLS verification model."""

__version__ = "0.1.0"
