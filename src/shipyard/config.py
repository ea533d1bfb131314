"""Settings: one pydantic-settings object, built once and passed down.

Every field can be set by an environment variable with the SHIPYARD_ prefix (SHIPYARD_HOME, ...) or by
a CLI flag that overrides it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", extra="ignore")

    home: Path = Field(
        default=Path("~/.shipyard"),
        description="Where the registry database and the artifact store live by default.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry; SQLite under `home` when unset.",
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port of the server.")
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest request body accepted; larger ones get 413 before being read whole.",
    )
    intra_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads inside one operator (0: ORT decides)."
    )
    inter_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads across operators (0: ORT decides)."
    )
    providers: list[str] | None = Field(
        default=None,
        description="ORT execution providers in order of preference; CUDA then CPU when unset.",
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def artifacts_dir(self) -> Path:
        return self.home_dir / "artifacts"

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'registry.db'}"
