"""Reading raw stack config values one key at a time, collecting every problem rather than stopping at the
first: the small parsers ``config.parse`` is made of."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

IMAGE_TAG = re.compile(r"^sha-[0-9a-f]{7,40}$")
FORBIDDEN_IN_TEXT = re.compile(r"[|\r\n]")


@dataclass(frozen=True)
class Secret:
    """A secret config value; its repr never shows the value, so it cannot leak into logs."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(****)"


T = TypeVar("T")


class Reader:
    """Reads keys from the raw config map, collecting problems instead of stopping at the first."""

    def __init__(self, stack: str, values: Mapping[str, str], secret_keys: frozenset[str]) -> None:
        self.stack = stack
        self.values = values
        self.secret_keys = secret_keys
        self.problems: list[str] = []
        self.known: set[str] = set()  # every key asked for: anything else in the config is a typo

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    def get(self, key: str, default: str | None = None) -> str | None:
        self.known.add(key)
        return self.values.get(key, default)

    def _fail(self, key: str, expected: str, seen: object) -> None:
        self.problems.append(f"{key}: expected {expected}, saw {seen!r}")

    def text(self, key: str, default: str | None, pattern: re.Pattern[str], expected: str) -> str:
        raw = self.get(key)
        if raw is None:
            if default is None:
                self.problems.append(f"{key}: required ({expected}), but it is not set")
                return ""
            return default
        if not pattern.match(raw):
            self._fail(key, expected, raw)
        return raw

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        raw = self.get(key, default)
        if raw not in choices:
            self._fail(key, "one of " + " | ".join(choices), raw)
        return raw

    def boolean(self, key: str, default: bool) -> bool:
        raw = self.get(key)
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        self._fail(key, "true or false", raw)
        return default

    def number(self, key: str, default: T, cast: Callable[[str], T], low: T, high: T) -> T:
        raw = self.get(key)
        if raw is None:
            return default
        try:
            value = cast(raw)
        except ValueError:
            self._fail(key, f"a number from {low} to {high}", raw)
            return default
        if not low <= value <= high:  # type: ignore[operator]
            self._fail(key, f"a number from {low} to {high}", raw)
        return value

    def secret(self, key: str) -> Secret:
        raw = self.get(key)
        # The fix reads the value from a file or a prompt, never from a command line (shell history).
        fix = f"`fetchml-infra init --stack {self.stack} --secrets-file FILE`"
        if raw is None:
            self.problems.append(f"{key}: required as a secret, but it is not set (set it with {fix})")
            return Secret("")
        if key not in self.secret_keys:
            # Never echo the value: it was meant to be secret.
            self.problems.append(f"{key}: expected a secret, saw a plain value (its text is not shown); use {fix}")
        elif len(raw) < 8:
            self.problems.append(f"{key}: expected at least 8 characters, saw {len(raw)}")
        return Secret(raw)

    def free_text(self, key: str, default: str) -> str:
        raw = self.get(key, default)
        if FORBIDDEN_IN_TEXT.search(raw) or len(raw) > 200:
            self._fail(key, "up to 200 characters without '|' or line breaks", raw)
        return raw

    def address(self, key: str, default: str) -> str:
        raw = self.get(key, default)
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            self._fail(key, "an IP address such as 127.0.0.1", raw)
        return raw

    def parsed(self, key: str, default: str, check: Callable[[str], object]) -> str:
        """A value that ``check`` accepts (its ValueError says what was expected and seen)."""
        raw = self.get(key, default)
        try:
            check(raw)
        except ValueError as exc:
            self.problems.append(f"{key}: {exc}")
        return raw

    def tag_list(self, key: str) -> tuple[str, ...]:
        raw = self.get(key)
        if raw is None:
            return ()
        try:
            items: Any = json.loads(raw)
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) and IMAGE_TAG.match(i) for i in items):
            self._fail(key, "a JSON list of sha-<hex> tags", raw)
            return ()
        return tuple(items)
