"""Recorded captures of real clients: psql, pgbench, COPY, LISTEN/NOTIFY, notices, errors, cancel.

Each test checks that the decoded conversation holds what the scenario is
about, against what the client itself saw (NAME.json, written by
captures/record.py) and the relay's byte streams. The byte-for-byte checks
of every capture are in test_recorded_captures.py.
"""

from __future__ import annotations

from typing import Any

from test_recorded_captures import decoded, names, of_type, paired, reference, show

from pgwire_inspect.conversation import Connection, QueryExchange
from pgwire_inspect.protocol import (
    BackendKeyData,
    Bind,
    CancelRequest,
    CopyData,
    CopyFail,
    CopyInResponse,
    CopyOutResponse,
    DataRow,
    ErrorResponse,
    Execute,
    NoticeResponse,
    NotificationResponse,
    Parse,
    Query,
    StartupMessage,
)


def query(conn: Connection, prefix: str) -> QueryExchange:
    """The first query whose SQL starts with ``prefix`` (whitespace ignored)."""
    for q in conn.queries:
        if q.sql is not None and q.sql.strip().startswith(prefix):
            return q
    raise AssertionError(f"no query starting with {prefix!r}")


def copy_data(messages: list[Any], direction: str) -> bytes:
    """The CopyData payloads of one direction, concatenated."""
    return b"".join(w.message.data for w in messages
                    if isinstance(w.message, CopyData) and w.direction == direction)


def text_rows(conn: Connection, q: QueryExchange) -> list[list[str | None]]:
    """The decoded values of every row of a query, as text."""
    return [[show(v) for v in conn.decode_row(r, row)] for r in q.results for row in r.rows]


# ------------------------------------------------------------------ psql


def test_psql_script_statements_are_sent_one_query_each() -> None:
    conn = decoded("psql-script")
    ref = reference("psql-script")
    startup = conn.messages[0].message
    assert isinstance(startup, StartupMessage)
    assert startup.parameters["application_name"] == "psql"
    lines = ref["script"].splitlines()
    statements = [ln for ln in lines if ln.endswith(";") and not ln.startswith("\\")]
    sql = [m.sql for m in of_type(conn, Query)]
    assert [s for s in sql if not s.startswith("COPY")] == statements
    assert [s.split()[0:2] for s in sql if s.startswith("COPY")] == [
        ["COPY", "psql_items"], ["COPY", "("]]
    # begin; delete; rollback: the transaction status follows.
    assert [q.status for q in conn.queries[-4:]] == ["T", "T", "I", "I"]


def test_psql_copy_from_script_sends_the_lines_as_copy_data() -> None:
    conn = decoded("psql-script")
    lines = reference("psql-script")["script"].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("\\copy psql_items from"))
    end = lines.index("\\.", start)
    q = query(conn, "COPY  psql_items FROM STDIN")
    assert names(q.requests) == ["Query", "CopyData", "CopyDone"]
    assert names(q.responses) == ["CopyInResponse", "CommandComplete", "ReadyForQuery"]
    resp = q.responses[0].message
    assert isinstance(resp, CopyInResponse) and resp.column_formats == (0, 0, 0)
    # psql 15 passes the script's data lines on, with the end-of-data line.
    assert copy_data(q.requests, "F") == "".join(
        ln + "\n" for ln in lines[start + 1 : end + 1]).encode()
    assert q.results[-1].tag == "COPY 3"


def test_psql_copy_to_stdout_is_what_psql_printed() -> None:
    conn = decoded("psql-script")
    ref = reference("psql-script")
    q = query(conn, "COPY  ( select id, name")
    assert names(q.responses) == ["CopyOutResponse", "CopyData", "CopyData", "CopyData",
                                  "CopyDone", "CommandComplete", "ReadyForQuery"]
    out = copy_data(q.responses, "B").decode()
    assert out.startswith("id,name\n") and out in ref["output"]


def test_psql_rows_are_what_psql_printed() -> None:
    conn = decoded("psql-script")
    printed = [[c.strip() for c in ln.split("|")] for ln in reference("psql-script")["output"]
               .splitlines() if "|" in ln]
    rows = text_rows(conn, query(conn, "select id, name, price"))
    assert rows == [["1", "apple", "1.00"], ["2", "pear, green", "0.75"], ["3", "plum", "1.20"],
                    ["4", "fig", "2.00"]]
    assert all(r in printed for r in rows)


# ------------------------------------------------------------------ pgbench


def test_pgbench_connections_run_at_the_same_time() -> None:
    conns = [c for c, _ in paired("pgbench-prepared")]
    assert len(conns) == 3
    for c in conns:
        startup = c.messages[0].message
        assert isinstance(startup, StartupMessage)
        assert startup.parameters["application_name"] == "pgbench"
        assert startup.parameters["database"] == "pgwire_bench"
    setup = [c for c in conns if not of_type(c, Parse)]
    clients = [c for c in conns if of_type(c, Parse)]
    assert len(setup) == 1 and len(clients) == 2
    assert [q.sql for q in setup[0].queries][:1] == ["select count(*) from pgbench_branches"]
    a, b = clients
    # The two clients' conversations overlap in time.
    assert max(a.messages[0].frame, b.messages[0].frame) < min(a.messages[-1].frame,
                                                               b.messages[-1].frame)


def test_pgbench_prepared_statements_are_parsed_once_and_bound_by_name() -> None:
    conns = [c for c, _ in paired("pgbench-prepared") if of_type(c, Parse)]
    total_commits = 0
    for c in conns:
        parses = of_type(c, Parse)
        assert [p.statement for p in parses] == [f"P_{i}" for i in range(7)]
        texts = {p.statement: p.query for p in parses}
        assert texts["P_1"].startswith("UPDATE pgbench_accounts SET abalance")
        binds = of_type(c, Bind)
        assert len(binds) == 7 * 5
        assert {b.statement for b in binds} == set(texts)
        # A Bind-only query gets its SQL from the statement it executes.
        for q in c.queries:
            assert q.kind == "extended" and q.sql in texts.values()
            assert q.error is None
        commits = [r.tag for q in c.queries for r in q.results if r.tag == "COMMIT"]
        assert len(commits) == 5
        total_commits += len(commits)
        balances = [q for q in c.queries if q.sql == texts["P_2"] and q.row_count == 1]
        assert len(balances) == 5
    assert total_commits == reference("pgbench-prepared")["transactions"]
    assert "actually processed: 10/10" in reference("pgbench-prepared")["output"]


# ------------------------------------------------------------------ COPY with psycopg 3


def test_copy_in_text_and_csv_carry_what_psycopg_wrote() -> None:
    conn = decoded("psycopg-copy")
    ref = reference("psycopg-copy")
    text_q = conn.queries[1]
    assert text_q.sql == "COPY copy_items FROM STDIN"
    assert names(text_q.requests) == ["Query", "CopyData", "CopyDone"]
    assert names(text_q.responses) == ["CopyInResponse", "CommandComplete", "ReadyForQuery"]
    # The three rows written with write_row are the first three lines COPY TO gave back.
    first_three = "".join(ref["copy_out_text"].splitlines(keepends=True)[:3])
    assert copy_data(text_q.requests, "F") == first_three.encode()
    csv_q = conn.queries[2]
    assert csv_q.sql == "COPY copy_items FROM STDIN (FORMAT csv)"
    assert copy_data(csv_q.requests, "F") == ref["copy_in_csv"].encode()
    assert [text_q.results[-1].tag, csv_q.results[-1].tag] == ["COPY 3", "COPY 2"]


def test_copy_out_text_and_binary_are_what_psycopg_read() -> None:
    conn = decoded("psycopg-copy")
    ref = reference("psycopg-copy")
    text_q, binary_q = conn.queries[3], conn.queries[4]
    out = text_q.responses[0].message
    assert isinstance(out, CopyOutResponse) and (out.format, out.column_formats) == (0, (0, 0, 0))
    assert copy_data(text_q.responses, "B") == ref["copy_out_text"].encode()
    assert names(text_q.responses)[-3:] == ["CopyDone", "CommandComplete", "ReadyForQuery"]
    out = binary_q.responses[0].message
    assert isinstance(out, CopyOutResponse) and (out.format, out.column_formats) == (1, (1, 1))
    data = copy_data(binary_q.responses, "B")
    assert data == bytes.fromhex(ref["copy_out_binary"])
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00") and data.endswith(b"\xff\xff")


def test_copy_fail_from_the_client_is_answered_by_an_error() -> None:
    conn = decoded("psycopg-copy")
    ref = reference("psycopg-copy")
    q = conn.queries[5]
    assert names(q.requests) == ["Query", "CopyFail"]
    fail = q.requests[1].message
    assert isinstance(fail, CopyFail) and fail.message.endswith("the client gave up")
    assert names(q.responses) == ["CopyInResponse", "ErrorResponse", "ReadyForQuery"]
    assert q.error is not None and isinstance(q.error.message, ErrorResponse)
    fields = q.error.message.fields()
    assert fields["code"] == "57014"
    assert fields["message"] == f"COPY from stdin failed: {fail.message}"
    assert q.status == "I"
    assert ref["copy_fail_error"] == "RuntimeError: the client gave up"
    assert text_rows(conn, conn.queries[6]) == [[str(ref["count_after"])]]


# ------------------------------------------------------------------ LISTEN / NOTIFY


def notify_conns() -> tuple[Connection, Connection]:
    ref = reference("listen-notify")
    by_app = {s["app_port"]: c for c, s in paired("listen-notify")}
    return by_app[ref["app_ports"]["listener"]], by_app[ref["app_ports"]["notifier"]]


def test_notifications_carry_channel_payload_and_sender() -> None:
    ref = reference("listen-notify")
    listener, notifier = notify_conns()
    got = [{"pid": n.process_id, "channel": n.channel, "payload": n.payload}
           for n in of_type(listener, NotificationResponse)]
    assert got == ref["notifies"]
    assert of_type(notifier, NotificationResponse) == []
    (lkey,) = of_type(listener, BackendKeyData)
    (nkey,) = of_type(notifier, BackendKeyData)
    assert (lkey.process_id, nkey.process_id) == (ref["listener_pid"], ref["notifier_pid"])
    assert [n["pid"] for n in got] == [lkey.process_id, nkey.process_id, nkey.process_id]


def test_where_the_notifications_arrive() -> None:
    listener, notifier = notify_conns()
    # The listener's own NOTIFY: delivered inside that query, before ReadyForQuery.
    own = query(listener, "NOTIFY")
    assert names(own.responses) == ["CommandComplete", "NotificationResponse", "ReadyForQuery"]
    # The notifier's: sent at once to the idle listener, after the notifier's query and
    # before the listener's next query was sent.
    waiting = [w for w in listener.messages if isinstance(w.message, NotificationResponse)][1:]
    sent = [query(notifier, "NOTIFY"), query(notifier, "select pg_notify")]
    after = query(listener, "select 1 as after_notify")
    for w, cause in zip(waiting, sent, strict=True):
        assert cause.requests[0].frame < w.frame < after.requests[0].frame
    assert not [w for q in listener.queries for w in q.responses if w in waiting]


def test_trailing_messages_come_after_the_last_query() -> None:
    listener, _ = notify_conns()
    last_rfq = listener.queries[-1].responses[-1]
    assert last_rfq.name == "ReadyForQuery"
    for w in listener.trailing:
        if w.direction == "B":
            assert w.message.offset > last_rfq.message.offset, w.name


# ------------------------------------------------------------------ notices and errors


def test_plpgsql_set_returning_function_sends_its_notices_before_the_rows() -> None:
    conn = decoded("notices-errors")
    ref = reference("notices-errors")
    q = query(conn, "select * from pg_temp.count_with_notices")
    assert names(q.responses) == ["RowDescription"] + ["NoticeResponse"] * 4 + [
        "DataRow"] * 3 + ["CommandComplete", "ReadyForQuery"]
    notices = [{"severity": w.message.fields()["severity_nonlocalized"],
                "message": w.message.fields()["message"]}
               for w in q.responses if isinstance(w.message, NoticeResponse)]
    assert notices == ref["notices"][:4]
    assert [[int(v) for v in r] for r in text_rows(conn, q)] == ref["rows"][0]
    assert len(q.results) == 1 and len(q.results[0].rows) == 3


def test_notices_between_data_rows_of_the_same_query() -> None:
    conn = decoded("notices-errors")
    ref = reference("notices-errors")
    q = query(conn, "select i, pg_temp.noisy(i)")
    assert names(q.responses) == ["RowDescription"] + ["NoticeResponse", "DataRow"] * 3 + [
        "CommandComplete", "ReadyForQuery"]
    assert [w.message.fields()["message"] for w in q.responses
            if isinstance(w.message, NoticeResponse)] == ["computing 1", "computing 2",
                                                          "computing 3"]
    # The notices do not split the result: one result set with all three rows.
    assert len(q.results) == 1 and q.results[0].tag == "SELECT 3"
    assert [[int(v) for v in r] for r in text_rows(conn, q)] == ref["rows"][1]


def test_unique_violation_has_code_detail_and_constraint() -> None:
    conn = decoded("notices-errors")
    ref = reference("notices-errors")["errors"][0]
    failed = [q for q in conn.queries if q.error is not None]
    assert len(failed) == 2
    q = failed[0]
    assert q.kind == "extended" and q.sql == "insert into uniq values ($1, $2)"
    assert names(q.requests) == ["Parse", "Bind", "Describe", "Execute", "Sync"]
    assert names(q.responses) == ["ParseComplete", "BindComplete", "NoData", "ErrorResponse",
                                  "ReadyForQuery"]
    assert q.error is not None
    fields = q.error.message.fields()
    assert (fields["code"], fields["message"], fields["detail"], fields["constraint_name"]) == (
        ref["code"], ref["message"], ref["detail"], ref["constraint"])
    assert fields["detail"] == "Key (id)=(1) already exists."
    assert fields["table_name"] == "uniq" and "position" not in fields
    assert q.parameters[0][2] == (1).to_bytes(2, "big")  # psycopg sent the int as int2
    assert q.status == "I"


def test_syntax_error_position_points_into_the_query() -> None:
    conn = decoded("notices-errors")
    ref = reference("notices-errors")["errors"][1]
    q = [q for q in conn.queries if q.error is not None][1]
    assert q.sql == "select id, from uniq" and q.kind == "simple"
    fields = q.error.message.fields() if q.error else {}
    assert (fields["code"], fields["message"], fields["position"]) == (
        ref["code"], ref["message"], ref["position"])
    # The position is 1-based, in characters of the query text.
    assert q.sql[int(fields["position"]) - 1 :].startswith("from")
    assert names(q.responses) == ["ErrorResponse", "ReadyForQuery"]


# ------------------------------------------------------------------ cancel


def test_cancel_request_names_the_cancelled_backend() -> None:
    ref = reference("cancel-query")
    pairs = paired("cancel-query")
    assert len(pairs) == 2
    (main,) = [c for c, _ in pairs if of_type(c, Query)]
    (cancel,) = [c for c, _ in pairs if of_type(c, CancelRequest)]
    (key,) = of_type(main, BackendKeyData)
    (req,) = of_type(cancel, CancelRequest)
    assert req.process_id == key.process_id == ref["backend_pid"]
    assert req.secret_key == key.secret_key
    assert names(cancel.messages) == ["CancelRequest"]  # the server answers by closing
    assert cancel.queries == [] and cancel.ended == {"F": "FIN", "B": "FIN"}
    assert cancel.client != main.client and cancel.server == main.server
    # It travels while the query runs, on its own connection.
    slept = query(main, "select pg_sleep(5)")
    assert slept.error is not None
    assert slept.requests[0].frame < cancel.messages[0].frame < slept.error.frame
    assert slept.error.message.fields()["code"] == ref["error"] == "57014"
    assert text_rows(main, main.queries[1]) == [[ref["after"]]]


# ------------------------------------------------------------------ asyncpg cursor


def test_asyncpg_cursor_fetches_in_chunks_with_portal_suspended() -> None:
    conn = decoded("asyncpg-cursor")
    ref = reference("asyncpg-cursor")
    executes = of_type(conn, Execute)
    assert {e.max_rows for e in executes} == {ref["prefetch"]}
    portal = executes[0].portal
    assert all(e.portal == portal for e in executes)
    rows = of_type(conn, DataRow)
    assert [int.from_bytes(r.values[0], "big") for r in rows] == ref["rows"]
    fetches = [q for q in conn.queries if any(isinstance(w.message, Execute) for w in q.requests)]
    assert len(fetches) == len(executes) == 6
    assert [r.complete.name if r.complete else None for q in fetches for r in q.results] == [
        "PortalSuspended"] * 5 + ["CommandComplete"]
    assert [len(q.results[0].rows) for q in fetches] == [10] * 5 + [0]
    assert all(q.status == "T" for q in fetches)
    first = fetches[0]
    assert names(first.requests) == ["Parse", "Describe", "Flush", "Bind", "Execute", "Sync"]
    assert first.sql == "select generate_series(1,50)"


def test_asyncpg_first_chunk_decodes_as_binary() -> None:
    conn = decoded("asyncpg-cursor")
    first = next(q for q in conn.queries if q.kind == "extended")
    assert first.results[0].formats == (1,)
    assert [v for row in first.results[0].rows
            for v in conn.decode_row(first.results[0], row)] == list(range(1, 11))


def test_asyncpg_later_chunks_know_their_portals_statement() -> None:
    conn = decoded("asyncpg-cursor")
    later = [q for q in conn.queries if names(q.requests) == ["Execute", "Sync"]]
    assert len(later) == 5
    values = []
    for q in later:
        assert q.sql == "select generate_series(1,50)"
        for r in q.results:
            values += [v for row in r.rows for v in conn.decode_row(r, row)]
    assert values == list(range(11, 51))

