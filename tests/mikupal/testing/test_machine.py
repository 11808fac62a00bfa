"""The machine line benchmarks print (mikupal.testing.machine)."""

from __future__ import annotations

from mikupal.testing.machine import Machine, machine_line, parse_cpuinfo, this_machine

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC  7B13
flags\t\t: fpu sse2 avx avx2 fma f16c
processor\t: 1
model name\t: something else
flags\t\t: avx512f
"""


def test_parse_cpuinfo_reads_the_first_processor_and_its_vector_flags_in_order():
    assert parse_cpuinfo(CPUINFO) == ("AMD EPYC 7B13", ("avx2", "fma"))


def test_describe_says_when_avx512_is_missing_and_when_it_is_there():
    amd = Machine(cpu="AMD EPYC", vector_flags=("avx2", "fma"), cores=2, memory_gib=23.5)
    assert amd.describe() == "2 CPU cores, AMD EPYC (avx2 fma, no AVX-512), 23.5 GiB memory"
    intel = Machine(cpu="Intel Xeon", vector_flags=("avx2", "fma", "avx512f"), cores=4, memory_gib=None)
    assert intel.describe() == "4 CPU cores, Intel Xeon (avx2 fma avx512f)"


def test_this_machine_reads_a_proc_folder(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    (tmp_path / "meminfo").write_text("MemTotal:       24683008 kB\nMemFree: 1 kB\n")
    m = this_machine(tmp_path)
    assert (m.cpu, m.vector_flags) == ("AMD EPYC 7B13", ("avx2", "fma"))
    assert abs(m.memory_gib - 24683008 / 1024**2) < 1e-9
    assert m.cores >= 1


def test_this_machine_without_proc_files_still_describes_the_cpu(tmp_path):
    m = this_machine(tmp_path / "missing")
    assert m.cpu and m.vector_flags == () and m.memory_gib is None
    assert "no AVX2, no AVX-512" in m.describe()


def test_machine_line_ends_with_the_load_average():
    line = machine_line()
    assert " CPU cores, " in line and line.endswith("(1, 5, 15 min)")
