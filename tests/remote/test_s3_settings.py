"""Where an s3:// store's endpoint, region and credentials come from."""

from __future__ import annotations

import os

import pytest

import ledger
from ledger.errors import ConfigError
from ledger.objectstore import resolve_options


@pytest.fixture
def clean_aws(monkeypatch, tmp_path):
    for name in (
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("LEDGER_CONFIG", str(tmp_path / "client.toml"))
    return tmp_path


def test_environment_variables(clean_aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    options = resolve_options("s3://bucket/team")
    assert options.filesystem_kwargs() == {
        "access_key": "AKIA1",
        "secret_key": "s1",
        "region": "eu-west-1",
        "endpoint_override": "minio.local:9000",
        "scheme": "http",
    }
    assert "s1" not in repr(options)
    assert options.polars_storage_options()["aws_allow_http"] == "true"


def test_per_store_table_beats_environment_and_longest_prefix_wins(clean_aws, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://wrong:1")
    (clean_aws / "client.toml").write_text(
        '[stores."s3://bucket"]\nendpoint_url = "https://bucket-wide.example"\n'
        '[stores."s3://bucket/team"]\nendpoint_url = "https://team.example"\n'
        'region = "ap-south-1"\naccess_key_id = "K"\nsecret_access_key = "S"\n'
    )
    team = resolve_options("s3://bucket/team/ledger")
    assert (team.endpoint_url, team.region, team.access_key_id) == (
        "https://team.example",
        "ap-south-1",
        "K",
    )
    assert resolve_options("s3://bucket/other").endpoint_url == "https://bucket-wide.example"
    assert resolve_options("s3://elsewhere/x").endpoint_url == "http://wrong:1"


def test_named_profile_from_aws_files(clean_aws, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    (clean_aws / "aws-credentials").write_text(
        "[default]\naws_access_key_id = D\naws_secret_access_key = DS\n"
        "[research]\naws_access_key_id = R\naws_secret_access_key = RS\n"
    )
    (clean_aws / "aws-config").write_text(
        "[profile research]\nregion = us-west-2\nendpoint_url = http://ceph.lab:7480\n"
    )
    (clean_aws / "client.toml").write_text('[stores."s3://lab"]\nprofile = "research"\n')
    lab = resolve_options("s3://lab/ledger")
    assert (lab.access_key_id, lab.region, lab.endpoint_url, lab.profile) == (
        "R",
        "us-west-2",
        "http://ceph.lab:7480",
        "research",
    )
    # No profile named for this bucket: environment keys beat the default profile.
    assert resolve_options("s3://other/x").access_key_id == "from-env"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    assert resolve_options("s3://other/x").access_key_id == "D"
    monkeypatch.setenv("AWS_PROFILE", "research")
    assert resolve_options("s3://other/x").access_key_id == "R"


def test_bad_settings_are_clear_errors(clean_aws):
    (clean_aws / "client.toml").write_text('[stores."s3://b"]\nprofile = "nope"\nendpont = 1\n')
    with pytest.raises(ConfigError, match=r"Unknown key\(s\) \['endpont'\]"):
        resolve_options("s3://b/x")
    (clean_aws / "client.toml").write_text('[stores."s3://b"]\nprofile = "nope"\n')
    with pytest.raises(ConfigError, match="AWS profile 'nope'"):
        resolve_options("s3://b/x")


def test_a_store_reached_only_through_the_client_config(s3_server, s3_store_uri, clean_aws):
    endpoint = s3_server
    (clean_aws / "client.toml").write_text(
        f'[stores."s3://ledger-test"]\nendpoint_url = "{endpoint}"\n'
        'access_key_id = "testing"\nsecret_access_key = "testing"\n'
    )
    with ledger.start_run("p", "e", "configured", store=s3_store_uri) as run:
        run.log_metric("loss", 0.5, step=1)
    assert ledger.query("SELECT name, status FROM runs", store=s3_store_uri).rows() == [
        ("configured", "finished")
    ]


def test_a_local_store_config_reaches_its_archive_bucket(s3_server, clean_aws, store_path):
    from ledger.store import open_store

    os.makedirs(store_path, exist_ok=True)
    with open(os.path.join(store_path, "ledger.toml"), "w") as handle:
        handle.write(
            f'[stores."s3://ledger-test/archive-tier"]\nendpoint_url = "{s3_server}"\n'
            'access_key_id = "testing"\nsecret_access_key = "testing"\n'
        )
    hot = open_store(store_path)
    assert hot.settings.raw["stores"]
    archive = open_store(f"s3://ledger-test/archive-tier/{os.path.basename(store_path)}")
    archive.write_bytes(archive.path("hello.txt"), b"cold")
    assert archive.read_bytes(archive.path("hello.txt")) == b"cold"
