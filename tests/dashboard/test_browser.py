"""The dashboard end to end: a real server (uvicorn, PostgreSQL, auth on) and a real headless
Chromium (Debian's, driven by Playwright). Each page draws without console errors, its plots
hold the points the API sent, the trials table pages and filters, a study receiving tells
updates in place, and without a key no study data reaches the page."""

from __future__ import annotations

import math
import random
import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import service_missing
from tests.system.servers import Server, make_key, start_server

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine's notes advise: no sandbox as root, no GPU, no calls home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEY_STORAGE = "dyesp-api-key"  # dashboard.js keeps the key in sessionStorage under this name
SPACE = {"params": [
    {"name": "lr", "type": "float", "low": 1e-4, "high": 1.0, "log": True},
    {"name": "depth", "type": "int", "low": 1, "high": 6},
    {"name": "op", "type": "categorical", "choices": ["conv", "skip", "pool"]},
]}


def objective(params: dict) -> float:
    return {"conv": 0.0, "skip": 0.5, "pool": 1.0}[params["op"]] + abs(
        math.log10(params["lr"]) + 2) * 0.2 + params["depth"] * 0.01


@pytest.fixture(scope="module")
def server(postgres_url: str) -> Iterator[tuple[Server, str]]:
    key = make_key(postgres_url, owner="dashboard-test")
    running = start_server(postgres_url, auth=True)
    try:
        yield running, key
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(server: tuple[Server, str]) -> Iterator[httpx.Client]:
    running, key = server
    with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"},
                      timeout=30) as http:
        yield http


def add_trials(client: httpx.Client, study_id: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    trials = []
    for i in range(n):
        params = {"lr": 10 ** rng.uniform(-4, 0), "depth": rng.randint(1, 6),
                  "op": rng.choice(["conv", "skip", "pool"])}
        if i % 9 == 4:
            trials.append({"params": params, "state": "failed"})
        else:
            curve = [[s, objective(params) + 1.0 / s] for s in range(1, 6)] if i % 4 == 0 else []
            trials.append({"params": params, "value": objective(params), "intermediate": curve})
    response = client.post(f"/v1/studies/{study_id}/trials:batch", json={"trials": trials})
    assert response.status_code == 201, response.text


def ask_and_tell(client: httpx.Client, study_id: str, n: int) -> None:
    for _ in range(n):
        trial = client.post(f"/v1/studies/{study_id}/ask").json()["trials"][0]
        client.post(f"/v1/studies/{study_id}/trials/{trial['id']}/tell",
                    json={"value": objective(trial["params"])})


@pytest.fixture(scope="module")
def study(client: httpx.Client) -> dict:
    created = client.post("/v1/studies", json={
        "name": "browser-study", "direction": "minimize", "space": SPACE, "seed": 1,
        "fidelity": {"name": "epoch", "min": 1, "max": 5}})
    assert created.status_code == 201, created.text
    study = created.json()
    add_trials(client, study["id"], 45, seed=2)
    ask_and_tell(client, study["id"], 12)
    return study


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        with playwright_api.sync_playwright() as driver:
            launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield launched
            launched.close()
    except playwright_api.Error as error:
        service_missing("Chromium (Debian package `chromium`)", error)


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, browser, base_url: str, key: str | None) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 900})
        if key is not None:
            self.context.add_init_script(
                f"sessionStorage.setItem({KEY_STORAGE!r}, {key!r});")
        self.page = self.context.new_page()
        self.base_url = base_url
        self.errors: list[str] = []
        self.api_statuses: list[tuple[str, int]] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("response", lambda r: self.api_statuses.append((r.url, r.status))
                     if "/v1/" in r.url else None)

    def open(self, path: str, ready: bool = True):
        self.page.goto(self.base_url + path)
        if ready:
            self.page.wait_for_selector("body[data-ready]", timeout=30_000)
        return self.page

    def count(self, selector: str) -> int:
        return self.page.eval_on_selector_all(selector, "nodes => nodes.length")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser, server: tuple[Server, str]) -> Iterator[Page]:
    running, key = server
    page = Page(browser, running.url, key)
    yield page
    page.close()


def test_every_page_draws_without_console_errors(tab: Page, client: httpx.Client,
                                                 study: dict) -> None:
    sid = study["id"]
    trial = client.get(f"/v1/studies/{sid}/insights/trials",
                       params={"sort": "value", "limit": 1}).json()["trials"][0]
    for path in ("/ui", f"/ui/studies/{sid}", f"/ui/studies/{sid}/engine",
                 f"/ui/studies/{sid}/map", f"/ui/studies/{sid}/trials/{trial['id']}"):
        tab.open(path)
        assert tab.page.locator("#error").is_hidden(), tab.page.inner_text("#error")
        assert tab.errors == [], (path, tab.errors)
        assert all(status == 200 for _, status in tab.api_statuses), tab.api_statuses
        tab.api_statuses.clear()
    home = httpx.get(tab.base_url + "/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (307, "/ui")


def test_study_page_plots_hold_the_points_the_api_sent(tab: Page, client: httpx.Client,
                                                       study: dict) -> None:
    sid = study["id"]
    history = client.get(f"/v1/studies/{sid}/insights/history").json()
    params = client.get(f"/v1/studies/{sid}/insights/params").json()
    page = tab.open(f"/ui/studies/{sid}")
    with_value = sum(v is not None for v in history["points"]["value"])
    assert tab.count("#history-plot .scatterlayer .point") == with_value
    # parallel coordinates: one polyline per trial shown, each ending with a null separator
    lines = page.evaluate("document.getElementById('parcoords-plot').data"
                          ".reduce((n, t) => n + t.x.filter(v => v === null).length, 0)")
    assert lines == params["shown"]
    assert tab.count("#parcoords-plot .scatterlayer .trace path.js-line") >= 1
    assert tab.count("#importance-plot .bars .point") == len(SPACE["params"])
    assert tab.count("#slices-plot .scatterlayer .trace") == len(SPACE["params"])
    assert tab.count("#slices-plot .scatterlayer .point") == params["shown"] * len(
        SPACE["params"])  # every param is set in every trial
    curves = client.get(f"/v1/studies/{sid}/insights/curves").json()["curves"]
    assert curves and tab.count("#curves-plot .scatterlayer .trace") == len(curves)
    assert page.inner_text("#study-name") == "browser-study"
    assert history["note"] in page.inner_text("#history-note")


def test_engine_and_map_pages_plot_what_the_engine_recorded(tab: Page, client: httpx.Client,
                                                            study: dict) -> None:
    sid = study["id"]
    history = client.get(f"/v1/studies/{sid}/insights/history").json()
    page = tab.open(f"/ui/studies/{sid}/engine")
    assert tab.count("#exploration-plot .scatterlayer .point") == sum(
        b["exploration"] is not None for b in history["bins"])
    assert tab.count("#credit-table tbody tr") == len(history["strategies"])
    predicted = sum(p is not None and v is not None for p, v in
                    zip(history["points"]["predicted"], history["points"]["value"], strict=True))
    assert tab.count("#predicted-plot .scatterlayer .point") == predicted
    pruner = client.get(f"/v1/studies/{sid}/pruner").json()
    assert tab.count("#versions tbody tr") == len(pruner["versions"])
    assert f"candidates pruned: {pruner['n_pruned']}" in page.inner_text("#pruner-summary")

    m = client.get(f"/v1/studies/{sid}/insights/map").json()
    tab.open(f"/ui/studies/{sid}/map")
    best = len(m["best_region"]["trial_ids"]) if m["best_region"] else 0
    assert tab.count("#map-plot .scatterlayer .point") == (
        len(m["pruned"]["x"]) + m["shown"] + best + len(m["clusters"]))
    assert tab.count("#clusters tbody tr") == len(m["clusters"])
    assert tab.count("#map-plot .shapelayer path") == (m["best_region"] is not None)


def test_trials_table_pages_sorts_and_filters(tab: Page, client: httpx.Client,
                                              study: dict) -> None:
    sid = study["id"]
    page = tab.open(f"/ui/studies/{sid}")
    total = client.get(f"/v1/studies/{sid}/trials", params={"limit": 1}).json()["total"]
    assert tab.count("#trials tbody tr") == min(20, total)
    assert page.inner_text("#trials-page") == f"1-{min(20, total)} of {total}"
    page.click("#trials-next")
    page.wait_for_function("document.getElementById('trials-page').textContent.startsWith('21-')")

    page.select_option("#state-filter", "failed")
    failed = client.get(f"/v1/studies/{sid}/trials", params={"state": "failed"}).json()["total"]
    page.wait_for_function(f"document.getElementById('trials-page').textContent"
                           f" === '1-{failed} of {failed}'")
    states = page.eval_on_selector_all("#trials tbody tr td:nth-child(2)",
                                       "cells => cells.map(c => c.textContent)")
    assert states == ["failed"] * failed

    page.select_option("#state-filter", "")
    page.select_option("#filter-param", "op")
    page.select_option("#filter-choice", "skip")
    page.click("#add-filter")
    expected = client.get(f"/v1/studies/{sid}/insights/trials",
                          params={"choice": "op:skip", "sort": "-value", "limit": 200}).json()
    page.select_option("#sort", "-value")
    shown = min(20, expected["total"])
    page.wait_for_function(f"document.getElementById('trials-page').textContent"
                           f" === '1-{shown} of {expected['total']}' && document.querySelector("
                           f"'#trials tbody td').textContent === "
                           f"'{expected['trials'][0]['number']}'")
    numbers = page.eval_on_selector_all("#trials tbody tr td:first-child",
                                        "cells => cells.map(c => Number(c.textContent))")
    assert numbers == [t["number"] for t in expected["trials"][:shown]]
    assert tab.errors == []


def test_a_study_receiving_tells_updates_in_place(tab: Page, client: httpx.Client) -> None:
    sid = client.post("/v1/studies", json={"name": "live-study", "direction": "minimize",
                                           "space": SPACE}).json()["id"]
    ask_and_tell(client, sid, 3)
    page = tab.open(f"/ui/studies/{sid}")
    page.evaluate("window.__same_document = true")
    assert "3 trials" in page.inner_text("#study-summary")
    assert tab.count("#history-plot .scatterlayer .point") == 3
    ask_and_tell(client, sid, 4)
    page.wait_for_function("document.getElementById('study-summary').textContent"
                           ".includes('7 trials')", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('#history-plot .scatterlayer .point')"
                           ".length === 7", timeout=30_000)
    assert page.evaluate("window.__same_document") is True  # no reload happened
    assert tab.count("#trials tbody tr") == 7
    assert tab.errors == []


def test_without_a_key_no_study_data_reaches_the_page(browser, server: tuple[Server, str],
                                                      study: dict) -> None:
    running, key = server
    tab = Page(browser, running.url, key=None)
    try:
        page = tab.open(f"/ui/studies/{study['id']}", ready=False)
        page.wait_for_selector("#key-form:not([hidden])", timeout=30_000)
        assert page.locator("#content").is_hidden()
        assert tab.api_statuses and {s for _, s in tab.api_statuses} == {401}
        html = page.content()
        assert "browser-study" not in html and "conv" not in html

        page.fill("#key-input", "dyesp_wrong")
        page.click("#key-submit button")
        page.wait_for_selector("#key-error:has-text('refused')", timeout=30_000)

        page.fill("#key-input", key)
        page.click("#key-submit button")
        page.wait_for_selector("body[data-ready]", timeout=30_000)
        assert page.inner_text("#study-name") == "browser-study"
        assert key not in page.url  # the key travels in a header, never in the URL
        assert all(key not in url for url, _ in tab.api_statuses)
        assert page.evaluate(f"sessionStorage.getItem({KEY_STORAGE!r})") == key
    finally:
        tab.close()


def test_studies_page_searches_by_name(tab: Page, client: httpx.Client, study: dict) -> None:
    client.post("/v1/studies", json={"name": "zz-unique-search-target", "direction": "minimize",
                                     "space": SPACE})
    page = tab.open("/ui")
    page.fill("#search", "UNIQUE-SEARCH")
    page.wait_for_function("document.getElementById('studies-total').textContent"
                           " === '1 study'")
    assert page.eval_on_selector_all("#studies tbody tr td:first-child",
                                     "cells => cells.map(c => c.textContent)") == [
        "zz-unique-search-target"]
