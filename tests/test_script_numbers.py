"""Superscript and subscript numbers survive the flattening of HTML: 10<sup>24</sup> is not 1024."""

from __future__ import annotations

from ingest.content import extract_article
from ingest.text import html_to_text, script_numbers

PAGE = """<html><head><title>Lumen-3 compute</title></head><body><article><h1>Lumen-3 compute</h1>
<p>The final training run consumed about 3.1 &times; 10<sup>24</sup> floating-point operations on a cluster
of roughly 12,000 accelerators over 58 days, according to the technical report the lab published.</p>
<p>Outside estimates put Atlas-5 at 3 &times; 10<SUP class="exp">25</SUP> or more, and the cooling plant
emits less CO<sub>2</sub> than the old one, the lab said in a statement on Thursday afternoon.</p>
<p>Footnotes and words stay as they are: see note<sup>a</sup> and the H<sub>100</sub>-class parts.</p>
</article></body></html>"""


def test_feed_html_keeps_powers_of_ten():
    text = html_to_text(PAGE)
    assert "3.1 × 10²⁴ floating-point" in text and "10²⁵ or more" in text and "CO₂" in text
    assert "1024" not in text and "1025" not in text


def test_an_extracted_page_keeps_powers_of_ten():
    extracted = extract_article(PAGE.encode("utf-8"), "http://example.com/lumen")
    assert extracted is not None
    assert "10²⁴" in extracted.text and "10²⁵" in extracted.text and "CO₂" in extracted.text
    assert "1024" not in extracted.text


def test_only_numbers_are_rewritten():
    assert script_numbers("note<sup>a</sup>") == "note<sup>a</sup>"
    assert script_numbers("x<sup>-3</sup>") == "x⁻³"
    assert script_numbers("H<sub>100</sub>") == "H₁₀₀"
