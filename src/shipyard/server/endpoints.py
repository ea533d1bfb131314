"""Every HTTP endpoint, one method each (server/routes.py says which route each answers): the hot ones
(server/handlers.py, answered from ASGI) and the rest, through Starlette: health, metadata, the
repository extension, monitoring and the docs. Each converts the request, calls the data plane and
converts its answer; errors are raised, for Starlette to answer (server/errors.py). The route's
scope was checked before (server/http.py)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from shipyard.dataplane import DataPlane
from shipyard.edge import web
from shipyard.errors import InvalidInput
from shipyard.monitor import dashboard
from shipyard.server.admin import DeployRequest, RollbackRequest, RolloutRequest, SplitRequest, admin_body
from shipyard.server.auth import Auth
from shipyard.server.edge import EdgePages
from shipyard.server.handlers import Handlers, json_response, read_body
from shipyard.server.openapi import swagger_page

FEEDBACK_LIMIT = 4 * 1024 * 1024
TRUE, FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


def _name_version(request: Request) -> tuple[str, str | None]:
    return request.path_params["name"], request.path_params.get("version")


class Endpoints(Handlers):
    def __init__(
        self,
        dataplane: DataPlane,
        auth: Auth,
        max_body_bytes: int,
        document: dict[str, Any],
        edge: EdgePages,
    ) -> None:
        """`document`: the OpenAPI document (server/openapi.py), served as it is and shown by /docs.
        `edge`: the models' web pages (/edge/NAME/)."""
        super().__init__(dataplane, auth, max_body_bytes)
        self.edge = edge
        self._openapi = orjson.dumps(document)
        self._docs = swagger_page("/openapi.json", document["info"]["title"])

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dataplane.live()})

    async def ready(self, request: Request) -> Response:
        is_ready, down = self.dataplane.ready(), self.dataplane.down()
        doc: dict[str, Any] = {"ready": is_ready}
        if down:
            doc["down"] = down
        return json_response(doc, 200 if is_ready else 400)

    async def metrics(self, request: Request) -> Response:
        content, media_type = self.dataplane.metrics()
        return Response(content, media_type=media_type)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.server_metadata())

    async def statistics(self, request: Request) -> Response:
        params = request.path_params
        return json_response(self.dataplane.statistics(params.get("name"), params.get("version")))

    async def model_metadata(self, request: Request) -> Response:
        return json_response(self.dataplane.model_metadata(*_name_version(request)))

    async def model_config(self, request: Request) -> Response:
        return json_response(self.dataplane.model_config(*_name_version(request)))

    async def model_ready(self, request: Request) -> Response:
        name, version = _name_version(request)
        is_ready = self.dataplane.model_ready(name, version)
        return json_response({"name": name, "ready": is_ready}, 200 if is_ready else 400)

    # -- repository extension (Triton's), admin ----------------------------------------------------

    async def repository_index(self, request: Request) -> Response:
        return json_response(await self.dataplane.control.repository_index())

    async def repository_load(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.dataplane.control.repository_load(name)
        return json_response({"name": name, "loaded": True})

    async def repository_unload(self, request: Request) -> Response:
        name = request.path_params["name"]
        await self.dataplane.control.repository_unload(name)
        return json_response({"name": name, "loaded": False})

    async def deploy(self, request: Request) -> Response:
        body = await admin_body(request, DeployRequest)
        answer = await self.dataplane.control.deploy(
            request.path_params["name"],
            body.version,
            force=body.force,
            reason=body.reason,
            actor=request.state.actor,
        )
        return json_response(answer)

    async def rollback(self, request: Request) -> Response:
        body = await admin_body(request, RollbackRequest)
        name, actor = request.path_params["name"], request.state.actor
        return json_response(await self.dataplane.control.rollback(name, reason=body.reason, actor=actor))

    async def split(self, request: Request) -> Response:
        body = await admin_body(request, SplitRequest)
        answer = await self.dataplane.control.split(
            request.path_params["name"],
            body.shares,
            force=body.force,
            reason=body.reason,
            actor=request.state.actor,
        )
        return json_response(answer)

    async def rollout_start(self, request: Request) -> Response:
        body = await admin_body(request, RolloutRequest)
        name, actor = request.path_params["name"], request.state.actor
        return json_response(await self.dataplane.control.rollout_start(name, body.model_dump(), actor))

    async def rollout_steer(self, request: Request) -> Response:
        body = await admin_body(request, RollbackRequest)
        name, action = request.path_params["name"], request.path_params["action"]
        control = self.dataplane.control
        return json_response(await control.rollout_steer(name, action, body.reason, request.state.actor))

    async def rollout_status(self, request: Request) -> Response:
        return json_response(await self.dataplane.control.rollout_status(request.path_params["name"]))

    # -- monitoring -----------------------------------------------------------------------------------

    async def feedback(self, request: Request) -> Response:
        body = await read_body(request, FEEDBACK_LIMIT)
        return json_response(await self.dataplane.feedback(request.path_params["name"], body))

    async def monitor_status(self, request: Request) -> Response:
        return json_response(await self.dataplane.snapshot(request.path_params["name"]))

    async def list_models(self, request: Request) -> Response:
        return json_response({"models": self.dataplane.models()})

    async def dashboard_index(self, request: Request) -> Response:
        return HTMLResponse(dashboard.index(self.dataplane.manager.names))

    async def dashboard_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        value = request.query_params.get("fragment", "false").lower()
        if value not in TRUE + FALSE:
            raise InvalidInput(f"fragment must be true or false, got {value!r}")
        snapshot = await self.dataplane.snapshot(name)
        if value in TRUE:
            return HTMLResponse(dashboard.fragment(snapshot))
        return HTMLResponse(dashboard.page(name, snapshot, self.dataplane.manager.names))

    # -- the model in the browser (the web export's page) ---------------------------------------------

    async def edge_page(self, request: Request) -> Response:
        return await self._edge_file(request.path_params["name"], web.PAGE[0])

    async def edge_file(self, request: Request) -> Response:
        return await self._edge_file(request.path_params["name"], request.path_params["file"])

    async def _edge_file(self, name: str, file: str) -> Response:
        path = await self.edge.file(name, file)
        # the same URL serves a new page when the model's default version changes: browsers ask again
        return FileResponse(path, media_type=web.media_type(file), headers={"Cache-Control": "no-cache"})

    # -- the documentation ------------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(self._docs)
