"""Kubernetes' $(VAR) expansion, bounded by what execve(2) takes."""
from nsPod.errors import InputError


# What execve(2) takes, the bounds of $(VAR) expansion: one argument or environment string
# is at most MAX_ARG_STRLEN (32 pages, with its NUL), and all of them together at most 3/4 of
# _STK_LIM (6 MiB) whatever the stack limit. Expansion is single-pass as Kubernetes' is, but
# each value may use the ones before it, so 8 KB of doubling variables would ask for 2**40.
ARG_STRLEN_MAX = 32 * 4096 - 1
ARGS_TOTAL_MAX = 6 * 1024 * 1024


def expand(text, values, where="", budget=None):
    """Kubernetes' $(VAR) expansion: $$ is a literal $, unknown $(VAR) stays as written; the
    result is never expanded again. InputError naming `where` when the result is longer than
    one argv/env string may be, or than `budget` (a one-item list: what the container's
    argv and env may still use, decreased here)."""
    out = []
    size = 0
    i = 0
    unclosed = False
    while i < len(text):
        ch = text[i]
        piece, step = ch, 1
        if ch == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                piece, step = "$", 2
            elif nxt == "(" and not unclosed:
                end = text.find(")", i + 2)
                unclosed = end == -1    # then no later "$(" is closed either: stop looking
                if end != -1:
                    name = text[i + 2:end]
                    piece = values[name] if name in values else f"$({name})"
                    step = end + 1 - i
        out.append(piece)
        size += len(piece)
        if size > ARG_STRLEN_MAX:
            too_long(where, f"expands to more than {ARG_STRLEN_MAX + 1 >> 10} KiB, Linux's "
                             "limit for one argument or environment string")
        i += step
    result = "".join(out)
    encoded = len(result.encode("utf-8", "surrogatepass"))
    if encoded > ARG_STRLEN_MAX:
        too_long(where, f"expands to more than {ARG_STRLEN_MAX + 1 >> 10} KiB, Linux's "
                         "limit for one argument or environment string")
    if budget is not None:
        budget[0] -= encoded + 1
        if budget[0] < 0:
            too_long(where, "the container's command, args and env expand to more than "
                             f"{ARGS_TOTAL_MAX >> 20} MiB, Linux's limit for a program's "
                             "arguments and environment together")
    return result


def too_long(where, problem):
    raise InputError(f"{where}: {problem}" if where else problem)
