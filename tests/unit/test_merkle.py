"""The RFC 9162 Merkle tree the audit log will use (issue 16): the published test vectors, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kapflow.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    perfect_parts,
    range_root,
    ranges_nodes,
    root,
    verify_consistency,
    verify_inclusion,
)

# The test vectors of RFC 6962's reference implementations (certificate-transparency-go, Trillian):
# eight entries and the root of each prefix.
ENTRIES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43", bytes(range(0x50, 0x58)),
           bytes(range(0x60, 0x70))]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(e) for e in ENTRIES]


@pytest.mark.parametrize("size", range(1, 9))
def test_the_roots_of_the_published_vectors(size: int) -> None:
    assert root(LEAVES[:size]).hex() == ROOTS[size - 1]


def test_the_empty_tree_is_the_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_the_published_inclusion_and_consistency_proofs() -> None:
    assert [p.hex() for p in inclusion_proof(0, LEAVES)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in consistency_proof(6, LEAVES)] == [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]


LOGS = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(lambda log: [leaf_hash(e) for e in log])


@given(LOGS, st.data())
def test_every_entry_is_proven_in_its_tree_and_a_changed_one_is_not(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    head = root(leaves)
    proof = inclusion_proof(index, leaves)
    assert verify_inclusion(leaves[index], index, len(leaves), proof, head)
    if leaf_hash(b"edited") not in leaves:
        assert not verify_inclusion(leaf_hash(b"edited"), index, len(leaves), proof, head)
    assert not verify_inclusion(leaves[index], index, len(leaves), proof[:-1], head) or len(proof) == 0


@given(LOGS, st.data())
def test_a_later_tree_proves_it_only_appended(leaves: list[bytes], data: st.DataObject) -> None:
    old = data.draw(st.integers(1, len(leaves)))
    old_root, new_root = root(leaves[:old]), root(leaves)
    proof = consistency_proof(old, leaves)
    assert verify_consistency(old, len(leaves), old_root, new_root, proof)
    # A history with one early entry rewritten is not consistent with the old head.
    rewritten = [leaf_hash(b"rewritten"), *leaves[1:]]
    if rewritten[0] != leaves[0]:
        assert not verify_consistency(old, len(leaves), old_root, root(rewritten),
                                      consistency_proof(old, rewritten))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(8, LEAVES)
    with pytest.raises(ValueError):
        consistency_proof(0, LEAVES)
    assert not verify_inclusion(LEAVES[0], 9, 8, [], root(LEAVES))
    assert not verify_consistency(9, 8, root(LEAVES), root(LEAVES), [])


def _grown(leaves: list[bytes]) -> tuple[CompactRange, dict[Node, bytes]]:
    """The tree grown a leaf at a time, and every perfect subtree it stored on the way (as the sequencer does)."""
    tree, nodes = CompactRange(), {}
    for leaf in leaves:
        nodes.update(tree.append(leaf))
    return tree, nodes


@given(LOGS, st.data())
def test_the_stored_subtrees_answer_every_head_and_proof_as_the_whole_log_does(
    leaves: list[bytes], data: st.DataObject
) -> None:
    """Roots, inclusion and consistency proofs from the perfect subtrees alone equal the RFC's over all leaves."""
    tree, nodes = _grown(leaves)
    n = len(leaves)
    assert tree.root() == root(leaves) == range_root(0, n, nodes)
    index = data.draw(st.integers(0, n - 1))
    ranges = inclusion_ranges(index, n)
    assert ranges_nodes(ranges) <= nodes.keys()
    assert [range_root(a, b, nodes) for a, b in ranges] == inclusion_proof(index, leaves)
    old = data.draw(st.integers(1, n))
    assert [range_root(a, b, nodes) for a, b in consistency_ranges(old, n)] == consistency_proof(old, leaves)


@given(LOGS, st.data())
def test_a_tree_resumed_from_its_stored_edge_grows_as_if_never_stopped(
    leaves: list[bytes], data: st.DataObject
) -> None:
    """The sequencer's next batch starts from the right edge it stored: the same tree as one long run."""
    cut = data.draw(st.integers(0, len(leaves)))
    _, nodes = _grown(leaves[:cut])
    resumed = CompactRange(cut, [nodes[p] for p in perfect_parts(0, cut)])
    for leaf in leaves[cut:]:
        resumed.append(leaf)
    assert resumed.root() == root(leaves)


def test_an_edge_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="edge subtrees"):
        CompactRange(3, [leaf_hash(b"x")])
