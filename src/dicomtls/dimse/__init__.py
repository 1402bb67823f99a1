"""PS3.7 DIMSE: command sets, status codes, and message fragmentation over P-DATA-TF."""
