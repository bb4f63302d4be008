"""The JMeter plan's shape and the results summary, without running JMeter."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scripts import jtl_summary
from scripts.deploy_tools import REPO_ROOT

PLAN = REPO_ROOT / "jmeter" / "ocpp_charge_points.jmx"
DOCUMENTED_IN = REPO_ROOT / "docs" / "deploy.md"
PARAMETERS = {
    "scheme",
    "host",
    "port",
    "path_prefix",
    "subprotocol",
    "cps",
    "rampup",
    "heartbeats",
    "interval",
    "timeout",
    "prefix",
    "refused",
    "refused_prefix",
    "script_dir",
}


@pytest.fixture(scope="module")
def plan() -> ET.Element:
    return ET.parse(PLAN).getroot()


def test_plan_takes_its_parameters_from_jmeter_properties(plan: ET.Element) -> None:
    text = PLAN.read_text()
    assert set(re.findall(r"__P\((\w+),", text)) == PARAMETERS


def test_every_parameter_is_documented() -> None:
    docs = DOCUMENTED_IN.read_text()
    missing = [name for name in PARAMETERS if f"-J{name}" not in docs and name != "script_dir"]
    assert not missing, f"document these -J parameters in docs/deploy.md: {missing}"


def test_plan_uses_only_jmeter_s_own_elements(plan: ET.Element) -> None:
    """No plugin: every test element class ships with JMeter 5.5."""
    builtin = {
        "TestPlan",
        "Arguments",
        "Argument",
        "ThreadGroup",
        "LoopController",
        "ConstantTimer",
        "JSR223Sampler",
        "JSR223Assertion",
    }
    classes = {e.get("testclass") or e.get("elementType") for e in plan.iter()} - {None}
    assert classes <= builtin, classes - builtin


def test_samplers_run_groovy_scripts_that_exist(plan: ET.Element) -> None:
    for element in plan.iter():
        if element.tag not in {"JSR223Sampler", "JSR223Assertion"}:
            continue
        properties = {p.get("name"): p.text or "" for p in element.findall("stringProp")}
        assert properties["scriptLanguage"] == "groovy"
        script = properties["filename"].replace("${SCRIPT_DIR}", str(PLAN.parent))
        assert Path(script).is_file(), script
        assert properties["parameters"] in {"connect", "boot", "heartbeat", "close", "refused"}


def test_every_step_has_an_assertion(plan: ET.Element) -> None:
    trees = list(plan.iter("hashTree"))
    samplers = [e for e in plan.iter() if e.tag == "JSR223Sampler"]
    assert len(samplers) == 5
    # In a .jmx, an element's children are in the hashTree that follows it.
    for parent in trees:
        children = list(parent)
        for index, child in enumerate(children):
            if child.tag == "JSR223Sampler":
                subtree = children[index + 1]
                assert subtree.find("JSR223Assertion") is not None, child.get("testname")


def rows(*samples: tuple[str, int, bool]) -> list[dict[str, str]]:
    return [
        {"label": label, "elapsed": str(ms), "success": str(ok).lower(), "failureMessage": "bad"}
        for label, ms, ok in samples
    ]


def test_summary_counts_errors_and_percentiles() -> None:
    summary = jtl_summary.summarise(
        rows(("Heartbeat", 10, True), ("Heartbeat", 30, True), ("Heartbeat", 20, False))
    )
    assert (summary.samples, summary.errors) == (3, 1)
    text = jtl_summary.render(summary)
    assert "total: 3 samples, 1 errors" in text
    assert "Heartbeat: bad" in text


def test_percentile_is_nearest_rank() -> None:
    assert jtl_summary.percentile([5], 0.95) == 5
    assert jtl_summary.percentile(list(range(1, 101)), 0.5) == 50
    assert jtl_summary.percentile(list(range(1, 101)), 0.95) == 95


def test_summary_exits_1_on_errors_and_0_without(tmp_path: Path) -> None:
    header = "timeStamp,elapsed,label,responseCode,success,failureMessage\n"
    good = tmp_path / "good.jtl"
    good.write_text(header + "1,5,connect,200,true,\n")
    bad = tmp_path / "bad.jtl"
    bad.write_text(header + "1,5,connect,500,false,close 1008\n")
    assert jtl_summary.main([str(good)]) == 0
    assert jtl_summary.main([str(bad)]) == 1


def test_summary_refuses_a_file_that_is_not_csv_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    xml = tmp_path / "results.jtl"
    xml.write_text('<?xml version="1.0"?>\n<testResults/>\n')
    assert jtl_summary.main([str(xml)]) == 2
    assert "output_format=csv" in capsys.readouterr().err
    assert jtl_summary.main([str(tmp_path / "missing.jtl")]) == 2
    empty = tmp_path / "empty.jtl"
    empty.write_text("timeStamp,elapsed,label,success\n")
    assert jtl_summary.main([str(empty)]) == 1
