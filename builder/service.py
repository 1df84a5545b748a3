"""Stored workflows: drafts, numbered versions, publish, diff, roll back, import and export.

Plain functions with keyword-only arguments; the caller owns the session (and, on
PostgreSQL, the tenant set on it). Every query is also scoped by ``tenant_id`` here, so
isolation does not rest on RLS alone.

* The draft is one row per workflow, saved in place (autosave); its ETag is the content hash
  of its canonical YAML, and a stale ``if_match`` gets 409.
* Publishing copies the draft into a new numbered version; the previous versions stay.
* Invalid drafts (graph issues) are saved with their issues but cannot be published; text
  that does not even parse is refused (422) and nothing is written.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, select

from builder import conversation_tests as ct
from builder import models as m
from builder.graph import validate
from builder.issues import Issue, WorkflowLoadError, has_errors
from builder.schema import Workflow
from builder.yaml_io import content_hash, dump, load
from core.errors import Conflict, Invalid, NotFound, TooLarge

log = logging.getLogger(__name__)

MAX_YAML_BYTES = 2 * 1024 * 1024


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Draft:
    row: m.StoredWorkflow
    workflow: Workflow
    issues: list[Issue] = field(default_factory=list)
    created: bool = False

    @property
    def etag(self) -> str:
        return self.row.draft_hash


def parse(yaml_text: str | bytes, *, filename: str = "<upload>") -> tuple[Workflow, list[Issue]]:
    """Text -> (workflow, load warnings); raises ``Invalid`` with line-numbered issues
    (``TooLarge`` above ``MAX_YAML_BYTES``, before any parsing)."""
    size = len(yaml_text.encode("utf-8") if isinstance(yaml_text, str) else yaml_text)
    if size > MAX_YAML_BYTES:
        raise TooLarge("yaml_too_large", f"the workflow file is larger than {MAX_YAML_BYTES} bytes")
    try:
        loaded = load(yaml_text, filename=filename)
    except WorkflowLoadError as e:
        first = e.issues[0]
        raise Invalid(
            "yaml_invalid",
            f"line {first.line or 1}, column {first.col or 1}: {first.code} {first.message}",
            issues=[i.to_dict() for i in e.issues],
        ) from None
    return loaded.workflow, loaded.warnings


def resolver(
    session: Session, tenant_id: str, *, published: bool = False
) -> Callable[[str], Workflow | None]:
    """slug -> Workflow of this tenant (the draft, or the published version) for subflows."""
    cache: dict[str, Workflow | None] = {}

    def resolve(slug: str) -> Workflow | None:
        if slug not in cache:
            row = _find(session, tenant_id, slug)
            text: str | None = None
            if row is not None:
                if published:
                    v = (
                        _version(session, tenant_id, row, row.published_version)
                        if row.published_version
                        else None
                    )
                    text = v.yaml if v else None
                else:
                    text = row.draft_yaml
            try:
                cache[slug] = load(text).workflow if text else None
            except WorkflowLoadError:
                cache[slug] = None
        return cache[slug]

    return resolve


def check(session: Session, tenant_id: str, wf: Workflow) -> list[Issue]:
    return validate(wf, resolve_workflow=resolver(session, tenant_id))


def _find(session: Session, tenant_id: str, slug: str) -> m.StoredWorkflow | None:
    return session.exec(
        select(m.StoredWorkflow).where(m.StoredWorkflow.tenant_id == tenant_id, m.StoredWorkflow.slug == slug)
    ).first()


def get(session: Session, *, tenant_id: str, slug: str) -> m.StoredWorkflow:
    row = _find(session, tenant_id, slug)
    if row is None:
        raise NotFound("workflow_not_found", f"no workflow '{slug}'")
    return row


def list_all(session: Session, *, tenant_id: str) -> list[m.StoredWorkflow]:
    return list(
        session.exec(
            select(m.StoredWorkflow)
            .where(m.StoredWorkflow.tenant_id == tenant_id)
            .order_by(m.StoredWorkflow.slug)
        ).all()
    )


def count(session: Session, *, tenant_id: str) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(m.StoredWorkflow).where(m.StoredWorkflow.tenant_id == tenant_id)
        ).one()
    )


def save_draft(
    session: Session,
    *,
    tenant_id: str,
    yaml_text: str | bytes,
    author: str,
    if_match: str | None = None,
    expect_slug: str | None = None,
    on_create: Callable[[], None] | None = None,
) -> Draft:
    """Create or update the draft named by the file's ``id`` (import = this, too).

    ``on_create`` runs before a new workflow row is made (the plan-limit check).
    """
    wf, warnings = parse(yaml_text)
    if expect_slug is not None and wf.id != expect_slug:
        raise Invalid("slug_mismatch", f"the file's id is '{wf.id}', not '{expect_slug}'")
    canonical = dump(wf)
    issues = warnings + check(session, tenant_id, wf)
    row = _find(session, tenant_id, wf.id)
    created = row is None
    if row is None:
        if if_match not in (None, "*"):
            raise Conflict("etag_mismatch", f"workflow '{wf.id}' does not exist yet; If-Match cannot match")
        if on_create:
            on_create()
        row = m.StoredWorkflow(tenant_id=tenant_id, slug=wf.id, created_at=_now())
    elif if_match is not None and if_match != "*" and if_match.strip('"') != row.draft_hash:
        raise Conflict(
            "etag_mismatch",
            f"workflow '{wf.id}' changed since you loaded it (current ETag {row.draft_hash})",
            etag=row.draft_hash,
        )
    row.name = wf.name
    row.description = wf.description
    row.draft_yaml = canonical
    row.draft_hash = content_hash(canonical)
    row.draft_valid = not has_errors(issues)
    row.updated_at = _now()
    row.updated_by = author
    session.add(row)
    session.flush()
    return Draft(row, wf, issues, created)


def issues_of(session: Session, *, tenant_id: str, row: m.StoredWorkflow) -> list[Issue]:
    wf, warnings = parse(row.draft_yaml)
    return warnings + check(session, tenant_id, wf)


def delete(session: Session, *, tenant_id: str, slug: str) -> None:
    row = get(session, tenant_id=tenant_id, slug=slug)
    for v in versions(session, tenant_id=tenant_id, slug=slug):
        session.delete(v)
    # Versions first: the ORM knows no relationship between the two tables, and deleting the
    # workflow first would let the FK cascade remove the versions under the ORM's feet.
    session.flush()
    session.delete(row)
    session.flush()


def versions(session: Session, *, tenant_id: str, slug: str) -> list[m.WorkflowVersion]:
    row = get(session, tenant_id=tenant_id, slug=slug)
    return list(
        session.exec(
            select(m.WorkflowVersion)
            .where(m.WorkflowVersion.tenant_id == tenant_id, m.WorkflowVersion.workflow_id == row.id)
            .order_by(m.WorkflowVersion.number)
        ).all()
    )


def _version(
    session: Session, tenant_id: str, row: m.StoredWorkflow, number: int | None
) -> m.WorkflowVersion | None:
    if number is None:
        return None
    return session.exec(
        select(m.WorkflowVersion).where(
            m.WorkflowVersion.tenant_id == tenant_id,
            m.WorkflowVersion.workflow_id == row.id,
            m.WorkflowVersion.number == number,
        )
    ).first()


def draft_changed(session: Session, *, tenant_id: str, row: m.StoredWorkflow) -> bool:
    """Published, and the draft has been edited since (the live version's text differs)."""
    live = _version(session, tenant_id, row, row.published_version)
    return live is not None and live.content_hash != row.draft_hash


def version(session: Session, *, tenant_id: str, slug: str, number: int) -> m.WorkflowVersion:
    v = _version(session, tenant_id, get(session, tenant_id=tenant_id, slug=slug), number)
    if v is None:
        raise NotFound("version_not_found", f"workflow '{slug}' has no version {number}")
    return v


def _new_version(
    session: Session, tenant_id: str, row: m.StoredWorkflow, text: str, author: str
) -> m.WorkflowVersion:
    last = session.exec(
        select(func.max(m.WorkflowVersion.number)).where(
            m.WorkflowVersion.tenant_id == tenant_id, m.WorkflowVersion.workflow_id == row.id
        )
    ).one()
    now = _now()
    v = m.WorkflowVersion(
        tenant_id=tenant_id,
        workflow_id=row.id,
        number=(last or 0) + 1,
        yaml=text,
        content_hash=content_hash(text),
        author=author,
        created_at=now,
        published_at=now,
        published_by=author,
    )
    session.add(v)
    row.published_version = v.number
    row.updated_at = now
    session.add(row)
    session.flush()
    return v


def publish(
    session: Session, *, tenant_id: str, slug: str, author: str, if_match: str | None = None
) -> m.WorkflowVersion:
    """Publish the current draft as a new version; 409 while it has error-level issues."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    if if_match is not None and if_match.strip('"') != row.draft_hash:
        raise Conflict("etag_mismatch", f"workflow '{slug}' changed since you loaded it", etag=row.draft_hash)
    errors = [i for i in issues_of(session, tenant_id=tenant_id, row=row) if i.severity == "error"]
    if errors:
        raise Conflict(
            "workflow_invalid",
            f"workflow '{slug}' has {len(errors)} error(s) and cannot be published",
            issues=[i.to_dict() for i in errors],
        )
    current = _version(session, tenant_id, row, row.published_version)
    if current is not None and current.content_hash == row.draft_hash:
        return current  # publishing an unchanged draft is idempotent
    if row.tests_yaml:
        check_tests(session, tenant_id=tenant_id, row=row)
    return _new_version(session, tenant_id, row, row.draft_yaml, author)


def rollback(session: Session, *, tenant_id: str, slug: str, number: int, author: str) -> m.WorkflowVersion:
    """Publish version ``number``'s text again as a new version (history stays linear); the draft follows."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    old = version(session, tenant_id=tenant_id, slug=slug, number=number)
    row.draft_yaml, row.draft_hash, row.draft_valid = old.yaml, old.content_hash, True
    row.updated_by = author
    return _new_version(session, tenant_id, row, old.yaml, author)


def diff(
    session: Session, *, tenant_id: str, slug: str, from_n: int | None = None, to_n: int | None = None
) -> str:
    """Unified diff between two versions; ``None`` means the draft (default: published -> draft)."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    from_n = row.published_version if from_n is None else from_n

    def text(n: int | None) -> tuple[str, str]:
        if n is None:
            return "draft", row.draft_yaml
        return f"v{n}", version(session, tenant_id=tenant_id, slug=slug, number=n).yaml

    (a_name, a), (b_name, b) = text(from_n), text(to_n)
    return "".join(
        difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), f"{slug}@{a_name}", f"{slug}@{b_name}"
        )
    )


def export(session: Session, *, tenant_id: str, slug: str, number: int | None = None) -> str:
    """Canonical YAML of a version, or of the draft."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    return (
        row.draft_yaml
        if number is None
        else version(session, tenant_id=tenant_id, slug=slug, number=number).yaml
    )


def summary(row: m.StoredWorkflow, issues: list[Issue] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.slug,
        "name": row.name,
        "description": row.description,
        "status": "published" if row.published_version else "draft",
        "published_version": row.published_version,
        "valid": row.draft_valid,
        "etag": row.draft_hash,
        "updated_at": row.updated_at.isoformat() if row.updated_at else None,
        "updated_by": row.updated_by,
    }
    if issues is not None:
        out["issues"] = [i.to_dict() for i in issues]
    return out


# ---------------------------------------------------------------- the Workflows and Versions pages

#: What "New workflow" starts from: the smallest graph that validates.
BLANK_YAML = """\
version: 1
id: {slug}
name: {name}
nodes:
  - id: start
    type: start
  - id: end
    type: end
edges:
  - {{from: start, to: end}}
"""


def slugify(text: str) -> str:
    """A workflow id from a display name: ``"Track my order!"`` -> ``track_my_order``."""
    base = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not base or not base[0].isalpha():
        base = f"workflow_{base}".rstrip("_")
    return base[:56].rstrip("_")


def unique_slug(session: Session, *, tenant_id: str, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... : the first id this tenant does not use yet."""
    base = slugify(base)
    taken = set(
        session.exec(
            select(m.StoredWorkflow.slug).where(
                m.StoredWorkflow.tenant_id == tenant_id,
                m.StoredWorkflow.slug.startswith(base),  # type: ignore[attr-defined]
            )
        ).all()
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}_{n}" in taken:
        n += 1
    return f"{base}_{n}"


def _save_as(
    session: Session,
    *,
    tenant_id: str,
    wf: Workflow,
    author: str,
    on_create: Callable[[], None] | None,
) -> Draft:
    """Save ``wf`` as a new workflow (its id must be free): create, template and duplicate."""
    draft = save_draft(
        session, tenant_id=tenant_id, yaml_text=dump(wf), author=author, if_match="*", on_create=on_create
    )
    if not draft.created:  # the caller picked a free id in this transaction; anything else is a bug
        raise Conflict("workflow_exists", f"a workflow '{wf.id}' already exists")
    return draft


def create_blank(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    author: str,
    on_create: Callable[[], None] | None = None,
) -> Draft:
    """A new draft ``start -> end`` named ``name``; its id is derived from the name (made unique)."""
    name = " ".join(name.split())
    if not name:
        raise Invalid("name_required", "give the workflow a name")
    if len(name) > 200:
        raise Invalid("name_too_long", "the name is longer than 200 characters")
    slug = unique_slug(session, tenant_id=tenant_id, base=name)
    wf, _ = parse(BLANK_YAML.format(slug=slug, name=json.dumps(name)))
    return _save_as(session, tenant_id=tenant_id, wf=wf, author=author, on_create=on_create)


def create_from_template(
    session: Session,
    *,
    tenant_id: str,
    template_id: str,
    author: str,
    directory: Path | None = None,
    on_create: Callable[[], None] | None = None,
) -> Draft:
    """A new draft from a shipped ``workflows/*.yaml`` file (by its workflow id).

    The template keeps its id when the tenant has none of that name (so subflow references
    between templates keep working), else gets ``<id>_2``, ``<id>_3``...
    """
    from builder import catalog  # the file listing; imported here to keep the module's import cheap

    directory = catalog.workflows_dir() if directory is None else directory
    row = next((r for r in catalog.list_workflows(directory) if r["id"] == template_id), None)
    if row is None:
        raise NotFound("template_not_found", f"no template '{template_id}'")
    wf, _ = parse((directory / row["file"]).read_bytes(), filename=row["file"])
    template = wf.id
    slug = unique_slug(session, tenant_id=tenant_id, base=wf.id)
    wf = wf.model_copy(update={"id": slug})
    draft = _save_as(session, tenant_id=tenant_id, wf=wf, author=author, on_create=on_create)
    tests = template_tests(directory / row["file"], template=template, slug=slug)
    if tests is not None:
        draft.row.tests_yaml = tests
        session.add(draft.row)
        session.flush()
    return draft


#: A template's conversation tests: ``<stem>.tests.yaml`` beside it, else in ``tests/`` next to it
#: (the layout ``flowdesk test`` reads, runtime/convtest.py).
TESTS_SUFFIX = ".tests.yaml"


def template_tests(path: Path, *, template: str, slug: str) -> str | None:
    """The conversation tests shipped with the template file ``path``, renamed for the new
    workflow ``slug`` (canonical YAML); None when there are none, or when the file does not load
    or names another workflow (a broken shipped file must not stop the workflow's creation)."""
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    for candidate in (path.parent / f"{stem}{TESTS_SUFFIX}", path.parent / "tests" / f"{stem}{TESTS_SUFFIX}"):
        if not candidate.is_file():
            continue
        try:
            tests = ct.load_tests(candidate.read_bytes(), filename=candidate.name)
        except WorkflowLoadError as e:
            log.warning("template tests %s not copied: %s", candidate, e.issues[0])
            return None
        if tests.workflow != template or not tests.cases:
            return None
        return ct.dump_tests(tests.model_copy(update={"workflow": slug}))
    return None


def duplicate(
    session: Session,
    *,
    tenant_id: str,
    slug: str,
    author: str,
    on_create: Callable[[], None] | None = None,
) -> Draft:
    """A new draft with the draft of ``slug`` as content: id ``<slug>_copy`` (made unique), name "… (copy)".

    Versions are not copied: the copy starts unpublished.
    """
    row = get(session, tenant_id=tenant_id, slug=slug)
    wf, _ = parse(row.draft_yaml)
    new_slug = unique_slug(session, tenant_id=tenant_id, base=f"{slug}_copy")
    wf = wf.model_copy(update={"id": new_slug, "name": f"{wf.name} (copy)"[:200]})
    return _save_as(session, tenant_id=tenant_id, wf=wf, author=author, on_create=on_create)


def import_yaml(
    session: Session,
    *,
    tenant_id: str,
    yaml_text: str | bytes,
    author: str,
    on_create: Callable[[], None] | None = None,
) -> Draft:
    """Import a file: a new draft, or the existing draft with the file's ``id`` updated in place.

    Refused (``Invalid``/``TooLarge``, nothing written) when the text does not parse; saved with
    its issues when only graph rules fail.
    """
    draft = save_draft(session, tenant_id=tenant_id, yaml_text=yaml_text, author=author, on_create=on_create)
    # Report the issues at their lines in the file as given, not in the canonical form stored.
    draft.issues = located_issues(session, tenant_id=tenant_id, yaml_text=yaml_text)
    return draft


def located_issues(session: Session, *, tenant_id: str, yaml_text: str | bytes) -> list[Issue]:
    """Load warnings + graph issues of a parseable text, each with the line and column in it."""
    loaded = load(yaml_text)
    return loaded.warnings + validate(
        loaded.workflow, loaded=loaded, resolve_workflow=resolver(session, tenant_id)
    )


def overview(session: Session, *, tenant_id: str) -> list[dict[str, Any]]:
    """``summary`` of every workflow plus its node, error and warning counts, the first error
    (``file:line:col: CODE message``, lines of the canonical YAML) and ``draft_changed``."""
    out = []
    resolve = resolver(session, tenant_id)
    versions_q = select(
        m.WorkflowVersion.workflow_id, m.WorkflowVersion.number, m.WorkflowVersion.content_hash
    )
    live = {
        (w, n): h
        for w, n, h in session.exec(versions_q.where(m.WorkflowVersion.tenant_id == tenant_id)).all()
    }
    for row in list_all(session, tenant_id=tenant_id):
        item = summary(row)
        # Published, but the draft has been edited since: the page says "unpublished changes".
        item["draft_changed"] = bool(row.published_version) and (
            live.get((row.id, row.published_version)) != row.draft_hash
        )
        try:
            loaded = load(row.draft_yaml)
        except WorkflowLoadError as e:
            # Stored before a format change: list it as broken rather than fail the whole page.
            first = e.issues[0].format(f"{row.slug}.yaml")
            item.update(errors=len(e.issues), warnings=0, nodes=0, first_issue=first)
        else:
            wf = loaded.workflow
            issues = loaded.warnings + validate(wf, loaded=loaded, resolve_workflow=resolve)
            errors = [i for i in issues if i.severity == "error"]
            item.update(
                errors=len(errors),
                warnings=len(issues) - len(errors),
                nodes=len(wf.nodes),
                first_issue=errors[0].format(f"{row.slug}.yaml") if errors else "",
            )
        out.append(item)
    return out


def history(session: Session, *, tenant_id: str, slug: str) -> list[dict[str, Any]]:
    """Versions newest first: number, author, created, published by/at, ``current`` (the live one)."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    return [
        {
            "number": v.number,
            "author": v.author,
            "created_at": v.created_at,
            "published_by": v.published_by,
            "published_at": v.published_at,
            "current": v.number == row.published_version,
            "content_hash": v.content_hash,
        }
        for v in reversed(versions(session, tenant_id=tenant_id, slug=slug))
    ]


# ---------------------------------------------------------------- conversation tests


def get_tests(session: Session, *, tenant_id: str, slug: str) -> str | None:
    """The workflow's conversation tests (canonical YAML), or None when it has none."""
    return get(session, tenant_id=tenant_id, slug=slug).tests_yaml


def _parse_tests(yaml_text: str | bytes, slug: str) -> ct.TestFile:
    size = len(yaml_text.encode("utf-8") if isinstance(yaml_text, str) else yaml_text)
    if size > MAX_YAML_BYTES:
        raise TooLarge("yaml_too_large", f"the tests file is larger than {MAX_YAML_BYTES} bytes")
    try:
        tests = ct.load_tests(yaml_text, filename=f"{slug}.tests.yaml")
    except WorkflowLoadError as e:
        first = e.issues[0]
        raise Invalid(
            "tests_invalid",
            f"line {first.line or 1}, column {first.col or 1}: {first.code} {first.message}",
            issues=[i.to_dict() for i in e.issues],
        ) from None
    if tests.workflow != slug:
        raise Invalid("tests_workflow_mismatch", f"the tests are for {tests.workflow!r}, not {slug!r}")
    return tests


def save_tests(
    session: Session, *, tenant_id: str, slug: str, yaml_text: str | bytes | None, author: str
) -> ct.TestFile | None:
    """Replace the workflow's tests (stored canonical); None or blank text removes them."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    tests = None if yaml_text is None or not yaml_text.strip() else _parse_tests(yaml_text, slug)
    row.tests_yaml = ct.dump_tests(tests) if tests is not None and tests.cases else None
    row.updated_by = author
    session.add(row)
    session.flush()
    return tests


def add_case(session: Session, *, tenant_id: str, slug: str, case: ct.Case, author: str) -> ct.TestFile:
    """Append ``case`` to the workflow's tests (a case with the same name is replaced)."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    current = _parse_tests(row.tests_yaml, slug) if row.tests_yaml else ct.empty(slug)
    try:
        tests = ct.add_case(current, case)
    except ValidationError as e:  # too many cases or turns
        raise Invalid("tests_invalid", str(e.errors()[0]["msg"])) from None
    row.tests_yaml = ct.dump_tests(tests)
    row.updated_by = author
    session.add(row)
    session.flush()
    return tests


def check_tests(session: Session, *, tenant_id: str, row: m.StoredWorkflow) -> None:
    """Replay the draft's conversation tests (offline LLM); ``Conflict('tests_failed')`` on a failure."""
    from runtime import convtest  # the one place the builder runs the runtime: the publish gate

    wf = load(row.draft_yaml).workflow
    try:
        resolve = resolver(session, tenant_id)
        outcomes = convtest.run_stored(wf, row.tests_yaml or "", resolve, tenant_id=tenant_id)
    except WorkflowLoadError as e:
        raise Conflict("tests_invalid", f"the stored tests of '{row.slug}' do not load: {e}") from None
    failed = convtest.failures(outcomes)
    if failed:
        raise Conflict(
            "tests_failed",
            f"{sum(not o.passed for o in outcomes)} of {len(outcomes)} conversation test(s) of "
            f"'{row.slug}' failed; fix the flow or the tests before publishing",
            failures=failed,
            issues=[{"code": "TEST_FAILED", "severity": "error", "message": f} for f in failed],
        )


def refresh_validity(session: Session, *, tenant_id: str, slug: str) -> bool:
    """Validate the draft again and store the answer: ``draft_valid`` is computed at save time, so a
    draft saved before the subflows it names existed stays marked invalid until re-checked."""
    row = get(session, tenant_id=tenant_id, slug=slug)
    valid = not has_errors(issues_of(session, tenant_id=tenant_id, row=row))
    if valid != row.draft_valid:
        row.draft_valid = valid
        session.add(row)
        session.flush()
    return valid
