"""OpenFactory's asset router: ``GET /asset/{asset_uuid}`` tells a client where to subscribe.

OpenFactory's SDK asks it before subscribing with core NATS to ``<ASSET_UUID>.*`` and reads
``{"asset_id", "cluster_name", "nats_url"}``. OpenFactory picks the cluster by hashing the uuid on
a consistent-hash ring of its NATS clusters, so every uuid gets an answer, registered or not;
it has no "unknown asset" answer. This deployment has one NATS cluster, so every uuid gets that
cluster: the same answer OpenFactory gives with one cluster configured. The uuid is echoed as the
client sent it (the SDK upper-cases it only for the subject).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import get
from litestar.datastructures import State
from litestar.params import PathParameter

from ofa_contract.settings import CommonSettings
from router.service import RouterService
from router.settings import RouterSettings


class AssetRoute(msgspec.Struct):
    """The answer, in OpenFactory's field order."""

    asset_id: str
    cluster_name: str
    nats_url: str


def public_nats_url(settings: RouterSettings, common: CommonSettings) -> str:
    """``ROUTER_ASSET_NATS_URL``, else the first server of ``NATS_URL`` (OpenFactory also answers
    with the first server of the cluster)."""
    if settings.asset_nats_url:
        return settings.asset_nats_url
    return common.nats_url.split(",")[0].strip()


@get(
    "/asset/{asset_uuid:str}",
    summary="Where to subscribe to an asset with core NATS (OpenFactory's asset router)",
    tags=["assets"],
)
async def asset_route(
    state: State,
    asset_uuid: Annotated[
        str, PathParameter(description="The asset's uuid", min_length=1, max_length=1024)
    ],
) -> AssetRoute:
    """``{"asset_id", "cluster_name", "nats_url"}`` for any uuid, as OpenFactory answers."""
    svc: RouterService = state.service
    return AssetRoute(
        asset_uuid, svc.settings.asset_cluster_name, public_nats_url(svc.settings, svc.common)
    )
