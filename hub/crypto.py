"""Credentials at rest: a JSON object encrypted with MultiFernet (newest key first)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._mac_key = hashlib.sha256(b"tidings fingerprint\0" + keys[0].encode()).digest()

    def fingerprint(self, *values: str) -> str:
        """A keyed hash of secrets, fit to name things by (a Redis key): equal for equal values, and no help to
        anyone guessing a key without HUB_SECRET_KEYS."""
        return hmac.new(self._mac_key, "\0".join(values).encode(), hashlib.sha256).hexdigest()[:32]

    def encrypt(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values, separators=(",", ":")).encode()).decode()

    def decrypt(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ValueError("credentials cannot be decrypted with the configured HUB_SECRET_KEYS") from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key (after adding one in front of HUB_SECRET_KEYS)."""
        return self._fernet.rotate(token.encode()).decode() if token else token

    def __repr__(self) -> str:
        return "<SecretBox>"
