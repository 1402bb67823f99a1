"""Orthanc (Debian's ``orthanc``) as a test peer: its own folders, ports and DICOM TLS config,
started by the test, driven through its REST API, stopped by its PID.

Orthanc's REST API drives its SCU (``/modalities/{name}/echo|store|query|move``); its SCP
takes what our node and client send. It runs DCMTK underneath, whose TLS layer takes the
same EC P-256 certificates as ours (TLS 1.3).
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Below the ephemeral range: Orthanc's own outgoing connections take ephemeral ports, and a
# listening port there could collide with one of them.
from ..servers import free_port

#: The title Orthanc answers to and calls with.
ORTHANC_AE = "ORTHANC"


@dataclass(frozen=True)
class Modality:
    """A DICOM node Orthanc knows: its name in the REST API, AE title, port, over TLS."""

    name: str
    ae_title: str
    port: int

    def config(self) -> dict[str, Any]:
        return {"AET": self.ae_title, "Host": "127.0.0.1", "Port": self.port, "UseDicomTls": True}


@dataclass
class Orthanc:
    """A running Orthanc; ``log`` has every line it wrote."""

    process: subprocess.Popen[str]
    http_port: int
    dicom_port: int
    log: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        folder: Path,
        *,
        certificate: Path,
        key: Path,
        ca: Path,
        modalities: list[Modality],
        extra: dict[str, Any] | None = None,
    ) -> Orthanc:
        """Write a config under ``folder`` and start Orthanc on it; back when it has started."""
        http_port, dicom_port = free_port(), free_port()
        config = {
            "Name": "dicomtls-interop",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": ORTHANC_AE,
            "DicomCheckCalledAet": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "SaveJobs": False,
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(certificate),
            "DicomTlsPrivateKey": str(key),
            "DicomTlsTrustedCertificates": str(ca),
            "DicomTlsRemoteCertificateRequired": True,
            "DicomModalities": {m.name: m.config() for m in modalities},
            **(extra or {}),
        }
        path = folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        process = subprocess.Popen(
            ["Orthanc", str(path)],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        orthanc = cls(process, http_port, dicom_port)
        assert process.stdout is not None
        for line in process.stdout:  # it says when it is ready: no sleeping
            orthanc.log.append(line)
            if "Orthanc has started" in line:
                break
        else:
            raise AssertionError("Orthanc did not start:\n" + "".join(orthanc.log))
        threading.Thread(target=orthanc._drain, daemon=True).start()
        return orthanc

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- REST ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: bytes | dict[str, Any] | None = None) -> Any:
        """One REST call; the JSON answer (or the raw bytes if it is not JSON)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=data, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                raw: bytes = answer.read()
                kind = answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"Orthanc {method} {path}: HTTP {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        return json.loads(raw) if kind.startswith("application/json") else raw

    def upload(self, path: Path) -> str:
        """POST a Part 10 file; Orthanc's instance ID."""
        answer = self.call("POST", "/instances", path.read_bytes())
        assert answer["Status"] in ("Success", "AlreadyStored"), answer
        return str(answer["ID"])

    def instance_id(self, sop_instance_uid: str) -> str | None:
        found = self.call("POST", "/tools/lookup", sop_instance_uid.encode())
        ids = [f["ID"] for f in found if f["Type"] == "Instance"]
        return ids[0] if ids else None

    def file(self, sop_instance_uid: str) -> bytes | None:
        """The Part 10 file Orthanc stored for this SOP Instance UID, or None."""
        instance = self.instance_id(sop_instance_uid)
        return None if instance is None else bytes(self.call("GET", f"/instances/{instance}/file"))
