"""Typed settings from the environment (pydantic-settings). Refuses default secrets outside dev."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-secret-change-me"


class Tier(BaseModel):
    model: str
    #: USD per million tokens.
    input_per_mtok: float
    output_per_mtok: float


DEFAULT_TIERS = {
    "cheap": Tier(model="gpt-4o-mini", input_per_mtok=0.15, output_per_mtok=0.60),
    "strong": Tier(model="gpt-4o", input_per_mtok=2.50, output_per_mtok=10.00),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLOWDESK_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    ENV: Literal["dev", "test", "prod"] = "dev"
    SECRET_KEY: SecretStr = SecretStr(DEV_SECRET)
    #: Old secret keys still accepted for decrypting tenant secrets (rotation; see core/crypto.py).
    PREVIOUS_SECRET_KEYS: list[SecretStr] = Field(default_factory=list)
    DATA_DIR: Path = ROOT / "data"
    DATABASE_URL: str | None = Field(default=None, validation_alias="DATABASE_URL")
    MIGRATION_DATABASE_URL: str | None = Field(default=None, validation_alias="MIGRATION_DATABASE_URL")
    REDIS_URL: str | None = Field(default=None, validation_alias="REDIS_URL")

    # LLM: the offline provider unless a key or base URL is configured.
    OPENAI_API_KEY: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    OPENAI_BASE_URL: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    LLM_TIMEOUT_S: float = 20.0
    LLM_MAX_RETRIES: int = 2
    LLM_BREAKER_FAILS: int = 5
    LLM_BREAKER_RESET_S: float = 30.0
    TIERS: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIERS))

    # The demo orders/CRM/payments API the shipped workflows call (DESIGN.md §7).
    DEMO_API_HOST: str = "127.0.0.1"
    DEMO_API_PORT: int = 8790
    #: ``${config:NAME}`` values workflows may read; empty values default to the demo API.
    CONFIG_VALUES: dict[str, str] = Field(default_factory=dict)
    #: Origins (scheme://host:port) the SSRF guard lets through although they resolve to
    #: loopback/private addresses. The demo API's origin is always added.
    SSRF_ALLOW_ORIGINS: list[str] = Field(default_factory=list)
    HTTP_MAX_RESPONSE_BYTES: int = 1_000_000
    #: Per tool host (runtime/breakers.py): consecutive failed attempts (connect error, timeout,
    #: 5xx) that open its circuit, shared through Redis; calls then fail fast for RESET_S seconds.
    HTTP_BREAKER_FAILS: int = 5
    HTTP_BREAKER_RESET_S: float = 30.0

    # Accounts: OIDC login (Authlib), mail (SMTP; unset = links printed to the log), JWTs.
    OIDC_ISSUER: str | None = Field(default=None, validation_alias="OIDC_ISSUER")
    OIDC_CLIENT_ID: str | None = Field(default=None, validation_alias="OIDC_CLIENT_ID")
    OIDC_CLIENT_SECRET: SecretStr | None = Field(default=None, validation_alias="OIDC_CLIENT_SECRET")
    OIDC_SCOPES: str = Field(default="openid email profile", validation_alias="OIDC_SCOPES")
    OIDC_REDIRECT_URI: str | None = None
    OIDC_TIMEOUT_S: float = 10.0
    SMTP_URL: SecretStr | None = Field(default=None, validation_alias="SMTP_URL")
    SMTP_FROM: str = "flowdesk <no-reply@localhost>"
    SMTP_CA_FILE: Path | None = None
    SMTP_TIMEOUT_S: float = 10.0
    JWT_ISSUER: str = "flowdesk"
    JWT_AUDIENCE: str = "flowdesk-api"
    SESSION_TTL_HOURS: int = 12
    PUBLIC_URL: str = "http://localhost:3000"

    # Router.
    ROUTER_EMBEDDER: Literal["minilm", "tfidf"] = "minilm"
    ROUTER_JUDGE_THRESHOLD: float = 0.55
    ROUTER_OOS_THRESHOLD: float = 0.32

    @property
    def demo_api_url(self) -> str:
        return f"http://{self.DEMO_API_HOST}:{self.DEMO_API_PORT}"

    @property
    def config_values(self) -> dict[str, str]:
        base = {
            "ORDERS_API": self.demo_api_url,
            "CRM_API": self.demo_api_url,
            "PAYMENTS_API": self.demo_api_url,
            "TICKETS_API": self.demo_api_url,
        }
        base.update(self.CONFIG_VALUES)
        return base

    @property
    def ssrf_allow_origins(self) -> list[str]:
        return [self.demo_api_url, *self.SSRF_ALLOW_ORIGINS]

    @property
    def database_url(self) -> str:
        return self.DATABASE_URL or f"sqlite:///{self.DATA_DIR / 'flowdesk.db'}"

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.ENV == "prod" and self.SECRET_KEY.get_secret_value() == DEV_SECRET:
            raise ValueError("FLOWDESK_SECRET_KEY must be set to a real secret when FLOWDESK_ENV=prod")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
