"""Stored workflows: one draft row per workflow, numbered versions (SQLModel; DESIGN.md §6).

The draft is autosaved in place on ``workflows``; publishing copies it into a new
``workflow_versions`` row and points ``workflows.published_version`` at its number, so there is
exactly one published version per workflow and the older ones stay as history.
Schema changes need an Alembic revision (alembic/versions/).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKeyConstraint, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import TenantOwned, UTCDateTime, new_id, utcnow


class StoredWorkflow(SQLModel, TenantOwned, table=True):
    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("tenant_id", "slug", name="uq_workflows_tenant_slug"),
        # Target of workflow_versions' (workflow_id, tenant_id) key: a version can only belong
        # to a workflow of its own tenant, even though FK checks ignore RLS.
        UniqueConstraint("id", "tenant_id", name="uq_workflows_id_tenant"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", max_length=32)
    #: The YAML ``id``; the public handle in URLs and the CLI.
    slug: str = Field(max_length=100)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", sa_type=Text)
    draft_yaml: str = Field(sa_type=Text)
    #: sha256 hex of ``draft_yaml`` (builder.yaml_io.content_hash): the ETag for optimistic locking.
    draft_hash: str = Field(max_length=64)
    #: False while the draft has error-level issues (it is saved but cannot be published).
    draft_valid: bool = Field(default=False)
    published_version: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: str | None = Field(default=None, max_length=100)
    #: The workflow's conversation tests (builder.conversation_tests YAML); publishing replays them.
    tests_yaml: str | None = Field(default=None, sa_type=Text)


class WorkflowVersion(SQLModel, TenantOwned, table=True):
    __tablename__ = "workflow_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "number", name="uq_workflow_versions_workflow_number"),
        ForeignKeyConstraint(
            ["workflow_id", "tenant_id"],
            ["workflows.id", "workflows.tenant_id"],
            ondelete="CASCADE",
            name="fk_workflow_versions_workflow",
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    tenant_id: str = Field(foreign_key="tenants.id", ondelete="CASCADE", index=True, max_length=32)
    workflow_id: str = Field(max_length=32)
    number: int
    yaml: str = Field(sa_type=Text)
    content_hash: str = Field(max_length=64)
    author: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    published_by: str | None = Field(default=None, max_length=100)
