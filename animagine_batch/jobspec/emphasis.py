"""A1111's emphasis syntax, parsed: `(x)` x1.1, `((x))` x1.21, `[x]` /1.1, `(x:1.3)`, `\\(` a
literal parenthesis and `BREAK` a new 75-token chunk (SPEC.md section 2).

`parse` reads a prompt into segments of (text, weight) fragments, which the engine's
conditioning hands to compel (`engine/conditioning.py`). The parser is written here because no
maintained library reads A1111's syntax: compel has its own (`(x)1.2`, `x++`), so A1111 prompts
would need rewriting into it, with escaping pitfalls.
"""

from __future__ import annotations

import re

ROUND, SQUARE = 1.1, 1 / 1.1
# tokens of A1111's grammar: escapes, brackets, an explicit weight closing a round bracket,
# plain text, and a lone colon (literal text outside a weight)
_TOKEN = re.compile(r"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|"
                    r"[^\\()\[\]:]+|:")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
BREAK = None  # segment separator inside `parse_fragments`' output


def parse_fragments(text: str) -> list[tuple[str | None, float]]:
    """A1111 prompt -> [(text, weight)], with (None, -1) where `BREAK` starts a new chunk.

    `(x)` multiplies by 1.1, `[x]` divides by 1.1, `(x:1.3)` sets 1.3 times, nesting multiplies,
    `\\(` and `\\)` are literal parentheses, unclosed brackets apply to the end of the prompt.
    Neighbouring fragments of equal weight are merged.
    """
    out: list[list] = []
    rounds: list[int] = []
    squares: list[int] = []

    def scale(start: int, factor: float) -> None:
        for frag in out[start:]:
            if frag[0] is not None:
                frag[1] *= factor

    for m in _TOKEN.finditer(text):
        tok, weight = m.group(0), m.group(1)
        if tok.startswith("\\") and len(tok) == 2:
            out.append([tok[1], 1.0])
        elif tok == "\\":
            out.append(["\\", 1.0])
        elif tok == "(":
            rounds.append(len(out))
        elif tok == "[":
            squares.append(len(out))
        elif weight is not None and rounds:
            try:
                scale(rounds.pop(), float(weight))
            except ValueError:
                out.append([tok, 1.0])
        elif tok == ")" and rounds:
            scale(rounds.pop(), ROUND)
        elif tok == "]" and squares:
            scale(squares.pop(), SQUARE)
        else:
            for i, part in enumerate(_BREAK.split(tok)):
                if i:
                    out.append([BREAK, -1.0])
                out.append([part, 1.0])
    for start in rounds:
        scale(start, ROUND)
    for start in squares:
        scale(start, SQUARE)
    for frag in out:  # whitespace has no tokens to weight (and compel cannot place it)
        if frag[0] is not None and not frag[0].strip():
            frag[1] = 1.0
    merged: list[list] = []
    for frag in out:
        if frag[0] == "":
            continue
        if merged and frag[0] is not None and merged[-1][0] is not None \
                and merged[-1][1] == frag[1]:
            merged[-1][0] += frag[0]
        else:
            merged.append(frag)
    return [(t, round(w, 6) if t is not None else w) for t, w in merged]


def parse(text: str) -> list[list[tuple[str, float]]]:
    """A1111 prompt -> segments (split at `BREAK`) of (text, weight) fragments."""
    segments: list[list[tuple[str, float]]] = [[]]
    for t, w in parse_fragments(text):
        if t is None:
            segments.append([])
        else:
            segments[-1].append((t, w))
    return [s for s in segments if s] or [[("", 1.0)]]


def plain_text(text: str) -> str:
    """The prompt as the text encoders read it: brackets, weights and BREAKs removed."""
    return " ".join("".join(t for t, _ in seg) for seg in parse(text))
