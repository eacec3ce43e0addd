"""Sphinx helpers of the supermel site.

``.. supermel-cli:: module:function``
    The reference of an argparse command line, generated from its parser: one section per
    subcommand with its description, usage, options (``.. option::``, so ``:option:`` links
    work) and defaults. ``:replace: name=module:function`` renders a pass-through subcommand
    with the parser that reads its arguments. Help texts are plain text (escaped, never parsed as reST); an epilog
    written for ``RawDescriptionHelpFormatter`` is shown as preformatted text.

Short references in docstrings
    A docstring refers to a sibling by its short name (``:func:`run_streaming_onnx``` in
    ``supermel.onnx``); the API pages document some objects under their public top-level
    name (``supermel.StreamPool``). A reference Sphinx cannot resolve is retried under each
    public namespace (``supermel``, ``supermel.onnx``, ``supermel.presets``, ...); one that
    still resolves nowhere stays a warning (an error with ``-W``).
"""

from __future__ import annotations

import argparse
import importlib
import re
from typing import Any, List

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList
from sphinx.util.nodes import nested_parse_with_titles

NAMESPACES = (
    "supermel",
    "supermel.presets",
    "supermel.onnx",
    "supermel.audio",
    "supermel.serve",
    "supermel.serve.protocol",
    "supermel.cli",
    "supermel.integrations.transformers",
    "supermel.integrations.faster_whisper",
    "supermel.integrations.ray",
    "supermel.integrations.datasets",
)

_RST_SPECIAL = re.compile(r"([\\`*_|\[\]<>])")


def _esc(text: str) -> str:
    return _RST_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _underline(title: str, char: str) -> List[str]:
    return [title, char * max(len(title), 3), ""]


def _parser_rst(parser: argparse.ArgumentParser, prog: str, level: str, sub_level: str, replace: Any = None) -> List[str]:
    replace = replace or {}
    out: List[str] = []
    if parser.description:
        raw = isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
        if raw:
            out += ["::", ""] + ["   " + line for line in parser.description.splitlines()] + [""]
        else:
            out += [_esc(parser.description), ""]
    usage = parser.format_usage().strip()
    out += [".. code-block:: text", ""] + ["   " + line for line in usage.splitlines()] + [""]
    out += [f".. program:: {prog}", ""]
    subactions = []
    for group in parser._action_groups:  # argparse keeps options by group: positional, options, named groups
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
        plain = [a for a in actions if not isinstance(a, argparse._SubParsersAction)]
        subactions += [a for a in actions if isinstance(a, argparse._SubParsersAction)]
        if not plain:
            continue
        title = (group.title or "options").strip()
        out += [f".. rubric:: {_esc(title[:1].upper() + title[1:])}", ""]
        for action in plain:
            if action.option_strings:
                metavar = ""
                if action.nargs != 0:
                    metavar = action.metavar or (action.dest.upper() if not action.choices else "{" + ",".join(map(str, action.choices)) + "}")
                    if isinstance(metavar, tuple):
                        metavar = " ".join(metavar)
                sig = ", ".join(f"{o} {metavar}".strip() for o in action.option_strings)
            else:
                sig = str(action.metavar or action.dest)
            out += [f".. option:: {sig}", ""]
            body = _esc(action.help or "")
            extras = []
            if action.choices and action.option_strings:
                extras.append("choices: " + ", ".join(f"``{c}``" for c in action.choices))
            default = action.default
            if (action.option_strings and default not in (None, False, argparse.SUPPRESS)
                    and not isinstance(action, (argparse._VersionAction, argparse._HelpAction))
                    and "default" not in (action.help or "")):
                extras.append(f"default: ``{default}``")
            if extras:
                body = (body + " (" + "; ".join(extras) + ")").strip()
            out += ["   " + (body or "\\ "), ""]
    if parser.epilog:
        raw = isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter)
        if raw:
            out += ["::", ""] + ["   " + line for line in parser.epilog.splitlines()] + [""]
        else:
            out += [_esc(parser.epilog), ""]
    for sa in subactions:
        helps = {c.dest: c.help for c in sa._choices_actions}
        for name, sub in sa.choices.items():
            out += _underline(f"{prog} {name}", sub_level)
            if helps.get(name):
                out += [f"*{_esc(helps[name])}*", ""]
            if name in replace:  # a pass-through subcommand: the parser that really reads its arguments
                sub = replace[name]
            out += _parser_rst(sub, f"{prog} {name}", sub_level, sub_level)
    return out


class SupermelCli(Directive):
    """``.. supermel-cli:: module:function`` with ``:prog:``; the function returns the parser."""

    required_arguments = 1
    option_spec = {"prog": str, "replace": str}
    has_content = False

    @staticmethod
    def _load(spec: str) -> argparse.ArgumentParser:
        module, func = spec.split(":")
        return getattr(importlib.import_module(module), func)()

    def run(self) -> List[nodes.Node]:
        parser = self._load(self.arguments[0])
        prog = self.options.get("prog", parser.prog)
        # ":replace: bench=supermel.bench.cli:_parser": render that subcommand with the parser it hands its arguments to
        replace = {}
        for item in self.options.get("replace", "").split():
            name, spec = item.split("=", 1)
            replace[name] = self._load(spec)
        lines = _parser_rst(parser, prog, "-", "-", replace)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=f"<{self.arguments[0]}>"), node)
        return node.children


def _resolve_short(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    domain = env.get_domain("py")
    tail = target.split(".")[-1]
    candidates = [target] + [f"{ns}.{target}" for ns in NAMESPACES]
    if "." in target:  # supermel.streaming_presets.X -> supermel.X, Class.method -> supermel.Class.method
        candidates += [f"{ns}.{tail}" for ns in NAMESPACES]
    cls = node.get("py:class")
    if cls:
        candidates.insert(0, f"supermel.{cls}.{target}")
    for name in candidates:
        if name in domain.objects:
            return domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), name, node, contnode)
    # a method or attribute named without its class (``:meth:`connect``` in Client's summary line)
    matches = [name for name in domain.objects if name.startswith("supermel.") and name.endswith("." + target)]
    if len(matches) == 1:
        return domain.resolve_xref(env, node.get("refdoc"), app.builder, node.get("reftype"), matches[0], node, contnode)
    return None


#: links from docs/*.md to the repository's own Markdown files (right on GitHub) -> their pages here
REPO_LINKS = {
    "](../CONTRIBUTING.md)": "](development.md#contributing)",
    "](../BENCHMARKS.md)": "](benchmarks.md)",
    "](../CHANGELOG.md)": "](changelog.md)",
    "](../README.md)": "](index.md)",
}


_FILE_NAMED_LINK = re.compile(r"\[([\w.-]+\.md)\]\(\1(#[\w-]*)?\)")


def _rewrite_repo_links(app: Any, docname: str, source: List[str]) -> None:
    """On the site, a link that reads as a file name (``[exactness.md](exactness.md)``, right on
    GitHub) shows the page's title instead; links to the repository's root files go to their pages."""
    text = source[0]
    for old, new in REPO_LINKS.items():
        text = text.replace(old, new)
    source[0] = _FILE_NAMED_LINK.sub(lambda m: f"[]({m.group(1)}{m.group(2) or ''})", text)


NUMPYDOC_SECTIONS = {
    "Parameters", "Returns", "Yields", "Receives", "Raises", "Warns", "Other Parameters", "Attributes",
    "Methods", "See Also", "Notes", "Warnings", "References", "Examples",
}


def _promote_extra_sections(app: Any, what: str, name: str, obj: Any, options: Any, lines: List[str]) -> None:
    """Sections numpydoc does not know (torchaudio's ``Shape``, ``Input Validity``) would be
    dropped; move each, as a paragraph titled in bold, to the end of the extended summary."""
    headers = [i for i in range(len(lines) - 1)
               if lines[i].strip() and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3
               and (i == 0 or not lines[i - 1].strip())]
    extra = [i for i in headers if lines[i].strip() not in NUMPYDOC_SECTIONS]
    if not extra or not headers:
        return
    moved: List[str] = []
    for i in reversed(extra):
        end = next((j for j in headers if j > i), len(lines))
        body = [l for l in lines[i + 2:end]]
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if body and not body[0].startswith(" "):  # "**Shape:** ``(..., n)`` -> ..." as one paragraph
            body[0] = f"**{lines[i].strip()}:** " + body[0]
        else:
            body = [f"**{lines[i].strip()}:**", ""] + body
        moved = body + [""] + moved
        del lines[i:end]
    first = next((i for i in range(len(lines) - 1)
                  if lines[i].strip() and set(lines[i + 1].strip()) == {"-"} and len(lines[i + 1].strip()) >= 3), len(lines))
    lines[first:first] = moved


def setup(app: Any) -> dict:
    app.connect("autodoc-process-docstring", _promote_extra_sections, priority=100)
    app.add_directive("supermel-cli", SupermelCli)
    app.connect("source-read", _rewrite_repo_links)
    app.connect("missing-reference", _resolve_short)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
