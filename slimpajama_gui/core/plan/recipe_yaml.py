"""Recipe YAML: reading (:func:`recipe_from_yaml`, :func:`load_recipe`) and writing
(:func:`dump_recipe`, :func:`save_recipe`) of :class:`~slimpajama_gui.core.plan.recipe.Recipe`.

YAML is read with :class:`yaml.SafeLoader` only, node by node, so every complaint names
the file, the line and the field, and no tag can construct a Python object. A recipe is
bounded before any value is built: a regular file of at most :data:`MAX_RECIPE_BYTES`,
whose anchors and aliases may not expand it beyond :data:`MAX_YAML_NODES` values.

Every name here is re-exported by :mod:`slimpajama_gui.core.plan.recipe`; import it
from there.
"""

from __future__ import annotations

import difflib
import stat
from pathlib import Path
from typing import Any

import yaml

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.plan.fields import choices_text, coerce, fmt_value
from slimpajama_gui.core.plan.steps import (
    STEP_TYPES,
    RecipeError,
    Step,
    check_step_version,
    in_step,
)
from slimpajama_gui.core.storage.atomic import atomic_write_text

#: The largest recipe file read; written-out recipes are a few kilobytes.
MAX_RECIPE_BYTES = 1 << 20
#: The most values (mappings, lists, scalars) a recipe may hold once its aliases are
#: expanded; a recipe with every step written out holds a few hundred.
MAX_YAML_NODES = 10_000
#: The most aliases (``*name``) a recipe may use.
MAX_YAML_ALIASES = 200

# The only tags a recipe may carry; anything else (``!!python/...``, custom ``!tags``)
# is refused before any value is constructed.
_SAFE_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}"
    for t in ("null", "bool", "int", "float", "str", "map", "seq", "timestamp", "merge")
)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _BoundedLoader(yaml.SafeLoader):
    """A safe loader that refuses more than :data:`MAX_YAML_ALIASES` aliases.

    Composing shares an aliased node rather than copying it, so the count is checked as
    aliases are met; the expanded size is measured on the composed graph
    (:func:`_expanded_size`) before any value is built or formatted.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise _TooLarge(f"uses more than {MAX_YAML_ALIASES} aliases (*name)", mark.line + 1)
        return super().compose_node(parent, index)


class _TooLarge(Exception):
    """Raised inside the loader; turned into a :class:`UserError` naming the file."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes ``root`` holds with every alias expanded, or :class:`_TooLarge`.

    Counts each shared node once per use (as constructing or printing the values would)
    with a memo, so it runs in time linear in the composed graph, and stops as soon as the
    count passes :data:`MAX_YAML_NODES`. An alias inside its own anchor is refused.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    # Iterative post-order walk: the nesting depth of a document is not bounded.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if children_done:
            open_nodes.discard(key)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_YAML_NODES:
                raise _TooLarge(
                    f"expands to more than {MAX_YAML_NODES:,} values through its anchors "
                    "and aliases (&name, *name)",
                    _line(node),
                )
            sizes[key] = total
            continue
        if key in open_nodes:
            raise _TooLarge("has an alias (*name) inside its own anchor (&name)", _line(node))
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise _TooLarge("has an alias (*name) inside its own anchor (&name)", _line(child))
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


class _YamlReader:
    """Walks a composed YAML node tree, keeping line numbers for every message."""

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.loader = _BoundedLoader(text)

    def fail(self, node: yaml.Node | None, text: str) -> UserError:
        where = f"{self.source} line {_line(node)}" if node is not None else self.source
        return UserError(f"{text} ({where}).")

    def field_error(self, exc: RecipeError, node: yaml.Node | None) -> RecipeError:
        return exc.located(source=self.source, line=_line(node) if node is not None else None)

    def read(self) -> yaml.Node:
        try:
            root = self.loader.get_single_node()
            if root is not None:
                _expanded_size(root)
        except _TooLarge as exc:
            where = f"{self.source} line {exc.line}" if exc.line else self.source
            raise UserError(
                f"{self.source} {exc.problem} ({where}); a recipe holds plain values, so write "
                "them out instead."
            ) from None
        except RecursionError:
            raise UserError(
                f"{self.source} nests lists or mappings too deeply to read; a recipe needs "
                "only a few levels (steps, then their settings)."
            ) from None
        except yaml.MarkedYAMLError as exc:
            where = [self.source]
            mark = exc.problem_mark or exc.context_mark
            if mark is not None:
                where[0] += f" line {mark.line + 1}"
            if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
                # e.g. an unclosed "[": say where it opened, not just where the file ended.
                where.append(f"{exc.context} that starts on line {exc.context_mark.line + 1}")
            raise UserError(
                f"{self.source} is not valid YAML: {exc.problem or exc.context}"
                f" ({', '.join(where)}). Fix the file and load it again."
            ) from None
        except yaml.YAMLError as exc:
            raise UserError(f"{self.source} is not valid YAML: {exc}.") from None
        if root is None:
            raise UserError(
                f"{self.source} is empty; a recipe needs name, model, dataset, output and steps."
            )
        self.check_tags(root)
        return root

    def check_tags(self, node: yaml.Node) -> None:
        stack = [node]
        seen: set[int] = set()
        while stack:
            current = stack.pop()
            if id(current) in seen:  # anchors make the tree a graph
                continue
            seen.add(id(current))
            if current.tag not in _SAFE_TAGS:
                raise self.fail(
                    current,
                    f"{self.source} uses the YAML tag {current.tag!r}, which a recipe may not "
                    "use; recipes hold plain values only. Remove the tag",
                )
            if isinstance(current, yaml.MappingNode):
                for key, value in current.value:
                    stack.extend((key, value))
            elif isinstance(current, yaml.SequenceNode):
                stack.extend(current.value)

    def mapping(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key text -> (key node, value node); refuses non-mappings and duplicates."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of 'key: value' lines")
        written: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"a key in {what} is not plain text")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in written:
                raise self.fail(key_node, f"key '{key_node.value}' appears twice in {what}")
            written.add(key_node.value)
        # Resolve "<<: *anchor" merges; keys written here come after, so they win.
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(node, f"cannot merge into {what}: {exc.problem}") from None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"a key in {what} is not plain text")
            out[key_node.value] = (key_node, value_node)
        return out

    def value(self, node: yaml.Node) -> Any:
        """The plain Python value of ``node`` (safe constructors only)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise self.fail(node, f"cannot read this value: {exc.problem}") from None
        except (ValueError, OverflowError, TypeError) as exc:
            # Plain scalars that YAML's resolvers take for dates or numbers but that do not
            # exist (2026-13-45) or are too long for Python (an int of 5000 digits).
            raise self.fail(
                node,
                f"cannot read this value ({str(exc)[:120]}); quote it if it is meant as text",
            ) from None

    def unknown_key(self, key: str, key_node: yaml.Node, allowed: list[str], where: str) -> None:
        shown = key if len(key) <= 80 else key[:80] + "…"
        text = f"unknown key '{shown}' in {where}; allowed keys: {', '.join(allowed)}"
        close = difflib.get_close_matches(key[:200], allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"{text} ({self.source} line {_line(key_node)}).{hint}")

    def step(self, index: int, node: yaml.Node) -> Step:
        entries = self.mapping(node, f"step {index + 1}")
        if "type" not in entries:
            raise self.fail(
                node,
                f"step {index + 1} has no 'type'; allowed types: {choices_text(STEP_TYPES)}",
            )
        type_node = entries["type"][1]
        kind = self.value(type_node)
        if not isinstance(kind, str) or kind not in STEP_TYPES:
            raise self.fail(
                type_node,
                f"unknown step type {fmt_value(kind)} in step {index + 1}; allowed types: "
                f"{choices_text(STEP_TYPES)}",
            )
        cls = STEP_TYPES[kind]
        # The version first: a newer step may have keys this app does not know.
        version_node = entries.get("version", (None, None))[1]
        try:
            version = cls.version
            if version_node is not None:
                version = coerce("version", self.value(version_node), int)
            check_step_version(cls, version, index)
        except RecipeError as exc:
            raise self.field_error(exc, version_node or node) from None
        hints = cls.hints()
        allowed = ["type", "version", *hints]
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                self.unknown_key(key, key_node, allowed, f"step {index + 1} '{kind}'")
        values = {k: self.value(v) for k, (_, v) in entries.items() if k not in ("type", "version")}
        values = cls.upgrade(values, version)
        kwargs = {}
        for key, value in values.items():
            try:
                kwargs[key] = coerce(key, value, hints[key])
            except RecipeError as exc:
                raise self.field_error(
                    in_step(exc, kind).located(step=index), entries[key][1]
                ) from None
        step = cls(**kwargs)
        try:
            step.validate()
        except RecipeError as exc:
            where = entries.get(exc.field.split("[")[0], (None, node))[1]
            raise self.field_error(exc.located(step=index), where) from None
        return step

    def recipe(self, base_dir: Path | None) -> Recipe:
        root = self.read()
        entries = self.mapping(root, self.source)
        version_node = entries.get("version", (None, None))[1]
        if version_node is not None:
            try:
                version = coerce("version", self.value(version_node), int)
            except RecipeError as exc:
                raise self.field_error(exc, version_node) from None
            if version > RECIPE_VERSION:
                raise UserError(
                    f"{self.source} is a version {version} recipe, written by a newer "
                    f"SlimPajama Studio; this one reads up to version {RECIPE_VERSION}. "
                    "Update the app to run it."
                )
        for key, (key_node, _) in entries.items():
            if key not in Recipe.KEYS:
                self.unknown_key(key, key_node, list(Recipe.KEYS), "the recipe")
        missing = [k for k in Recipe.REQUIRED if k not in entries]
        if missing:
            raise UserError(
                f"{self.source} has no {', '.join(repr(m) for m in missing)}; a recipe needs "
                f"{', '.join(Recipe.REQUIRED[:-1])} and {Recipe.REQUIRED[-1]}."
            )
        fields: dict[str, Any] = {}
        for key, (_, value_node) in entries.items():
            if key == "steps":
                continue
            try:
                fields[key] = coerce(key, self.value(value_node), Recipe._SIMPLE[key])
            except RecipeError as exc:
                raise self.field_error(exc, value_node) from None
        steps_node = entries["steps"][1]
        if isinstance(steps_node, yaml.ScalarNode) and self.value(steps_node) is None:
            step_nodes: list[yaml.Node] = []
        elif isinstance(steps_node, yaml.SequenceNode):
            step_nodes = list(steps_node.value)
        else:
            raise self.fail(steps_node, "steps must be a list, one '- type: ...' item per step")
        steps = [self.step(i, n) for i, n in enumerate(step_nodes)]
        recipe = Recipe(**fields, steps=steps, base_dir=base_dir)
        try:
            recipe.validate()
        except RecipeError as exc:
            if exc.step is not None:
                node = step_nodes[exc.step]
            else:
                key = exc.field.split(".")[0]
                node = entries.get(key, (None, steps_node if key == "steps" else root))[1]
            raise self.field_error(exc, node) from None
        return recipe

    def close(self) -> None:
        self.loader.dispose()


def recipe_from_yaml(
    text: str, source: str = "<string>", *, base_dir: Path | None = None
) -> Recipe:
    """Parse and validate recipe YAML.

    Args:
        text: the YAML document.
        source: how to name the document in messages (usually the file path).
        base_dir: folder that relative paths are taken from (default: working folder).

    Raises:
        UserError: a sentence naming the file, line and field at fault.
    """
    if len(text) > MAX_RECIPE_BYTES:
        raise UserError(
            f"{source} is {len(text):,} characters long; a recipe is at most "
            f"{MAX_RECIPE_BYTES:,} (written-out recipes are a few thousand). Check that it is "
            "the recipe file."
        )
    try:
        reader = _YamlReader(text, source)
    except yaml.reader.ReaderError as exc:  # checked as the loader is built
        line = text.count("\n", 0, exc.position) + 1
        raise UserError(
            f"{source} line {line} holds the character U+{exc.character:04X}, which YAML does "
            "not allow; remove it (a recipe is plain text)."
        ) from None
    try:
        return reader.recipe(base_dir)
    finally:
        reader.close()


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise UserError(f"{path} is a folder; give the path of a recipe file (.yaml).")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(
                f"{path} is not a regular file (a device, pipe or socket); give the path of a "
                "recipe file (.yaml)."
            )
        with path.open("rb") as fh:
            data = fh.read(MAX_RECIPE_BYTES + 1)
        if len(data) > MAX_RECIPE_BYTES:
            raise UserError(
                f"{path} is larger than {MAX_RECIPE_BYTES:,} bytes; a recipe is a few "
                "kilobytes. Check that it is the recipe file."
            )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"recipe file not found: {path}.") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 and try again."
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read the recipe {path}: {exc.strerror}.") from None
    except ValueError:  # a NUL character in the path
        raise UserError(f"{fmt_value(str(path))} is not a usable path to a recipe file.") from None
    return recipe_from_yaml(text, str(path), base_dir=path.absolute().parent)


class _RecipeDumper(yaml.SafeDumper):
    """Block style throughout, except short lists of plain values (``[1, 3, 5]``)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent "- type: ..." items under "steps:" as people write them by hand.
        super().increase_indent(flow, False)


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flat = all(isinstance(v, (int, float, str, bool)) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_RecipeDumper.add_representer(list, _represent_list)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML (keys in a fixed order, every step field written out)."""
    return yaml.dump(
        recipe.to_dict(),
        Dumper=_RecipeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Validate ``recipe`` and write it to ``path`` atomically.

    Relative paths are written as they are, so they stay relative to the folder the
    recipe came from; save next to it (or use absolute paths) to keep their meaning.
    """
    recipe.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, dump_recipe(recipe))


# Imported last: recipe.py imports this module at its own end, so either module may be
# imported first (the functions above look these names up only when called).
from slimpajama_gui.core.plan.recipe import RECIPE_VERSION, Recipe  # noqa: E402
