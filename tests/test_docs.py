"""The docs: docs/reference.md is what `python -m ganc.docgen` makes of the code today,
README.md is short and names the two commands, and every relative link of README.md and
docs/*.md (file and #anchor) leads somewhere."""
import re

from ganc import docgen

from .helpers import REPO

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)


def markdown_files() -> list:
    return [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def anchors(path) -> set:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped,
    spaces to '-', repeats numbered)."""
    seen, out = {}, set()
    for title in HEADING.findall(FENCE.sub("", path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_reference_is_generated_from_the_code():
    committed = (REPO / "docs" / "reference.md").read_text()
    assert committed == docgen.render(), (
        f"docs/reference.md is stale: regenerate it with `{docgen.COMMAND}` (or `make docs`) "
        "and commit the result")


def test_every_config_field_and_option_is_described_in_the_code():
    assert docgen.undocumented() == [], (
        "give these a description in the code (a comment beside the config field, or the "
        "option's help=), then run `make docs`")


def test_readme_is_short_and_names_the_two_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines; move detail to docs/"
    assert "make test" in text and "make demo" in text


def test_every_relative_link_leads_to_a_file_and_heading():
    broken = []
    for md in markdown_files():
        for target in LINK.findall(FENCE.sub("", md.read_text())):
            if re.match(r"^[a-z]+:", target):          # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(REPO)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{md.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
