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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from builder import models as m
from builder.graph import validate
from builder.issues import Issue, WorkflowLoadError, has_errors
from builder.schema import Workflow
from builder.yaml_io import content_hash, dump, load
from core.errors import Conflict, Invalid, NotFound, TooLarge

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
