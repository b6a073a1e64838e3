"""One small registry type for everything addrop looks up by name: methods, trackers, families.

A :class:`Registry` maps a name to a record, keeps the order records were registered in (the
order ``addrop list`` shows), refuses a name registered twice, and answers an unknown name with
one line that lists the known ones and the closest match (:func:`did_you_mean`, the one "did you
mean" of addrop). It imports nothing from the package, so every layer can use it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """A name the registry does not hold; ``str()`` is one line naming the known ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Mapping[str, T], Generic[T]):
    """Named records of one kind (``what``: "method", "tracker", "model family")."""

    def __init__(self, what: str, records: Iterable[T] = (), *, key: Callable[[T], str]) -> None:
        self.what = what
        self._key = key
        self._records: dict[str, T] = {}
        for record in records:
            self.register(record)

    def register(self, record: T) -> T:
        name = self._key(record)
        if name in self._records:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._records[name] = record
        return record

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._records)

    def unknown(self, name: object) -> str:
        """One line for a name that is not here: the known names and a 'did you mean'."""
        hint = did_you_mean(name, self.names, before=" (", after=")")
        return f"unknown {self.what} {name!r}{hint}; known: {', '.join(self.names)}"

    def __getitem__(self, name: str) -> T:
        try:
            return self._records[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


def did_you_mean(
    word: object,
    choices: Iterable[object],
    *,
    before: str = "",
    after: str = "",
    n: int = 1,
    cutoff: float = 0.6,
) -> str:
    """``did you mean 'x'?`` for the choices closest to ``word`` (up to ``n``, joined by "or"),
    framed by ``before`` and ``after``; "" when none is close enough. The one spelling of the
    hint every unknown name in addrop gets (a key, a task, a method, a format, a variant)."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=cutoff)
    if not close:
        return ""
    return f"{before}did you mean {' or '.join(repr(c) for c in dict.fromkeys(close))}?{after}"


def load_object(path: str) -> Any:
    """The object a ``module:name`` path names (a registered record's implementation, imported
    only when it is used)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
