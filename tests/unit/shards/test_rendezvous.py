"""Rendezvous hashing (shards/rendezvous.py): deterministic, balanced and minimal."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from attune_provider.shards.rendezvous import assign, ranking

REFS = [f"pack{i % 37}.workflow_{i}" for i in range(10_000)]
refs = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,15}\.[a-z][a-z0-9_-]{0,30}", fullmatch=True), min_size=1)
shard_sets = st.sets(st.integers(min_value=0, max_value=63), min_size=2, max_size=16)


def test_every_shard_is_within_ten_percent_of_the_mean_on_10000_refs_over_8_shards() -> None:
    counts = Counter(assign(ref, range(8)) for ref in REFS)
    mean = len(REFS) / 8
    assert set(counts) == set(range(8))
    assert all(abs(count - mean) <= 0.1 * mean for count in counts.values()), counts


def test_the_assignment_is_the_same_in_another_process() -> None:
    code = "from attune_provider.shards.rendezvous import assign; print(assign('shop.deploy', range(8)))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == assign("shop.deploy", range(8))


@settings(max_examples=60, deadline=None)
@given(refs, shard_sets)
def test_removing_a_shard_moves_only_its_own_workflows(names: list[str], shards: set[int]) -> None:
    gone = min(shards)
    rest = sorted(shards - {gone})
    for ref in names:
        before, after = assign(ref, sorted(shards)), assign(ref, rest)
        if before != gone:
            assert after == before  # nobody else moves
        else:
            assert after == ranking(ref, shards)[1]  # its next choice


@settings(max_examples=60, deadline=None)
@given(refs, shard_sets, st.integers(min_value=64, max_value=99))
def test_adding_a_shard_moves_workflows_only_onto_it(names: list[str], shards: set[int], new: int) -> None:
    for ref in names:
        before, after = assign(ref, sorted(shards)), assign(ref, sorted(shards | {new}))
        assert after in (before, new)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2, max_value=12))
def test_adding_or_removing_one_of_n_shards_moves_about_one_nth(count: int) -> None:
    sample = REFS[:3000]
    grown = sum(assign(ref, range(count)) != assign(ref, range(count + 1)) for ref in sample)
    shrunk = sum(assign(ref, range(count)) != assign(ref, range(count - 1)) for ref in sample)
    assert abs(grown / len(sample) - 1 / (count + 1)) < 0.04
    assert abs(shrunk / len(sample) - 1 / count) < 0.04


@given(refs, shard_sets, st.data())
def test_a_dead_shard_s_workflows_go_to_their_next_live_choice(
    names: list[str], shards: set[int], data: st.DataObject
) -> None:
    live = data.draw(st.sets(st.sampled_from(sorted(shards)), min_size=1))
    for ref in names:
        chosen = assign(ref, sorted(shards), live)
        assert chosen in live
        assert chosen == assign(ref, sorted(live))  # what a version over the live shards gives
    assert assign(names[0], sorted(shards), set()) == ranking(names[0], shards)[0]  # none live: first choice

