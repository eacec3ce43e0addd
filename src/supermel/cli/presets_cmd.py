"""``supermel presets``: list the model front ends, or print one's configuration (as JSON with ``--json``).

(Named ``presets_cmd`` so as not to be mistaken for the library's :mod:`supermel.presets`, which it imports lazily.)
"""

from __future__ import annotations

import argparse
import json

from .._errors import ParameterError
from ._common import _finite_json, _frontends, _json_default, _preset_config


def add_parser(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``supermel presets`` and its options to the subcommands ``sub``."""
    p = sub.add_parser("presets", help="list the model front ends, or show one's configuration",
                       description="List the front-end presets (name and description); with a NAME, show its configuration.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a preset to describe")
    p.add_argument("--json", nargs="?", const=True, default=False, metavar="NAME", help="print as JSON; `--json NAME` prints NAME's configuration")


def run(args: argparse.Namespace) -> int:
    """Run ``supermel presets``; the exit status."""
    json_name = args.json if isinstance(args.json, str) else None
    if args.name and json_name and args.name != json_name:
        raise ParameterError(f"two preset names given ({args.name!r} and {json_name!r}); pass one")
    name = args.name or json_name
    if name:
        config = _finite_json(_preset_config(name))
        if args.json:
            print(json.dumps(config, indent=2, default=_json_default))
        else:
            canonical = config.get("name", name)
            print(f"{canonical}: {_frontends().get(canonical, '')}")
            for key, value in config.items():
                print(f"  {key} = {json.dumps(value, default=_json_default)}")
        return 0
    listing = _frontends()
    if args.json:
        print(json.dumps(listing, indent=2))
    else:
        width = max((len(n) for n in listing), default=0)
        for key in sorted(listing):
            print(f"{key:<{width}}  {listing[key]}")
    return 0
