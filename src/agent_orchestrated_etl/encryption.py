"""Encryption at rest, opt-in: the key of AGENT_ETL_ENCRYPTION_KEY, and Parquet files written with it.

The key is 32 bytes (AES-256), given as base64 or hex, usually as a secret reference
(``${file:/run/secrets/etl-key}``, ``${aws-sm:etl#key}``) resolved through secrets.py
and registered for redaction. Parquet files are written with Parquet modular encryption
(pyarrow.parquet.encryption): each file gets data keys of its own, wrapped by an in-process
KMS client with AES-GCM under the key, so any Parquet reader given the key can read them.
DuckDB 1.5 cannot: it reads only files encrypted with a footer key it is given directly.

The run workspace (a DuckDB file) and its spills use DuckDB's own encryption, under a key
derived from this one with HKDF (duckdb_key), so one key never serves two ciphers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import threading
from datetime import timedelta
from typing import Any

from agent_orchestrated_etl import redaction, secrets
from agent_orchestrated_etl.config import load_settings
from agent_orchestrated_etl.exceptions import ConfigurationError, DataError

_MASTER_KEY_ID = "agent-etl"
_HINT = (
    "set AGENT_ETL_ENCRYPTION_KEY to 32 random bytes in base64, or a reference to them"
    " (python -c 'import os,base64;print(base64.b64encode(os.urandom(32)).decode())')"
)

_lock = threading.Lock()
_factories: dict[bytes, Any] = {}


def key() -> bytes | None:
    """The key files are encrypted with, or None when encryption at rest is off."""
    setting = load_settings().encryption_key
    if not setting:
        return None
    text = secrets.resolve(setting.get_secret_value(), where="AGENT_ETL_ENCRYPTION_KEY").strip()
    redaction.register(text)
    return decode(text)


def decode(text: str) -> bytes:
    """32 bytes from base64 or hex text; a ConfigurationError that never shows the text otherwise."""
    candidates = []
    if len(text) == 64:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(text))
    urlsafe = "-" in text or "_" in text
    with contextlib.suppress(binascii.Error, ValueError):
        padded = text + "=" * (-len(text) % 4)
        candidates.append(base64.b64decode(padded, altchars=b"-_" if urlsafe else None, validate=True))
    for raw in candidates:
        if len(raw) == 32:
            return raw
    raise ConfigurationError(
        "AGENT_ETL_ENCRYPTION_KEY is not a 32-byte key in base64 or hex", where="AGENT_ETL_ENCRYPTION_KEY", hint=_HINT
    )


def duckdb_key() -> bytes | None:
    """The workspace's DuckDB encryption key, derived from the master key, or None when encryption is off."""
    master = key()
    if master is None:
        return None
    return derive(master, b"agent-etl duckdb workspace v1")


def derive(master: bytes, label: bytes) -> bytes:
    """A 32-byte key for one use (``label``), from the master key by HKDF-SHA256."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(master)


def parquet_writer_options() -> dict[str, Any]:
    """Keyword arguments for ``pq.ParquetWriter``: the encryption properties, or none when encryption is off."""
    master = key()
    if master is None:
        return {}
    import pyarrow.parquet.encryption as pe

    config = pe.EncryptionConfiguration(
        footer_key=_MASTER_KEY_ID,
        uniform_encryption=True,  # every column and the footer: the schema and statistics hold data too
        plaintext_footer=False,
        cache_lifetime=timedelta(hours=1),
    )
    return {"encryption_properties": _factory(master).file_encryption_properties(pe.KmsConnectionConfig(), config)}


def parquet_reader_options() -> dict[str, Any]:
    """Keyword arguments for ``pq.ParquetFile``: the decryption properties, or none when encryption is off."""
    master = key()
    if master is None:
        return {}
    import pyarrow.parquet.encryption as pe

    return {
        "decryption_properties": _factory(master).file_decryption_properties(
            pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=timedelta(hours=1))
        )
    }


def _factory(master: bytes) -> Any:
    import pyarrow.parquet.encryption as pe
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    class LocalKms(pe.KmsClient):
        """Wraps each file's data keys with AES-GCM under the master key; nothing leaves the process."""

        def __init__(self, _config: Any) -> None:
            super().__init__()
            self._aead = AESGCM(master)

        def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, key_bytes, master_key_identifier.encode())
            return base64.b64encode(nonce + sealed).decode()

        def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
            raw = base64.b64decode(wrapped_key)
            try:
                return self._aead.decrypt(raw[:12], raw[12:], master_key_identifier.encode())
            except InvalidTag:
                raise DataError(
                    "a Parquet file was encrypted with another key than AGENT_ETL_ENCRYPTION_KEY",
                    where="AGENT_ETL_ENCRYPTION_KEY",
                    hint="give the key the files were written with",
                ) from None

    with _lock:
        if master not in _factories:
            _factories[master] = pe.CryptoFactory(LocalKms)
        return _factories[master]
