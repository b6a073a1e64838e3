"""A tracking server that does not answer: asked once per experiment, before its first run."""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

SERVER_TIMEOUT_S = 3.0
"""How long an experiment waits, once before its first run, for a tracking server to answer."""


def silent_servers(names: Sequence[str], timeout: float = SERVER_TIMEOUT_S) -> list[str]:
    """One line for each tracker whose server gives no answer within ``timeout`` seconds.

    Checked once per experiment before its first run: MLflow's client retries with back-off
    for minutes on every run before it gives up. Only MLflow is asked (at an http(s)
    ``MLFLOW_TRACKING_URI``); W&B runs offline unless told otherwise.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "mlflow" not in names or not uri.lower().startswith(("http://", "https://")):
        return []
    parts = urllib.parse.urlsplit(uri)
    address = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no password
    why = no_answer(address, timeout)
    if not why:
        return []
    return [
        f"tracking: the MLflow server at MLFLOW_TRACKING_URI={address} does not answer ({why}); "
        "start it, point MLFLOW_TRACKING_URI at one that answers, or drop mlflow from tracking"
    ]


def no_answer(url: str, timeout: float) -> str:
    """Why ``url`` gives no HTTP answer within ``timeout`` seconds; empty when it answers with
    any status (a 404 or a login page is a server that is there)."""
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
        return ""
    except urllib.error.HTTPError:
        return ""
    except urllib.error.URLError as err:
        reason = err.reason
    except (OSError, http.client.HTTPException) as err:  # a read that times out; a bad port
        reason = err
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ssl.SSLError):
        return ""  # it answered; its certificate is MLflow's to judge (..._INSECURE_TLS)
    return str(reason) or type(reason).__name__
