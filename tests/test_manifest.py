"""The manifest's item table, its JSON form and its digests (the bookkeeping of every rerun)."""

from __future__ import annotations

import json
import random

import pytest

from luisy.digests import items_digest, text_digest
from luisy.directory.manifest import Manifest
from luisy.directory.table import Item, ItemTable
from luisy.errors import ManifestError
from luisy.sources import SourceItems, digest


def _random_items(rng: random.Random, count: int, prefix: str) -> dict[str, Item]:
    return {f"n{rng.randrange(60):02d}": Item(f"{prefix}{i}.npy", i, f"{prefix}c{i}", f"s{i}") for i in range(count)}


@pytest.mark.parametrize("seed", range(40))
def test_merged_keeps_replaces_and_adds_like_a_dict(seed):
    rng = random.Random(seed)
    current = _random_items(rng, rng.randrange(30), "f")
    keep = {name for name in current if rng.random() < 0.7} | {"not-there"}
    new = _random_items(rng, rng.randrange(8), "g")
    expected = {name: current[name] for name in keep if name in current} | new

    merged = ItemTable.of(current).merged(keep, new)

    assert merged.names == sorted(expected)
    assert dict(merged.items()) == expected
    assert merged.digest() == items_digest((name, item.checksum) for name, item in expected.items())


@pytest.mark.parametrize("seed", range(20))
def test_the_items_a_run_makes_read_like_a_dict_of_the_last_made_and_merge_like_one(seed):
    from luisy.directory.table import NewItems, NewParts, PartedItems

    rng = random.Random(seed)
    made = [(f"n{rng.randrange(60):02d}", Item(f"g{i}.npy", i, f"gc{i}", f"s{i}")) for i in range(rng.randrange(40))]
    new, expected = NewItems(), {}
    for name, item in made:
        new.add(name, item)
        expected[name] = item  # a name made again: the last counts
    assert new.rows == len(made)
    assert dict(new.items()) == expected and list(new) == sorted(expected)
    row = rng.randrange(len(made) + 1)
    assert list(new.since(row)) == made[row:]
    assert new.superseded() == [item.file for row, (name, item) in enumerate(made)
                                if any(later == name for later, _ in made[row + 1:])]
    fresh = NewItems()  # made in the same order, split before any table of them all is made
    for name, item in made:
        fresh.add(name, item)
    parts = fresh.by_part(4)
    assert len(fresh) == len(expected) and fresh._table is None, "counted by the split, not by a sorted copy"
    assert {p: t.columns() for p, t in parts.tables.items()} == \
        {p: t.columns() for p, t in NewParts.split(ItemTable.of(expected), 4).tables.items()}
    assert dict(parts.items()) == expected and len(parts) == len(expected)
    table = new.table()
    new.add("zz", Item("zz.npy", 1, "c", None))
    assert "zz" not in table and "zz" in new, "a table handed out does not change"
    expected["zz"] = Item("zz.npy", 1, "c", None)

    current = _random_items(rng, rng.randrange(30), "f")
    keep = {name for name in current if rng.random() < 0.7}
    parted = PartedItems.split(current, 4)
    merged = parted.merged(keep, new)
    assert dict(merged.items()) == {name: current[name] for name in keep} | expected
    assert merged.part_count == 4
    from_parts = parted.merged(keep, fresh)
    assert fresh._table is None, "merged part by part"
    assert dict(from_parts.items()) == {name: current[name] for name in keep} | dict(parts.items())


def test_table_is_a_read_only_mapping_of_items():
    table = ItemTable.of({"b": Item("b.npy", 2, "cb"), "a": Item("a.npy", 1, "ca", "src")})
    assert list(table) == ["a", "b"] and len(table) == 2 and "a" in table and "z" not in table
    assert table["a"] == Item("a.npy", 1, "ca", "src")
    assert table == {"a": Item("a.npy", 1, "ca", "src"), "b": Item("b.npy", 2, "cb")}
    with pytest.raises(KeyError):
        table["z"]
    with pytest.raises(ValueError, match="different lengths"):
        ItemTable(["a"], [], [], [], [])


def test_json_round_trip_keeps_items_failures_and_digests():
    manifest = Manifest(items={"x": Item("x.npy", 3, "cx", "1-2"), "w": Item("w.npy", 4, "cw", None)},
                        failed={"y": "ValueError: bad"}, failed_sources={"y": "5-6"}, skipped={"z": "7-8"},
                        task="T", params={"p": "1"}, code_fingerprint="code")
    again = Manifest.from_json(manifest.to_json())
    assert again.items == manifest.items and again.items.names == ["w", "x"]
    assert (again.failed, again.failed_sources, again.skipped) == ({"y": "ValueError: bad"}, {"y": "5-6"}, {"z": "7-8"})
    assert again.header() == manifest.header()
    assert again.sources() == {"w": None, "x": "1-2", "z": "7-8"}
    assert again.sources(with_failed=True)["y"] == "5-6"


def test_failure_details_round_trip_and_a_manifest_of_schema_3_still_reads():
    manifest = Manifest(items={"x": Item("x.npy", 3, "cx", "1-2")}, failed={"y": "KeyError: 'y'", "z": "died"},
                        failed_details={"y": {"input": "/in/y.txt", "traceback": "Traceback ...\nKeyError: 'y'\n"}},
                        resumed=1, task="T")
    again = Manifest.from_json(manifest.to_json())
    assert again.failed_details == manifest.failed_details and again.resumed == 1
    assert again.header() == manifest.header()

    head, body = manifest.to_json().split("\n")
    old_head, old_body = json.loads(head), json.loads(body)
    del old_body["failed_details"], old_head["resumed"]
    old_body = json.dumps(old_body)
    old_head.update(schema=3, body_bytes=len(old_body), body_digest=text_digest([old_body]))
    old = Manifest.from_json(json.dumps(old_head) + "\n" + old_body)
    assert old.failed == manifest.failed and old.failed_details == {} and old.resumed == 0


@pytest.mark.parametrize("details", [{"w": {"input": "/in/w.txt"}}, {"y": {"where": "?"}}, {"y": {"input": 1}}])
def test_failure_details_of_an_item_not_failed_or_of_another_shape_are_corrupt(details):
    text = Manifest(failed={"y": "KeyError: 'y'"}, failed_details=details).to_json()
    with pytest.raises(ManifestError, match="'failed_details' is not a mapping of failed items"):
        Manifest.from_json(text)


def test_digest_ignores_order_and_sees_every_change():
    pairs = [("a", "1"), ("b", "2"), ("c", None)]
    assert items_digest(pairs) == items_digest(reversed(pairs))
    assert items_digest(pairs) != items_digest([("a", "1"), ("b", "3"), ("c", None)])
    assert items_digest(pairs) != items_digest(pairs[:2])
    columns = SourceItems(["b", "a"], ["2", "1"], ["/b", "/a"], str)
    assert digest(columns) == items_digest([("a", "1"), ("b", "2")]) == digest(list(columns))


def test_source_items_build_items_on_demand():
    items = SourceItems(["a", "b", "c"], ["1", "2", "3"], ["/a", "/b", "/c"], str.upper)
    assert items[1].name == "b" and items[1].load() == "/B"
    assert [item.name for item in items[1:]] == ["b", "c"]
    assert [item.path for item in items.select([2, 0])] == ["/c", "/a"]
    with pytest.raises(ValueError, match="different lengths"):
        SourceItems(["a"], [], [], str)


@pytest.mark.parametrize("name,bad", [
    ("a", False), ("a/b", False), (".hidden", False), ("x/.hidden", False), ("_ok", False), ("ok.luisy", False),
    ("..", True), ("a/..", True), (".", True), ("x/.", True), ("/abs", True), ("", True), ("a//b", True),
    ("a/", True), ("a\\b", True), ("a\0b", True), ("_luisy_manifest.json", True), ("x/_luisyz", True),
    (".luisy-tmp-x", True), (".luisy-retired/f", True),
])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_bad_file_name_finds_the_name_wherever_it_is(name, bad, position):
    from luisy.directory.manifest import bad_file_name

    names = ["fine", "also/fine"]
    names.insert(position, name)
    assert bad_file_name(names) == (name if bad else None)
