"""/api/docs and /api/redoc in Chromium: the viewers load from our own files and list the API."""

from typing import Any

from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import Browser

OPERATIONS = {
    ("GET", "/api/llm-backends"),
    ("POST", "/api/llm-backends"),
    ("GET", "/api/route/{model_name}"),
    ("GET", "/api/routes"),
    ("POST", "/api/metrics/samples"),
}


def test_a_viewer_sees_swagger_ui_list_the_apis_operations(browser: Browser, viewer: Any) -> None:
    browser.open("/api/docs")  # signed out: the login form first, then back to the docs
    browser.fill_login_form(viewer)
    browser.wait_for("#swagger-ui .opblock", timeout=30)
    browser.screenshot("swagger-ui")
    listed = {
        (
            block.find_element("css selector", ".opblock-summary-method").text,
            block.find_element("css selector", ".opblock-summary-path").get_attribute("data-path"),
        )
        for block in browser.find_all("#swagger-ui .opblock")
    }
    assert listed >= OPERATIONS, listed
    assert browser.find_all("#swagger-ui .info .title")[0].text.startswith("Athena API")
    assert browser.console_errors() == []
    assert browser.requests_leaving_the_machine() == []
    assert any(url.endswith("/api/schema") for url in browser.requested)


def test_an_operator_sees_redoc_list_them_too(browser: Browser, operator: Any) -> None:
    browser.open_as(operator, "/api/redoc")
    WebDriverWait(browser.driver, 30).until(
        lambda driver: (
            "/api/llm-backends" in driver.execute_script("return document.body.textContent")
        )
    )
    browser.screenshot("redoc")
    text = browser.js("return document.body.textContent")
    for _, path in OPERATIONS:
        assert path in text, path
    # ReDoc's bundle always draws its maker's logo from their CDN; our page's policy blocks
    # it (templates/drf_spectacular/redoc.html). That refusal is the one error expected.
    errors = [
        e
        for e in browser.console_errors()
        if not (
            e["source"] == "security"
            and "'https://cdn.redoc.ly/redoc/logo-mini.svg'" in e["message"]
            and "The action has been blocked." in e["message"]
        )
    ]
    assert errors == []
    assert browser.requests_leaving_the_machine() == []
    assert browser.blocked == ["https://cdn.redoc.ly/redoc/logo-mini.svg"]
