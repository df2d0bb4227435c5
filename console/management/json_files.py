"""Reading and writing the JSON documents of the import and export commands."""

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError


def json_read(file: str) -> Any:
    """The parsed JSON of `file` ('-' = stdin); a CommandError that says why when it cannot."""
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {file}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{file} is not valid JSON: {exc}") from exc


def json_text(document: Any) -> str:
    """The one way a document is written out: stable, so two exports compare byte for byte."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def json_write(text: str, output: str | None, stdout: Any) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        stdout.write(text, ending="")
