"""docs/_ext/trace_picture.py: one trace across two processes, drawn as a static SVG."""

from __future__ import annotations

import importlib.util
import json
import logging
import socket
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "caller · asyncio"
WORKER = "worker · trio"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "trace_picture", ROOT / "docs" / "_ext" / "trace_picture.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tp = _load()


def span(
    name: str,
    span_id: int,
    parent_id: int | None,
    kind: str,
    start_us: int,
    end_us: int,
    process: str,
    **fields: Any,
) -> Any:
    """A SpanRecord of trace TRACE; times in microseconds from an arbitrary epoch."""
    epoch = 1_700_000_000_000_000_000
    return tp.SpanRecord(
        name=name,
        trace_id=TRACE,
        span_id=format(span_id, "016x"),
        parent_id=None if parent_id is None else format(parent_id, "016x"),
        kind=kind,
        start_ns=epoch + start_us * 1000,
        end_ns=epoch + end_us * 1000,
        process=process,
        **fields,
    )


#: A job's trace, listed out of order: the renderer puts it in tree order.
SPANS = [
    span("process anybus-demo", 6, 2, "CONSUMER", 3100, 3300, CALLER),
    span("run job resize", 4, 3, "SERVER", 1300, 2800, WORKER, attributes={"job": "resize"}),
    span("job resize", 1, None, "CLIENT", 0, 3400, CALLER),
    span("send anybus-demo", 5, 4, "PRODUCER", 2600, 2750, WORKER),
    span("send anybus-demo", 2, 1, "PRODUCER", 100, 520, CALLER),
    span("process anybus-demo", 3, 2, "CONSUMER", 1200, 2900, WORKER),
]
TREE_ORDER = [
    "job resize",
    "send anybus-demo",
    "process anybus-demo",  # in the worker, under the caller's producer
    "run job resize",
    "send anybus-demo",
    "process anybus-demo",  # back in the caller
]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element, cls: str) -> list[str]:
    return [el.text or "" for el in root.iter(f"{SVG}text") if el.get("class") == cls]


def bars(root: ET.Element) -> dict[str, ET.Element]:
    return {
        el.get("data-span-id", ""): el
        for el in root.iter(f"{SVG}rect")
        if el.get("class") == "bar"
    }


def test_the_picture_is_svg_with_a_title_and_a_description() -> None:
    root = parse(tp.render(SPANS, title="A job, traced across two processes"))
    assert root.tag == f"{SVG}svg"
    assert root.get("width") == "860"
    assert root.findtext(f"{SVG}title") == "A job, traced across two processes"
    description = root.findtext(f"{SVG}desc") or ""
    assert "6 spans recorded by 2 processes" in description
    assert root.find(f".//{SVG}script") is None


def test_rows_are_in_tree_order_across_processes() -> None:
    root = parse(tp.render(SPANS))
    assert texts(root, "span-name") == TREE_ORDER
    assert texts(root, "kind") == [
        "client",
        "producer",
        "consumer",
        "server",
        "producer",
        "consumer",
    ]
    depths = [depth for _, depth in tp.tree_order(SPANS)]
    assert depths == [0, 1, 2, 3, 4, 2]
    names = [el for el in root.iter(f"{SVG}text") if el.get("class") == "span-name"]
    xs = [float(el.get("x", "")) for el in names]
    assert xs == [tp.MARGIN + tp.INDENT * depth for depth in depths]  # indented by depth


def test_a_span_whose_parent_is_missing_is_a_root() -> None:
    orphan = span("late", 9, 77, "INTERNAL", 50, 60, WORKER)
    order = [(s.name, depth) for s, depth in tp.tree_order([*SPANS, orphan])]
    assert order[0] == ("job resize", 0)
    assert order[-1] == ("late", 0)  # roots by start time: after the first root


def test_every_process_is_in_the_legend() -> None:
    root = parse(tp.render(SPANS))
    assert texts(root, "legend") == [CALLER, WORKER]
    fills = {el.get("fill") for el in root.iter(f"{SVG}rect") if el.get("class") == "legend"}
    by_process = {
        s.process: bars(root)[s.span_id].get("fill") for s in SPANS
    }  # a colour a process, the legend's
    assert set(by_process.values()) == fills
    assert by_process[CALLER] != by_process[WORKER]


def test_bars_are_proportional_to_time() -> None:
    root = parse(tp.render(SPANS))
    drawn = bars(root)
    t0 = min(s.start_ns for s in SPANS)
    scales = {
        s.span_id: float(drawn[s.span_id].get("width", "")) / (s.end_ns - s.start_ns)
        for s in SPANS
    }
    scale = scales[SPANS[2].span_id]  # the root
    assert all(value == pytest.approx(scale, rel=1e-3) for value in scales.values())
    origin = float(drawn[SPANS[2].span_id].get("x", ""))  # the root starts the trace
    worker_run = SPANS[1]
    x = float(drawn[worker_run.span_id].get("x", ""))
    assert x - origin == pytest.approx((worker_run.start_ns - t0) * scale, abs=0.02)
    ticks = texts(root, "tick")
    assert ticks[0] == "0.0"
    assert ticks[-1] == "3.5"  # 3.4 ms, rounded up to the next 0.5


def test_a_span_with_error_status_gets_a_red_outline() -> None:
    failing = replace(SPANS[1], status="ERROR")
    root = parse(tp.render([failing, *SPANS[:1], *SPANS[2:]]))
    drawn = bars(root)
    assert drawn[failing.span_id].get("stroke") == tp.COLORS["error"]
    others = [el for span_id, el in drawn.items() if span_id != failing.span_id]
    assert all(el.get("stroke") is None for el in others)
    assert "status ERROR" in texts(root, "legend")


def test_durations_are_labelled() -> None:
    root = parse(tp.render(SPANS))
    assert texts(root, "duration") == [
        "3.4 ms",
        "0.42 ms",
        "1.7 ms",
        "1.5 ms",
        "0.15 ms",
        "0.2 ms",
    ]


def test_text_is_escaped() -> None:
    odd = replace(SPANS[2], name='<job> & "resize"', process="caller <1>")
    svg = tp.render([odd])
    assert "<job>" not in svg
    root = parse(svg)
    assert texts(root, "span-name") == ['<job> & "resize"']
    assert texts(root, "legend") == ["caller <1>"]


def test_no_spans_or_spans_of_two_traces_are_refused() -> None:
    with pytest.raises(ValueError, match="no spans to draw"):
        tp.render([])
    other = replace(SPANS[0], trace_id="0" * 31 + "1")
    with pytest.raises(ValueError, match=r"spans of 2 traces .*: draw one trace at a time"):
        tp.render([*SPANS, other])


def test_the_same_spans_draw_the_same_picture() -> None:
    first = tp.render(SPANS, title="t")
    assert tp.render(list(SPANS), title="t") == first
    assert tp.render(list(reversed(SPANS)), title="t") == first  # input order does not matter


def test_records_round_trip_through_json() -> None:
    for record in SPANS:
        text = json.dumps(record.to_json())
        assert tp.SpanRecord.from_json(json.loads(text)) == record
    with pytest.raises(ValueError, match="without 'end_ns'"):
        tp.SpanRecord.from_json({k: v for k, v in SPANS[0].to_json().items() if k != "end_ns"})
    with pytest.raises(ValueError, match="kind 'QUEUE'"):
        tp.SpanRecord.from_json({**SPANS[0].to_json(), "kind": "QUEUE"})


def test_main_draws_a_file_of_spans(tmp_path: Path) -> None:
    spans_file, out = tmp_path / "spans.json", tmp_path / "trace.svg"
    spans_file.write_text(json.dumps([record.to_json() for record in SPANS]))
    assert tp.main([str(spans_file), str(out), "--title", "A job"]) == 0
    assert out.read_text() == tp.render(SPANS, title="A job")


def test_a_record_of_a_real_sdk_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("anybus.tests")
    with tracer.start_as_current_span("job resize", kind=SpanKind.CLIENT) as parent:
        parent.set_attribute("job", "resize")
        with tracer.start_as_current_span("send anybus-demo", kind=SpanKind.PRODUCER) as child:
            child.set_attribute("sizes", [1, 2])
            child.set_status(Status(StatusCode.ERROR))
    finished = {s.name: s for s in exporter.get_finished_spans()}
    provider.shutdown()

    sent = tp.SpanRecord.from_readable_span(finished["send anybus-demo"], CALLER)
    job = tp.SpanRecord.from_readable_span(finished["job resize"], CALLER)
    assert job.parent_id is None
    assert sent.parent_id == job.span_id
    assert sent.trace_id == job.trace_id
    assert len(job.trace_id) == 32
    assert len(job.span_id) == 16
    assert (job.kind, sent.kind) == ("CLIENT", "PRODUCER")
    assert (job.status, sent.status) == ("UNSET", "ERROR")
    assert job.start_ns <= sent.start_ns <= sent.end_ns <= job.end_ns
    assert sent.start_ns == finished["send anybus-demo"].start_time
    assert job.attributes == {"job": "resize"}
    assert sent.attributes == {"sizes": "1, 2"}
    assert sent.process == CALLER
    root = parse(tp.render([sent, job]))
    assert texts(root, "span-name") == ["job resize", "send anybus-demo"]


# --- the docs' trace: recorded by examples/otel_trace.py, committed, drawn by the build ------


def _closed_port_url() -> str:
    """A Redis URL at a port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}"


def _one_trace_over_two_processes(spans: list[Any]) -> None:
    assert len({s.trace_id for s in spans}) == 1
    assert {s.process for s in spans} == {CALLER, WORKER}
    roots = [s for s in spans if s.parent_id is None]
    assert [(s.name, s.kind, s.process) for s in roots] == [("job resize", "CLIENT", CALLER)]
    by_id = {s.span_id: s for s in spans}
    assert all(s.parent_id in by_id for s in spans if s.parent_id is not None)  # one tree
    crossings = {
        (by_id[s.parent_id].process, s.process)
        for s in spans
        if s.parent_id is not None and by_id[s.parent_id].process != s.process
    }
    assert crossings == {(CALLER, WORKER), (WORKER, CALLER)}  # there and back


def test_the_committed_recording_is_one_trace_over_two_processes() -> None:
    spans = tp.load()
    _one_trace_over_two_processes(spans)
    assert len(spans) >= 9  # request, run, two updates, response: sent and processed
    root = parse(tp.draw(spans))
    assert root.findtext(f"{SVG}title") == tp.TITLE
    assert texts(root, "legend") == [CALLER, WORKER]
    assert len(texts(root, "span-name")) == len(spans)


def test_the_committed_picture_is_drawn_from_the_committed_recording() -> None:
    committed = ROOT / "docs" / tp.PICTURE
    assert committed.exists(), "run python docs/_ext/trace_picture.py --record"
    assert committed.read_text() == tp.draw(tp.load()), (
        "docs/img/trace.svg is out of date: run python docs/_ext/trace_picture.py"
    )


def test_messages_are_named_by_their_type_in_the_picture() -> None:
    names = texts(parse(tp.draw(tp.load())), "span-name")
    assert names[:4] == [
        "job resize",
        "send BusJobRequestMessage",
        "process BusJobRequestMessage",
        "run job resize",
    ]
    assert "send BusJobResponseMessage" in names
    assert not [name for name in names if "anybus-trace-" in name]  # not the random channel
    assert any("anybus-trace-" in s.name for s in tp.load())  # which the recording keeps


def test_labelling_renames_only_message_spans_with_a_type() -> None:
    typed = {"anybus.message.type": "BusJobUpdateMessage"}
    spans = [
        span("send chan", 1, None, "PRODUCER", 0, 10, CALLER, attributes=typed),
        span("process chan", 2, 1, "CONSUMER", 2, 8, WORKER, attributes=typed),
        span("run job resize", 3, 2, "SERVER", 3, 7, WORKER, attributes=typed),
        span("send chan", 4, 3, "PRODUCER", 4, 5, WORKER),
    ]
    named = tp.labelled(spans)
    assert [s.name for s in named] == [
        "send BusJobUpdateMessage",
        "process BusJobUpdateMessage",
        "run job resize",
        "send chan",
    ]
    assert spans[0].name == "send chan"  # the records themselves are unchanged
    assert [replace(a, name=b.name) for a, b in zip(spans, named, strict=True)] == named


def test_without_redis_the_build_draws_the_committed_recording(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = _closed_port_url()
    monkeypatch.setenv("ANYBUS_REDIS_URL", url)
    assert tp.redis_url() == url
    assert not tp.answers(url)
    with caplog.at_level(logging.INFO, logger=tp.log.name):
        spans = tp.build_spans()
    assert spans == tp.load()
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == tp.log.name]
    assert len(said) == 1
    level, message = said[0]
    assert level == logging.INFO  # a warning would fail the strict docs build
    assert "committed recording" in message
    assert url in message


def test_the_hook_puts_a_fresh_picture_in_the_site(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import File, Files

    monkeypatch.setenv("ANYBUS_REDIS_URL", _closed_port_url())
    config = MkDocsConfig()
    config.load_dict(
        {
            "site_name": "t",
            "docs_dir": str(ROOT / "docs"),
            "site_dir": str(tmp_path / "site"),
            "plugins": [],
            "hooks": [str(ROOT / "docs" / "_ext" / "trace_picture.py")],  # as mkdocs.yml has it
        }
    )
    errors, _ = config.validate()
    assert not errors
    committed = File(tp.PICTURE, config.docs_dir, config.site_dir, config.use_directory_urls)
    source = ROOT / "docs" / tp.PICTURE
    before = source.read_bytes()
    files = config.plugins.on_files(Files([committed]), config=config)  # as a build calls it
    drawn = files.get_file_from_path(tp.PICTURE)
    assert drawn is not None
    assert drawn is not committed
    assert drawn.generated_by is not None
    assert drawn.content_string == tp.draw(tp.load())
    assert len(files) == 1
    assert source.read_bytes() == before  # nothing written into docs/


def test_record_records_one_trace_over_two_processes(redis_url: str) -> None:
    spans = tp.record(redis_url)
    _one_trace_over_two_processes(spans)
    assert {s.attributes.get("anybus.message.type") for s in spans} >= {
        "BusJobRequestMessage",
        "BusJobUpdateMessage",
        "BusJobResponseMessage",
    }
    tp.draw(spans)


def test_a_failed_recording_says_why(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    failing = tmp_path / "failing.py"
    failing.write_text("import sys\nsys.exit('no bus today: ' + ' '.join(sys.argv[1:3]))\n")
    monkeypatch.setattr(tp, "EXAMPLE", failing)
    with pytest.raises(RuntimeError, match=r"exit status 1\).*\nno bus today: --redis-url r://x"):
        tp.record("r://x")


def test_a_recording_that_takes_too_long_is_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stuck = tmp_path / "stuck.py"
    stuck.write_text(
        "import sys, threading\nprint('stuck', file=sys.stderr, flush=True)\n"
        "threading.Event().wait()\n"
    )
    monkeypatch.setattr(tp, "EXAMPLE", stuck)
    monkeypatch.setattr(tp, "RECORD_TIMEOUT", 0.5)
    with pytest.raises(RuntimeError, match=r"within 0.5 s; its stderr:\nstuck"):
        tp.record("r://x")


def test_the_script_records_both_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded = [*SPANS]
    monkeypatch.setattr(tp, "RECORDING", tmp_path / "trace-spans.json")
    monkeypatch.setattr(tp, "DOCS", tmp_path)
    monkeypatch.setattr(tp, "answers", lambda url: url == "redis://here:1")
    monkeypatch.setattr(tp, "record", lambda url: recorded)
    assert tp.main(["--record", "--redis-url", "redis://here:1"]) == 0
    assert tp.load(tmp_path / "trace-spans.json") == recorded
    assert (tmp_path / tp.PICTURE).read_text() == tp.draw(recorded)
    assert "6 spans recorded over redis://here:1" in capsys.readouterr().out

    # Without --record: redrawn from the recording, which is left alone.
    (tmp_path / tp.PICTURE).write_text("stale")
    assert tp.main([]) == 0
    assert (tmp_path / tp.PICTURE).read_text() == tp.draw(recorded)
    assert tp.main([]) == 0
    assert "up to date" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        tp.main(["--record", "--redis-url", "redis://elsewhere:1"])  # nothing answers there
    assert "no Redis answers at redis://elsewhere:1" in capsys.readouterr().err
