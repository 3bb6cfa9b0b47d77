"""Free-text search of events in the database's own full-text index (migration 0002).

SQLite: the FTS5 table ``event_search`` (unicode61 tokenizer, diacritics removed). PostgreSQL: the
``events.search_vector`` tsvector (``simple`` configuration over ``unaccent``), GIN-indexed. Both are
kept by triggers, so every way an event is written (API, pages, federation, bulk SQL) is indexed.

The query is folded here the way the index folds the text (no accents, no case) and split into words;
every word must match, as the start of a word of the title, description, tags, place or city
("debat" finds "Débat", "conf" finds "conférence"). Results keep the listing's order (by time): this
is an agenda, not a ranking."""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import ColumnElement, text

from node.common.errors import InvalidInput

MAX_WORDS = 12
MAX_WORD_LENGTH = 60
# Letters NFKD leaves whole but both indexes (unaccent; unicode61 for œ/æ as two letters) spell out.
_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae", "Œ": "oe", "Æ": "ae"})


def search_words(query: str | None) -> list[str]:
    """The words of a visitor's query, folded as the index folds them; [] when there are none."""
    decomposed = unicodedata.normalize("NFKD", (query or "").translate(_LIGATURES))
    folded = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    words = re.findall(r"[^\W_]+", folded)
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"the search has {len(words)} words; use at most {MAX_WORDS}")
    return [word[:MAX_WORD_LENGTH] for word in words]


def matching_condition(dialect: str, words: list[str]) -> ColumnElement[bool]:
    """An SQL condition on ``events`` true for the events every word matches."""
    if dialect == "postgresql":
        # Words are letters and digits only, so quoting them makes a valid tsquery of any input.
        tsquery = " & ".join(f"'{word}':*" for word in words)
        return text("events.search_vector @@ to_tsquery('simple', :search_query)").bindparams(search_query=tsquery)
    if dialect == "sqlite":
        match = " ".join(f'"{word}"*' for word in words)
        return text(
            "events.id IN (SELECT rowid FROM event_search WHERE event_search MATCH :search_match)"
        ).bindparams(search_match=match)
    raise RuntimeError(f"full-text search is not implemented for {dialect}")
