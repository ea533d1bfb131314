"""Settings: one pydantic-settings object, built once and passed down.

Every field can be set by an environment variable with the SHIPYARD_ prefix (SHIPYARD_HOME, ...) or by
a CLI flag that overrides it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shipyard.names import ALIAS

# Version policies (runtime/policy.py): all | latest N | specific 1,3
POLICY_PATTERN = r"all|latest [1-9][0-9]*|specific [0-9]+(,[0-9]+)*"


class ModelServing(BaseModel):
    """How one model is served. Server-wide defaults live in Settings.serving; a model's own values,
    set with `shipyard model configure`, are stored in the registry and take precedence."""

    model_config = {"extra": "forbid"}

    batching: bool = Field(default=True, description="Coalesce concurrent requests into one run.")
    max_batch_size: int = Field(default=32, ge=1, le=65536, description="Most rows in one run.")
    max_queue_delay_us: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Extra wait for a fuller batch once the queue is drained; 0 never waits.",
    )
    max_queue_size: int = Field(
        default=512, ge=1, description="Requests waiting beyond this get 503 with Retry-After."
    )
    instances: int = Field(default=1, ge=1, le=64, description="Runs of the model in flight at once.")
    execution: Literal["auto", "loop", "threads"] = Field(
        default="auto",
        description="Where runs happen: on the event loop ('loop', for models that take microseconds), "
        "on ORT threads ('threads'), or 'auto': the loop when a measured run is under 0.2 ms and one "
        "instance serves.",
    )
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Requests of this model admitted at once (being read, queued or running); past it a "
        "request gets 503 + Retry-After before its body is read. Default: 2 x instances x max_batch_size, "
        "at least 32.",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Drop a request that has had no answer after this long."
    )
    versions: str = Field(
        default="all",
        description="Versions kept loaded: 'all', 'latest N' or 'specific 1,3' (the default version always).",
    )

    @property
    def in_flight_limit(self) -> int:
        """Enough to keep every instance's batch full with as many waiting, and no more: past it, a
        request would only wait longer for the same throughput."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        return max(32, 2 * self.instances * self.max_batch_size)

    @field_validator("versions")
    @classmethod
    def _policy(cls, value: str) -> str:
        if not re.fullmatch(POLICY_PATTERN, value):
            raise ValueError(f"{value!r} is no version policy: use 'all', 'latest N' or 'specific 1,3'")
        return value


class MonitorSettings(BaseModel):
    """What a server watches and keeps about its predictions (env SHIPYARD_MONITOR__...)."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="Watch predictions at all (metrics, drift, log).")
    log: bool = Field(default=True, description="Keep a prediction log (Parquet, under home/predictions).")
    log_dir: Path | None = Field(default=None, description="Where the prediction log goes (default home).")
    log_sample: float = Field(default=1.0, ge=0, le=1, description="Fraction of requests logged.")
    log_max_per_second: float = Field(default=1000, gt=0, description="Most records logged per second.")
    log_queue: int = Field(default=10_000, ge=1, description="Records waiting for the writer before drops.")
    log_inputs: bool = Field(default=False, description="Log whole inputs, not only a summary of each.")
    drift_window: int = Field(default=1000, ge=10, description="Live rows drift is judged on.")
    drift_max_age_s: float | None = Field(default=None, gt=0, description="Forget rows older than this.")
    drift_min_rows: int = Field(default=300, ge=1, description="Rows needed before drift is judged.")
    psi_threshold: float = Field(default=0.2, gt=0, description="PSI from which a feature has drifted.")
    ks_threshold: float = Field(default=0.2, gt=0, le=1, description="KS from which a feature has drifted.")
    accuracy_window: int = Field(default=1000, ge=1, description="Latest labelled predictions in accuracy.")
    price_per_hour: float = Field(
        default=0.10,
        ge=0,
        description="What one instance-hour of compute costs, for cost per 1k predictions.",
    )


class TransportLimits(BaseModel):
    """What one server process holds open for its clients (env SHIPYARD_TRANSPORT__...)."""

    model_config = {"extra": "forbid"}

    max_connections: int = Field(
        default=4096, ge=1, description="Open HTTP connections; past it a new one gets 503 and is closed."
    )
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a client has to send a request's head (line and headers)."
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="Time a client has to send a request's body once its head is in."
    )
    keep_alive_s: int = Field(default=5, ge=1, description="An idle keep-alive connection closes after this.")
    grpc_max_concurrent_rpcs: int = Field(
        default=1024, ge=1, description="gRPC calls handled at once; past it a call gets RESOURCE_EXHAUSTED."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHIPYARD_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(
        default=Path("~/.shipyard"),
        description="Where the registry database and the artifact store live by default.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the registry; SQLite under `home` when unset.",
    )
    artifacts: str | None = Field(
        default=None,
        description="fsspec URL of a shared artifact store (s3://bucket/prefix; needs shipyard[s3]), "
        "with `home`'s artifacts folder as a read-through cache: with the registry on PostgreSQL, any "
        "number of servers serve the same versions. Credentials and endpoint: the standard AWS "
        "variables (docs/artifacts.md). Unset: artifacts live under `home` alone.",
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP port of the server.")
    grpc_port: int | None = Field(
        default=8001, ge=0, le=65535, description="gRPC port of the server; None turns gRPC off."
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest request body accepted; larger ones get 413 before being read whole.",
    )
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        description="ONNX Runtime threads inside one operator (0: one for a model that runs on the event "
        "loop, else ORT decides).",
    )
    inter_op_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime threads across operators (0: ORT decides)."
    )
    serving: ModelServing = Field(
        default_factory=ModelServing,
        description="Default serving settings (env SHIPYARD_SERVING__MAX_BATCH_SIZE=64, ...).",
    )
    admin_token: str | None = Field(
        default=None,
        description="When set, repository and admin endpoints need 'Authorization: Bearer <token>'; "
        "changes made with it are recorded as made by 'admin'. Tokens with scopes live in the "
        "registry (`shipyard token create`).",
    )
    admin_tokens: dict[str, str] = Field(
        default_factory=dict,
        description='Named admin tokens, NAME -> TOKEN (env as JSON: \'{"ci": "..."}\'): the history '
        "records which one made each change.",
    )
    alias: str = Field(
        default="production",
        pattern=f"^{ALIAS.pattern}$",
        description="The alias whose version a model answers with by default (else its newest version).",
    )
    memory_budget_mb: int | None = Field(
        default=None,
        gt=0,
        description="Memory the loaded versions may use, in MB; beyond it the least recently used idle "
        "version is unloaded, and a version not resident loads on its next request.",
    )
    watch_interval_s: float = Field(
        default=1.0,
        ge=0,
        description="How often a server re-reads the registry to follow alias changes (0: never).",
    )
    monitor: MonitorSettings = Field(
        default_factory=MonitorSettings, description="Prediction log, drift, accuracy and cost."
    )
    providers: list[str] | None = Field(
        default=None,
        description="ORT execution providers in order of preference; CUDA then CPU when unset.",
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate: serve HTTPS and gRPC over TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key of the TLS certificate.")
    transport: TransportLimits = Field(
        default_factory=lambda: TransportLimits(),
        description="Connection caps and timeouts against slow and idle clients.",
    )

    @field_validator("admin_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("SHIPYARD_ADMIN_TOKEN is empty or blank: unset it, or give a real token")
        return value.strip() if value is not None else None  # a secret file's trailing newline

    @field_validator("admin_tokens")
    @classmethod
    def _tokens(cls, value: dict[str, str]) -> dict[str, str]:
        for name, token in value.items():
            if not token.strip():
                raise ValueError(f"SHIPYARD_ADMIN_TOKENS: the token named {name!r} is empty or blank")
        return {name: token.strip() for name, token in value.items()}

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
        return self

    @property
    def named_admin_tokens(self) -> dict[str, str]:
        """Every admin token by the name the history records it under."""
        return {**({"admin": self.admin_token} if self.admin_token else {}), **self.admin_tokens}

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser()

    @property
    def predictions_dir(self) -> Path:
        return (self.monitor.log_dir or self.home_dir / "predictions").expanduser()

    @property
    def artifacts_dir(self) -> Path:
        return self.home_dir / "artifacts"

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'registry.db'}"
