import pytest

from nsPod.api.admission import admit, human_bytes, read_mem_available
from nsPod.errors import NspodError

Ki, Mi, Gi = 1 << 10, 1 << 20, 1 << 30


def test_refusal_is_one_line_with_the_arithmetic():
    with pytest.raises(NspodError) as info:
        admit(3 * Gi // 2, 3 * Gi, 3 * Gi // 2, 256 * Mi,
              [("app", Gi), ("logger", 512 * Mi)], pod_name="web")
    assert str(info.value) == (
        "pod web needs 1.5Gi (app 1Gi, logger 512Mi) but only 1.25Gi is left "
        "(MemAvailable 3Gi - 1.5Gi held by other pods - 256Mi reserve)")
    assert info.value.exit_code == 1


def test_fits_exactly_and_below():
    admit(Gi, 2 * Gi, 512 * Mi, 512 * Mi, [("app", Gi)])
    admit(0, 0, 0, 0, [])


def test_nothing_left_and_no_per_container_list():
    with pytest.raises(NspodError) as info:
        admit(Mi, Gi, Gi, 256 * Mi, [])
    assert str(info.value) == ("the pod needs 1Mi but nothing is left "
                               "(MemAvailable 1Gi - 1Gi held by other pods - 256Mi reserve)")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("n,text", [(0, "0"), (300, "300"), (Ki, "1Ki"), (1536, "1.5Ki"),
                                    (512 * Mi, "512Mi"), (5 * Gi // 4, "1.25Gi"),
                                    (2 * Gi - Mi, "~2Gi"), (24375252 * Ki, "~23.25Gi"),
                                    (1 << 60, "1Ei")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_read_mem_available(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:  1 kB\n"
                       "MemAvailable:   24374756 kB\nBuffers: 7364 kB\n")
    assert read_mem_available(str(meminfo)) == 24374756 * 1024
    assert read_mem_available() > 0


def test_read_mem_available_errors(tmp_path):
    old = tmp_path / "old"
    old.write_text("MemTotal: 1 kB\nMemFree: 1 kB\n")
    with pytest.raises(NspodError, match="no MemAvailable line"):
        read_mem_available(str(old))
    with pytest.raises(NspodError, match="read .*/missing: No such file"):
        read_mem_available(str(tmp_path / "missing"))
