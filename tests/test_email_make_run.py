"""`make run`, complete: the sample world offline -> a brief as .html/.txt/.json/.eml, top five printed.

The fake encoder keeps it quick; the real encoder runs the same code path (test_cli's slow run).
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from digest.summary.schema import DailyBrief, from_dict

def run_offline(tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFCAST_")} | {
        "BRIEFCAST_CONFIG": str(tmp_path / "absent.toml"), "BRIEFCAST_ENCODER": "fake", "COLUMNS": "250",
    }
    return subprocess.run([str(Path(sys.executable).parent / "briefcast"), "run", "--offline"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_run_offline_ends_with_a_brief_ready_to_send(tmp_path):
    first = run_offline(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    html_path = Path(re.search(r"^Brief: (\S+brief\.html)$", out, re.M).group(1))
    eml_path = Path(re.search(r"^Email ready to send: (\S+brief\.eml)", out, re.M).group(1))
    assert html_path.is_absolute() and html_path.is_file() and eml_path.is_file()
    assert html_path.parent.parent == tmp_path / "data" / "briefs" / "ai-geopolitics"

    brief = from_dict(DailyBrief, json.loads((html_path.parent / "brief.json").read_text()))
    top = out[out.index("\nTop "):out.index("Email ready to send")]
    shown = re.findall(r"^  (\d)\. (.+?)(?: — (.+))?$", top, re.M)
    assert 1 <= len(shown) <= 5 and len(shown) == min(5, len({c.story_id for c in brief.cards}))
    for (n, title, publisher), card in zip(shown, brief.cards):
        assert title == card.title and publisher == card.sources[0].publisher
    assert top.startswith(f"\nTop {len(shown)} insights — AI geopolitics, {brief.day}")

    message = email.message_from_bytes(eml_path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "preview@localhost" and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    html = html_path.read_text()
    assert brief.cards[0].title.split(":")[0] in html and "Unsubscribe" in html

    second = run_offline(tmp_path)  # same day: the stored brief, not a second one
    assert second.returncode == 0, second.stderr[-3000:]
    assert "304" in second.stdout or "not modified" in second.stdout
    again = from_dict(DailyBrief, json.loads((html_path.parent / "brief.json").read_text()))
    assert again == brief  # built once (generated_at included); the files are rewritten from the stored copy
