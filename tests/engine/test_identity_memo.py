"""IdentityMemo computes each object's value once, stays within its limit, and never hands one
object's value to another."""

from __future__ import annotations

from service.engine.identity_memo import IdentityMemo


class Item:
    def __init__(self, n: int) -> None:
        self.n = n


def test_values_are_computed_once_per_object_and_bounded() -> None:
    memo: IdentityMemo[Item, int] = IdentityMemo(limit=5)
    calls: list[list[int]] = []

    def square(items: list[Item]) -> list[int]:
        calls.append([t.n for t in items])
        return [t.n * t.n for t in items]

    first = [Item(i) for i in range(3)]
    assert memo.values(first, square) == [0, 1, 4]
    assert memo.values(first[::-1], square) == [4, 1, 0] and len(calls) == 1  # all known
    more = [Item(i) for i in range(3, 6)]
    assert memo.values([*first, *more], square) == [0, 1, 4, 9, 16, 25]
    assert calls[-1] == [0, 1, 2, 3, 4, 5]  # 3 new would not fit: started over, all recomputed
    assert len(memo) == 6  # one call's objects are kept whole, even past the limit
    equal_but_other = Item(2)
    assert memo.values([equal_but_other], square) == [4]
    assert calls[-1] == [2]  # another object: computed, not confused with first[2]
