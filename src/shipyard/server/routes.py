"""Every HTTP route, once: what server/http.py routes and what /openapi.json documents.

Each route names the handler that answers it (a method of server/endpoints.py's Endpoints) and how
/docs describes it. The hot routes (inference) are answered before Starlette (server/hot.py). The
scope a route needs follows from its path (`scope_of`), so that no route can forget to check one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.server import openapi as doc


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str
    tag: str
    summary: str
    body: dict[str, Any] | None = None
    """The OpenAPI request body (handlers read raw bytes: this is what /docs shows)."""
    query: tuple[dict[str, Any], ...] = ()
    """OpenAPI query parameters."""
    documented: bool = True
    """False for the documentation's own pages."""
    hot: bool = False
    """Answered on the hot path (server/hot.py), before Starlette: inference."""


def versioned(
    method: str, path: str, tail: str, handler: str, tag: str, summary: str, **kw: Any
) -> list[Route]:
    """`path + tail` for the version the server chooses, and `path/versions/{version} + tail`."""
    return [
        Route(method, path + tail, handler, tag, summary, **kw),
        Route(method, path + "/versions/{version}" + tail, handler, tag, summary + " (one version)", **kw),
    ]


MODEL = "/v2/models/{name}"
FRIENDLY = "/v1/models/{name}"
PREDICT: dict[str, Any] = {"body": doc.PREDICT_BODY, "query": (doc.TOP_K,), "hot": True}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v2/health/live", "live", "v2", "Whether the server is live"),
    Route("GET", "/v2/health/ready", "ready", "v2", "Whether every model is loaded; what is down, and why"),
    *versioned(
        "POST", MODEL, "/infer", "infer", "v2", "Inference (KServe v2)", body=doc.INFER_BODY, hot=True
    ),
    *versioned("POST", FRIENDLY, "/predict", "predict", "friendly", "Predict: class, confidence", **PREDICT),
    Route("POST", "/predict", "predict", "friendly", "Predict with the only model served", **PREDICT),
    Route("GET", "/metrics", "metrics", "monitoring", "Prometheus metrics"),
    Route("GET", "/v2", "server_metadata", "v2", "Server metadata: name, version, extensions"),
    Route("GET", "/v2/models/stats", "statistics", "monitoring", "Triton's statistics, every model"),
    *versioned("GET", MODEL, "/stats", "statistics", "monitoring", "Triton's statistics of a model"),
    *versioned("GET", MODEL, "", "model_metadata", "v2", "Model metadata: inputs, outputs, versions"),
    *versioned("GET", MODEL, "/config", "model_config", "v2", "Triton's model configuration"),
    *versioned("GET", MODEL, "/ready", "model_ready", "v2", "Whether a model is ready"),
    Route("POST", "/v2/repository/index", "repository_index", "repository", "Every version, and its state"),
    Route("POST", "/v2/repository/models/{name}/load", "repository_load", "repository", "Load a model"),
    Route("POST", "/v2/repository/models/{name}/unload", "repository_unload", "repository", "Unload a model"),
    Route(
        "POST",
        "/v2/repository/models/{name}/deploy",
        "deploy",
        "repository",
        "Deploy a version: the alias moves once it is loaded",
        body=doc.DEPLOY_BODY,
    ),
    Route(
        "POST",
        "/v2/repository/models/{name}/rollback",
        "rollback",
        "repository",
        "Roll back to the version served before",
        body=doc.ROLLBACK_BODY,
    ),
    Route(
        "POST",
        "/v2/repository/models/{name}/split",
        "split",
        "repository",
        "Split the traffic among versions: each one loaded first",
        body=doc.SPLIT_BODY,
    ),
    Route(
        "POST",
        "/v2/repository/models/{name}/rollout",
        "rollout_start",
        "rollout",
        "Start a rollout: the controller takes the candidate through its plan",
        body=doc.ROLLOUT_BODY,
    ),
    Route(
        "POST",
        "/v2/repository/models/{name}/rollout/{action}",
        "rollout_steer",
        "rollout",
        "pause, resume, promote or abort the model's rollout",
        body=doc.ROLLBACK_BODY,
    ),
    Route("GET", FRIENDLY + "/rollout", "rollout_status", "rollout", "The model's latest rollout"),
    Route("POST", FRIENDLY + "/feedback", "feedback", "monitoring", "True labels", body=doc.FEEDBACK_BODY),
    Route("GET", FRIENDLY + "/monitor", "monitor_status", "monitoring", "How each version is doing"),
    Route("GET", "/v1/models", "list_models", "friendly", "The models served, and their versions"),
    Route("GET", "/dashboard", "dashboard_index", "monitoring", "The dashboard's index"),
    Route(
        "GET",
        "/dashboard/{name}",
        "dashboard_page",
        "monitoring",
        "A model's dashboard",
        query=(doc.FRAGMENT,),
    ),
    Route("GET", "/edge/{name}/", "edge_page", "edge", "The model in the browser: its web export's page"),
    Route("GET", "/edge/{name}/{file}", "edge_file", "edge", "A file of the model's web page"),
    Route("GET", "/openapi.json", "openapi", "docs", "This document", documented=False),
    Route("GET", "/docs", "docs", "docs", "The API, to read and try", documented=False),
)


READ_PREFIXES = ("/v2/models", "/v1/models", "/dashboard", "/edge/")


def scope_of(route: str) -> str | None:
    """The scope a route needs, by its template (`/v2/models/{name}`, never the request's own path, so
    no model name can pass for a route). A route this does not know needs admin: new routes fail
    closed."""
    if route.startswith("/v2/health/") or route in ("/docs", "/openapi.json"):
        return None
    if route.endswith(("/infer", "/predict")):
        return "predict"
    if route.endswith("/feedback"):
        return "feedback"
    if route in ("/v2", "/metrics") or route.startswith(READ_PREFIXES):
        return "read"
    return "admin"
