from runtime.storage import Storage  # refused: the coordinator's storage is not part of the authoring API

from runtime import Component

component = Component("evil_storage")


@component.query
async def storage(ctx) -> str:
    return repr(Storage)
