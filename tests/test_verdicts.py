"""The verdict sentences follow the numbers they are given, including numbers that contradict the lesson's hope."""
import pytest

from utils import verdicts

SIZES = {"f16": 214.0, "q8_0": 114.0, "q4_0": 61.0}


def test_faster_names_the_faster_first_whichever_argument_it_is():
    hf_wins = verdicts.faster("HF", 0.07, "ours", 0.33, "training")
    assert hf_wins["text"] == "HF was 4.7× faster than ours at training" and hf_wins["faster"] == "HF"
    assert hf_wins["ratio"] == pytest.approx(0.33 / 0.07) and hf_wins["key"] == "training: HF ×faster"
    ours_wins = verdicts.faster("HF", 0.33, "ours", 0.07, "training")
    assert ours_wins["faster"] == "ours" and ours_wins["text"].startswith("ours was 4.7× faster than HF")
    with pytest.raises(ValueError, match="positive"):
        verdicts.faster("a", 0.0, "b", 1.0, "x")


def test_speed_bounds_split_memory_from_arithmetic_at_half_the_bandwidth():
    bounds = verdicts.speed_bounds(SIZES, {"f16": 70.0, "q8_0": 55.0, "q4_0": 75.0}, bandwidth_gb_s=20.0)
    assert bounds["f16"]["GB/s moved"] == pytest.approx(14.98) and bounds["f16"]["limited by"] == "memory"
    assert bounds["q8_0"]["limited by"] == bounds["q4_0"]["limited by"] == "arithmetic"
    edge = verdicts.speed_bounds({"x": 100.0}, {"x": 100.0}, bandwidth_gb_s=20.0)  # exactly half: memory
    assert edge["x"]["share of bandwidth"] == 0.5 and edge["x"]["limited by"] == "memory"


def test_speed_verdict_follows_the_order_the_table_shows():
    in_order = verdicts.speed_verdict(SIZES, {"f16": 80.0, "q8_0": 150.0, "q4_0": 280.0}, bandwidth_gb_s=20.0)
    assert "Fewer bytes per weight gave more tokens per second" in in_order and "did not" not in in_order
    assert "q4_0 reads 3.5× fewer bytes per token than f16 and generated 3.50× its tokens per second" in in_order
    swapped = verdicts.speed_verdict(SIZES, {"f16": 94.6, "q8_0": 79.0, "q4_0": 101.8}, bandwidth_gb_s=19.0)
    assert "Fewer bytes per weight gave" not in swapped
    assert "Speed did not follow the file sizes (q4_0 > f16 > q8_0" in swapped
    assert "f16 moved 20.2 GB/s (107% of the measured 19.0 GB/s): memory sets its pace" in swapped
    assert "q8_0 and q4_0 spent their time unpacking" in swapped
    reordered = verdicts.speed_verdict(dict(reversed(SIZES.items())), {"q4_0": 101.8, "q8_0": 79.0, "f16": 94.6}, 19.0)
    assert reordered == swapped and swapped.startswith("f16 moved")  # the sentence does not depend on dict order


def test_fits_includes_a_file_exactly_at_the_budget():
    sizes = {"bf16": 41.957128, "q8_0": 22.4, "fp32": 83.914}
    assert verdicts.fits(sizes, 41.957) == (["q8_0"], ["bf16", "fp32"])
    assert verdicts.fits(sizes, 41.957128) == (["q8_0", "bf16"], ["fp32"])
    import pandas as pd

    assert verdicts.fits(pd.Series(sizes), 41.957) == (["q8_0"], ["bf16", "fp32"])  # as 07 passes it


def test_rate_change_says_rose_fell_or_stayed():
    assert verdicts.rate_change("adherence", 0.0, 0.93) == "adherence rose from 0% to 93%"
    assert verdicts.rate_change("adherence", 0.9, 0.2) == "adherence fell from 90% to 20%"
    assert verdicts.rate_change("adherence", 0.5, 0.52) == "adherence stayed near 50% (50% → 52%)"


def test_fewer_but_lossy_flags_only_a_smaller_count_that_lost_the_text():
    rows = [{"script": "Hindi", "GPT-2 tokens": 79, "BERT tokens": 24, "BERT [UNK]": 20, "BERT round trip": False},
            {"script": "English", "GPT-2 tokens": 21, "BERT tokens": 27, "BERT [UNK]": 0, "BERT round trip": False},
            {"script": "Korean", "GPT-2 tokens": 59, "BERT tokens": 31, "BERT [UNK]": 0, "BERT round trip": True}]
    notes = verdicts.fewer_but_lossy(rows, lossless="GPT-2", lossy="BERT")
    assert len(notes) == 1 and notes[0].startswith("Hindi: BERT's 24 tokens against GPT-2's 79 are not better")
    assert "20 [UNK] of 24" in notes[0] and notes[0].endswith("while GPT-2's tokens decode to the original.")


def test_below_floor_banners_only_noise():
    banner = verdicts.below_floor(3.1, "token F1")
    assert banner.startswith("Every run scored below 10 token F1 (best 3.1)") and "cpu or gpu" in banner
    assert verdicts.below_floor(10.0, "token F1") is None and verdicts.below_floor(55.0, "token F1") is None


def test_closer_length_compares_distances_to_the_gold_length():
    near = verdicts.closer_length("QLoRA n=64", 3.0, "instruction", 14.0, 2.5)
    assert "QLoRA n=64 is nearer the length SQuAD wants" in near and "averages" not in near
    far = verdicts.closer_length("QLoRA n=64", 20.0, "instruction", 4.0, 2.5)
    assert "QLoRA n=64 is not nearer" in far
