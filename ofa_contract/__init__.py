"""The shared contract of ofa-serving: the asset event model, name encoding and settings.

Everything that two services must agree on lives here and nowhere else.
"""

from ofa_contract.events import (
    AssetEvent,
    BadRecord,
    KeyNotUtf8,
    NoId,
    NoKey,
    NotAnObject,
    NotJson,
    TooLarge,
    decode_record,
)
from ofa_contract.naming import (
    asset_subject,
    decode_token,
    encode_token,
    group_from_topic,
    group_topic,
)

__version__ = "0.1.0"

__all__ = [
    "AssetEvent",
    "BadRecord",
    "KeyNotUtf8",
    "NoId",
    "NoKey",
    "NotAnObject",
    "NotJson",
    "TooLarge",
    "__version__",
    "asset_subject",
    "decode_record",
    "decode_token",
    "encode_token",
    "group_from_topic",
    "group_topic",
]
