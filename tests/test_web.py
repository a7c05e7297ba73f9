"""The web page of `mentor serve` in a real browser: headless Chromium (Debian's package) driven
by Playwright. Set MENTOR_SCREENSHOTS=DIR to keep a screenshot of every flow."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, item_ext, make_dataset, user_ext

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
PIL = pytest.importorskip("PIL.Image")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("no Chromium (Debian: apt-get install chromium)", allow_module_level=True)

import mentor  # noqa: E402
from mentor.bundle import write_bundle  # noqa: E402
from mentor.serve import Recommender  # noqa: E402
from mentor.serve.app import create_app  # noqa: E402

KEY = "web-key"
TITLES = ["Red Kettle", "Blue Mug", "Green Teapot", "Yellow Cup", "Purple Jug"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MENTOR bundle of 20 users and 30 items with titles and (for every other item)
    poster images."""
    root = tmp_path_factory.mktemp("web")
    data = make_dataset(root, n_users=20, n_items=30, features={"image": 4, "text": 3})
    (data / "posters").mkdir()
    lines = []
    for i in range(30):
        record = {"item_id": item_ext(i), "title": f"{TITLES[i % 5]} {i}", "text": f"item {i}"}
        if i % 2 == 0:
            colour = (40 * (i % 6), 120, 255 - 8 * i)
            PIL.new("RGB", (40, 60), colour).save(data / "posters" / f"{i}.png")
            record["image"] = f"posters/{i}.png"
        lines.append(json.dumps(record))
    (data / "item_meta.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MENTOR_CACHE", str(root / "cache"))
        mentor.train(
            "mentor", data, root / "run", epochs=3, knn_k=4, topk=[5, 10],
            valid_metric="recall@10", progress=False, log=lambda _: None,
        )  # fmt: skip
    return write_bundle(root / "run", root / "bundle")


@pytest.fixture
def url(bundle: Path) -> Iterator[str]:
    port = free_port()
    app = create_app(Recommender.load(bundle), api_key=KEY)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page(url: str) -> Iterator:  # type: ignore[type-arg]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        yield page
        browser.close()


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    folder = os.environ.get("MENTOR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"web-{name}.png"), full_page=True)


def _titles(page, grid: str) -> list[str]:  # type: ignore[no-untyped-def]
    return page.locator(f"#{grid} .card .title").all_inner_texts()


def test_page_flows_in_chromium(page, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    rec = Recommender.load(bundle)
    expect = sync_api.expect
    expect(page.get_by_test_id("bundle")).to_contain_text("mentor · 30 items")
    expect(page.get_by_test_id("bundle")).to_contain_text(rec.digest[:12])

    user = user_ext(2)
    page.fill("#user-id", user)
    page.fill("#user-k", "5")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#recommended .card")).to_have_count(5)
    history = [rec.item_meta[rec.item_ids[i]]["title"] for i in rec.seen(2)]
    assert sorted(_titles(page, "history")) == sorted(history)
    wanted = [rec.item_meta[i]["title"] for i in rec.recommend(user, k=5)[0].items]
    assert _titles(page, "recommended") == wanted
    posters = page.locator("#recommended .card img")
    if posters.count():  # images come from the bundle and load
        posters.first.wait_for()
        page.wait_for_function(
            "[...document.querySelectorAll('#recommended img')].every(i => i.complete)"
        )
        assert page.evaluate("document.querySelector('#recommended img').naturalWidth") == 40
    _shot(page, "user")

    first = rec.recommend(user, k=5)[0].items[0]
    page.click(f"#recommended .card[data-item='{first}']")
    expect(page.locator("#similar-section")).to_be_visible()
    similar = [rec.item_meta[i]["title"] for i in rec.similar_items(first, k=50).items]
    expect(page.locator("#similar .card")).to_have_count(len(similar))
    assert _titles(page, "similar") == similar
    _shot(page, "similar")

    page.fill("#search-q", "teapot")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#found .card")).to_have_count(6)
    assert all("Green Teapot" in t for t in _titles(page, "found"))
    _shot(page, "search")

    page.fill("#add-id", "NEW-1")
    page.fill("#add-title", "Brand New Kettle")
    page.click("#add-random")
    page.fill("#api-key", "wrong")
    page.click("#add-form button[type=submit]")
    expect(page.get_by_test_id("add-note")).to_contain_text("401")
    page.fill("#api-key", KEY)
    page.click("#add-form button[type=submit]")
    expect(page.get_by_test_id("add-note")).to_contain_text("Added NEW-1")
    expect(page.locator("#similar-title")).to_have_text("Brand New Kettle")
    expect(page.locator("#similar .card")).to_have_count(30)  # every other item
    neighbour = page.locator("#similar .card").first.get_attribute("data-item")
    page.click(f"#similar .card[data-item='{neighbour}']")  # the new item is among its similar
    expect(page.locator("#similar .card[data-item='NEW-1']")).to_have_count(1)
    page.fill("#search-q", "brand new")
    page.click("#search-form button[type=submit]")
    expect(page.locator("#found .card")).to_have_count(1)
    assert _titles(page, "found") == ["Brand New Kettle"]
    _shot(page, "add")

    expect(page.locator("#curves svg")).to_have_count(2)  # validation metrics and losses
    folder = os.environ.get("MENTOR_SCREENSHOTS")
    if folder:
        page.locator("#curves-section").screenshot(path=str(Path(folder) / "web-curves.png"))


def test_unknown_user_gets_the_popular_list(page) -> None:  # type: ignore[no-untyped-def]
    page.fill("#user-id", "somebody-new")
    page.click("#user-form button[type=submit]")
    expect = sync_api.expect
    expect(page.locator("#user-note")).to_contain_text("Not a trained user")
    expect(page.locator("#recommended .card")).to_have_count(10)
    expect(page.locator("#history .card")).to_have_count(0)
