"""`detfuzz show REPORT` and `detfuzz repro REPORT`: reading and re-running a divergence
report without the campaign that found it (fuzzer.report)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fuzzer.cli_common import EXIT_FAILED, EXIT_OK, CliError, add_allow_device_option, note

SHOW_DESCRIPTION = (
    "Render a divergence report for a person: the signature (property, first diverging "
    "component, rule), what diverged and where (the instruction, the field-level diff, the "
    "log events and the host-side activity around it), the scenario, and the program "
    "disassembled around the diverging instruction. Nothing in the report is executed. "
    "Exit 0, or 2 for bad usage or a file that is not a report."
)
REPRO_DESCRIPTION = (
    "Re-run a report's scenario under the property that found it and say, in one line, "
    "whether the same signature comes back. Exit 1 if it reproduces (the bug is still "
    "there), 0 if it no longer does, 2 for a bad file or a report that needs a user device "
    "not given with --device. A user device module named in a report is imported only when "
    "given explicitly with --device."
)


def add_parsers(commands: Any) -> None:  # argparse's _SubParsersAction is private
    show = commands.add_parser(
        "show", help="explain a divergence report", description=SHOW_DESCRIPTION
    )
    show.add_argument("report", metavar="REPORT", help="a report file (.dfr)")
    repro = commands.add_parser(
        "repro", help="re-run a divergence report", description=REPRO_DESCRIPTION
    )
    repro.add_argument("report", metavar="REPORT", help="a report file (.dfr)")
    add_allow_device_option(repro)


def _load(path: str) -> Any:
    from fuzzer.report import ReportError, load_report

    try:
        return load_report(Path(path))
    except ReportError as exc:
        raise CliError(str(exc)) from None


def cmd_show(args: argparse.Namespace) -> int:
    from fuzzer.report import render

    print(render(_load(args.report)))
    return EXIT_OK


def cmd_repro(args: argparse.Namespace) -> int:
    from fuzzer.report import ReportError, reproduce

    report = _load(args.report)
    stale = report.stale_because()
    if stale:
        note(f"the report is stale ({stale}): its digests are not compared, only re-checked")
    try:
        result = reproduce(report, allow_devices=tuple(args.device))
    except ReportError as exc:
        raise CliError(str(exc)) from None
    print(result.verdict)
    return EXIT_FAILED if result.reproduced else EXIT_OK


COMMANDS = {"show": cmd_show, "repro": cmd_repro}
__all__ = ["COMMANDS", "add_parsers"]
