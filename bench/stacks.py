"""py-spy's collapsed stacks (``--format raw``) made into tables: samples by kind of work (argon2,
redis-py, Starlette, …), by request handler, by function and by module, own and total.

*Own* samples of a function are those where it is the innermost frame; *total* those where it is
anywhere in the stack (counted once per sample, however often it recurs).  A kind's own samples
are found from the innermost frame outward: the first frame that belongs to a kind decides, so the
standard library a kind calls (``socket``, ``email.parser``, ``asyncio.streams``) is that kind's
cost; a frame of the event loop's or a thread pool's machinery (``_run_once``, ``Task.__step``,
``_worker``) stops the search, so the loop is not billed to ``uvicorn.main`` at the root.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = str(Path(__file__).resolve().parent.parent) + "/"
FRAME = re.compile(r"(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)")
STDLIB = re.compile(r"/lib/python3\.\d+/(?P<rest>.*)")

ASGI = ("starlette", "uvicorn", "h11", "httptools", "anyio", "prometheus_client")
# (kind, module prefixes), in the order a frame is tested against them.
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("argon2", ("argon2", "_argon2_cffi_bindings")),
    ("redis-py", ("redis", "hiredis")),
    ("twilio SDK / requests", ("twilio", "requests", "urllib3", "http.client", "charset_normalizer", "idna")),
    ("JSON (json, msgspec)", ("json", "msgspec", "orjson")),
    ("logging", ("logging", "pythonjsonlogger", "otp.logs")),
    ("Starlette / uvicorn / middleware", (*ASGI, "otp.web.access_log", "otp.web.metrics")),
    ("otp script calls (storage.store, .scripts)", ("otp.storage.store", "otp.storage.scripts", "otp.storage.client")),
    ("settings / record decoding", ("otp.settings", "otp.storage.records", "otp.storage.server_config")),
    ("otp, the rest", ("otp",)),
)
SOCKET_IO = "socket send/recv syscalls (asyncio transports)"
SOCKET_IO_FUNCTIONS = (
    "Transport.write",
    "Transport.writelines",
    "_read_ready__data_received",
    "_read_ready__get_buffer",
)
OUTSIDE = "outside the handlers (ASGI server, middleware, event loop)"
LOOP = "event loop / thread pool machinery"
OTHER = "other (stdlib, unclassified)"
# Frames of the scheduler itself: the search for a kind stops there.
LOOP_FUNCTIONS = frozenset(
    {
        "_run_once", "run_forever", "run_until_complete", "_run", "run", "__step", "__step_run_and_handle_result",
        "__wakeup", "_read_ready", "_read_ready__data_received", "_read_ready__get_buffer", "_write_ready",
        "select", "_worker", "_bootstrap", "_bootstrap_inner",
    }
)  # fmt: skip
LOOP_MODULES = ("asyncio", "selectors", "threading", "concurrent.futures", "uvloop")


@dataclass(frozen=True)
class Frame:
    module: str
    function: str

    @property
    def name(self) -> str:
        return f"{self.module}:{self.function}"


@dataclass
class Profile:
    """Collapsed stacks, root first, with their sample counts."""

    stacks: list[tuple[tuple[Frame, ...], int]] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return sum(n for _, n in self.stacks)

    @classmethod
    def parse(cls, text: str) -> Profile:
        profile = cls()
        for line in text.splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                profile.stacks.append((tuple(frame(f) for f in stack.split(";")), int(count)))
        return profile

    def own_total(self, key: Key) -> tuple[Counter[str], Counter[str]]:
        """Own (innermost frame) and total (anywhere in the stack) samples per ``key(frame)``."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for stack, n in self.stacks:
            if stack:
                own[key(stack[-1])] += n
            for name in {key(f) for f in stack}:
                total[name] += n
        return own, total

    def kinds(self) -> tuple[Counter[str], Counter[str]]:
        """Own samples per kind (see the module's docstring) and total: samples with a frame of it."""
        own: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for stack, n in self.stacks:
            own[kind := kind_of_sample(stack)] += n
            if kind == SOCKET_IO:
                total[kind] += n  # only ever the innermost frame
            for name in {kind_of(f) for f in stack} - {None}:
                total[str(name)] += n
        return own, total

    def socket_callers(self) -> Counter[str]:
        """The socket syscall samples by the kind of work that made the call (reads are the
        loop's: it receives before it knows whose bytes they are)."""
        callers: Counter[str] = Counter()
        for stack, n in self.stacks:
            if stack and is_socket_io(stack[-1]):
                callers[LOOP if stack[-1].function.startswith("_read") else kind_of_sample(stack[:-1])] += n
        return callers

    def under(self, handlers: Iterable[tuple[str, str]]) -> Profile:
        """Only the samples taken inside one of these (module, function) frames."""
        wanted = list(handlers)
        return Profile([(s, n) for s, n in self.stacks if any(is_frame(f, m, fn) for f in s for m, fn in wanted)])


class Key:
    """Groups frames: by function (``module:function``) or by module."""

    def __init__(self, by_module: bool = False) -> None:
        self.by_module = by_module

    def __call__(self, f: Frame) -> str:
        return f.module if self.by_module else f.name


def frame(text: str) -> Frame:
    """``function (path/file.py:12)`` → (dotted module, function); a frame without a file (py-spy's
    process and thread roots) keeps its text as the function."""
    found = FRAME.fullmatch(text)
    if not found:
        return Frame("<root>", text)
    return Frame(module_of(found["path"]), found["function"])


def module_of(path: str) -> str:
    """A dotted module name from the full or short file name py-spy gives."""
    if path.startswith("<"):
        return path  # <frozen importlib._bootstrap>
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        if path.startswith(REPO):
            path = path[len(REPO) :]
        elif found := STDLIB.search(path):
            path = found["rest"]
    dotted = path.removesuffix(".py").replace("/", ".")
    return dotted.removesuffix(".__init__")


def is_frame(f: Frame, module: str, function: str) -> bool:
    """Python 3.11+ frames carry their qualified name (``Worker.process``): a bare name matches it."""
    return f.module == module and (f.function == function or f.function.endswith("." + function))


def kind_of(f: Frame) -> str | None:
    for kind, prefixes in KINDS:
        if any(f.module == p or f.module.startswith(p + ".") for p in prefixes):
            return kind
    return None


def is_loop(f: Frame) -> bool:
    name = f.function.rsplit(".", 1)[-1]
    return name in LOOP_FUNCTIONS and any(f.module == m or f.module.startswith(m + ".") for m in LOOP_MODULES)


def is_socket_io(f: Frame) -> bool:
    """The loop's own send/recv calls (C, so py-spy bills them to this frame): on loopback the
    kernel's TCP work for both ends happens inside them."""
    return f.module == "asyncio.selector_events" and f.function.endswith(SOCKET_IO_FUNCTIONS)


def kind_of_sample(stack: Sequence[Frame]) -> str:
    if stack and is_socket_io(stack[-1]):
        return SOCKET_IO
    for f in reversed(stack):
        if (kind := kind_of(f)) is not None:
            return kind
        if is_loop(f):
            return LOOP
    return OTHER


# -- tables --------------------------------------------------------------------------------------


def pct(n: int, of: int) -> str:
    return f"{100 * n / of:5.1f} %" if of else "–"


def ms(n: int, of: int, ms_per_unit: float | None) -> str:
    return f"{ms_per_unit * n / of:6.3f}" if of and ms_per_unit is not None else "–"


def kind_table(profile: Profile, cpu_ms: float | None, unit: str) -> list[str]:
    own, total = profile.kinds()
    samples = profile.samples
    lines = [
        f"| kind of work | own samples | own share | total share | own CPU ms / {unit} |",
        "|---|---:|---:|---:|---:|",
    ]
    order = [k for k, _ in KINDS] + [SOCKET_IO, LOOP, OTHER]
    for kind in sorted(order, key=lambda k: -own[k]):
        shown_total = pct(total[kind], samples) if kind in total else "–"
        share, cost = pct(own[kind], samples), ms(own[kind], samples, cpu_ms)
        lines.append(f"| {kind} | {own[kind]} | {share} | {shown_total} | {cost} |")
    callers = profile.socket_callers()
    said = ", ".join(f"{k} {ms(n, samples, cpu_ms).strip()} ms" for k, n in callers.most_common())
    return [*lines, "", f"The socket syscalls, by who made them (reads: the loop's): {said or '–'}."]


def split(profile: Profile, part_of: Callable[[Sequence[Frame]], str]) -> dict[str, Profile]:
    """The samples cut into parts, each sample in exactly one."""
    parts: dict[str, Profile] = {}
    for stack, n in profile.stacks:
        parts.setdefault(part_of(stack), Profile()).stacks.append((stack, n))
    return parts


def by_handler(handlers: Sequence[tuple[str, str, str]]) -> Callable[[Sequence[Frame]], str]:
    """A sample's part: the first of ``handlers`` (label, module, function) on its stack; else argon2
    (it runs in the thread pool, under no handler); else what serves every request."""

    def part_of(stack: Sequence[Frame]) -> str:
        for label, module, function in handlers:
            if any(is_frame(f, module, function) for f in stack):
                return label
        if kind_of_sample(stack) == "argon2":
            return "argon2 (thread pool)"
        return OUTSIDE

    return part_of


def by_entry(stack: Sequence[Frame]) -> str:
    """A sample's part: the first otp frame the event loop (or a pool thread) runs, i.e. the
    coroutine of the task or the function of the thread, like ``Store.claim_jobs``."""
    entry = 0
    for i, f in enumerate(stack):
        if is_loop(f):
            entry = i + 1
    for f in stack[entry:]:
        if f.module.startswith("otp."):
            return f.name
    return "no otp frame (the loop itself; callbacks such as redis-py's socket writes)"


SPLIT_KINDS = ("redis-py", "argon2", "Starlette / uvicorn / middleware", SOCKET_IO, LOOP)


def part_table(profile: Profile, parts: dict[str, Profile], cpu_ms: float | None, per: dict[str, float]) -> list[str]:
    """Each part: samples, share and CPU ms per verification, split by kind of work; ``per`` gives
    how many of a part's requests one verification makes, for a per-request figure."""
    samples = profile.samples
    heads = " | ".join(f"{k} ms" for k in SPLIT_KINDS)
    lines = [
        f"| part | samples | share | CPU ms / verif | requests / verif | ms / request | {heads} | the rest ms |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * (len(SPLIT_KINDS) + 1),
    ]
    for label, part in sorted(parts.items(), key=lambda kv: -kv[1].samples):
        n, own = part.samples, part.kinds()[0]
        split_ms = [ms(own[k], samples, cpu_ms) for k in SPLIT_KINDS]
        rest = n - sum(own[k] for k in SPLIT_KINDS)
        count = per.get(label)
        each = f"{cpu_ms * n / samples / count:6.3f}" if count and cpu_ms is not None and samples else ""
        lines.append(
            f"| {label} | {n} | {pct(n, samples)} | {ms(n, samples, cpu_ms)} | {f'{count:.1f}' if count else ''} "
            f"| {each} | {' | '.join(split_ms)} | {ms(rest, samples, cpu_ms)} |"
        )
    return lines


def top_table(profile: Profile, key: Key, top: int, by_total: bool = False) -> list[str]:
    own, total = profile.own_total(key)
    samples = profile.samples
    ranked = sorted(total if by_total else own, key=lambda k: (-(total if by_total else own)[k], k))[:top]
    what = "module" if key.by_module else "function"
    lines = [f"| {what} | own | own share | total | total share |", "|---|---:|---:|---:|---:|"]
    lines += [f"| `{k}` | {own[k]} | {pct(own[k], samples)} | {total[k]} | {pct(total[k], samples)} |" for k in ranked]
    return lines
