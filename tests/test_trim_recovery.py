"""The recovery benchmark's own parts: SAFIM's truncation baseline and the HumanEval sandbox it uses."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import safim_truncation as safim  # noqa: E402
import trim_recovery  # noqa: E402


def test_safim_control_rule_cuts_at_the_first_unbalanced_paren_even_inside_a_char_literal():
    assert safim.truncate_control("cpp", "a(b) > 0) {\n  x;\n}") == "a(b) > 0"
    assert safim.truncate_control("java", "s[i] == ')') c++;") == "s[i] == '"
    assert safim.truncate_control("python", "\n  x in range(n):\n    y") == "  x in range(n):"


def test_safim_block_rule_drops_lines_until_one_subtree_is_inserted():
    prefix = "int main() {\n    if (x) {\n        "
    suffix = "\n    }\n    return 0;\n}\n"
    completion = "y = 1;\n    }\n    return 0;\n}\n"
    assert safim.truncate_block("cpp", prefix, suffix, completion) == "y = 1;\n"


def test_safim_block_rule_for_python_uses_a_pass_placeholder():
    prefix = "for i in range(3):\n    if i:\n        "
    suffix = "\n    print(i)\n"
    assert safim.truncate_block("python", prefix, suffix, "continue\n    print(i)\n").rstrip() == "continue"


def test_safim_first_line_keeps_its_line_break():
    assert safim.first_line("\n    x = 1\n    y = 2\n") == "    x = 1\n"


def test_programs_pass_fail_and_time_out_in_a_child_process():
    assert trim_recovery.passes("assert 1 + 1 == 2\n", timeout=3)
    assert not trim_recovery.passes("raise ValueError('no')\n", timeout=3)
    assert not trim_recovery.passes("while True:\n    pass\n", timeout=1)
    assert not trim_recovery.passes("import os\nos.system('true')\n", timeout=3)  # disabled in the child


def test_recovery_ignores_trailing_whitespace_only():
    case = {"middle": "    x = 1\n"}
    assert trim_recovery.recovered(case, "    x = 1", 0)
    assert not trim_recovery.recovered(case, "x = 1", 0)
    assert not trim_recovery.recovered(case, "    x = 1", 1)


@pytest.mark.skipif(not trim_recovery.EVALDATA.is_dir(), reason="shared evaluation data not present")
def test_a_small_sample_of_the_benchmark_recovers_most_middles():
    cases = trim_recovery.humaneval_cases(trim_recovery.EVALDATA, "MultiLine")[::250]
    result = trim_recovery.evaluate(cases, "multi_line", overrun=400, execute=False, timeout=3)
    assert result["ours"]["suffix_echo"] >= 0.9
    assert result["ours"]["suffix_echo"] > result["safim"]["suffix_echo"]
