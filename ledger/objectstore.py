"""Object-store roots: turn ``s3://bucket/prefix`` into a configured pyarrow file system.

Where the settings come from, first match wins per setting:

1. ``[stores."s3://bucket/prefix"]`` in the client config (``$LEDGER_CONFIG``, else
   ``$XDG_CONFIG_HOME/ledger/ledger.toml``, else ``~/.config/ledger/ledger.toml``), and
   the same table in a local store's own ``ledger.toml`` (for an archive bucket it
   names). The longest matching URI prefix applies, so ``s3://bucket`` covers every
   prefix in that bucket. Keys: ``endpoint_url``, ``region``, ``profile``,
   ``access_key_id``, ``secret_access_key``, ``session_token``, ``anonymous``.
2. The standard environment: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
   ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID`` /
   ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``.
3. The AWS shared files (``~/.aws/credentials``, ``~/.aws/config``, or
   ``AWS_SHARED_CREDENTIALS_FILE`` / ``AWS_CONFIG_FILE``) for the chosen profile
   (``default`` when none is named).
4. Nothing found: the AWS SDK's own chain (instance roles, SSO caches, ...).

The ledger itself never stores a secret: keys in a config file are the user's choice.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ledger import env
from ledger.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    import pyarrow.fs as pafs

CLIENT_CONFIG_ENV = env.CONFIG
SCHEMES = ("s3",)
_KEYS = {
    "endpoint_url",
    "region",
    "profile",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "anonymous",
}


@dataclass(frozen=True)
class S3Options:
    """The resolved connection settings of one bucket (secrets never in ``repr``)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    anonymous: bool = False
    credentials_from: str = "AWS SDK default chain"
    """Where the keys came from (for ``ledger store check``), never the keys."""

    def __repr__(self) -> str:
        key = "***" if self.access_key_id else None
        return (
            f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"profile={self.profile!r}, access_key_id={key!r}, anonymous={self.anonymous})"
        )

    def filesystem_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`pyarrow.fs.S3FileSystem`."""
        kwargs: dict[str, Any] = {}
        if self.anonymous:
            kwargs["anonymous"] = True
        elif self.access_key_id and self.secret_access_key:
            kwargs["access_key"] = self.access_key_id
            kwargs["secret_key"] = self.secret_access_key
            if self.session_token:
                kwargs["session_token"] = self.session_token
        if self.region:
            kwargs["region"] = self.region
        if self.endpoint_url:
            parts = urlsplit(
                self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}"
            )
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
            kwargs["scheme"] = parts.scheme or "https"
            # Non-AWS endpoints (MinIO, Ceph, moto, R2) address buckets by path, and a
            # region is still required by the signer.
            kwargs.setdefault("region", "us-east-1")
        return kwargs

    def polars_storage_options(self) -> dict[str, str]:
        """The same settings as ``storage_options`` for polars' ``scan_parquet``."""
        options: dict[str, str] = {}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        if self.region or self.endpoint_url:
            options["aws_region"] = self.region or "us-east-1"
        if self.access_key_id and self.secret_access_key:
            options["aws_access_key_id"] = self.access_key_id
            options["aws_secret_access_key"] = self.secret_access_key
            if self.session_token:
                options["aws_session_token"] = self.session_token
        if self.anonymous:
            options["aws_skip_signature"] = "true"
        return options


def is_object_uri(root: str) -> bool:
    """True for ``s3://...`` roots; other schemes are refused by :func:`split_uri`."""
    return "://" in root and not root.startswith("file://")


def split_uri(uri: str) -> tuple[str, str, str]:
    """``s3://bucket/a/b`` -> (``s3``, ``bucket``, ``a/b``).

    Raises:
        ConfigError: for schemes other than ``s3://`` or a missing bucket.
    """
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme in ("s3a", "s3n"):
        scheme = "s3"
    if scheme not in SCHEMES:
        raise ConfigError(
            f"Unsupported store URI {uri!r}: use a local path or s3://bucket/prefix "
            "(any S3-compatible endpoint: set endpoint_url)"
        )
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"Store URI {uri!r} names no bucket: use s3://bucket/prefix")
    return scheme, bucket, prefix.strip("/")


def client_config_path() -> str:
    """Where the per-user config lives (``$LEDGER_CONFIG`` overrides)."""
    explicit = os.environ.get(CLIENT_CONFIG_ENV)
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "ledger", "ledger.toml")


def _load_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Invalid {path}: {exc}") from exc


def _normalise(uri: str) -> str:
    scheme, bucket, prefix = split_uri(uri)
    return f"{scheme}://{bucket}/{prefix}".rstrip("/")


def store_section(uri: str, *configs: dict[str, Any]) -> dict[str, Any]:
    """The ``[stores."<uri prefix>"]`` table that best matches ``uri`` (longest prefix).

    Raises:
        ConfigError: for unknown keys in a matching table.
    """
    target = _normalise(uri)
    best: tuple[int, dict[str, Any]] = (-1, {})
    for config in configs:
        for pattern, table in (config.get("stores") or {}).items():
            if not isinstance(table, dict) or not is_object_uri(str(pattern)):
                continue
            key = _normalise(str(pattern))
            if (target == key or target.startswith(key + "/")) and len(key) > best[0]:
                unknown = set(table) - _KEYS
                if unknown:
                    raise ConfigError(
                        f"Unknown key(s) {sorted(unknown)} in [stores.{pattern!r}]; "
                        f"known: {', '.join(sorted(_KEYS))}"
                    )
                best = (len(key), table)
    return best[1]


def _profile_settings(profile: str) -> dict[str, str]:
    """Keys of ``profile`` from the AWS shared credentials and config files."""
    found: dict[str, str] = {}
    config_path = os.environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    creds_path = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser(
        "~/.aws/credentials"
    )
    for path, section in (
        (config_path, "default" if profile == "default" else f"profile {profile}"),
        (creds_path, profile),
    ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path)
        except configparser.Error as exc:
            raise ConfigError(f"Invalid AWS file {path}: {exc}") from exc
        if parser.has_section(section):
            found.update({key: value.strip() for key, value in parser.items(section)})
    return found


_remembered: list[dict[str, Any]] = []


def remember_config(config: dict[str, Any]) -> None:
    """Make a store's ``[stores."..."]`` tables apply to every bucket opened later.

    Called when a local store reads its ``ledger.toml``, so an archive bucket it names
    is reachable with the settings written next to it.
    """
    if config.get("stores") and config not in _remembered:
        _remembered.append(config)


def resolve_options(uri: str, extra_config: dict[str, Any] | None = None) -> S3Options:
    """The connection settings for ``uri`` (see the module docstring for precedence).

    Raises:
        ConfigError: an unsupported URI, bad config file, or a named profile that
            does not exist.
    """
    split_uri(uri)
    section = store_section(uri, _load_toml(client_config_path()), *_remembered, extra_config or {})
    environ = os.environ
    named_profile = section.get("profile")
    profile_name = named_profile or environ.get("AWS_PROFILE") or "default"
    profile = _profile_settings(str(profile_name))
    if named_profile and not profile:
        raise ConfigError(
            f"AWS profile {named_profile!r} (for {uri}) is not in ~/.aws/credentials or "
            "~/.aws/config"
        )

    def first(*values: Any) -> str | None:
        for value in values:
            if value not in (None, ""):
                return str(value)
        return None

    if section.get("access_key_id"):
        source = "[stores] table in the config"
        key, secret, token = (
            section.get("access_key_id"),
            section.get("secret_access_key"),
            section.get("session_token"),
        )
    elif named_profile:
        source = f"AWS profile {named_profile!r} (named in the config)"
        key, secret, token = (
            profile.get("aws_access_key_id"),
            profile.get("aws_secret_access_key"),
            profile.get("aws_session_token"),
        )
    elif environ.get("AWS_ACCESS_KEY_ID"):
        source = "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        key, secret, token = (
            environ.get("AWS_ACCESS_KEY_ID"),
            environ.get("AWS_SECRET_ACCESS_KEY"),
            environ.get("AWS_SESSION_TOKEN"),
        )
    else:
        source = f"AWS profile {profile_name!r}"
        key, secret, token = (
            profile.get("aws_access_key_id"),
            profile.get("aws_secret_access_key"),
            profile.get("aws_session_token"),
        )
    if not (key and secret):
        source = "anonymous" if section.get("anonymous") else "AWS SDK default chain"
    endpoint = first(
        section.get("endpoint_url"),
        profile.get("endpoint_url") if named_profile else None,
        environ.get("AWS_ENDPOINT_URL_S3"),
        environ.get("AWS_ENDPOINT_URL"),
        profile.get("endpoint_url"),
    )
    region = first(
        section.get("region"),
        profile.get("region") if named_profile else None,
        environ.get("AWS_REGION"),
        environ.get("AWS_DEFAULT_REGION"),
        profile.get("region"),
    )
    return S3Options(
        endpoint_url=endpoint,
        region=region,
        profile=str(profile_name) if profile else None,
        access_key_id=first(key),
        secret_access_key=first(secret),
        session_token=first(token),
        anonymous=bool(section.get("anonymous", False)),
        credentials_from=source,
    )


_filesystems: dict[tuple[str, S3Options], pafs.FileSystem] = {}
_fs_lock = threading.Lock()


def filesystem_for(uri: str, extra_config: dict[str, Any] | None = None) -> pafs.FileSystem:
    """A pyarrow S3 file system for ``uri``'s bucket, shared per process and settings.

    Raises:
        ConfigError: see :func:`resolve_options`.
    """
    options = resolve_options(uri, extra_config)
    _, bucket, _ = split_uri(uri)
    with _fs_lock:
        fs = _filesystems.get((bucket, options))
        if fs is None:
            import pyarrow.fs as pafs

            kwargs = options.filesystem_kwargs()
            if "region" not in kwargs:
                # On AWS with no region configured, ask S3 where the bucket lives (one
                # unsigned HEAD) rather than fail later with a redirect error.
                with contextlib.suppress(OSError):
                    kwargs["region"] = pafs.resolve_s3_region(bucket)
            fs = _filesystems[(bucket, options)] = pafs.S3FileSystem(**kwargs)
        return fs


def _forget_after_fork() -> None:
    # The AWS SDK's connection pools and threads do not survive fork(): a child must
    # build its own clients rather than reuse the parent's (they can hang).
    _filesystems.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
