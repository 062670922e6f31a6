"""The page on a phone and on a desktop, in a real browser (issue 21 item 15): the coloured
sampled text never breaks a word across lines, and on a 390 px screen greedy and sampled stack."""
import os
from pathlib import Path

# Every place where two neighbouring letters of the coloured view sit on different lines: a word
# broken across lines (a word longer than the line excepted: none here). Measured char by char.
BROKEN_WORDS = """() => {
  const walker = document.createTreeWalker(document.querySelector('#surprise'), NodeFilter.SHOW_TEXT);
  const chars = [];
  for (let node; (node = walker.nextNode());) {
    if (node.parentElement.closest('label, .label')) continue;  // the box's title, a category name
    for (let i = 0; i < node.data.length; i++) {
      const range = document.createRange();
      range.setStart(node, i); range.setEnd(node, i + 1);
      const rect = range.getClientRects()[0];
      chars.push([node.data[i], rect && rect.width > 0 ? rect.top : null]);  // null: not shown ("\\n")
    }
  }
  const broken = [];
  for (let i = 1; i < chars.length; i++) {
    const [a, ta] = chars[i - 1], [b, tb] = chars[i];
    if (/\\p{L}/u.test(a) && /\\p{L}/u.test(b) && ta !== null && tb !== null && tb > ta + 2) {
      broken.push(chars.slice(Math.max(0, i - 6), i + 6).map(c => c[0]).join(''));
    }
  }
  return broken;
}"""


def generate(page, url, width: int):
    page.set_viewport_size({"width": width, "height": 1400})
    page.goto(url, wait_until="networkidle")
    page.locator("#seed textarea").fill("En un lugar de la Mancha")
    page.locator("#temperature input[type=range]").fill("1.5")  # many surprising chars: many coloured runs
    page.locator("#length input[type=range]").fill("1000")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#info').innerText.includes('sampled characters in')",
                           timeout=60_000)


def test_coloured_words_stay_whole_and_a_phone_stacks_the_two_texts(browser, launch_app, tiny_model,
                                                                    tiny_model_dir, tmp_path):
    url = launch_app(tiny_model, str(tiny_model_dir))
    shots = Path(os.environ.get("CHARRNN_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    for width in (1280, 390):
        generate(page, url, width)
        assert page.locator("#surprise span").count() > 50  # enough coloured runs to meet inside words
        assert page.evaluate(BROKEN_WORDS) == [], width
        greedy, sampled = page.locator("#greedy").bounding_box(), page.locator("#sampled").bounding_box()
        if width == 390:  # one above the other, each the screen's width
            assert sampled["y"] >= greedy["y"] + greedy["height"] - 1 and greedy["width"] > 300
        else:  # side by side
            assert abs(sampled["y"] - greedy["y"]) < 1 and sampled["x"] > greedy["x"] + greedy["width"] - 1
        page.screenshot(path=str(shots / f"page-{width}px.png"), full_page=True)
    page.close()
