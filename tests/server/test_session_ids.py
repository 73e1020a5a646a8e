"""Session ids as people type them."""

from __future__ import annotations


def test_session_ids_never_start_with_a_dash() -> None:
    """Ids are typed as CLI arguments (`history export ID`): a leading dash reads as an option
    (token_urlsafe gives one about once in 64 ids; CI met it)."""
    from audiototext.server.sessions import new_session_id

    ids = [new_session_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 16 for i in ids) and len(set(ids)) == len(ids)
