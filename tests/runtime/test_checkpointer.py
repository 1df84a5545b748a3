"""SqlCheckpointer on SQLite and on PostgreSQL as the app role (RLS live): a conversation survives a
new Engine (another worker after a crash), tenants never see each other's threads, erasure works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint
from sqlalchemy.engine import Engine

from builder.yaml_io import load
from core.db import load_models, system_session, tenant_session
from core.settings import ROOT
from runtime.checkpointer import CHECKPOINTS, WRITES, SqlCheckpointer
from runtime.demo_api import serve_in_thread
from runtime.engine import Engine as FlowEngine
from runtime.events import append_events, delete_conversation
from tests.db_fixtures import db_engine, pg_db, pg_engine, sqlite_db, sqlite_engine  # noqa: F401
from tests.runtime.support import demo_engine

WORKFLOWS = ROOT / "workflows"
A, B = "tenant_a", "tenant_b"


@pytest.fixture(scope="module")
def demo_api() -> Iterator[str]:
    url, stop = serve_in_thread("127.0.0.1", 0)
    yield url
    stop()


@pytest.fixture()
def fresh_demo(demo_api: str) -> str:
    httpx.post(f"{demo_api}/_control", json={"reset": True}).raise_for_status()
    return demo_api


def flow_engine(demo: str, db: Engine, tenant: str) -> FlowEngine:
    """A fresh Engine as a worker would build it: nothing shared but the database."""
    return demo_engine(demo, checkpointer=SqlCheckpointer(db, tenant))


def support():
    return load((WORKFLOWS / "customer_support.yaml").read_text()).workflow


def count(db: Engine, tenant: str, table: sa.Table, thread: str) -> int:
    q = (
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.tenant_id == tenant, table.c.thread_id == thread)
    )
    with tenant_session(tenant, engine=db) as s:
        return int(s.connection().execute(q).scalar_one())


def test_a_conversation_resumes_on_a_new_engine_from_the_database(db_engine, fresh_demo):  # noqa: F811
    cid = uuid.uuid4().hex
    r1 = flow_engine(fresh_demo, db_engine, A).run_turn(
        support(), cid, "my package hasn't arrived", tenant_id=A
    )
    assert r1.error is None and r1.waiting and r1.intent == "track_order"
    assert "order number" in r1.reply.lower()
    assert count(db_engine, A, CHECKPOINTS, cid) > 0

    # Another worker: new Engine, new checkpointer, no in-memory state from the first turn.
    r2 = flow_engine(fresh_demo, db_engine, A).run_turn(support(), cid, "it's 55120", tenant_id=A)
    assert r2.error is None and not r2.waiting
    assert "55120" in r2.reply and "in transit" in r2.reply and "DHL" in r2.reply
    assert "understand" in r1.path and "understand" not in r2.path  # resumed at the question, not re-routed


def test_another_tenant_sees_nothing_of_the_thread(db_engine, fresh_demo):  # noqa: F811
    cid = uuid.uuid4().hex
    flow_engine(fresh_demo, db_engine, A).run_turn(support(), cid, "my package hasn't arrived", tenant_id=A)
    config = {"configurable": {"thread_id": cid}}
    saver_a, saver_b = SqlCheckpointer(db_engine, A), SqlCheckpointer(db_engine, B)
    assert saver_a.get_tuple(config) is not None
    assert saver_b.get_tuple(config) is None
    assert list(saver_b.list(config)) == [] and list(saver_b.list(None)) == []
    assert len(list(saver_a.list(config))) > 1

    # B's erasure of the same thread id touches nothing of A's.
    saver_b.delete_thread(cid)
    delete_conversation(db_engine, B, cid)
    assert saver_a.get_tuple(config) is not None

    # A new conversation under B with A's id starts fresh: it does not resume A's question.
    r = flow_engine(fresh_demo, db_engine, B).run_turn(support(), cid, "it's 55120", tenant_id=B)
    assert r.path[:2] == ["start", "understand"] and not r.waiting


@pytest.mark.pg
def test_rls_hides_the_rows_even_from_a_raw_unfiltered_query(pg_engine, fresh_demo):  # noqa: F811
    cid = uuid.uuid4().hex
    flow_engine(fresh_demo, pg_engine, A).run_turn(support(), cid, "my package hasn't arrived", tenant_id=A)
    for table in ("checkpoints", "checkpoint_writes"):
        with tenant_session(A, engine=pg_engine) as s:
            assert s.connection().execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() > 0
        with tenant_session(B, engine=pg_engine) as s:
            assert s.connection().execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0

    # Writing a row for another tenant is refused by the policy, whatever the application does.
    def write_as_b() -> None:
        with tenant_session(B, engine=pg_engine) as s:
            s.connection().execute(
                sa.insert(CHECKPOINTS).values(
                    tenant_id=A, thread_id=cid, checkpoint_ns="", checkpoint_id="x", created_at=sa.func.now()
                )
            )

    refused(write_as_b)


def test_delete_thread_and_delete_conversation_erase(db_engine, fresh_demo):  # noqa: F811
    saver = SqlCheckpointer(db_engine, A)
    cids = [uuid.uuid4().hex for _ in range(3)]
    for cid in cids:
        flow_engine(fresh_demo, db_engine, A).run_turn(
            support(), cid, "my package hasn't arrived", tenant_id=A
        )
        assert count(db_engine, A, CHECKPOINTS, cid) > 0 and count(db_engine, A, WRITES, cid) > 0
    saver.delete_thread(cids[0])
    deleted = delete_conversation(db_engine, A, cids[1])
    assert deleted["checkpoints"] > 0
    for cid in cids[:2]:
        assert count(db_engine, A, CHECKPOINTS, cid) == 0 and count(db_engine, A, WRITES, cid) == 0
        assert saver.get_tuple({"configurable": {"thread_id": cid}}) is None
    assert count(db_engine, A, CHECKPOINTS, cids[2]) > 0  # the others stay


def test_saver_semantics_put_writes_list_filter_and_versions(db_engine):  # noqa: F811
    saver = SqlCheckpointer(db_engine, A)
    thread = uuid.uuid4().hex
    base = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    first = {**empty_checkpoint(), "id": "1f000000-0000-6000-8000-000000000001", "channel_values": {"x": [1]}}
    c1 = saver.put(base, first, {"source": "input", "step": -1}, {})
    second = {
        **empty_checkpoint(),
        "id": "1f000000-0000-6000-8000-000000000002",
        "channel_values": {"x": [1, 2]},
    }
    c2 = saver.put(c1, second, {"source": "loop", "step": 0}, {})

    # Regular writes keep the first copy; special writes (here __error__) are replaced.
    saver.put_writes(c2, [("x", "b1"), ("y", {"k": "v"})], task_id="t2", task_path="~b")
    saver.put_writes(c2, [("x", "a1")], task_id="t1", task_path="~a")
    saver.put_writes(c2, [("x", "changed")], task_id="t1", task_path="~a")
    saver.put_writes(c2, [("__error__", "first")], task_id="t3")
    saver.put_writes(c2, [("__error__", "second")], task_id="t3")

    latest = saver.get_tuple({"configurable": {"thread_id": thread}})
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"x": [1, 2]}
    assert latest.metadata == {"source": "loop", "step": 0}
    assert latest.parent_config == c1
    # writes_sort_key order: task_path, then task_id, then idx.
    assert latest.pending_writes == [
        ("t3", "__error__", "second"),
        ("t1", "x", "a1"),
        ("t2", "x", "b1"),
        ("t2", "y", {"k": "v"}),
    ]
    older = saver.get_tuple(c1)
    assert (
        older is not None and older.checkpoint["channel_values"] == {"x": [1]} and older.parent_config is None
    )

    assert [t.config for t in saver.list(base)] == [c2, c1]
    assert [t.config for t in saver.list(base, limit=1)] == [c2]
    assert [t.config for t in saver.list(base, before=c2)] == [c1]
    assert [t.config for t in saver.list(base, filter={"source": "input"})] == [c1]
    assert [t.config for t in saver.list(base, filter={"source": "loop"}, limit=1)] == [c2]

    # Versions are strings that grow as strings (LangGraph compares them with max()).
    v1 = saver.get_next_version(None, None)
    v2 = saver.get_next_version(v1, None)
    assert v1 < v2 and int(v2.split(".")[0]) == 2


def test_the_serializer_refuses_pickle_and_unknown_types(db_engine):  # noqa: F811
    saver = SqlCheckpointer(db_engine, A)
    assert saver.serde.dumps_typed({"a": [1, "b"]})[0] == "msgpack"

    class Custom:
        pass

    with pytest.raises(TypeError):
        saver.serde.dumps_typed(Custom())
    with pytest.raises(NotImplementedError):
        saver.serde.loads_typed(("pickle", b"\x80\x04K\x01."))


# ---------------------------------------------------------------- RLS on the three runtime tables
# (tests/tenants/test_rls.py covers the tables keyed by a uuid ``id``; these have composite or
# bigint keys, so their row-level checks live here.)

RUNTIME_TABLES = ("checkpoints", "checkpoint_writes", "run_events")


def seed_runtime_rows(db: Engine, tenant: str) -> None:
    saver = SqlCheckpointer(db, tenant)
    cfg = saver.put({"configurable": {"thread_id": "t1", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
    saver.put_writes(cfg, [("x", 1)], task_id="task")
    append_events(db, tenant, "t1", f"turn-{tenant}", [{"seq": 1, "type": "turn_started"}])


def raw_row(su: Engine, table: str, tenant: str) -> dict:
    t = db_table(table)
    with su.connect() as conn:
        row = dict(conn.execute(sa.select(t).where(t.c.tenant_id == tenant)).one()._mapping)
    row.pop("id", None)  # run_events: a new identity
    if "turn_id" in row:
        row["turn_id"] = uuid.uuid4().hex
    else:
        row["thread_id"] = uuid.uuid4().hex
    return row


def db_table(name: str) -> sa.Table:
    return load_models().tables[name]


def refused(action) -> None:
    with pytest.raises(sa.exc.DBAPIError) as info:
        action()
    assert "row-level security" in str(info.value.orig), info.value.orig


@pytest.mark.pg
@pytest.mark.parametrize("table", RUNTIME_TABLES)
def test_runtime_tables_are_row_level_secured(pg_db, pg_engine, table):  # noqa: F811
    su, t = pg_db.admin_engine, db_table(table)
    seed_runtime_rows(pg_engine, A)
    seed_runtime_rows(pg_engine, B)
    with su.connect() as conn:
        assert set(conn.execute(sa.text(f"SELECT tenant_id FROM {table}")).scalars()) == {A, B}
    for me in (A, B):  # no filter: own rows only
        with tenant_session(me, engine=pg_engine) as s:
            assert s.execute(sa.text(f"SELECT tenant_id FROM {table}")).scalars().all() == [me]

    def total() -> int:
        with su.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    b_row = raw_row(su, table, B)

    def insert_for_b() -> None:
        with tenant_session(A, engine=pg_engine) as s:
            s.execute(sa.insert(t).values(**b_row))

    def move_to_b() -> None:
        with tenant_session(A, engine=pg_engine) as s:
            s.execute(sa.text(f"UPDATE {table} SET tenant_id = :b"), {"b": B})

    def insert_without_tenant() -> None:
        with system_session(engine=pg_engine) as s:
            s.execute(sa.insert(t).values(**{**b_row, "tenant_id": A}))

    for action in (insert_for_b, move_to_b, insert_without_tenant):
        refused(action)
    assert total() == 2
    with tenant_session(A, engine=pg_engine) as s:  # B's rows: untouchable, even unfiltered
        assert (
            s.execute(
                sa.text(f"UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = :b"), {"b": B}
            ).rowcount
            == 0
        )
        assert s.execute(sa.text(f"DELETE FROM {table} WHERE tenant_id = :b"), {"b": B}).rowcount == 0
    with system_session(engine=pg_engine) as s:
        assert s.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        assert s.execute(sa.text(f"DELETE FROM {table}")).rowcount == 0
    assert total() == 2
