"""Credentials at rest: a JSON object encrypted with MultiFernet (newest key first)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretBox:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

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
