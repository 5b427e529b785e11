"""After generation: cut the model's canvas down to the completion to show.

`trim(language, prefix, suffix, completion, span)` runs a fixed chain of filters, each a plain
function of (context, text) -> text with its own golden fixtures (tests/golden/trim/):

1. `cut_at_suffix_echo`            whole lines that repeat the lines below the cursor
2. `cut_at_rest_of_line_echo`      a first line that ends by repeating the rest of the cursor's line
3. `cut_at_span_end`               the span's stopping rule: end of line, dedent, closing brackets,
                                   max lines
4. `drop_duplicated_closing_line`  a last line that repeats the closers after the cursor
5. `prefer_parse_clean_cut`        a shorter cut when the longer one adds parse errors to the file
6. `reindent_continuation`         continuation lines in the file's indentation style
7. `tidy_end`                      trailing blank space the suffix already provides

and then works out the replace range (closing brackets the editor auto-inserted after the cursor
that the completion types again are replaced, not duplicated).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from diffill.lsp.code import brackets
from diffill.lsp.code import syntax
from diffill.lsp.code.cursor import Cursor, normalise_newlines
from diffill.lsp.code.indentation import columns, detect_style, reindent
from diffill.lsp.code.span import Span
from diffill.lsp.code.suffix_echo import find_line_echo, rest_of_line_cut

Position = tuple[int, int]


@dataclass(frozen=True)
class Trimmed:
    """The completion to show.

    text: what to insert, with the document's own line breaks.
    replace_range: ((start_line, start_char), (end_line, end_char)) relative to the cursor: lines
        counted from the cursor's line (0), characters as offsets into Python `str` (code points)
        from the cursor on line 0. Start is always (0, 0); the end is (0, n) where n > 0 when the
        completion retypes closing brackets that sit right after the cursor (editor auto-pairs):
        those n characters of the rest of the line are replaced by `text`, and they appear in
        `text` in order, so the edit only adds characters. The server converts to UTF-16.
    """

    text: str
    replace_range: tuple[Position, Position] = ((0, 0), (0, 0))
    trace: tuple[Cut, ...] = ()   # what each filter that changed the text cut, in order

    @property
    def is_empty(self) -> bool:
        return self.text == "" and self.replace_range[1] == (0, 0)


EMPTY = Trimmed("")


@dataclass(frozen=True)
class Cut:
    """One filter's verdict: the text it was given and what it left."""

    filter: str
    before: str
    after: str

    def __str__(self) -> str:
        if self.after and self.before.startswith(self.after):
            return f"{self.filter}: cut {self.before[len(self.after):]!r}"
        return f"{self.filter}: {self.before!r} -> {self.after!r}"


@dataclass
class _Context:
    cursor: Cursor
    span: Span
    auto_closed: str        # closers right after the cursor that a completion may retype
    document: syntax.Document | None
    echo_confirmed: bool = False  # the completion went on to repeat the code below the cursor

    @property
    def may_close(self) -> int:
        return self.span.close_depth + len(self.auto_closed)


def trim(language: str, prefix: str, suffix: str, completion: str, span: Span) -> Trimmed:
    """Trim a raw model completion for the cursor between `prefix` and `suffix`.

    `span` is what `decide_span` returned for the same cursor. Never raises on any input; returns
    `EMPTY` (text "" and an empty range) when nothing is worth showing.
    """
    try:
        return _trim(language, prefix, suffix, completion, span)
    except RecursionError:
        return EMPTY


def _trim(language: str, prefix: str, suffix: str, completion: str, span: Span) -> Trimmed:
    if not span.wants_completion or not completion:
        return EMPTY
    cursor = Cursor.of(language, prefix, suffix)
    document = syntax.shared_document(cursor.language)
    ctx = _Context(cursor, span, brackets.leading_closers(cursor.rest_of_line), document)
    text = normalise_newlines(completion)
    trace: list[Cut] = []
    for step in (cut_at_suffix_echo, cut_at_rest_of_line_echo, cut_at_span_end, drop_duplicated_closing_line,
                 prefer_parse_clean_cut, reindent_continuation, tidy_end):
        before, text = text, step(ctx, text)
        if text != before:
            trace.append(Cut(step.__name__, before, text))
        if not text:
            return Trimmed("", trace=tuple(trace))
    consumed = _replaced_closers(ctx, text)
    if cursor.eol != "\n":
        text = text.replace("\n", cursor.eol)
    return Trimmed(text, ((0, 0), (0, consumed)), tuple(trace))


# ---- filters ---------------------------------------------------------------------------------


def cut_at_suffix_echo(ctx: _Context, text: str) -> str:
    """Drop everything from the first line that repeats the lines below the cursor."""
    found = find_line_echo(ctx.cursor, text, ctx.may_close)
    if found is None:
        return text
    cut, ctx.echo_confirmed = found
    return text[:cut]


def cut_at_span_end(ctx: _Context, text: str) -> str:
    """Apply the span's stopping rule: the end of a single-line span, a dedent to or below
    `stop_indent`, a closing bracket beyond what the completion may close (or, when it may close
    some, the end of the line that closes the block), and `max_lines`."""
    span, language = ctx.span, ctx.cursor.language
    mask = brackets.code_mask(text, language)
    depth = 0
    line_start = 0
    line_index = 0
    block_closed = False
    opened_at: list[int] = []  # indentation of the line of each bracket the completion opened
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            if span.single_line and depth <= 0 and mask[i]:
                return text[:i]
            if block_closed and not span.single_line:
                return text[:i]  # this line closed the block the cursor is in
            line_index += 1
            if line_index >= span.max_lines and not ctx.echo_confirmed:
                return text[:i]
            line_start = i + 1
            line = text[line_start:text.find("\n", line_start) if "\n" in text[line_start:] else n]
            first = line_start + len(line) - len(line.lstrip())
            starts_code = line.strip() and (mask[first] or _starts_comment(line.lstrip(), language))
            # inside brackets the completion opened, only a line indented less than the line that
            # opened them (and not closing them) can be the start of something else
            outside = depth <= 0 or (line.lstrip()[:1] not in brackets.CLOSERS and opened_at
                                     and columns(line) < opened_at[-1])
            if starts_code and outside and not ctx.echo_confirmed and _ends_span_by_indent(ctx, line):
                return text[:i + 1]  # keep the line break: tidy_end decides about it
            i += 1
            continue
        if mask[i] and ch in brackets.OPENERS:
            depth += 1
            opened_at.append(columns(ctx.cursor.line_prefix + text[:i] if line_start == 0 else text[line_start:i]))
        elif mask[i] and ch in brackets.CLOSERS:
            depth -= 1
            if opened_at:
                opened_at.pop()
            block_closed = block_closed or (depth < 0 and ch == "}" and language != "python")
            if depth < -ctx.may_close:
                head = text[line_start:i]
                return text[:line_start] if head.strip() == "" and line_start > 0 else text[:i]
        i += 1
    return text


def _starts_comment(stripped: str, language: str) -> bool:
    """Does a line (stripped of indentation) start a comment, rather than continue a string?"""
    if language == "python":
        return stripped.startswith("#")
    return stripped.startswith(("//", "/*")) or (not syntax.has_grammar(language) and stripped.startswith(("#", "--")))


def _ends_span_by_indent(ctx: _Context, line: str) -> bool:
    stop = ctx.span.stop_indent
    if stop is None:
        return False
    stripped = line.lstrip()
    if columns(line) == stop and _CONTINUATION_CLAUSE.match(stripped):
        return False  # `else:` and friends continue the statement whose body this is
    if ctx.cursor.language != "python" and (stripped[0] in brackets.CLOSERS or _DIRECTIVE.match(stripped)):
        return False  # closers are the bracket rule's business; directives sit at column 0
    return columns(line) <= stop


_CONTINUATION_CLAUSE = re.compile(r"(else|elif|except|finally|catch)\b")
_DIRECTIVE = re.compile(r"#\s*(if|ifdef|ifndef|else|elif|endif|pragma|define|undef|region|endregion)\b")


def cut_at_rest_of_line_echo(ctx: _Context, text: str) -> str:
    """Drop text that repeats the rest of the cursor's line at the end of the completion's first
    line ("a, b)" before an auto-closed ")"), for one-line spans or one-line completions."""
    if not ctx.cursor.rest_of_line.strip():
        return text
    nl = text.find("\n")
    if nl >= 0 and not ctx.span.single_line:
        return text
    first = text if nl < 0 else text[:nl]
    cut = rest_of_line_cut(ctx.cursor, first)
    return text if cut is None else text[:cut]


def drop_duplicated_closing_line(ctx: _Context, text: str) -> str:
    """A multi-line completion whose last line is the rest of the cursor's line again ("}" when the
    cursor sat between "{" and "}") ends before that line's text, so the editor's one is used."""
    rest = ctx.cursor.rest_of_line.strip()
    last_start = text.rfind("\n") + 1
    if rest and last_start == 0:
        cut = rest_of_line_cut(ctx.cursor, text)  # a one-line completion that ends with the closers
        return text if cut is None else text[:cut]
    if not rest:
        return text
    if text[last_start:].strip() == rest:
        return text[:last_start + len(text[last_start:]) - len(text[last_start:].lstrip())]
    # the last line ends with the closers after the cursor, which nothing in the completion opened
    end = len(text.rstrip())
    if brackets.leading_closers(rest) == rest and text[:end].endswith(rest):
        head = text[:end - len(rest)]
        if not brackets.open_stack(head, ctx.cursor.language) and _never_below_zero(head, ctx.cursor.language):
            return head.rstrip(" \t")
    return text


def _never_below_zero(text: str, language: str) -> bool:
    return all(depth >= 0 for _, depth in brackets.depth_changes(text, language))


def _errors(ctx: _Context, text: str) -> tuple[int, int]:
    cursor = ctx.cursor
    consumed = _replaced_closers(ctx, text)
    return syntax.error_extent(ctx.document.update(cursor.prefix + text + cursor.suffix[consumed:]))


def _adds_no_errors(errors: tuple[int, int], baseline: tuple[int, int]) -> bool:
    return errors[0] <= baseline[0] and errors[1] <= baseline[1]


def prefer_parse_clean_cut(ctx: _Context, text: str, max_candidates: int = 48) -> str:
    """When prefix + text + suffix has more parse errors than prefix + suffix (more error nodes, or
    errors over more bytes), try shorter cuts at line ends (longest first) and take the first that
    adds none; otherwise keep `text`."""
    if ctx.document is None:
        return text
    baseline = syntax.error_extent(ctx.document.update(ctx.cursor.prefix + ctx.cursor.suffix))
    if _adds_no_errors(_errors(ctx, text), baseline):
        return text
    ends = [i for i, ch in enumerate(text) if ch == "\n"]
    tried = 0
    for end in reversed(ends):
        candidate = text[:end].rstrip(" \t")
        if not candidate.strip():
            break
        if _adds_no_errors(_errors(ctx, candidate), baseline):
            return candidate
        tried += 1
        if tried >= max_candidates:
            break
    return text


def reindent_continuation(ctx: _Context, text: str) -> str:
    """Indent continuation lines in the file's own style (tabs or spaces, and width)."""
    if "\n" not in text:
        return text
    sample = ctx.cursor.prefix[-6000:] + ctx.cursor.suffix[:3000]
    nearby = "\n".join(ctx.cursor.previous_lines[-30:] + ctx.cursor.suffix_lines[1:30])
    return reindent(text, detect_style(sample), ctx.cursor.line_prefix, nearby)


def tidy_end(ctx: _Context, text: str) -> str:
    """Trailing blank space: none when the cursor's line ends after the cursor (the suffix brings
    its own line break); when code follows on the cursor's line and the completion ends with a line
    break, end it with the cursor line's own indentation so that code keeps its place."""
    if not text.strip():
        return ""
    if not ctx.cursor.rest_of_line.strip():
        return text.rstrip()
    last_start = text.rfind("\n") + 1
    if last_start > 0 and not text[last_start:].strip():
        lead = ctx.cursor.line_prefix if not ctx.cursor.line_prefix.strip() else ""
        return text[:last_start].rstrip(" \t\n") + "\n" + lead
    return text


# ---- replace range -------------------------------------------------------------------------------


def _replaced_closers(ctx: _Context, text: str) -> int:
    """How many characters of the rest of the line `text` replaces: the auto-closed brackets right
    after the cursor that the completion types itself. The completion's unmatched closers, in
    order, are paired with those brackets (the innermost open brackets, so the first to close);
    pairing stops at the first that differs."""
    if not ctx.auto_closed:
        return 0
    unmatched = []
    depth = 0
    mask = brackets.code_mask(text, ctx.cursor.language)
    for i, ch in enumerate(text):
        if not mask[i]:
            continue
        if ch in brackets.OPENERS:
            depth += 1
        elif ch in brackets.CLOSERS:
            if depth == 0:
                unmatched.append(ch)
            else:
                depth -= 1
    k = 0
    while k < len(unmatched) and k < len(ctx.auto_closed) and unmatched[k] == ctx.auto_closed[k]:
        k += 1
    return k  # auto_closed is a run of closers at the very start of the rest of the line
