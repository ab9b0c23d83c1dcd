"""A person at a real browser: Chinese pages, each demo login reaches its home page."""

from __future__ import annotations

import pytest

from lms.demo import DEMO_PASSWORDS, load_demo
from lms.extensions import db

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(app):
    load_demo(db.session, app.extensions["id_vault"])
    db.session.commit()
    return DEMO_PASSWORDS


def log_in(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_login_page_is_chinese_and_fits_a_phone(browser, live_server):
    context = browser.new_context(locale="zh-CN", base_url=live_server,
                                  viewport={"width": 375, "height": 700})
    page = context.new_page()
    page.goto("/login")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", name="登录").is_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "login page scrolls sideways on a phone"
    context.close()


@pytest.mark.parametrize("username,section", [
    ("trainee", "#my-learning"), ("trainer", "#trainer-overview"), ("hr", "#hr-overview"),
    ("manager", "#manager-overview"), ("admin", "#admin-overview"),
    ("auditor", "#auditor-overview"),
])
def test_each_demo_login_reaches_its_home_page(page, demo, username, section):
    password, _roles = demo[username]
    log_in(page, username, password)
    page.wait_for_url("**/")
    assert page.locator(section).is_visible()
    assert page.locator("#logout").is_visible()


def test_wrong_password_shows_a_chinese_error(page, demo):
    log_in(page, "trainee", "wrong-password-1")
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"


def test_logout_then_back_button_shows_no_private_page(page, demo):
    password, _ = demo["hr"]
    log_in(page, "hr", password)
    page.wait_for_url("**/")
    page.locator("#logout").click()
    page.wait_for_url("**/login")
    page.go_back()
    page.reload()
    assert "/login" in page.url


def test_switch_to_english_and_back(page, demo):
    password, _ = demo["trainee"]
    log_in(page, "trainee", password)
    page.wait_for_url("**/")
    page.get_by_role("button", name="English").click()
    assert page.get_by_role("button", name="Log out").is_visible()
    page.get_by_role("button", name="中文").click()
    assert page.get_by_role("button", name="退出").is_visible()


def test_hr_sees_only_masked_id_numbers(page, demo, app):
    from sqlalchemy import select

    from lms.people.models import Employee

    password, _ = demo["hr"]
    log_in(page, "hr", password)
    page.wait_for_url("**/")
    page.goto("/hr/employees")
    body = page.locator("main").inner_text()
    vault = app.extensions["id_vault"]
    cipher = db.session.scalars(select(Employee.id_number_cipher).limit(5)).all()
    for token in cipher:
        assert vault.decrypt(token) not in body
    assert "**********" in body
