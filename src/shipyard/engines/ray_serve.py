"""shipyard on Ray Serve: Ray places, supervises and scales the replicas; each replica is a whole
shipyard server (server/serving.py: the registry followed, batchers, ONNX Runtime sessions, monitor).

Requests do not go through Ray's HTTP proxy: it measured at ~450 requests/s for the digits MLP on
2 cores, a fifth of one shipyard process, because every request crosses two processes and Ray's RPC.
Instead each replica listens on the node's port itself, as `--workers` processes do, the replicas of
a node sharing it (SO_REUSEPORT: the kernel spreads connections over them), HTTP and gRPC both. A load
balancer in front of the nodes (or a Kubernetes Service) makes them one endpoint. The replica is also
a Ray Serve ingress, so where a cluster runs Ray's proxies they answer the same routes.

Ray Serve's autoscaler counts only the requests that go through Ray, so each replica reports the
requests it has in flight (`record_autoscaling_stats`) and `in_flight_policy` sizes the deployment
from them. Ray is imported here alone (an optional extra); the plain server never imports it.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

from shipyard.errors import InvalidInput, Unavailable
from shipyard.server.serving import Server, ServeSpec

APP = "shipyard"
REPLICA_HEADER = "x-shipyard-replica"
"""On every HTTP answer of a replica: which one answered (Ray's replica id)."""
LOOK_BACK_S = 10.0
"""The window the replicas' reports are averaged over (Ray's default: 30 s)."""
UPSCALE_DELAY_S = 5.0
DOWNSCALE_DELAY_S = 60.0
"""How long the load must stay high (low) before the autoscaler adds (takes away) a replica."""


@dataclass(frozen=True)
class Scaling:
    """A fixed number of replicas, or bounds and the requests in flight each replica should hold."""

    replicas: int = 1
    autoscale: tuple[int, int, float] | None = None

    @classmethod
    def parse(cls, replicas: int | None, autoscale: str | None) -> Scaling:
        """From `--replicas N` or `--autoscale MIN:MAX[:TARGET_ONGOING]` (one of them)."""
        if autoscale is None:
            return cls(replicas=replicas or 1)
        if replicas is not None:
            raise InvalidInput("give --replicas or --autoscale, not both")
        parts = autoscale.split(":")
        try:
            low, high = int(parts[0]), int(parts[1])
            target = float(parts[2]) if len(parts) == 3 else 32.0
        except (ValueError, IndexError):
            raise InvalidInput(
                f"--autoscale {autoscale!r}: write MIN:MAX or MIN:MAX:TARGET_ONGOING, e.g. 1:4:32"
            ) from None
        if len(parts) > 3 or not 1 <= low <= high or target <= 0:
            raise InvalidInput(
                f"--autoscale {autoscale!r}: needs 1 <= MIN <= MAX and a TARGET_ONGOING above 0"
            )
        return cls(replicas=low, autoscale=(low, high, target))

    def options(self) -> dict[str, Any]:
        """The deployment's options for Ray Serve."""
        if self.autoscale is None:
            return {"num_replicas": self.replicas}
        from ray.serve.config import AutoscalingConfig, AutoscalingPolicy

        low, high, target = self.autoscale
        policy = AutoscalingPolicy(policy_function=in_flight_policy)  # type: ignore[no-untyped-call]
        config = AutoscalingConfig(
            min_replicas=low,
            max_replicas=high,
            target_ongoing_requests=target,
            policy=policy,
            upscale_delay_s=UPSCALE_DELAY_S,
            look_back_period_s=LOOK_BACK_S,
            downscale_delay_s=DOWNSCALE_DELAY_S,
        )
        return {"autoscaling_config": config}


def in_flight_policy(ctx: Any) -> tuple[int, dict[str, Any]]:
    """Ray Serve autoscaling policy: enough replicas for the requests in flight over all replicas
    (each reports its own: Replica.record_autoscaling_stats) at `target_ongoing_requests` each. Ray
    applies the bounds and the delays around it (UPSCALE_DELAY_S, DOWNSCALE_DELAY_S)."""
    in_flight = sum((ctx.aggregated_metrics or {}).get("in_flight", {}).values())
    return math.ceil(in_flight / ctx.config.target_ongoing_requests), ctx.policy_state


def deployment(spec: ServeSpec, scaling: Scaling, cpus: float) -> Any:
    """The Ray Serve application: `scaling` replicas of Replica, each given `cpus` of Ray's CPUs."""
    from ray import serve

    actor_options = {
        "num_cpus": cpus,
        # every replica of a node adds to the same metric files, so /metrics on the shared port sums
        # the node's replicas, as it does for --workers (monitor/metrics.py)
        "runtime_env": {
            "env_vars": {
                "PROMETHEUS_MULTIPROC_DIR": _metrics_dir(),
                # replicas push their autoscaling metrics (record_autoscaling_stats) only when Ray does
                # not count requests on its handles, which never see these replicas' requests
                "RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE": "0",
                # every 2 s rather than Ray's 10, so that UPSCALE_DELAY_S is what decides
                "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "2",
            }
        },
    }
    replica: Any = serve.deployment(serve.ingress()(Replica))
    return replica.options(
        name=APP,
        ray_actor_options=actor_options,
        max_ongoing_requests=max(1, spec.settings.transport.max_connections),
        max_constructor_retry_count=3,
        health_check_period_s=2.0,
        graceful_shutdown_timeout_s=10.0,
        **scaling.options(),
    ).bind(spec.model_dump_json())


def _metrics_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"shipyard-metrics-{uuid.uuid4().hex[:12]}")


class Replica:
    """One shipyard server inside a Ray Serve replica. Its models load in the constructor, so a
    replica counts as started (and a deploy as done) only once it can answer."""

    async def __init__(self, spec_json: str) -> None:  # type: ignore[misc]  # Ray Serve awaits it
        from ray import serve

        spec = ServeSpec.model_validate_json(spec_json)
        settings = spec.settings
        os.makedirs(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or _metrics_dir(), exist_ok=True)
        self.id = serve.get_replica_context().replica_id.unique_id
        self.server = Server.from_spec(spec, shared_ports=True)
        self._stack = contextlib.AsyncExitStack()
        try:
            await self._stack.enter_async_context(self.server.running())
            sock = _bind_shared(settings.host, settings.port)
            self._stack.callback(sock.close)
            await self._stack.enter_async_context(
                self.server.listening([sock], headers=[(REPLICA_HEADER, self.id)])
            )
        except BaseException:
            await self._stack.aclose()
            raise

    def __serve_build_asgi_app__(self) -> Any:
        """The same app on Ray's proxies, where a cluster runs them."""
        return self.server.app

    async def check_health(self) -> None:
        """Ray restarts a replica whose checks fail: one whose models cannot answer any more."""
        if not self.server.dataplane.ready():
            raise RuntimeError(f"replica {self.id}: not ready ({self.server.dataplane.down()})")

    def record_autoscaling_stats(self) -> dict[str, float]:
        """The requests this replica holds (reading, queued or running), for in_flight_policy."""
        dataplane = self.server.dataplane
        return {"in_flight": float(sum(dataplane.in_flight(name) for name in self.server.manager.names))}

    async def __del__(self) -> None:
        await self._stack.aclose()
        self.server.manager.unload_all()


def _bind_shared(host: str, port: int) -> socket.socket:
    from shipyard.server.transport import bind_tcp

    try:
        return bind_tcp(host, port, reuse_port=True)
    except OSError as exc:
        raise Unavailable(f"cannot listen on {host}:{port} ({exc.strerror})") from None


@dataclass(frozen=True)
class Started:
    """What `start` deployed, for the command to print."""

    replicas: int
    address: str
    dashboard: str | None


def start(spec: ServeSpec, scaling: Scaling, *, address: str | None, cpus: float) -> Started:
    """Connect to the Ray cluster at `address` (None: start one on this machine) and deploy, returning
    once every replica answers. Ray's own proxies stay off: the replicas listen themselves."""
    import logging

    import ray
    from ray import serve

    try:
        context: Any = ray.init(
            address=address,
            # a Ray started here for this command: its notices about a cluster's set-up are not the user's
            logging_level=logging.ERROR if address is None else logging.WARNING,
            log_to_driver=False,
            include_dashboard=False if address is None else None,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise Unavailable(f"cannot reach the Ray cluster at {address}: {_first_line(exc)}") from None
    # Serve's own lines name its proxy's address, which is not where these replicas answer
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
    try:
        serve.run(deployment(spec, scaling, cpus), name=APP, route_prefix="/")
    except Exception as exc:  # a replica that could not start: Ray says why, deep in its text
        stop()
        raise Unavailable(f"the replicas did not start: {_first_line(exc)}") from None
    dashboard = getattr(context, "dashboard_url", None) or None
    return Started(scaling.replicas, context.address_info.get("gcs_address", address or "local"), dashboard)


def stop() -> None:
    """Take the application down and leave the cluster (stopping it when this process started it)."""
    import ray
    from ray import serve

    with contextlib.suppress(Exception):  # stopping what is half up: whatever is there goes
        serve.delete(APP)
    ray.shutdown()


def _first_line(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong (they carry whole remote tracebacks)."""
    text = str(exc).strip()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(("shipyard.errors.", "RuntimeError:", "ValueError:")) or "Error:" in line:
            return line.split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(exc).__name__
