"""TLS from the config: ``bastion serve`` with a certificate the test makes answers over HTTPS to a
client that trusts it, and refuses clear-text HTTP and clients that do not trust it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bastion.serve.keys import KeyStore, Scope

ROW = [[[0.0] * 8] * 8]


def make_cert(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_tls_from_the_config(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    db = f"sqlite:///{tmp_path}/gw.db"
    _, token = KeyStore(db).create("tls", Scope(rate=100.0, burst=100, daily_quota=None))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'port = {port}\ndb = "{db}"\ntls_cert = "{cert}"\ntls_key = "{key}"\ndetectors = []\n'
        '[models]\ndigits = "zoo:digits-cnn"\n'
    )
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion", "serve", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
            start_new_session=True,
        )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", verify=trust, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        answer = httpx.post(
            f"{base}/v1/predict",
            json={"model": "digits", "inputs": [ROW]},
            headers={"Authorization": f"Bearer {token}"},
            verify=trust,
        )
        assert answer.status_code == 200 and len(answer.json()["labels"]) == 1
        with pytest.raises(httpx.ConnectError):  # the system CAs do not vouch for the test's certificate
            httpx.get(f"{base}/readyz", timeout=5)
        with pytest.raises(httpx.HTTPError):  # no clear-text HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).raise_for_status()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
