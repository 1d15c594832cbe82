"""Real public pod specs and workload manifests (tests/corpus, sources in SOURCES.md, the
failures and why in README.md)
through `nspod validate`'s library path: at least 90 % validate (warnings allowed), and
the rest fail with a clean SpecError/InputError, never anything else."""
import pathlib

import pytest

from nsPod.errors import InputError
from nsPod.manifest import spec

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "corpus"
FILES = sorted(CORPUS.glob("*.yaml"))
SHARE = 0.90


def validate(path):
    """None when the file validates, else its error lines (the CLI's `validate` path)."""
    try:
        # as `nspod validate` reads it: a ConfigMap/Secret made apart from the pod (kubectl
        # create configmap) is a warning there, not an error
        spec.load_pods(path.read_text(), path.name, sources_required=False)
    except InputError as e:
        return str(e)
    return None


def test_the_corpus_is_there():
    assert len(FILES) >= 127, "issue 10's corpus size"
    listed = (CORPUS / "SOURCES.md").read_text()
    for path in FILES:
        assert path.name in listed, f"{path.name} is not in SOURCES.md"
        assert path.read_text().startswith("# Source: "), f"{path.name} has no source header"


def test_at_least_90_percent_of_the_corpus_validates():
    failed = {path.name: why for path in FILES if (why := validate(path)) is not None}
    for name, why in sorted(failed.items()):
        print(f"{name}:\n  " + why.replace("\n", "\n  "))
    good = len(FILES) - len(failed)
    print(f"corpus: {good}/{len(FILES)} validate ({good / len(FILES):.0%})")
    assert good >= SHARE * len(FILES), f"{good}/{len(FILES)} validate"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_no_corpus_file_raises_anything_but_a_clean_error(path):
    why = validate(path)
    assert why is None or (why.strip() and "Traceback" not in why)
