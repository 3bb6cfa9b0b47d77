"""The proofs of one request (a batch's activities) ask the app's key cache once per key: a refresh
(a proof that failed with the key in hand, after a rotation) still reaches the real resolver, and what
it finds is used for the rest of the request; an unknown key is asked again each time."""

from __future__ import annotations

from federation.keys import resolve_key as call_resolver
from node.fedi import keystore


def test_keys_of_one_request(monkeypatch):
    calls: list[tuple[str, bool]] = []
    versions = {"https://lyon.example.org/actor#main": ["old key", "new key"]}

    def resolver(key_id: str, refresh: bool = False):
        calls.append((key_id, refresh))
        found = versions.get(key_id)
        if found is None:
            return None
        if refresh and len(found) > 1:
            found.pop(0)
        return found[0]

    monkeypatch.setattr(keystore, "resolve_key", resolver)
    keys = keystore.KeysOfOneRequest()
    key_id = "https://lyon.example.org/actor#main"
    assert [keys(key_id) for _ in range(100)] == ["old key"] * 100
    assert calls == [(key_id, False)]
    # The verifier's refresh (federation.keys.resolve_key knows this resolver takes one).
    assert call_resolver(keys, key_id, refresh=True) == "new key"
    assert keys(key_id) == "new key"
    assert calls == [(key_id, False), (key_id, True)]
    assert keys("https://nowhere.example/actor#main") is None
    assert keys("https://nowhere.example/actor#main") is None
    assert calls[2:] == [("https://nowhere.example/actor#main", False)] * 2
