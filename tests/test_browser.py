"""A real browser on the page: Debian's chromium driven by Playwright (never `playwright install`).

Types a seed, moves the sliders, clicks Generate, waits for both outputs to fill, and saves a
screenshot (under pytest's tmp dir, or $CHARRNN_SCREENSHOT_DIR when set, to look at by eye).
Skipped where Playwright or chromium is missing, except in CI, where that is a failure.
"""
import os
from pathlib import Path

from conftest import SEED


def generate_in_the_page(page) -> float:
    """Type a seed, move both sliders as a user does, click Generate and wait for the end; the ms
    from the click to the first streamed chars, timed in the page's clock."""
    page.locator("#seed textarea").fill(SEED)
    temperature = page.locator("#temperature input[type=range]")
    temperature.focus()
    for _ in range(8):  # as a keyboard user moves it: 0.8 + 8 steps of 0.05
        temperature.press("ArrowRight")
    page.locator("#length input[type=range]").fill("400")  # as a drag ends: the range input's value
    assert page.locator("#temperature input[type=number]").input_value() == "1.2"
    assert page.locator("#length input[type=number]").input_value() == "400"
    page.locator("#generate").click()
    started = page.evaluate("performance.now()")
    # First streamed chars: the sampled box holds more than the seed.
    page.wait_for_function(f"document.querySelector('#sampled textarea').value.length > {len(SEED)}",
                           polling="raf", timeout=20_000)
    first_ms = page.evaluate("performance.now()") - started
    page.wait_for_function("document.querySelector('#info').innerText.includes('characters in')",
                           timeout=20_000)
    return first_ms


def test_type_slide_generate_and_see_both_outputs(browser, launch_app, tiny_model, tiny_model_dir, tmp_path):
    url = launch_app(tiny_model, str(tiny_model_dir))
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    outside = []  # the page must not reach beyond this machine (fonts, analytics, CDNs)
    page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else outside.append(r.url))
    page.goto(url, wait_until="networkidle")
    first_ms = generate_in_the_page(page)

    greedy = page.locator("#greedy textarea").input_value()
    sampled = page.locator("#sampled textarea").input_value()
    assert greedy.startswith(SEED) and len(greedy) == len(SEED) + 400
    assert sampled.startswith(SEED) and len(sampled) == len(SEED) + 400
    assert "400 greedy + 400 sampled" in page.locator("#info").inner_text()
    # the slider move reached the app
    assert "Sampled (temperature 1.2)" in page.locator("#sampled").inner_text()
    assert page.locator("#candidates").inner_text().strip()  # next-char candidates are shown
    assert page.locator("#surprise").inner_text().replace("\n", "")  # the coloured view is filled
    shots = Path(os.environ.get("CHARRNN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "app.png"), full_page=True)
    assert (shots / "app.png").stat().st_size > 10_000

    # Re-sample: a new sampled side (fresh sampling seed), the greedy side untouched.
    info = page.locator("#info").inner_text()
    page.locator("#resample").click()
    page.wait_for_function(f"(t => t.includes('characters in') && t !== {info!r})"
                           "(document.querySelector('#info').innerText)", timeout=20_000)
    page.wait_for_function(f"document.querySelector('#sampled textarea').value.length == {len(sampled)}"
                           f" && document.querySelector('#sampled textarea').value !== {sampled!r}",
                           timeout=20_000)
    resampled = page.locator("#sampled textarea").input_value()
    assert resampled.startswith(SEED)
    assert page.locator("#greedy textarea").input_value() == greedy
    assert outside == []
    print(f"first streamed chars visible {first_ms:.0f} ms after the click")
    page.close()


def test_missing_weights_show_the_error_on_the_page(browser, launch_app):
    url = launch_app(None, "weights", "weights is missing config.json, model.safetensors")
    page = browser.new_page()
    page.goto(url, wait_until="networkidle")
    assert "No model is loaded" in page.locator("#load-error").inner_text()
    page.locator("#seed textarea").fill(SEED)
    page.locator("#generate").click()
    page.get_by_text("weights is missing config.json").nth(1).wait_for(timeout=20_000)  # the error toast
    page.close()


def test_the_coloured_view_keeps_line_breaks(browser, launch_app, tiny_model, tiny_model_dir):
    url = launch_app(tiny_model, str(tiny_model_dir))
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url, wait_until="networkidle")
    page.locator("#seed textarea").fill("dijo Sancho,\n–¿Qué gigantes?")
    page.locator("#length input[type=range]").fill("50")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#info').innerText.includes('characters in')",
                           timeout=20_000)
    shown = page.locator("#surprise").inner_text()
    assert "dijo Sancho," in shown and "–¿Qué gigantes?" in shown
    between = shown[shown.index("dijo Sancho,"):shown.index("–¿Qué gigantes?")]
    assert "\n" in between  # not "dijo Sancho,–¿Qué", as when the line break was dropped
    page.close()
