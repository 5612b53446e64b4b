"""Raw copies of shared files: a folder in the embedded runtime, an S3 bucket in AWS.

Kept so a file can be re-indexed (a new chunker, a new embedding model) without asking the
platform again, and deleted when the file is deleted on the platform. One copy per file per
workspace (the bytes are the same in every channel it is shared in); which channels may *use*
it is the knowledge store's business. Keys never contain platform ids verbatim: they are
hashed into the path, so nothing from a payload can walk out of the folder.
"""

from __future__ import annotations

import abc
import hashlib
from pathlib import Path
from typing import Any

from core.errors import StoreError


def raw_key(platform_workspace: str, file_id: str) -> str:
    workspace_part = hashlib.sha256(platform_workspace.encode()).hexdigest()[:32]
    file_part = hashlib.sha256(file_id.encode()).hexdigest()[:32]
    return f"files/{workspace_part}/{file_part}"


class RawFileStore(abc.ABC):
    @abc.abstractmethod
    def put(self, platform_workspace: str, file_id: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def get(self, platform_workspace: str, file_id: str) -> bytes | None: ...

    @abc.abstractmethod
    def delete(self, platform_workspace: str, file_id: str) -> None: ...


class LocalRawFileStore(RawFileStore):
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, platform_workspace: str, file_id: str) -> Path:
        return self._root / raw_key(platform_workspace, file_id)

    def put(self, platform_workspace: str, file_id: str, data: bytes) -> None:
        path = self._path(platform_workspace, file_id)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        except OSError as exc:
            raise StoreError(f"saving a raw file failed: {exc.strerror}") from exc

    def get(self, platform_workspace: str, file_id: str) -> bytes | None:
        path = self._path(platform_workspace, file_id)
        return path.read_bytes() if path.is_file() else None

    def delete(self, platform_workspace: str, file_id: str) -> None:
        self._path(platform_workspace, file_id).unlink(missing_ok=True)


class S3RawFileStore(RawFileStore):
    """The bucket is versioned and encrypted (infra/template.yaml)."""

    def __init__(self, bucket: str, *, region: str, client: Any | None = None) -> None:
        import boto3

        self._bucket = bucket
        self._client = client or boto3.client("s3", region_name=region)

    def put(self, platform_workspace: str, file_id: str, data: bytes) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=raw_key(platform_workspace, file_id), Body=data
            )
        except Exception as exc:  # botocore's errors: ClientError and BotoCoreError
            raise StoreError(f"S3 PutObject failed: {type(exc).__name__}") from exc

    def get(self, platform_workspace: str, file_id: str) -> bytes | None:
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=raw_key(platform_workspace, file_id)
            )
        except self._client.exceptions.NoSuchKey:
            return None
        body: bytes = response["Body"].read()
        return body

    def delete(self, platform_workspace: str, file_id: str) -> None:
        try:
            self._client.delete_object(
                Bucket=self._bucket, Key=raw_key(platform_workspace, file_id)
            )
        except Exception as exc:
            raise StoreError(f"S3 DeleteObject failed: {type(exc).__name__}") from exc
