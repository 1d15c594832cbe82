"""The suite runs as one pytest session over tests/unit and tests/integration (tests/run.sh):
without packages, two test files of one basename cannot both be collected."""
import pathlib

TESTS = pathlib.Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique_across_the_suite():
    seen = {}
    for path in sorted(TESTS.glob("*/test_*.py")):
        assert path.name not in seen, f"{path} and {seen[path.name]} share a basename"
        seen[path.name] = path
