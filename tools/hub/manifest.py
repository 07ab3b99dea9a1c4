"""The manifest: what each notebook needs from the Hugging Face Hub per profile, read from the notebooks' own SETTINGS
cells (utils.manifest knows which setting key holds what). Read by `make prefetch`, the stand-in and verify.

Usage: python -m tools.hub.manifest [--profile cpu] [--nb 05]   (prints the list and each first download's size)
"""
from __future__ import annotations

import argparse
import ast
import json
from pathlib import Path
from typing import Any

from utils.manifest import Item, ManifestError, Opaque, download_mb, items
from utils.paths import PROFILES, ROOT


def notebooks() -> list[Path]:
    """The course's numbered notebooks, in order."""
    return sorted(ROOT.glob("[0-9][0-9]_*.ipynb"))


def notebook_path(nb: str) -> Path:
    """'05', '05_llama2_squad' or a path -> the notebook file; ManifestError naming the choices otherwise."""
    if Path(nb).suffix == ".ipynb" and Path(nb).is_file():
        return Path(nb)
    found = [p for p in notebooks() if p.stem == nb or p.stem.split("_")[0] == nb]
    if len(found) != 1:
        raise ManifestError(f"no notebook '{nb}': use one of " + ", ".join(p.stem.split("_")[0] for p in notebooks()))
    return found[0]


def _value(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {_value(k, names): _value(v, names) for k, v in zip(node.keys, node.values)}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, names) for e in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    return Opaque(ast.unparse(node))


def settings(nb: str) -> dict[str, dict[str, Any]]:
    """The `SETTINGS = {...}` dict of notebook `nb`, read from its code without running it (names bound to
    constants earlier in the same cell, such as WIKITEXT, are substituted; anything computed stays as its source)."""
    path = notebook_path(nb)
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] != "code" or "SETTINGS" not in source:
            continue
        names: dict[str, Any] = {}
        for stmt in ast.parse(source).body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                value = _value(stmt.value, names)
                if stmt.targets[0].id == "SETTINGS":
                    if not isinstance(value, dict) or set(value) != set(PROFILES):
                        raise ManifestError(f"{path.name}: SETTINGS must be a dict with the keys {PROFILES}")
                    return value
                names[stmt.targets[0].id] = value
    raise ManifestError(f"{path.name} has no `SETTINGS = {{...}}` assignment in a code cell")


def needs(nb: str, profile: str) -> list[Item]:
    """What notebook `nb` needs in `profile`, from its SETTINGS."""
    if profile not in PROFILES:
        raise ManifestError(f"unknown profile '{profile}': use one of {PROFILES}")
    return items(settings(nb)[profile])


def manifest(profile: str, nbs: list[str] | None = None, kinds: list[str] | None = None) -> dict[str, list[Item]]:
    """{notebook stem: items} for `profile` and the given notebooks (default: all), of the given kinds (default:
    all)."""
    paths = [notebook_path(nb) for nb in nbs] if nbs else notebooks()
    return {p.stem: [i for i in needs(str(p), profile) if not kinds or i.kind in kinds] for p in paths}


def unique(by_notebook: dict[str, list[Item]]) -> list[Item]:
    """Each item once across notebooks, in first-seen order (a model also needed as a tokenizer counts once)."""
    seen: dict[tuple, Item] = {}
    for entries in by_notebook.values():
        for item in entries:
            seen.setdefault((item.kind, item.id, item.config, item.data_dir), item)
    models = {i.id for i in seen.values() if i.kind == "model"}
    return [i for i in seen.values() if not (i.kind == "tokenizer" and i.id in models)]


def size_label(mb: float) -> str:
    """MB as the tables print them: '—' for none, MB below a GB, else GB with one decimal."""
    return "—" if not mb else f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--nb", action="append", help="notebook number or name (repeatable; default all)")
    args = parser.parse_args(argv)
    by_notebook = manifest(args.profile, args.nb)
    for stem, entries in by_notebook.items():
        print(f"{stem} [{args.profile}] first download ≈ {download_mb(entries) / 1000:.2f} GB")
        for item in entries:
            print(f"  {item.label()}" + ("" if item.required else "  (optional: the notebook has a fallback)"))
    print(f"all of them ≈ {download_mb(unique(by_notebook)) / 1000:.1f} GB")


if __name__ == "__main__":
    main()
