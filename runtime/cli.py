"""``flowdesk`` command line: validate, fmt, run, route, eval-router, graph, test.

Local commands take workflow FILES; subflows are resolved by slug among the ``*.yaml``
files beside the given file (then the shipped ``workflows/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from builder.issues import Issue, WorkflowLoadError
from builder.schema import Workflow
from builder.yaml_io import Loaded, dump, load
from core.settings import ROOT

SHIPPED = ROOT / "workflows"
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _read(path: Path) -> Loaded:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WorkflowLoadError([Issue("FILE_UNREADABLE", f"cannot read file: {e.strerror}")]) from None
    return load(data, filename=str(path))


class FileResolver:
    """slug -> Workflow from the YAML files in a few directories (first match wins)."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = [d for d in dirs if d.is_dir()]
        self._cache: dict[str, Workflow | None] = {}

    def __call__(self, slug: str) -> Workflow | None:
        if slug not in self._cache:
            self._cache[slug] = self._find(slug)
        return self._cache[slug]

    def _find(self, slug: str) -> Workflow | None:
        for d in self.dirs:
            for candidate in (d / f"{slug}.yaml", d / f"{slug}.yml"):
                if candidate.is_file():
                    try:
                        wf = _read(candidate).workflow
                    except WorkflowLoadError:
                        return None
                    if wf.id == slug:
                        return wf
            for candidate in sorted(d.glob("*.y*ml")):
                try:
                    wf = _read(candidate).workflow
                except WorkflowLoadError:
                    continue
                if wf.id == slug:
                    return wf
        return None


def resolver_for(path: Path) -> FileResolver:
    return FileResolver([path.resolve().parent, SHIPPED])


def _print_issues(path: Path, issues: list[Issue]) -> None:
    for issue in issues:
        print(issue.format(str(path)))


def cmd_validate(args: argparse.Namespace) -> int:
    from builder.graph import validate

    status = EXIT_OK
    for p in map(Path, args.paths):
        try:
            loaded = _read(p)
        except WorkflowLoadError as e:
            _print_issues(p, e.issues)
            status = EXIT_INVALID
            continue
        issues = loaded.warnings + validate(loaded.workflow, loaded=loaded, resolve_workflow=resolver_for(p))
        _print_issues(p, issues)
        if any(i.severity == "error" for i in issues):
            status = EXIT_INVALID
    return status


def cmd_fmt(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for p in map(Path, args.paths):
        try:
            loaded = _read(p)
        except WorkflowLoadError as e:
            _print_issues(p, e.issues)
            status = EXIT_INVALID
            continue
        text = p.read_text(encoding="utf-8")
        canonical = dump(loaded.workflow)
        if text == canonical:
            continue
        if args.check:
            print(f"{p}: not in canonical form (run: flowdesk fmt {p})")
            status = EXIT_INVALID
        else:
            p.write_text(canonical, encoding="utf-8")
            print(f"{p}: reformatted")
    return status


def _load_valid(path: Path) -> tuple[Workflow, FileResolver] | None:
    from builder.graph import validate

    try:
        loaded = _read(path)
    except WorkflowLoadError as e:
        _print_issues(path, e.issues)
        return None
    resolve = resolver_for(path)
    issues = validate(loaded.workflow, loaded=loaded, resolve_workflow=resolve)
    errors = [i for i in issues if i.severity == "error"]
    if errors:
        _print_issues(path, errors)
        return None
    return loaded.workflow, resolve


def _demo_api_url() -> str:
    """The demo API's origin: the configured one if it answers, else one started here."""
    import httpx

    from core.settings import get_settings
    from runtime.demo_api import serve_in_thread

    settings = get_settings()
    try:
        if httpx.get(settings.demo_api_url + "/health", timeout=0.5).status_code == 200:
            return settings.demo_api_url
    except httpx.HTTPError:
        pass
    try:
        url, _stop = serve_in_thread(settings.DEMO_API_HOST, settings.DEMO_API_PORT)
    except OSError:  # the port is taken by something else: any free port will do
        url, _stop = serve_in_thread(settings.DEMO_API_HOST, 0)
    return url


def local_engine(resolve: FileResolver) -> Any:
    """An offline engine whose ``${config:*_API}`` values and SSRF allow-list name the demo API."""
    from core.settings import get_settings
    from runtime.engine import Engine
    from runtime.http import GuardedClient

    settings = get_settings()
    url = _demo_api_url()
    values = {k: (url if v == settings.demo_api_url else v) for k, v in settings.config_values.items()}
    http = GuardedClient(settings, allow_origins=[*settings.ssrf_allow_origins, url])
    return Engine(settings=settings, resolve=resolve, config_values=values, http=http)


def cmd_run(args: argparse.Namespace) -> int:
    found = _load_valid(Path(args.workflow))
    if found is None:
        return EXIT_INVALID
    wf, resolve = found
    engine = local_engine(resolve)
    cid = args.conversation or uuid.uuid4().hex
    messages = args.message or []
    interactive = not messages
    status = EXIT_OK
    while True:
        if interactive:
            try:
                text = input("you> ")
            except EOFError:
                break
            if not text.strip():
                continue
        else:
            if not messages:
                break
            text = messages.pop(0)
        result = engine.run_turn(wf, cid, text)
        if result.error:
            status = EXIT_INVALID
        if args.json:
            out = {
                "reply": result.reply,
                "intent": result.intent,
                "path": result.path,
                "waiting": result.waiting,
                "usage": result.usage,
                "events": result.events,
            }
            if result.error:
                out["error"] = result.error
            print(json.dumps(out, ensure_ascii=False, default=str), flush=True)
        else:
            route = f"  [{result.intent}]" if result.intent else ""
            print(f"bot> {result.reply}{route}")
            if args.verbose:
                print(f"     path: {' -> '.join(result.path)}")
    return status


def _classify_intents(wf: Workflow, node_id: str | None) -> tuple[str, list[Any]]:
    from runtime.router import Intent

    for node in wf.nodes:
        if node.type == "classify" and (node_id is None or node.id == node_id):
            return node.id, [Intent.model_validate(i) for i in node.config.get("intents", [])]
    raise SystemExit(f"error: no classify node{' ' + node_id if node_id else ''} in workflow '{wf.id}'")


def _router_inputs(args: argparse.Namespace) -> tuple[str, list[Any]] | None:
    """(classify node id, its intents) of a valid workflow file, or None after printing its issues."""
    found = _load_valid(Path(args.workflow))
    return None if found is None else _classify_intents(found[0], args.node)


def cmd_route(args: argparse.Namespace) -> int:
    from runtime.llm import get_provider
    from runtime.router import Router

    inputs = _router_inputs(args)
    if inputs is None:
        return EXIT_INVALID
    node_id, intents = inputs
    decision = Router().decide(args.text, intents, llm=get_provider())
    print(json.dumps({"node": node_id, **decision.to_dict()}, ensure_ascii=False, default=str))
    return EXIT_OK


def cmd_eval_router(args: argparse.Namespace) -> int:
    from runtime.llm import get_provider
    from runtime.router import Router
    from runtime.router_eval import evaluate, load_jsonl

    inputs = _router_inputs(args)
    if inputs is None:
        return EXIT_INVALID
    rows = load_jsonl(Path(args.data))
    report = evaluate(Router(), inputs[1], rows, llm=get_provider() if args.judge else None)
    print(json.dumps(report, ensure_ascii=False, indent=None if args.compact else 2, default=str))
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from runtime.compile import build_graph

    found = _load_valid(Path(args.workflow))
    if found is None:
        return EXIT_INVALID
    wf, resolve = found
    print(build_graph(wf, resolve=resolve).compile().get_graph(xray=True).draw_mermaid())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowdesk", description="flowdesk workflow tools")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", help="check workflow files; prints file:line:col: CODE message")
    s.add_argument("paths", nargs="+")
    s.set_defaults(fn=cmd_validate)

    s = sub.add_parser("fmt", help="rewrite files in the canonical format")
    s.add_argument("paths", nargs="+")
    s.add_argument("--check", action="store_true", help="only report files that are not canonical")
    s.set_defaults(fn=cmd_fmt)

    s = sub.add_parser("run", help="run one conversation offline, one turn per --message")
    s.add_argument("workflow")
    s.add_argument("--message", "-m", action="append")
    s.add_argument("--json", action="store_true", help="one JSON object per turn (JSONL)")
    s.add_argument("--conversation", help="conversation id (default: a new one)")
    s.add_argument("--verbose", "-v", action="store_true")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("route", help="the router's decision record for one message, as JSON")
    s.add_argument("workflow")
    s.add_argument("--text", required=True)
    s.add_argument("--node", help="the classify node (default: the first)")
    s.set_defaults(fn=cmd_route)

    s = sub.add_parser("eval-router", help="accuracy, macro-F1, latency of the router on a JSONL test set")
    s.add_argument("workflow")
    s.add_argument("--data", required=True)
    s.add_argument("--node")
    s.add_argument("--judge", action="store_true", help="let the LLM judge decide low-confidence cases")
    s.add_argument("--compact", action="store_true")
    s.set_defaults(fn=cmd_eval_router)

    s = sub.add_parser("graph", help="Mermaid text of the compiled graph")
    s.add_argument("workflow")
    s.set_defaults(fn=cmd_graph)

    from runtime import cli_remote  # server-side commands: migrate, seed, tenants, push/pull/...

    cli_remote.register(sub)
    from runtime import cli_runtime  # worker and queue operations

    cli_runtime.register(sub)
    from runtime import cli_convtest  # flowdesk test: conversation tests

    cli_convtest.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
