"""Walks Jade's Swagger UI in headless Chromium as a person does (tests/swagger_ui.rs).

Usage: walk.py <base url> <token> <screenshot path>

Authorizes with the token pasted as the demo prints it, tries the runs list, a manifest
read and a file read, then authorizes again with `Token <token>` pasted and tries the runs
list once more. Every wait is bounded. Prints one line per step; exits non-zero on the
first step that does not answer 200.
"""

import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 20
base, token, screenshot = sys.argv[1], sys.argv[2], sys.argv[3]

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2400",
):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
driver.set_page_load_timeout(WAIT_SECONDS)
wait = WebDriverWait(driver, WAIT_SECONDS)


def click(css, within=None):
    element = wait.until(lambda d: (within or d).find_element(By.CSS_SELECTOR, css))
    wait.until(lambda d: element.is_displayed() and element.is_enabled())
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()
    return element


def authorize(value):
    click("button.btn.authorize")
    modal = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))
    logout = [b for b in modal.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Logout"]
    if logout:
        logout[0].click()
    field = wait.until(lambda d: modal.find_element(By.CSS_SELECTOR, "input[type=text], input[type=password]"))
    field.clear()
    field.send_keys(value)
    [b for b in modal.find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == "Authorize"][0].click()
    click("button.btn-done", modal)
    wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-ux")))


def try_out(path, params):
    xpath = f"//div[contains(@class,'opblock-get')][.//*[@data-path='{path}']]"
    block = wait.until(lambda d: d.find_element(By.XPATH, xpath))
    if "is-open" not in block.get_attribute("class"):
        click(".opblock-summary-control, .opblock-summary", block)
    try_button = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, "button.try-out__btn"))
    if try_button.text.strip() == "Try it out":
        click("button.try-out__btn", block)
    for name, value in params.items():
        field = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, f"tr[data-param-name='{name}'] input"))
        field.clear()
        field.send_keys(value)
    old = block.find_elements(By.CSS_SELECTOR, ".live-responses-table .response-col_status")
    if old:  # the answer of an earlier try: cleared, so the one read below is new
        click("button.btn-clear", block)
        wait.until(ec.staleness_of(old[0]))
    click("button.execute", block)
    status = wait.until(
        lambda d: block.find_element(By.CSS_SELECTOR, ".live-responses-table .response .response-col_status")
    )
    code = status.text.strip().split()[0]
    print(f"GET {path} {params}: {code}", flush=True)
    if code != "200":
        driver.save_screenshot(screenshot)
        sys.exit(f"GET {path}: Swagger UI shows {status.text.strip()!r}, expected 200")


try:
    driver.get(f"{base}/api/v2/swaggerui")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    authorize(token)
    try_out("/api/v2/accounts/{account_id}/runs", {"account_id": "1"})
    try_out("/api/v2/datacoves/manifests", {"environment_slug": "acme-prod"})
    try_out("/api/v2/datacoves/environments/{environment_slug}/files", {"environment_slug": "acme-dev", "tag": "settings"})
    authorize(f"Token {token}")
    try_out("/api/v2/accounts/{account_id}/runs", {"account_id": "1"})
    driver.save_screenshot(screenshot)
    print(f"screenshot: {screenshot}", flush=True)
finally:
    driver.quit()
