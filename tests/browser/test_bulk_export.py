"""A bulk evidence export in a real browser, phone-sized: HR starts it on /evidence, the
job page's script moves the progress bar from the JSON endpoint (under the app's CSP:
no inline script) and, when the job is done, shows the download, which is the ZIP."""

from __future__ import annotations

import io
import time
import zipfile

import pytest
from support import PASSWORD

from lms.evidence import bulk
from lms.evidence.signing import SigningSettings, load_material
from lms.jobs import backends

pytestmark = pytest.mark.browser


@pytest.fixture
def org(app, people, tmp_path_factory, tmp_path):
    app.config.update(EVIDENCE_SIGNING_DIR=str(tmp_path_factory.mktemp("signing") / "org"),
                      JOBS_DIR=str(tmp_path / "jobs"), REDIS_URL="")
    load_material(SigningSettings.from_config(app.config, app.instance_path))
    store = people.department("一号店", code="STORE1")
    for no, name in (("S1", "店员甲"), ("S2", "店员乙")):
        people.employee(name, department=store, employee_no=no)
    people.user("hr", "hr")
    yield {"store": store}
    assert backends.stop_inprocess(app)


def test_hr_follows_a_bulk_export_on_a_phone_and_downloads_the_zip(browser, live_server, org,
                                                                   monkeypatch):
    real = bulk.export_pack

    def slow(*args, **kwargs):  # long enough for the page to see the job running
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(bulk, "export_pack", slow)
    context = browser.new_context(locale="zh-CN", base_url=live_server, accept_downloads=True,
                                  viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    polled: list[str] = []
    page.on("request", lambda req: polled.append(req.url) if req.url.endswith(".json") else None)
    page.goto("/login")
    page.get_by_label("用户名").fill("hr")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/")
    page.locator("#nav-evidence").click()
    page.wait_for_url("**/evidence")
    page.locator("#department").select_option(str(org["store"].id))
    page.locator("#bulk-start").click()
    page.wait_for_url("**/evidence/jobs/*")
    assert page.locator("#job-progress").count() == 1
    assert page.locator("#job-download").count() == 0  # still running
    bar = page.locator("#job-progress")
    deadline = time.monotonic() + 60
    while float(bar.get_attribute("value") or 0) < 1:  # the bar moves without a reload
        assert time.monotonic() < deadline, "the progress bar never moved"
        time.sleep(0.1)

    download_link = page.locator("#job-download")
    download_link.wait_for(timeout=90_000)  # the script saw the job finish and reloaded
    assert page.locator("#job-progress").get_attribute("value") == "2"
    assert page.locator("#job-progress").get_attribute("max") == "2"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the job page scrolls sideways on a phone"
    with page.expect_download() as info:
        download_link.click()
    data = open(info.value.path(), "rb").read()  # noqa: SIM115 - read once
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert names[0] == "index.csv" and len(names) == 3
    assert polled and all(url.endswith(".json") for url in polled)
    assert problems == []
    context.close()
