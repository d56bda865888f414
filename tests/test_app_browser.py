"""End to end in a real headless browser: Debian's chromium driven by Playwright for Python.

Opens the app (the session's default gallery, real models, a real server on 127.0.0.1), picks A, B
and C by clicking gallery thumbnails, solves the analogy, checks both result panels, the why panels
(the offset named, right or wrong, the threshold, the geometry picture; the heatmaps on request) and
the explanation in the chat, asks follow-ups, and saves a screenshot (also copied to out/screenshot.png
in the repository, git-ignored, for people to look at).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.default_gallery import EXAMPLES
from tests.conftest import REPO, running_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

HOSTILE_MARKDOWN = ["![x](http://elsewhere.invalid/x.png)", "<img src=http://elsewhere.invalid/y.png>",
                    "[click](javascript:alert(1)) *not emphasised* $$x^2$$"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"chromium not found at {CHROMIUM}: run scripts/setup.sh test"),
]


@pytest.fixture(scope="module")
def server(default_explorer, tmp_path_factory):
    with running_app(default_explorer, tmp_path_factory.mktemp("eval-reports")) as running:
        yield running


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_pick_from_gallery_solve_and_read_the_explanation(server, page, tmp_path):
    gallery = server["explorer"].gallery
    ids = [gallery.find(p) for p in EXAMPLES[0]]  # coffee : greyscale coffee :: cat : ?
    page.goto(server["url"])
    page.wait_for_selector("#browse button.thumbnail-item")
    assert "captions by:" in page.locator("#gallery-info").inner_text()

    for role, item_id in zip("abc", ids):
        # the slot selector moves on by itself: A, then B, then C
        assert page.locator("#slot-selector input:checked").get_attribute("value") == role.upper()
        page.locator(f'#browse button[aria-label="Thumbnail {item_id + 1} of {len(gallery)}"]').click()
        page.wait_for_selector(f"#slot-{role} img")
        page.wait_for_function(
            "([role, name]) => document.querySelector(`#slot-${role}`).innerText.includes(name)",
            arg=[role, gallery.items[item_id].path.rsplit(".", 1)[0]])
    page.locator("#solve").click()

    page.wait_for_function("() => document.querySelector('#image-space-head')?.innerText.includes('Without exclusion')")
    page.wait_for_function("() => document.querySelector('#caption-space-head')?.innerText.includes('Without exclusion')")
    question = page.locator("#question").inner_text()
    assert "coffee/original.jpg : coffee/greyscale.jpg :: cat/original.jpg : ?" in question
    for panel in ("#image-space", "#caption-space"):
        page.wait_for_selector(f"{panel} button.thumbnail-item img")
        assert page.locator(f"{panel} button.thumbnail-item").count() == 5
        assert page.locator(f"{panel}-head .iae-badge").count() >= 1
    assert "cat/greyscale.jpg" in page.locator("#caption-space-head").inner_text()
    assert "cat" in page.locator("#caption-space .caption-label").first.inner_text()
    # the third space: word space, with the word answer and the inputs' words
    page.wait_for_function("() => document.querySelector('#word-space-head')?.innerText.includes('As a word analogy')")
    words = page.locator("#word-space-head").inner_text()
    assert "Word space" in words and "Without exclusion" in words and "(gallery label)" in words
    assert page.locator("#word-space-head .iae-badge").count() >= 1

    page.wait_for_function("() => document.querySelector('#chat')?.innerText.includes('What the models see')")
    chat = page.locator("#chat").inner_text()
    assert "Image space" in chat and "Without exclusion" in chat
    assert "Do the two spaces agree?" in page.locator("#agreement").inner_text()

    # why, next to each space: the offset named, right or wrong, the calibrated threshold, the geometry picture
    for space in ("image", "caption"):
        page.locator(f"#{space}-space-geometry").scroll_into_view_if_needed()  # the picture loads lazily, as a reader scrolls
        page.wait_for_selector(f"#{space}-space-geometry img")
        why = page.locator(f"#{space}-space-why").inner_text()
        assert "B - A asks for" in why and f"Near-duplicate threshold in {space} space" in why
    assert "right, the answer is the expected cat/greyscale.jpg" in page.locator("#caption-space-why").inner_text()
    assert "cannot tell whether the arithmetic helped" in page.locator("#caption-space-why").inner_text()
    assert "wrong, the expected cat/greyscale.jpg is at rank" in page.locator("#image-space-why").inner_text()
    # where the network looks: computed when asked
    assert page.locator("#heatmaps button.thumbnail-item").count() == 0
    page.locator("#heatmaps-button").click()
    page.wait_for_selector("#heatmaps button.thumbnail-item img")
    assert page.locator("#heatmaps button.thumbnail-item").count() == 4
    assert "D's map toward the query" in page.locator("#heatmaps-text").inner_text()

    page.locator("#question-box textarea").fill("why?")
    page.locator("#question-box textarea").press("Enter")
    page.wait_for_function("() => document.querySelector('#chat')?.innerText.includes('Why these verdicts')")
    page.locator("#question-box textarea").fill("why not the right one?")
    page.locator("#question-box textarea").press("Enter")
    page.wait_for_function("() => document.querySelector('#chat')?.innerText.includes('Where the expected answer ranks')")

    # the user's own text is shown as typed: no image fetched from elsewhere, no tag, no link made of it
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    for question in HOSTILE_MARKDOWN:
        page.locator("#question-box textarea").fill(question)
        page.locator("#question-box textarea").press("Enter")
        page.wait_for_function("(text) => document.querySelector('#chat')?.innerText.includes(text)", arg=question)
    page.wait_for_timeout(1000)
    assert not [url for url in requests if "elsewhere" in url], requests
    chat_html = page.locator("#chat").inner_html()
    assert "elsewhere" not in " ".join(page.locator("#chat img").evaluate_all("els => els.map(e => e.src)"))
    assert 'href="javascript' not in chat_html and "onerror" not in " ".join(
        page.locator("#chat [onerror]").evaluate_all("els => els.map(e => e.outerHTML)"))

    page.locator("#solve").scroll_into_view_if_needed()
    shot = tmp_path / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    shutil.copyfile(shot, out / "screenshot.png")


def test_a_bad_upload_shows_a_clear_message_and_the_page_keeps_working(server, page, tmp_path):
    gallery = server["explorer"].gallery
    page.goto(server["url"])
    page.wait_for_selector("#browse button.thumbnail-item")
    for role, item_id in zip("ab", [gallery.find(p) for p in EXAMPLES[0][:2]]):  # A and B from the gallery
        page.locator(f'#browse button[aria-label="Thumbnail {item_id + 1} of {len(gallery)}"]').click()
        page.wait_for_selector(f"#slot-{role} img")  # the selector moves on to the next slot after each answer
    notes = tmp_path / "notes.jpg"
    notes.write_text("Shopping list:\n- eggs\n- milk\n")
    page.locator("#slot-c input[type=file]").set_input_files(str(notes))
    page.wait_for_function("() => document.querySelector('#slot-c').innerText.includes('notes.jpg (uploaded)')")
    page.locator("#solve").click()
    page.wait_for_function("() => document.body.innerText.includes('notes.jpg: not an image')")
    assert "Traceback" not in page.content()
    # the page still answers: C from the gallery this time
    page.locator("#slot-selector label", has_text="C").click()
    cat = gallery.find(EXAMPLES[0][2])
    page.locator(f'#browse button[aria-label="Thumbnail {cat + 1} of {len(gallery)}"]').click()
    page.wait_for_function("() => document.querySelector('#slot-c').innerText.includes('cat/original')")
    page.locator("#solve").click()
    page.wait_for_function("() => document.querySelector('#caption-space-head')?.innerText.includes('cat/greyscale.jpg')")


def test_a_phone_photo_upload_is_answered_and_discussed(server, page, tmp_path):
    """The user's own photo, as phones take them (12 MP JPEG), in slot C: solved, then follow-ups in words
    and one that re-runs the question (the upload decoded again) are answered, not refused."""
    from PIL import Image

    gallery = server["explorer"].gallery
    photo = tmp_path / "my cat.jpg"
    Image.open(gallery.path(gallery.find(EXAMPLES[0][2]))).convert("RGB").resize((4032, 3024)).save(photo, quality=90)
    page.goto(server["url"])
    page.wait_for_selector("#browse button.thumbnail-item")
    for role, item_id in zip("ab", [gallery.find(p) for p in EXAMPLES[0][:2]]):
        page.locator(f'#browse button[aria-label="Thumbnail {item_id + 1} of {len(gallery)}"]').click()
        page.wait_for_selector(f"#slot-{role} img")
    page.locator("#slot-c input[type=file]").set_input_files(str(photo))
    page.wait_for_function("() => document.querySelector('#slot-c').innerText.includes('my cat.jpg (uploaded)')")
    page.locator("#solve").click()
    page.wait_for_function("() => document.querySelector('#question')?.innerText.includes('my cat.jpg')")
    page.wait_for_function("() => document.querySelector('#caption-space-head')?.innerText.includes('Without exclusion')")
    for question, reply in (("why?", "Why these verdicts"), ("try 3cosmul", "3cosmul")):
        page.locator("#question-box textarea").fill(question)
        page.locator("#question-box textarea").press("Enter")
        page.wait_for_function("(text) => document.querySelector('#chat')?.innerText.includes(text)", arg=reply)
    page.wait_for_function("() => document.querySelector('#image-space-head')?.innerText.includes('3cosmul')")
    assert "Something went wrong" not in page.locator("body").inner_text()


def test_classifier_tab_in_the_browser(server, page):
    page.goto(server["url"])
    page.get_by_role("tab", name="What the classifier sees").click()
    gallery = server["explorer"].gallery
    cat = gallery.find("cat/original.jpg")
    page.locator(f'button[aria-label="Thumbnail {cat + 1} of {len(gallery)}"]:visible').first.click()
    page.wait_for_function("() => document.querySelector('#classifier-caption')?.innerText.includes('tabby cat')")
    labels = page.locator("#classifier-labels").inner_text()
    assert "cat" in labels and "%" in labels


def test_photos_classes_switch_asks_about_classes_in_three_spaces(server, page):
    page.goto(server["url"])
    assert not page.locator("#classes-box").is_visible()
    page.locator("#question-kind").get_by_text("classes", exact=True).click()
    page.wait_for_selector("#classes-box", state="visible")
    for role, label in zip("abc", ("coffee", "cat", "rocket")):
        box = page.locator(f"#class-{role} input")
        box.click()
        box.fill(label)
        page.keyboard.press("Enter")
    page.locator("#solve-classes").click()
    page.wait_for_function("() => document.querySelector('#class-answer')?.innerText.includes('Among classes')")
    text = page.locator("#class-answer").inner_text()
    assert "coffee : cat :: rocket" in text
    assert all(title in text for title in ("Image space", "Caption space", "Word space"))


def test_large_gallery_browses_a_page_at_a_time(imagen_explorer, page, tmp_path):
    """imagen (1,000 photos): 200 thumbnails to a page; Next shows the next 200, and a click there
    picks the item shown; a filter starts again on its own first page, without page buttons when it fits."""
    gallery = imagen_explorer.gallery
    with running_app(imagen_explorer, tmp_path) as server:
        page.goto(server["url"])
        page.wait_for_selector("#browse button.thumbnail-item")
        assert page.locator("#browse button.thumbnail-item").count() == 200
        assert "Showing 1\u2013200 of 1,000 images" in page.locator("#browse-info").inner_text()
        assert page.locator("#browse-previous").is_disabled()
        page.locator("#browse-next").click()
        page.wait_for_function("() => document.querySelector('#browse-info').innerText.includes('201\u2013400')")
        assert page.locator("#browse-previous").is_enabled()
        page.locator('#browse button[aria-label="Thumbnail 1 of 200"]').click()  # the first of page two: item 200
        name = server["handlers"].browser.item_caption(200)  # "#200 <its label>"
        page.wait_for_function("(name) => document.querySelector('#slot-a').innerText.includes(name)", arg=name)
        label = gallery.items[0].label
        page.locator("#browse-filter textarea").fill(label)
        matching = sum(item.label == label or label in item.path for item in gallery.items)
        page.wait_for_function("(n) => document.querySelectorAll('#browse button.thumbnail-item').length === n",
                               arg=matching)
        assert f"match \u201c{label}\u201d" in page.locator("#browse-info").inner_text()
        assert not page.locator("#browse-next").is_visible()
