"""The ingest ceiling: a minimal Flask endpoint that parses the same JSON and does one Redis LPUSH."""

from __future__ import annotations

import json
import os

import redis
from flask import Flask, request

app = Flask(__name__)
client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"))


@app.post("/ingest")
def ingest() -> tuple[str, int]:
    body = request.get_json()
    client.lpush("bench:ingest", json.dumps(body))
    return '{"ok":true}', 202
