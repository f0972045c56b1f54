"""MLflow tracking URIs, checked against the installed MLflow before any work is done, so that a
URI that cannot work costs one line, not a run folder and a traceback (or a long hang).

    file:///path, a plain path   MLflow's folder store; MLflow 3 asks for MLFLOW_ALLOW_FILE_STORE=true
    sqlite:///mlflow.db, postgresql://..., mysql://...
                                 a database store: needs SQLAlchemy and Alembic (full `mlflow`,
                                 pip install 'byol[mlflow]'; mlflow-skinny lacks them)
    http(s)://host:port          a tracking server: reached within CONNECT_TIMEOUT_S at the start,
                                 and MLflow's own requests bounded (see bound_http_requests)
"""
from __future__ import annotations

import importlib.util
import os
import socket
from urllib.parse import urlparse

from byol.config import ConfigError

CONNECT_TIMEOUT_S = 5.0
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str, flag: str = "--mlflow-uri") -> None:
    """Raise ConfigError (one line: what to install or set) when `uri` cannot work here."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"{flag} is set but MLflow is not installed: pip install 'byol[mlflow]'") from None
    try:
        parsed = urlparse(uri)
        parsed.port  # noqa: B018 - parses the host and port, which may be malformed
    except ValueError as e:
        raise ConfigError(f"{flag} {uri!r} is not a valid URI ({e}); e.g. http://localhost:5000, "
                          "sqlite:///mlflow.db or a folder") from None
    scheme = parsed.scheme.split("+")[0].lower()
    if scheme not in ("", "file", "http", "https", "databricks", *DATABASES) and not (len(scheme) == 1 and os.name == "nt"):
        raise ConfigError(f"{flag} {uri!r}: MLflow tracks to a folder (or file://), a database ("
                          f"{', '.join(f'{d}://' for d in DATABASES)}), an http(s):// server or databricks, not "
                          f"{scheme}://")
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):  # a folder (C: is a drive)
        major = int(mlflow.__version__.split(".")[0])
        if major >= 3 and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
            raise ConfigError(f"{flag} {uri}: MLflow {mlflow.__version__} keeps runs in a folder only with "
                              "MLFLOW_ALLOW_FILE_STORE=true in the environment; set it, or use a database "
                              "(sqlite:///mlflow.db, with pip install 'byol[mlflow]') or a tracking server")
    elif scheme in DATABASES:
        missing = [m for m in ("sqlalchemy", "alembic") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"{flag} {uri}: MLflow's database store needs {' and '.join(missing)}, which this "
                              "install lacks (mlflow-skinny has neither): pip install 'byol[mlflow]'")
    elif scheme in ("http", "https"):
        port = parsed.port or (443 if scheme == "https" else 80)
        try:
            socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise ConfigError(f"{flag} {uri}: no MLflow server answers at {parsed.hostname}:{port} "
                              f"({e.strerror or e}); start it (mlflow server), or check the address") from None
        check_http_answers(uri, flag)
        bound_http_requests()


def check_http_answers(uri: str, flag: str) -> None:
    """A server that accepts connections must also answer an HTTP request (MLflow's /health)
    within CONNECT_TIMEOUT_S; any HTTP status counts as an answer."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=CONNECT_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise ConfigError(f"{flag} {uri}: the server accepts connections but gave no HTTP answer within "
                          f"{CONNECT_TIMEOUT_S:g} s ({reason}); check that it is an MLflow server and that it "
                          "is running") from None


def bound_http_requests() -> None:
    """MLflow retries a failed request 7 times with a growing back-off and waits 120 s for each
    by default (minutes without a word): bound both, unless the user has set them."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
