"""Edge cases the real capture lacks, on synthetic vmcores whose truth table
the builder knows: 5-level paging, 1 GiB/4 KiB mappings, SME C-bit,
non-extreme SPARSEMEM, newer kernels' page types (6.9 hugetlb, 6.10 slab,
6.12 top-byte types and unaccepted memory, 7.1 compound_info), hwpoison and
offline pages, QEMU's ELF quirks, and batch/cycle boundaries."""
import pytest

from dumpfilter.filter.classify import CLASS_NAMES, Classifier
from dumpfilter.readers import open_dump
from dumpfilter.testing.synthetic import ImageSpec, build_vmcore, expected_bitmap2, expected_counts
from dumpfilter.vmcoreinfo import VmcoreInfo

from clitools import run_cli
from oracles import read_kdump_bitmap2

VARIANTS = {
    "6.1": dict(profile="6.1"),
    "6.9": dict(profile="6.9"),
    "6.10": dict(profile="6.10"),
    "6.12": dict(profile="6.12"),
    "7.1": dict(profile="7.1"),
    "5level-1G-sme": dict(profile="6.12", five_level=True, direct_map_page="1G",
                          sme_mask=1 << 47),
    "4K-vmemmap": dict(profile="6.1", vmemmap_page="4K", direct_map_page="2M"),
    "non-extreme": dict(profile="6.10", sparsemem_extreme=False, mem_section_size=16),
    "qemu-quirks": dict(profile="6.1", elf_vaddrs=False, phdrs_after_shdrs=True,
                        bad_ehsize=True, misalign=True, kernel_alias_load=False),
    "holes-crashkernel": dict(profile="6.12", ram_ranges=[(0x1000, 0x9F000), (0x100000, 0x3000000),
                                                           (0x4000000, 0x9000000)],
                              crashkernel=(0x5000000, 0x1000000)),
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def image(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("syn") / f"{request.param}.vmcore"
    spec = dict(mem_mib=96, seed=7)
    spec.update(VARIANTS[request.param])
    info = build_vmcore(str(path), ImageSpec(**spec))
    return path, info


def classify(path, level):
    src = open_dump(str(path))
    clf = Classifier(src, VmcoreInfo.parse(src.vmcoreinfo_raw), level, cycle_pfns=1 << 14)
    bits = bytearray()
    for cyc in clf.cycles():
        bits += cyc.bitmap2
    return bytes(bits), {name: clf.result.counts[cid] for cid, name in CLASS_NAMES.items()}


@pytest.mark.parametrize("level", [1, 2, 4, 8, 16, 31])
def test_classifier_matches_truth(image, level):
    path, info = image
    bits, counts = classify(path, level)
    expected = expected_bitmap2(info, level)
    assert bits[: len(expected)] == expected[: len(bits)]
    want = expected_counts(info, level)
    for name, n in counts.items():
        if name != "zero":  # counted while pages are written
            assert n == want[name], name


def test_cli_output_matches_truth(image, tmp_path):
    path, info = image
    out = tmp_path / "out.kdump"
    r = run_cli("-z", "-d", "31", "--message-level", "31", path, out)
    expected = expected_bitmap2(info, 31)
    got = read_kdump_bitmap2(out)
    assert got[: len(expected)] == expected
    # Every kept page reads back equal to the truth.
    with open_dump(str(out)) as src:
        for pfn in range(info.max_pfn):
            if expected[pfn >> 3] >> (pfn & 7) & 1:
                assert src.read_phys(pfn * 4096, 4096) == info.page_bytes(pfn), pfn
    zero = expected_counts(info, 31)["zero"]
    assert f"Pages filled with zero  : 0x{zero:016x}" in r.stdout
