"""The `briefcast` command as a user runs it: a real subprocess against a real loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.localserver import LocalServer
from tests.test_refresh import LONG, rss

BIN = Path(sys.executable).parent / "briefcast"


def briefcast(tmp_path: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")}
    environment |= {"BRIEFCAST_DATA_DIR": str(tmp_path / "data"), "BRIEFCAST_CONFIG": str(tmp_path / "none.toml"),
                    "COLUMNS": "200"} | env
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=environment, timeout=timeout, cwd=tmp_path)


def test_adding_a_loopback_source_is_refused_with_the_setting_named(tmp_path):
    result = briefcast(tmp_path, "sources", "add", "http://127.0.0.1:8080/feed.xml")
    assert result.returncode == 2
    assert "BRIEFCAST_ALLOW_PRIVATE_ADDRESSES" in result.stderr and "loopback" in result.stderr
    allowed = briefcast(tmp_path, "sources", "add", "http://127.0.0.1:8080/feed.xml", BRIEFCAST_ALLOW_PRIVATE_ADDRESSES="1")
    assert allowed.returncode == 0 and "added: #1" in allowed.stdout


def test_bad_kind_and_non_http_urls_are_usage_errors(tmp_path):
    assert briefcast(tmp_path, "sources", "add", "https://example.org/f", "--kind", "video").returncode == 2
    assert "http" in briefcast(tmp_path, "sources", "add", "ftp://example.org/f").stderr


def test_source_weights_from_the_cli_and_a_sources_file(tmp_path):
    assert "weight 2.5" in briefcast(tmp_path, "sources", "add", "https://news.example.org/a", "--weight", "2.5").stdout
    assert briefcast(tmp_path, "sources", "add", "https://news.example.org/b", "--weight", "11").returncode == 2
    listing = tmp_path / "sources.toml"
    listing.write_text('[[source]]\nurl = "https://news.example.org/a"\nweight = 0.5\n'
                       '[[source]]\nurl = "https://news.example.org/c"\n')
    result = briefcast(tmp_path, "sources", "import", str(listing))
    assert "1 added, 1 already present" in result.stdout, result.stdout + result.stderr
    weights = {s["url"][-1]: s["weight"] for s in json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)}
    assert weights == {"a": 0.5, "c": 1.0}  # a re-imported list sets the weight it names, and only that
    changed = briefcast(tmp_path, "sources", "weight", "2", "0")
    assert changed.returncode == 0 and "weight 1 -> 0" in changed.stdout
    assert briefcast(tmp_path, "sources", "weight", "99", "1").returncode == 2
    listing.write_text('[[source]]\nurl = "https://news.example.org/d"\nweight = "high"\n')
    refused = briefcast(tmp_path, "sources", "import", str(listing))
    assert refused.returncode == 2 and "source #1" in refused.stderr and "weight" in refused.stderr


def test_opml_import_and_list(tmp_path, corpus):
    opml = corpus / "feeds/netnewswire/opml/Subs.opml"
    result = briefcast(tmp_path, "sources", "import", str(opml), "--topic", "ai-geopolitics")  # a known topic
    assert result.returncode == 0, result.stderr
    assert "207 sources in Subs.opml: 207 added" in result.stdout
    again = briefcast(tmp_path, "sources", "import", str(opml))
    assert "0 added, 207 already present" in again.stdout
    listed = json.loads(briefcast(tmp_path, "sources", "list", "--json").stdout)
    assert len(listed) == 207 and listed[0]["topic"] == "ai-geopolitics" and listed[0]["last_status"] is None


def test_fetch_json_follows_the_contract(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "feed.rss").write_text(rss([("a", "Alpha", LONG), ("b", "Beta", LONG + " b")]))
    env = {"BRIEFCAST_ALLOW_PRIVATE_ADDRESSES": "1"}
    with LocalServer(root) as server:
        for path in ("/feed.rss", "/missing.rss"):
            assert briefcast(tmp_path, "sources", "add", server.url(path), **env).returncode == 0
        first = json.loads(briefcast(tmp_path, "fetch", "--json", **env).stdout)
        second = json.loads(briefcast(tmp_path, "fetch", "--json", "--all", **env).stdout)
        human = briefcast(tmp_path, "fetch", "--all", **env)
    assert set(first) == {"sources", "new_items", "not_modified", "failed"}
    assert first["new_items"] == 2 and first["failed"] == 1 and first["not_modified"] == 0
    statuses = {s["url"].rsplit("/", 1)[-1]: s for s in first["sources"]}
    assert statuses["feed.rss"]["status"] == "new" and statuses["feed.rss"]["new_items"] == 2
    assert statuses["missing.rss"]["status"] == "failed" and statuses["missing.rss"]["error"] == "HTTP 404 Not Found"
    assert second["not_modified"] == 1 and second["new_items"] == 0
    assert "2 sources: 0 fetched, 1 not modified, 1 failed; 0 new items" in human.stdout


def test_items_list_and_delete(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "feed.rss").write_text(rss([("a", "Alpha", LONG)]))
    env = {"BRIEFCAST_ALLOW_PRIVATE_ADDRESSES": "1"}
    with LocalServer(root) as server:
        briefcast(tmp_path, "sources", "add", server.url("/feed.rss"), **env)
        briefcast(tmp_path, "fetch", **env)
    listed = json.loads(briefcast(tmp_path, "items", "list", "--json").stdout)
    assert [i["title"] for i in listed] == ["Alpha"]
    assert briefcast(tmp_path, "items", "delete", str(listed[0]["id"])).returncode == 0
    assert json.loads(briefcast(tmp_path, "items", "list", "--json").stdout) == []
    missing = briefcast(tmp_path, "items", "delete", "999")
    assert missing.returncode == 1 and "no item #999" in missing.stderr


@pytest.mark.slow
def test_run_offline_ingests_the_sample_world(tmp_path):
    # The whole main job with the real MiniLM: ingest, embed, brief (minutes on a loaded 2-core machine).
    result = briefcast(tmp_path, "run", "--offline", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Offline" in result.stdout and "Stored" in result.stdout
