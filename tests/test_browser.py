"""The gallery, the rating page and the report driven in headless Chromium (Debian's chromium and
chromium-driver through Selenium; nothing is downloaded). Screenshots go to
.pytest_cache/artifacts/."""

import json
import re
import shutil
import subprocess
import sys
import time

import pytest
from PIL import Image

from analysis import load_run, ratings
from conftest import REPO, chromium_driver, run_cli

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="no chromium and chromedriver (.ci/run installs Debian's "
                                      "chromium and chromium-driver)")]
ARTIFACTS = REPO / ".pytest_cache" / "artifacts"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium_driver(tmp_path_factory.mktemp("profile"), downloads)
    driver.downloads = downloads
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait(condition, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def body(driver, key):
    return driver.execute_script(f"return document.body.dataset.{key}")


def test_gallery_filter_sort_select_and_detail(browser, demo_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    r = run_cli("gallery", str(run))
    assert r.returncode == 0, r.stderr
    df = load_run(run)
    browser.get((run / "gallery" / "index.html").as_uri())
    wait(lambda: body(browser, "ready") == "1")
    cells = lambda: browser.find_elements(By.CSS_SELECTOR, "#grid .cell")  # noqa: E731
    assert len(cells()) == 24 and body(browser, "errors") is None
    # filter to one level of tag_position
    browser.find_element(By.CSS_SELECTOR, '[data-factor="tag_position"] input[value="0"]').click()
    assert browser.find_element(By.ID, "count").text == "12 of 24 images"
    assert {c.get_attribute("data-id") for c in cells()} == \
        set(df[df.tag_position == "append"].task_id)
    # sort by a score, high first
    browser.find_element(By.CSS_SELECTOR, '#sort option[value="aesthetic_score"]').click()
    shown = [c.get_attribute("data-id") for c in cells()]
    expected = df[df.tag_position == "append"].sort_values("aesthetic_score", ascending=False,
                                                           kind="stable").task_id.tolist()
    assert shown == expected
    # keep the first, star the second, download the selection
    cells()[0].click()
    browser.find_element(By.ID, "grid").send_keys("k")
    cells()[1].click()
    browser.find_element(By.ID, "grid").send_keys("s")
    browser.find_element(By.ID, "download").click()
    saved = wait(lambda: [p for p in browser.downloads.glob("selection*.json")])
    selection = json.loads(wait(lambda: saved[0].read_text() or None))
    assert selection["keep"] == [shown[0]] and selection["starred"] == [shown[1]]
    assert selection["reject"] == [] and selection["format"] == "animagine-batch-selection"
    # the detail view: full image, prompt and the PNG's own infotext
    cells()[1].click()
    browser.find_element(By.ID, "grid").send_keys(Keys.ENTER)
    wait(lambda: body(browser, "detail") == shown[1])
    row = df.set_index("task_id").loc[shown[1]]
    assert browser.find_element(By.ID, "detail-prompt").text == row.prompt
    with Image.open(run / row.image_path) as im:
        assert browser.find_element(By.ID, "infotext").get_attribute("value") == \
            im.info["parameters"]
    wait(lambda: browser.execute_script(
        "var i = document.getElementById('detail-image'); return i.complete && i.naturalWidth"))
    browser.find_element(By.ID, "copy-infotext").click()
    wait(lambda: browser.find_element(By.ID, "copy-status").text)
    browser.save_screenshot(str(ARTIFACTS / "gallery-detail.png"))
    browser.find_element(By.ID, "detail-close").click()
    # the X/Y view: cfg x seed with everything else held
    browser.find_element(By.CSS_SELECTOR, '#view option[value="xy"]').click()
    browser.find_element(By.CSS_SELECTOR, '#xy-x option[value="cfg"]').click()
    assert int(body(browser, "xyCells")) == 4  # 2 cfg x 2 seeds, one prompt, one tag position
    browser.save_screenshot(str(ARTIFACTS / "gallery-xy.png"))
    browser.find_element(By.CSS_SELECTOR, '#view option[value="grid"]').click()
    browser.find_element(By.ID, "reset").click()
    assert browser.find_element(By.ID, "count").text == "24 of 24 images"
    browser.save_screenshot(str(ARTIFACTS / "gallery.png"))
    assert body(browser, "errors") is None


def test_rating_page_five_votes(browser, demo_run, tmp_path):
    from selenium.webdriver.common.by import By

    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    proc = subprocess.Popen([sys.executable, "-m", "animagine_batch.cli", "rate", str(run),
                             "--by", "tag_position", "--port", "0", "--seed", "1"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:
            m = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if m:
                url = m.group(0)
                break
        assert url, proc.stderr.read()
        browser.get(url)
        browser.find_element(By.ID, "rater").send_keys("ann")
        browser.find_element(By.ID, "start").click()
        tokens = []
        for choice in ("left", "right", "tie", "left", "skip"):
            token = wait(lambda: body(browser, "token") not in tokens and body(browser, "token"))
            tokens.append(token)
            browser.find_element(By.ID, f"vote-{choice}").click()
        wait(lambda: body(browser, "votes") == "5" and body(browser, "token") not in tokens)
        browser.save_screenshot(str(ARTIFACTS / "rate.png"))
        votes, torn = ratings.read_votes(run)
        assert torn == 0 and len(votes) == 5
        assert votes.choice.tolist() == ["left", "right", "tie", "left", "skip"]
        assert (votes.rater == "ann").all() and (votes.axis == "tag_position").all()
        df = load_run(run).set_index("task_id")
        for v in votes.itertuples():
            a, b = df.loc[v.left_task], df.loc[v.right_task]
            assert {a.tag_position, b.tag_position} == {"prepend", "append"}
            assert (a.prompt_key, a.seed, a.cfg) == (b.prompt_key, b.seed, b.cfg)
        assert len(set(zip(votes.left_task, votes.right_task))) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_report_reads_in_a_minute_in_the_browser(browser, tmp_path):
    """The screenshot of the report: summary in words first, the forest plot above the effect
    table, the verdict column in view."""
    from selenium.webdriver.common.by import By

    from analysis import simulate

    run = simulate.write_image_run(tmp_path / "sim", 12, 2, [0.0, 0.15, 0.0], seed=3)
    r = run_cli("report", str(run))
    assert r.returncode == 0, r.stderr
    browser.set_window_size(1280, 1000)
    browser.get((run / "report" / "index.html").as_uri())
    wait(lambda: body(browser, "images") is not None)
    assert body(browser, "broken") == "0" and body(browser, "errors") == "0"
    summary = browser.find_element(By.ID, "summary-text")
    assert "raised aesthetic_score by" in summary.text and "over 12 prompts" in summary.text
    forest = browser.find_element(By.ID, "forest")
    table = browser.find_element(By.CSS_SELECTOR, "table.effects")
    assert summary.location["y"] < forest.location["y"] < table.location["y"]
    assert forest.size["width"] > 600
    head = table.find_element(By.CSS_SELECTOR, "th")
    assert head.text == "verdict" and head.location["x"] + head.size["width"] < 1280
    cells = [td.text for td in table.find_elements(By.CSS_SELECTOR, "td")]
    assert "better" in cells and not any(c in ("nan", "NaN") or "e-0" in c for c in cells)
    browser.save_screenshot(str(ARTIFACTS / "report-summary.png"))
