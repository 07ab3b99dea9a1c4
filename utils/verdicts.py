"""Sentences that state what a run showed, computed from its numbers, so that no notebook asserts in prose what its
own run may contradict. Pure functions of plain numbers; each test feeds them contradicting inputs."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

MEMORY_BOUND_SHARE = 0.5  # a variant that moves at least half the measured bandwidth is limited by memory


def faster(name_a: str, seconds_a: float, name_b: str, seconds_b: float, task: str) -> dict:
    """Which of two timed runs was faster and by how much (ratio ≥ 1), with the sentence naming the faster first:
    'HF tokenizers was 4.6× faster than ours at training'."""
    if seconds_a <= 0 or seconds_b <= 0:
        raise ValueError(f"times must be positive to compare, got {seconds_a} and {seconds_b}")
    (fast, t_fast), (slow, t_slow) = sorted([(name_a, seconds_a), (name_b, seconds_b)], key=lambda p: p[1])
    ratio = t_slow / t_fast
    return {"faster": fast, "slower": slow, "ratio": ratio, "key": f"{task}: {fast} ×faster",
            "text": f"{fast} was {ratio:.1f}× faster than {slow} at {task}"}


def speed_bounds(sizes_mb: Mapping[str, float], tok_s: Mapping[str, float], bandwidth_gb_s: float) -> dict:
    """Per variant: the GB/s its generation moved (weights read per token × tokens/s), its share of the measured
    bandwidth, and whether memory (share ≥ MEMORY_BOUND_SHARE) or arithmetic sets its pace."""
    rows = {}
    for name, size in sizes_mb.items():
        moved = size * tok_s[name] / 1e3
        share = moved / bandwidth_gb_s
        rows[name] = {"GB/s moved": moved, "share of bandwidth": share,
                      "limited by": "memory" if share >= MEMORY_BOUND_SHARE else "arithmetic"}
    return rows


def speed_verdict(sizes_mb: Mapping[str, float], tok_s: Mapping[str, float], bandwidth_gb_s: float) -> str:
    """What the quantized files' speeds show on this machine: which variants memory limits and which arithmetic,
    how the smallest file's speed compares with the largest's, and whether speed followed the file sizes."""
    bounds = speed_bounds(sizes_mb, tok_s, bandwidth_gb_s)
    by_bytes = sorted(sizes_mb, key=sizes_mb.get)
    by_speed = sorted(tok_s, key=tok_s.get, reverse=True)
    small, big = by_bytes[0], by_bytes[-1]
    text = "; ".join(f"{n} moved {bounds[n]['GB/s moved']:.1f} GB/s ({bounds[n]['share of bandwidth']:.0%} of the "
                     f"measured {bandwidth_gb_s:.1f} GB/s): {bounds[n]['limited by']} sets its pace"
                     for n in reversed(by_bytes))  # largest file first, whatever order the tables came in
    text += (f". {small} reads {sizes_mb[big] / sizes_mb[small]:.1f}× fewer bytes per token than {big} and "
             f"generated {tok_s[small] / tok_s[big]:.2f}× its tokens per second. ")
    if by_speed == by_bytes:
        return text + "Fewer bytes per weight gave more tokens per second, in the order of the file sizes."
    compute = [n for n in reversed(by_bytes) if bounds[n]["limited by"] == "arithmetic"]
    why = (f"{' and '.join(compute)} spent their time unpacking and multiplying weights rather than reading them, "
           "so fewer bytes bought less speed" if compute else "timings this close can swap between runs")
    return text + (f"Speed did not follow the file sizes ({' > '.join(by_speed)} in tokens/s; smallest file first "
                   f"would be {' > '.join(by_bytes)}): {why}.")


def fits(sizes_mb: Mapping[str, float], budget_mb: float) -> tuple[list[str], list[str]]:
    """(variants whose size is at most the budget, the budget included; the others), smallest first."""
    sizes = dict(sizes_mb)  # a pandas Series too: name -> size
    order = sorted(sizes, key=sizes.get)
    return [n for n in order if sizes[n] <= budget_mb], [n for n in order if sizes[n] > budget_mb]


def rate_change(name: str, before: float, after: float, min_change: float = 0.05) -> str:
    """'format adherence rose from 0% to 93%', '… fell from …' or '… stayed near 50% (50% → 52%)' for a rate in [0, 1]:
    a move smaller than `min_change` is not called a change."""
    move = "rose" if after - before >= min_change else "fell" if before - after >= min_change else "stayed near"
    if move == "stayed near":
        return f"{name} stayed near {before:.0%} ({before:.0%} → {after:.0%})"
    return f"{name} {move} from {before:.0%} to {after:.0%}"


def fewer_but_lossy(rows: Sequence[Mapping], lossless: str, lossy: str) -> list[str]:
    """Where a lossy tokenizer's smaller count is not compression: each row (a script) where `lossy` made fewer
    tokens than `lossless` but its round trip failed. Rows: 'script', '<name> tokens', '<lossy> [UNK]' and
    '<lossy> round trip'."""
    notes = []
    for row in rows:
        few, many = row[f"{lossy} tokens"], row[f"{lossless} tokens"]
        if few < many and not row[f"{lossy} round trip"]:
            unk = row[f"{lossy} [UNK]"]
            notes.append(f"{row['script']}: {lossy}'s {few} tokens against {lossless}'s {many} are not better "
                         f"compression: {lossy} lost the text ({unk} [UNK] of {few}, and decoding does not give it "
                         f"back), while {lossless}'s tokens decode to the original.")
    return notes


NOISE_FLOOR_F1 = 10.0  # token F1 (0-100) below which a SQuAD score is noise: a few words shared by chance


def below_floor(best: float, measure: str, floor: float = NOISE_FLOOR_F1) -> str | None:
    """A banner when even the best run scored below the noise floor (what such a run can and cannot show); None when
    the scores are above it."""
    if best >= floor:
        return None
    return (f"Every run scored below {floor:.0f} {measure} (best {best:.1f}): this model cannot read a passage, so "
            "these scores are noise near zero and their differences are not a trend. This run checks the pipeline "
            "and the metric; the effect needs the cpu or gpu profile.")


def closer_length(name: str, words: float, baseline: str, baseline_words: float, gold_words: float) -> str:
    """Whether `name`'s answers are nearer the gold answers' length than `baseline`'s: a format effect that a model
    too small to find the span can still show."""
    nearer = abs(words - gold_words) < abs(baseline_words - gold_words)
    return (f"{name}'s answers average {words:.1f} words, {baseline}'s {baseline_words:.1f}, the gold answers "
            f"{gold_words:.1f}: {name} is {'nearer' if nearer else 'not nearer'} the length SQuAD wants.")
