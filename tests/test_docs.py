"""The repository stands alone: every environment variable the settings read is documented in
docs/configuration.md and listed in infra/.env.example, and the example names nothing else; the
documents the code cites are the project's own."""

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_HELPERS = {"env_str", "env_bool", "env_int", "env_float", "env_decimal", "env_list", "env_int_list"}
# `NAME=value`, or commented out as `# NAME=` (a variable whose default is another's, or tests only).
EXAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.M)


def settings_variables() -> set[str]:
    """The first argument of every arbproject.env helper call in settings.py."""
    tree = ast.parse((ROOT / "arbproject" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ENV_HELPERS:
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), ast.dump(node)
            names.add(first.value)
    return names


def example_variables() -> set[str]:
    return set(EXAMPLE_LINE.findall((ROOT / "infra" / ".env.example").read_text()))


def documented_variables() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]*)`", (ROOT / "docs" / "configuration.md").read_text()))


def test_the_settings_read_a_known_set_of_variables():
    names = settings_variables()
    assert {"LIVE_MODE", "REDIS_URL", "DATABASE_URL", "LOG_LEVEL", "LOG_FORMAT"} <= names
    assert len(names) > 60


def test_every_setting_is_documented_in_the_configuration_page():
    missing = settings_variables() - documented_variables()
    assert not missing, f"document these in docs/configuration.md: {sorted(missing)}"


def test_every_setting_is_in_the_env_example():
    missing = settings_variables() - example_variables()
    assert not missing, f"add these to infra/.env.example: {sorted(missing)}"


def compose_variables() -> set[str]:
    """Variables docker-compose itself substitutes (${NAME:-default}), e.g. Grafana's password."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "infra" / "docker-compose.yml").read_text()))


def test_the_env_example_names_only_real_settings():
    unknown = example_variables() - settings_variables() - compose_variables()
    assert not unknown, f"infra/.env.example names variables neither settings.py nor compose reads: {sorted(unknown)}"


def test_no_file_cites_documents_outside_the_repository():
    """SPEC, EXCHANGES*.md, ACCOUNTING-NOTES.md and ../shared are not in a clone; docs/ replaces them."""
    pattern = r"SPEC §|SPEC\.md|\bper SPEC\b|EXCHANGES(-TRANSFERS)?\.md|ACCOUNTING-NOTES|\.\./shared|shared/fixtures"
    found = subprocess.run(["git", "grep", "-nE", pattern, "--", ".", ":!tests/test_docs.py"],
                           cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 1, f"cite docs/ instead:\n{found.stdout}"


def test_the_readme_links_every_page_of_the_docs():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
