"""Shared documents (FeatureVisor datafiles) for the Redis store.

Keys (``p`` is the store's prefix), outside every experiment:

- ``p:doc:{<ns>}:<key>``  hash ``content``, ``digest``, ``updated_at`` (ISO, UTC), ``version``
- ``p:docs:{<ns>}``       set of the namespace's document keys

``<ns>`` is the namespace with ``%``, ``{`` and ``}`` percent-encoded (``%25``, ``%7B``,
``%7D``), so it holds no brace: the hash tag ``{<ns>}`` puts a namespace's documents and its
index on one Redis Cluster shard, and the document key after ``}:`` is kept verbatim (any
character). The empty namespace is written ``%00``, which no other namespace can give (NUL is
not allowed in one), so the tag is never empty.

Puts and deletes are Lua scripts: the digest comparison, the version increment (HINCRBY) and the
index update happen in one step, so concurrent puts get consecutive versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis
from redis.commands.core import Script

from abpilot.store.base import Document
from abpilot.store.codec import as_utc
from abpilot.store.redis.history import reachable, text

_FIELDS = ("content", "digest", "updated_at", "version")

# KEYS: doc, index. ARGV: key, content, digest, updated_at.
# Returns {1, new version} after a write, or {0, content, digest, updated_at, version} when the
# stored digest already equals ARGV[3] (nothing written).
_PUT = """
local stored = redis.call('HMGET', KEYS[1], 'content', 'digest', 'updated_at', 'version')
if stored[2] == ARGV[3] then return {0, stored[1], stored[2], stored[3], stored[4]} end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'content', ARGV[2], 'digest', ARGV[3], 'updated_at', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return {1, version}
"""

# KEYS: doc, index. ARGV: key. Returns 1 if the document existed, else 0.
_DELETE = """
redis.call('SREM', KEYS[2], ARGV[1])
return redis.call('DEL', KEYS[1])
"""


def _tag(namespace: str) -> str:
    """The namespace as a hash tag's content: brace-free, never empty, reversible."""
    if not namespace:
        return "%00"
    return namespace.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class RedisDocuments:
    """Mixed into ``RedisStore``: needs ``_client``, ``_prefix`` and ``location``."""

    _client: redis.Redis
    _prefix: str
    location: str
    _put_document: Script
    _delete_document: Script

    def _register_document_scripts(self) -> None:
        self._put_document = self._client.register_script(_PUT)
        self._delete_document = self._client.register_script(_DELETE)

    def _document_key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}:doc:{{{_tag(namespace)}}}:{key}"

    def _document_index(self, namespace: str) -> str:
        return f"{self._prefix}:docs:{{{_tag(namespace)}}}"

    @reachable
    def put_document(
        self, namespace: str, key: str, content: str, digest: str, updated_at: datetime
    ) -> Document:
        moment = as_utc(updated_at)
        reply = self._put_document(
            keys=[self._document_key(namespace, key), self._document_index(namespace)],
            args=[key, content, digest, moment.isoformat()],
        )
        if int(reply[0]) == 1:
            return Document(namespace, key, content, digest, moment, int(reply[1]))
        return _document(namespace, key, reply[1:])

    @reachable
    def get_document(self, namespace: str, key: str) -> Document | None:
        fields = self._client.hmget(self._document_key(namespace, key), _FIELDS)
        return None if fields[0] is None else _document(namespace, key, fields)

    @reachable
    def list_documents(self, namespace: str) -> list[Document]:
        keys = sorted(text(k) for k in self._client.smembers(self._document_index(namespace)))
        if not keys:
            return []
        pipe = self._client.pipeline(transaction=True)  # one consistent snapshot
        for key in keys:
            pipe.hmget(self._document_key(namespace, key), _FIELDS)
        replies = pipe.execute()
        return [
            _document(namespace, key, fields)
            for key, fields in zip(keys, replies, strict=True)
            if fields[0] is not None  # deleted between SMEMBERS and the pipeline
        ]

    @reachable
    def delete_document(self, namespace: str, key: str) -> bool:
        deleted = self._delete_document(
            keys=[self._document_key(namespace, key), self._document_index(namespace)],
            args=[key],
        )
        return bool(deleted)


def _document(namespace: str, key: str, fields: Sequence[Any]) -> Document:
    """A document from its hash fields (bytes or str, all present), in the order of
    ``_FIELDS``."""
    content, digest, updated_at, version = (text(f) for f in fields)
    return Document(
        namespace=namespace,
        key=key,
        content=content,
        digest=digest,
        updated_at=as_utc(datetime.fromisoformat(updated_at)),
        version=int(version),
    )
