"""``serve --tls-cert/--tls-key``: HTTPS over a real socket with a certificate the test makes (issue 12)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.api.conftest import AUTH
from tests.api.serve_process import serve


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent-etl test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_serve_speaks_https_with_the_given_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    with serve(tmp_path, args=("--tls-cert", str(cert), "--tls-key", str(key)), verify=trusted) as url:
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(base_url=url, verify=trusted) as client:
            assert client.get("/api/v1/runs", headers=AUTH).status_code == 200
            opened = client.post("/api/v1/session", headers=AUTH)
            assert opened.status_code == 204
            assert "secure" in {p.strip().lower() for p in opened.headers["set-cookie"].split(";")}
        # The certificate is what serve presents; a client that does not trust it refuses the connection.
        try:
            httpx.get(f"{url}/api/v1/runs", headers=AUTH, timeout=5)
            raise AssertionError("an untrusted certificate was accepted")
        except httpx.ConnectError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        # Plain HTTP to the TLS port gets no HTTP answer.
        host, port = url.removeprefix("https://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            try:
                answer = raw.recv(100)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/")


def test_a_wrong_tls_pair_is_one_clear_line(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_key = self_signed(tmp_path / "other")
    script = Path(sys.executable).with_name("agent-etl")
    for args, expected in (
        (["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
        (
            ["--tls-cert", str(cert), "--tls-key", str(other_key)],
            f"cannot use the TLS certificate {cert} with the key {other_key}",
        ),
        (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(other_key)], "cannot use the TLS certificate"),
    ):
        done = subprocess.run(
            [str(script), "serve", "--port", "0", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 1, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr
