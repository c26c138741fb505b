"""The agent's state directory: its private key, its config (server, host id) and its outbox."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

DEFAULT_STATE_DIR = "/var/lib/gridx-agent"
KEY_FILE = "host_key.pem"
CONFIG_FILE = "config.json"
OUTBOX_FILE = "outbox.sqlite3"


class StateError(Exception):
    """The state directory is missing, unreadable or inconsistent; the message says what to do."""


def default_state_dir() -> Path:
    return Path(os.environ.get("GRIDX_AGENT_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class AgentConfig:
    """What enrolment decided: where to report, as whom, and which GPUs to meter."""

    server_url: str
    host_id: str
    gpu_uuids: tuple[str, ...]
    backend: str = "nvml"
    scenario: str | None = None  # the fake backend's scenario file (demo and tests)

    def to_json(self) -> dict[str, object]:
        return {
            "server_url": self.server_url,
            "host_id": self.host_id,
            "gpu_uuids": list(self.gpu_uuids),
            "backend": self.backend,
            "scenario": self.scenario,
        }


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def outbox_path(self) -> Path:
        return self.path / OUTBOX_FILE

    def ensure(self) -> None:
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(
                f"cannot create the state directory {self.path}: {exc.strerror}; "
                "run as root or choose another with --state-dir or GRIDX_AGENT_DIR"
            ) from None

    def create_key(self) -> Ed25519PrivateKey:
        """A new Ed25519 key, written 0600 from the start (never world-readable, even briefly)."""
        self.ensure()
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        tmp = self.key_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)  # O_CREAT's mode is masked by umask; make sure.
        os.replace(tmp, self.key_path)
        return key

    def load_key(self) -> Ed25519PrivateKey:
        try:
            pem = self.key_path.read_bytes()
        except FileNotFoundError:
            raise StateError(f"no host key in {self.path}: run `gridx-agent enroll` first") from None
        except PermissionError:
            raise StateError(f"cannot read {self.key_path}: permission denied (run as its owner)") from None
        if self.key_path.stat().st_mode & 0o077:
            raise StateError(f"{self.key_path} is readable by others: run `chmod 600 {self.key_path}`")
        key = load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise StateError(f"{self.key_path} is not an Ed25519 private key")
        return key

    def save_config(self, config: AgentConfig) -> None:
        self.ensure()
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.config_path)

    def load_config(self) -> AgentConfig:
        try:
            raw = json.loads(self.config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StateError(f"{self.path} holds no enrolment: run `gridx-agent enroll` first") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise StateError(f"cannot read {self.config_path}: {exc}") from None
        try:
            return AgentConfig(
                server_url=str(raw["server_url"]),
                host_id=str(raw["host_id"]),
                gpu_uuids=tuple(str(u) for u in raw["gpu_uuids"]),
                backend=str(raw.get("backend", "nvml")),
                scenario=raw.get("scenario"),
            )
        except (KeyError, TypeError):
            raise StateError(f"{self.config_path} is incomplete: enrol again") from None
