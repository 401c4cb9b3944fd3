"""The pages in a real headless Chromium (Debian's chromium + chromium-driver, selenium).

The light-curve page draws its plot (one mark per point), shows values on hover and
zooms; the downloads arrive as files; the candidate list sorts and links to light
curves. With ``PHOTDB_SCREENSHOTS=DIR`` the main pages are saved there as PNGs
(``scripts/screenshots.sh`` does that for ``docs/``).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from photdb.db import connect

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    assert Path(CHROMIUM).exists() and Path(DRIVER).exists(), (
        "Debian's chromium and chromium-driver are needed: bash scripts/install.sh"
    )
    profile = tmp_path_factory.mktemp("chromium-profile")
    downloads = tmp_path_factory.mktemp("downloads")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                "--window-size=1280,1000"):  # fmt: skip
        opts.add_argument(arg)
    if os.geteuid() == 0:
        opts.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _shot(driver, name: str) -> None:
    out = os.environ.get("PHOTDB_SCREENSHOTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        # wait for the images in view (the stamps load lazily) so none is shot half-loaded
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
            ".every(i => i.complete && i.naturalWidth > 0)"))  # fmt: skip
        driver.save_screenshot(str(Path(out) / f"{name}.png"))


@pytest.fixture(scope="module")
def top(web):
    with connect("readonly", web.settings) as conn:
        return conn.execute(
            # the top variable candidate (reference outliers are listed apart)
            "SELECT refsource_id FROM galrefstats WHERE n_det > 0 AND NOT ref_outlier"
            " ORDER BY n_det DESC, refsource_id LIMIT 1"
        ).fetchone()[0]


def test_lightcurve_plot_hover_zoom_and_downloads(web, browser, top):
    browser.get(f"{web.base}/lightcurve?refsource={top}")
    plot = WebDriverWait(browser, 20).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#plot[data-rendered]")
    )
    points = browser.find_elements(By.CSS_SELECTOR, "#plot svg .pt")
    rows = browser.find_elements(By.CSS_SELECTOR, "#points tbody tr")
    assert len(points) == int(plot.get_attribute("data-rendered")) == len(rows) > 3
    assert browser.find_elements(By.CSS_SELECTOR, "#plot svg rect.pt.ref"), "reference epochs"
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#plot svg .legend text")]
    assert {"g (DECam)", "r (DECam)"} <= set(labels)
    assert "AB" in plot.text  # the magnitude system on the axis
    # the magnitude axis is inverted: the brightest point is drawn highest
    ys = browser.execute_script(
        "return Array.from(document.querySelectorAll('#plot svg circle.pt')).map("
        "c => [parseFloat(c.getAttribute('cy')), c.getAttribute('data-band'), +c.dataset.i])"
    )
    spec = browser.execute_script("return JSON.parse(document.getElementById('lc-data').text)")
    mags = {s["band"]: s["mag"] for s in spec["series"]}
    top_pt = min(ys)
    assert mags[top_pt[1]][top_pt[2]] == min(mags[b][i] for _, b, i in ys)
    _shot(browser, "lightcurve")
    # hover shows the values
    ActionChains(browser).move_to_element(points[0]).perform()
    tip = browser.find_element(By.CSS_SELECTOR, "#plot .tip")
    WebDriverWait(browser, 5).until(lambda d: tip.is_displayed())
    assert "MJD" in tip.text and "mag" in tip.text
    # drag a box: the view shrinks; double-click restores it
    before = browser.execute_script("return window.photdbPlot.view()")
    svg = browser.find_element(By.CSS_SELECTOR, "#plot svg")
    ActionChains(browser).move_to_element_with_offset(svg, -200, -100).click_and_hold() \
        .move_by_offset(250, 150).release().perform()  # fmt: skip
    after = browser.execute_script("return window.photdbPlot.view()")
    assert after["x"][1] - after["x"][0] < 0.8 * (before["x"][1] - before["x"][0])
    ActionChains(browser).double_click(svg).perform()
    assert browser.execute_script("return window.photdbPlot.view()") == before
    # downloads arrive as files
    for fmt, suffix in (("csv", ".csv"), ("votable", ".xml"), ("aavso", ".txt")):
        browser.find_element(By.CSS_SELECTOR, f'a.download[data-format="{fmt}"]').click()
        target = browser.downloads / f"ref{top}{suffix}"
        deadline = time.monotonic() + 20
        while not target.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.exists() and target.stat().st_size > 100, fmt
    text = (browser.downloads / f"ref{top}.csv").read_text()
    assert text.splitlines()[0].startswith("source,") and len(text.splitlines()) == len(rows) + 1
    shutil.rmtree(browser.downloads, ignore_errors=True)


def test_candidates_sort_filter_and_link(web, browser, top):
    browser.get(f"{web.base}/candidates?min_repeats=1")
    table = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "candidates"))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) > 2
    _shot(browser, "candidates")
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    col = [h.text for h in headers].index("ref mag")

    def mags():
        return [float(r.find_elements(By.TAG_NAME, "td")[col].text)
                for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]  # fmt: skip

    headers[col].click()
    assert mags() == sorted(mags())
    headers[col].click()
    assert mags() == sorted(mags(), reverse=True)
    box = browser.find_element(By.ID, "quickfilter")
    box.send_keys(str(top))
    visible = [r for r in table.find_elements(By.CSS_SELECTOR, "tbody tr") if r.is_displayed()]
    assert 1 <= len(visible) < len(rows)
    visible = [r for r in visible if r.find_element(By.CSS_SELECTOR, "a.lc").text == str(top)]
    stamp = visible[0].find_element(By.CSS_SELECTOR, "img.stamp")
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", stamp))  # fmt: skip
    visible[0].find_element(By.CSS_SELECTOR, "a.lc").click()
    WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#plot[data-rendered]")
    )
    assert f"refsource={top}" in browser.current_url
    assert int(browser.find_element(By.ID, "plot").get_attribute("data-rendered")) > 3


def test_search_and_images_pages(web, browser):
    browser.get(web.base + "/")
    _shot(browser, "search")
    box = browser.find_element(By.CSS_SELECTOR, "#by-name input[name=q]")
    box.send_keys("SS Cyg")
    box.submit()
    WebDriverWait(browser, 20).until(lambda d: "/lightcurve" in d.current_url)
    WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#plot[data-rendered]")
    )
    assert browser.find_element(By.ID, "plot").get_attribute("data-rendered") == "3"
    browser.get(web.base + "/images")
    assert "done:" in browser.find_element(By.TAG_NAME, "main").text
    _shot(browser, "images")
    browser.get(web.base + "/lightcurve?object=Nobody")
    assert "no object named" in browser.find_element(By.ID, "error").text
