"""Configuration is parsed strictly, in one place, and a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hub.config import DEFAULT_RETRY_SCHEDULE, ConfigError, load


def test_with_no_configuration_the_hub_uses_a_sqlite_file_and_a_generated_key_in_the_instance_folder(
    tmp_path: Path,
) -> None:
    config = load({"HUB_INSTANCE_PATH": str(tmp_path)})
    assert config.database_url == f"sqlite:///{tmp_path / 'tidings.db'}"
    assert config.embedded_redis and config.redis_url == ""
    assert (tmp_path / "secret.key").read_text().strip() == config.secret_keys[0]
    assert load({"HUB_INSTANCE_PATH": str(tmp_path)}).secret_keys == config.secret_keys  # kept, not regenerated
    assert config.retry_schedule == DEFAULT_RETRY_SCHEDULE


def test_the_default_retry_schedule_is_about_eight_attempts_over_about_a_day() -> None:
    assert len(DEFAULT_RETRY_SCHEDULE) + 1 == 8
    assert 20 * 3600 <= sum(DEFAULT_RETRY_SCHEDULE) <= 30 * 3600


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HUB_DATABASE_URL", "mysql://x/y"),
        ("HUB_DATABASE_URL", "postgresql://"),
        ("HUB_REDIS_URL", "http://localhost"),
        ("HUB_SECRET_KEYS", "not-a-key"),
        ("HUB_SECRET_KEYS", " , "),
        ("HUB_PUBLIC_URL", "localhost:8000"),
        ("HUB_ALLOW_PRIVATE_DESTINATIONS", "sometimes"),
        ("HUB_RETRY_SCHEDULE", "5,soon"),
        ("HUB_RETRY_SCHEDULE", "-1"),
        ("HUB_LEASE_SECONDS", "0"),
        ("HUB_WORKERS", "two"),
        ("HUB_LOG_LEVEL", "LOUD"),
        ("HUB_DATBASE_URL", "sqlite:///x.db"),
    ],
)
def test_a_bad_value_stops_start_up_with_a_message_naming_the_variable(
    tmp_path: Path, variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load({"HUB_INSTANCE_PATH": str(tmp_path), variable: value})


def test_a_shared_database_needs_explicit_secret_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HUB_SECRET_KEYS"):
        load({"HUB_INSTANCE_PATH": str(tmp_path), "HUB_DATABASE_URL": "postgresql://db.internal/tidings"})


def test_secret_keys_are_comma_separated_newest_first(tmp_path: Path) -> None:
    new, old = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    config = load({"HUB_INSTANCE_PATH": str(tmp_path), "HUB_SECRET_KEYS": f"{new}, {old}"})
    assert config.secret_keys == (new, old)


def test_values_are_parsed_into_their_types(tmp_path: Path) -> None:
    config = load(
        {
            "HUB_INSTANCE_PATH": str(tmp_path),
            "HUB_ALLOW_PRIVATE_DESTINATIONS": "yes",
            "HUB_RETRY_SCHEDULE": "1, 2.5,60",
            "HUB_PUBLIC_URL": "https://hub.example.com/",
            "HUB_REDIS_URL": "redis://localhost:6379/2",
        }
    )
    assert config.allow_private_destinations is True
    assert config.retry_schedule == (1.0, 2.5, 60.0)
    assert config.public_url == "https://hub.example.com"
    assert not config.embedded_redis
