"""Suite documents a team brings: JSON or YAML, with datasets inline or beside it.

The same loading serves `POST /v1/suites`, `modelcert suites validate FILE` and
`modelcert certify --suite-file FILE`, so what the CLI accepts the server accepts, with the
same content hash. A document is a tenant's input: it is parsed without YAML tags or
aliases, size-capped, validated strictly (extra fields refused), and every error names its
path and, where the document has one, its line.

The content hash covers what runs, not how it was spelled: the canonical JSON of the parsed
document, each of its datasets' rows (canonical JSON, in order), and the shipped datasets
its built-in checks read. YAML or JSON, inline rows or a JSONL upload: the same suite has
the same hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.certification.suites import (
    DatasetSource,
    Rows,
    Suite,
    SuiteFile,
    SuiteInvalid,
    SuiteTooLarge,
    _datasets_named,
    check_problems,
    dataset_path,
)

# Size limits (docs/suites.md). Over them: SuiteTooLarge (413 from the API).
MAX_DOCUMENT_BYTES = 256 * 1024  # the suite document, inline datasets included
MAX_DATASET_BYTES = 2 * 1024 * 1024  # one dataset, as JSONL
MAX_TOTAL_BYTES = 4 * 1024 * 1024  # the document and all its datasets
MAX_ROWS = 5_000  # rows in one dataset
MAX_DATASETS = 16
MAX_CHECKS = 64
MAX_DEPTH = 32  # nesting of the document and of each row
MAX_PLANNED = 20_000  # samples a suite may plan in all


def canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def parse_document(raw: bytes, media: str = "yaml") -> Any:
    """The document as plain data; SuiteInvalid when it is not JSON or YAML we accept."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise SuiteTooLarge(f"the suite document is over {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SuiteInvalid([{"loc": [], "msg": "the document is not UTF-8"}]) from None
    if media == "json":
        try:
            return json.loads(text)
        except RecursionError:
            raise SuiteInvalid([{"loc": [], "msg": "nested too deeply"}]) from None
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise SuiteInvalid([{"loc": [], "msg": f"not JSON: {exc}", "line": line}]) from None
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            mark = event.start_mark
            if isinstance(event, yaml.AliasEvent):
                line = mark.line + 1 if mark else None
                raise SuiteInvalid(
                    [{"loc": [], "msg": "YAML aliases are not accepted", "line": line}]
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = mark.line + 1 if mark else None
                    raise SuiteInvalid([{"loc": [], "msg": "nested too deeply", "line": line}])
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SuiteInvalid([{"loc": [], "msg": f"not YAML: {problem}", "line": line}]) from None


def line_of(raw: bytes, loc: list[Any]) -> int | None:
    """The line of `loc` in a YAML (or JSON) document, as deep as the path goes; None when
    it cannot be told."""
    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if found is None or key is None:
                break
            node, line = found, key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return int(line)


def parse_jsonl(name: str, raw: bytes) -> list[dict[str, Any]]:
    """Rows of a JSONL dataset; SuiteInvalid naming the dataset and line of a bad row."""
    if len(raw) > MAX_DATASET_BYTES:
        raise SuiteTooLarge(f"dataset {name!r} is over {MAX_DATASET_BYTES} bytes")
    loc = ["datasets", name]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SuiteInvalid([{"loc": loc, "msg": "the dataset is not UTF-8"}]) from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            message = f"line {number} is not JSON: {exc}"[:300]
            raise SuiteInvalid([{"loc": loc, "msg": message}]) from None
        if not isinstance(row, dict):
            raise SuiteInvalid([{"loc": loc, "msg": f"line {number} is not a JSON object"}])
        rows.append(row)
    return rows


def _unstorable(value: Any, loc: list[Any]) -> dict[str, Any] | None:
    """A NUL character (Postgres cannot store it) or nesting past MAX_DEPTH, with its path."""
    stack: list[tuple[Any, list[Any]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if len(where) - len(loc) > MAX_DEPTH:
            return {"loc": where, "msg": "nested too deeply"}
        if isinstance(item, str) and "\x00" in item:
            return {"loc": where, "msg": "must not contain the NUL character (U+0000)"}
        if isinstance(item, dict):
            for key, sub in item.items():
                if "\x00" in str(key):
                    return {"loc": where, "msg": "must not contain the NUL character (U+0000)"}
                stack.append((sub, [*where, key]))
        elif isinstance(item, list):
            stack.extend((sub, [*where, i]) for i, sub in enumerate(item))
    return None


def _resolve(
    name: str, source: DatasetSource, files: Mapping[str, bytes]
) -> tuple[list[dict[str, Any]], int]:
    """A dataset's rows and its size in bytes."""
    if source.rows is not None:
        return list(source.rows), len(canonical(source.rows))
    if source.jsonl is not None:
        raw = source.jsonl.encode("utf-8")
        return parse_jsonl(name, raw), len(raw)
    assert source.file is not None
    if source.file not in files:
        raise SuiteInvalid(
            [
                {
                    "loc": ["datasets", name, "file"],
                    "msg": f"no file {source.file!r} was given with the suite",
                }
            ]
        )
    raw = files[source.file]
    return parse_jsonl(name, raw), len(raw)


def load_document(
    raw: bytes, media: str = "yaml", files: Mapping[str, bytes] | None = None
) -> Suite:
    """A tenant's suite from its document and the dataset files it names; SuiteInvalid
    (with every error's path and line) or SuiteTooLarge when it cannot be accepted."""
    files = dict(files or {})
    document = parse_document(raw, media)
    if not isinstance(document, dict):
        raise SuiteInvalid([{"loc": [], "msg": "the document must be a mapping (object)"}])
    problem = _unstorable(document, [])
    if problem:
        raise SuiteInvalid([{**problem, "line": line_of(raw, problem["loc"])}])
    try:
        definition = SuiteFile.model_validate(document)
    except ValidationError as exc:
        errors = [
            {"loc": list(e["loc"]), "msg": e["msg"], "line": line_of(raw, list(e["loc"]))}
            for e in exc.errors()
        ]
        raise SuiteInvalid(errors) from None
    if definition.purpose != "certification":
        raise SuiteInvalid([{"loc": ["purpose"], "msg": "a team's suite certifies"}])
    if len(definition.datasets) > MAX_DATASETS or len(definition.checks) > MAX_CHECKS:
        raise SuiteTooLarge(f"a suite has at most {MAX_DATASETS} datasets and {MAX_CHECKS} checks")
    data: dict[str, Rows] = {}
    total = len(raw)
    for name, source in definition.datasets.items():
        if not _is_name(name):
            raise SuiteInvalid(
                [{"loc": ["datasets", name], "msg": "a dataset name is [A-Za-z0-9_-], ≤ 100"}]
            )
        rows, size = _resolve(name, source, files)
        total += size if source.file is not None else 0
        if size > MAX_DATASET_BYTES:
            raise SuiteTooLarge(f"dataset {name!r} is over {MAX_DATASET_BYTES} bytes")
        if len(rows) > MAX_ROWS:
            raise SuiteTooLarge(f"dataset {name!r} has more than {MAX_ROWS} rows")
        for number, row in enumerate(rows, 1):
            problem = _unstorable(row, ["datasets", name, f"row {number}"])
            if problem:
                raise SuiteInvalid([problem])
        data[name] = tuple(rows)
    if total > MAX_TOTAL_BYTES:
        raise SuiteTooLarge(f"the suite and its datasets are over {MAX_TOTAL_BYTES} bytes")
    named_files = {s.file for s in definition.datasets.values() if s.file}
    unused = sorted(set(files) - named_files)
    if unused:
        raise SuiteInvalid(
            [{"loc": ["datasets"], "msg": f"no dataset names the file {unused[0]!r}"}]
        )
    problems = check_problems(definition, data)
    if problems:
        raise SuiteInvalid([{**p, "line": line_of(raw, p["loc"])} for p in problems])
    suite = Suite(definition, "", tuple(_datasets_named(definition)), data)
    from app.certification.engine import planned_for

    planned = sum(planned_for(entry, suite) for entry in definition.checks)
    if planned > MAX_PLANNED:
        raise SuiteTooLarge(f"the suite plans {planned} samples; at most {MAX_PLANNED}")
    return Suite(definition, content_hash(document, data, suite.datasets), suite.datasets, data)


def _is_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}", name) is not None


def content_hash(document: Any, data: Mapping[str, Rows], shipped: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    digest.update(b"suite-document\0" + canonical(document))
    for name in sorted(data):
        digest.update(b"\0data\0" + name.encode() + b"\0")
        for row in data[name]:
            digest.update(canonical(row) + b"\n")
    for name in shipped:
        digest.update(b"\0dataset\0" + name.encode() + b"\0" + dataset_path(name).read_bytes())
    return "sha256:" + digest.hexdigest()


def media_of(path: Path) -> str:
    return "json" if path.suffix.lower() == ".json" else "yaml"


def load_path(path: Path) -> Suite:
    """A suite file on disk, with the dataset files it names read from beside it (the CLI)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SuiteInvalid([{"loc": [], "msg": f"cannot read {path}: {exc.strerror}"}]) from None
    files: dict[str, bytes] = {}
    try:
        document = parse_document(raw, media_of(path))
    except SuiteInvalid:
        document = None  # load_document says why
    datasets = document.get("datasets") if isinstance(document, dict) else None
    if isinstance(datasets, dict):
        for source in datasets.values():
            name = source.get("file") if isinstance(source, dict) else None
            if isinstance(name, str) and _is_file_name(name):
                beside = path.parent / name
                if beside.is_file():
                    files[name] = beside.read_bytes()
    return load_document(raw, media_of(path), files)


def _is_file_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name) is not None and ".." not in name
