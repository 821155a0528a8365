#!/usr/bin/env python3
"""Import graph of the library (src/, without the binaries): which module uses which.

Prints one line per module with the modules it uses (from `use crate::…`, `crate::…::` paths and
`super::…` in code, not comments), then any dependency cycles. Exit status 1 when there is a
cycle. Run from the repository root: python3 tools/import_graph.py
"""
import pathlib
import re
import sys

SRC = pathlib.Path("src")


def module_of(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts) or "crate"


def resolve(name: str, modules: set) -> str | None:
    """The longest known module prefix of a path like `model::weights::Source`."""
    parts = name.split("::")
    for n in range(len(parts), 0, -1):
        cand = "::".join(parts[:n])
        if cand in modules:
            return cand
    return None


def main() -> int:
    files = [p for p in SRC.rglob("*.rs") if "bin" not in p.parts]
    modules = {module_of(p) for p in files}
    graph = {}
    for p in files:
        me = module_of(p)
        parent = "::".join(me.split("::")[:-1]) if not p.name == "mod.rs" else "::".join(me.split("::")[:-1])
        deps = set()
        for line in p.read_text().splitlines():
            code = line.split("//")[0]
            for m in re.finditer(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", code):
                d = resolve(m.group(1), modules)
                if d and d != me and not me.startswith(d + "::") and not d.startswith(me + "::"):
                    deps.add(d)
            for m in re.finditer(r"\bsuper::([a-z_][a-z0-9_]*)", code):
                base = me.split("::")[:-1] if p.name != "mod.rs" else me.split("::")[:-1]
                d = resolve("::".join(base + [m.group(1)]), modules)
                if d and d != me:
                    deps.add(d)
        graph[me] = deps
    for m in sorted(graph):
        if m != "crate":
            print(f"{m} → {', '.join(sorted(graph[m])) or '(nothing)'}")
    # Cycles: strongly connected components with more than one module.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    if sccs:
        for c in sccs:
            print("cycle:", " ↔ ".join(c))
        return 1
    print("no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
