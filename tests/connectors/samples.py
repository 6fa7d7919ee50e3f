"""Sample settings for the built-in connectors, shared by their tests and the contract suite."""

from __future__ import annotations

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WEBHOOK_SETTINGS = {"url": "https://hooks.example.com/tidings", "signing_secret": WEBHOOK_SECRET}
SANDBOX_KEY = "sbx_contract_key_0123456789abcdef"
SANDBOX_SETTINGS = {"base_url": "http://127.0.0.1:5000/sandbox/1", "api_key": SANDBOX_KEY}
