"""The shared contract of ofa-serving: the asset event model, name encoding, the layout of
topics/streams/buckets/headers, settings, and the process runtime every component shares.

Everything that two services must agree on lives here and nowhere else:

- :mod:`.events` (record decoding), :mod:`.naming` (token encoding),
  :mod:`.layout` (``Layout``, ``KafkaHeaders``, ``NatsHeaders``),
  :mod:`.topics` (value Structs, compacted-topic codecs), :mod:`.registry` (KV registry values),
- :mod:`.settings` (``from_env``, constrained types), :mod:`.processes` (the CLI registry),
- :mod:`.runtime` (logging, ops endpoints, waiting, NATS connections, tasks, uvicorn),
- :mod:`.asset_state`, :mod:`.auth` (shared by edge and router), :mod:`.compat` (private APIs).
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
from ofa_contract.layout import DEFAULT_LAYOUT, KafkaHeaders, Layout, NatsHeaders
from ofa_contract.naming import decode_token, encode_token

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LAYOUT",
    "AssetEvent",
    "BadRecord",
    "KafkaHeaders",
    "KeyNotUtf8",
    "Layout",
    "NatsHeaders",
    "NoId",
    "NoKey",
    "NotAnObject",
    "NotJson",
    "TooLarge",
    "__version__",
    "decode_record",
    "decode_token",
    "encode_token",
]
