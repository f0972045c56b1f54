"""The documentation's reference pages, generated from the code so that no copy is kept by
hand: every config key (type, default, allowed values, help) from the schema of byol.config,
and every command's options from the parsers of byol.cli.main. docs/hooks.py adds them to
the site at build time."""
from __future__ import annotations

import argparse
import os

from byol.cli.keys import SECTIONS, describe_keys
from byol.config import key_schemas


def type_of(prop: dict) -> str:
    """A key's type as a reader writes it: int, float, str, bool, a list of the allowed values,
    `| None` where it may be unset."""
    options = prop.get("anyOf", [prop])
    names = []
    for option in options:
        if "enum" in option:
            names.append(" | ".join(repr(v) if isinstance(v, str) else str(v) for v in option["enum"]))
        elif option.get("type") == "null":
            names.append("None")
        else:
            names.append({"integer": "int", "number": "float", "string": "str", "boolean": "bool",
                          "object": "mapping", "array": "list"}.get(option.get("type"), "any"))
    return " | ".join(names)


def range_of(prop: dict) -> str:
    """The bounds of a number (>= 0, < 1, ...), from the key's rules; empty where it has none."""
    bounds = []
    for option in prop.get("anyOf", [prop]):
        for rule, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
            if rule in option:
                bounds.append(f"{sign} {option[rule]:g}")
    return ", ".join(bounds)


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    """The configuration page: one table per section, every key."""
    schemas = key_schemas()
    lines = ["# Configuration keys", "",
             "Every key of a run, generated from the schema in `byol.config` (types, defaults, allowed values, "
             "help). Set a key in a YAML file (`--config FILE`, sections as below) or on the command line as "
             "`--section.key VALUE`; `byol pretrain --config NAME --help` shows the values of a recipe. "
             "Keys that no file or command line sets may be decided from the data (see the start notes of a run).",
             ""]
    section = None
    for dotted, value, text in describe_keys():
        head = dotted.split(".")[0]
        if head != section:
            section = head
            lines += ["", f"## `{section}`", "", (lambda t: t[:1].upper() + t[1:])(SECTIONS.get(section, "")) + ".", "",
                      "| key | type | default | allowed | what it does |", "|---|---|---|---|---|"]
        prop = schemas.get(dotted, {})
        lines.append(f"| `{dotted}` | {cell(type_of(prop))} | `{cell(value)}` | {cell(range_of(prop))} | {cell(text)} |")
    return "\n".join(lines) + "\n"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's sub-commands by name, in the order they were added."""
    for action in parser._actions:  # argparse keeps no public list of sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """The command-line page: each command's own help, as `byol COMMAND --help` prints it."""
    from byol.cli import compat
    from byol.cli.main import build_parser

    width = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: the same page everywhere
    try:
        parser = build_parser()
        lines = ["# Command line", "", "Every command and option, generated from the parsers in `byol.cli.main` "
                 "(what `byol COMMAND --help` prints). The config keys of `byol pretrain` are on the "
                 "[configuration page](config.md).", "", "```text", parser.format_help().rstrip(), "```"]
        for name, sub in subcommands(parser).items():
            text = sub.format_help().rstrip()
            if name == "pretrain":  # its help ends with every config key: those are on the other page
                text = text.split("\nconfig keys (")[0].rstrip()
            lines += ["", f"## `byol {name}`", "", "```text", text, "```"]
        lines += ["", "## `byol --run-type`", "", "The arguments of an earlier BYOL script's `main.py`, translated to the "
                  "commands above (each run prints the command it ran).", "", "```text",
                  compat.build_parser().format_help().rstrip(), "```"]
        return "\n".join(lines) + "\n"
    finally:
        if width is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = width
