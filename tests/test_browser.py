"""The class in a real browser: headless Chromium (Debian's, through its chromedriver) at the
class's hub. A trainee logs in with the form, opens her notebook in JupyterLab and runs cells
that ask her own lab: she sees her own values; her neighbour's server is refused to her. The
instructor logs in, lands on the live view, and a cell of the grid turns green once a
trainee's lab is repaired. Screenshots of each step are kept in ``$DNSLAB_ARTIFACTS`` (default
``artifacts/`` of the checkout)."""
from __future__ import annotations

import csv
import os
import shutil
import socket
from pathlib import Path

import pytest

try:
    from . import livelab, traineeclient
except ImportError:
    import livelab
    import traineeclient

from dnslab import accounts, hub
from dnslab.lab import Instance

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces, users)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,  # noqa: E402
                                        TimeoutException)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(os.environ.get("DNSLAB_ARTIFACTS", livelab.REPO / "artifacts"))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    if CHROMEDRIVER is None:
        pytest.fail("chromium-driver is not installed (setup.sh installs it)")
    tmp = tmp_path_factory.mktemp("browser")
    names = [livelab.unique_name("ba"), livelab.unique_name("bb")]
    name = livelab.unique_name("bc")
    roster = tmp / f"{name}.csv"
    roster.write_text("trainee\n" + "".join(f"{n}\n" for n in names))
    port = _free_port()
    try:
        res = livelab.cli("up", "dns-basics", "--trainees", str(roster), "--hub", "--hub-port", str(port), timeout=300)
        assert res.returncode == 0, livelab.explain(res)
        with open(hub.class_dir(name) / "logins.csv") as f:
            passwords = {row["user"]: row["password"] for row in csv.DictReader(f)}
        yield {"url": f"http://127.0.0.1:{port}", "names": names, "passwords": passwords, "tmp": tmp}
    finally:
        for n in names:
            try:
                livelab.remove(n)
            finally:
                accounts.remove(n, purge_home=True)
        hub.stop(name)


@pytest.fixture
def browser(klass, request):
    """A fresh headless Chromium (its own profile: no cookie shared between users)."""
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000",
                f"--user-data-dir={klass['tmp'] / request.node.name}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(exist_ok=True)
    shots = iter(range(1, 100))
    driver.shot = lambda what: driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}-{next(shots):02d}-{what}.png"))
    try:
        yield driver
    finally:
        driver.shot("last")
        driver.quit()


def login(driver, klass, user: str) -> None:
    driver.get(f"{klass['url']}/hub/login")
    driver.find_element(By.ID, "username_input").send_keys(user)
    driver.find_element(By.ID, "password_input").send_keys(klass["passwords"][user])
    driver.shot(f"login-{user}")
    driver.find_element(By.ID, "login_submit").click()


def wait(driver, cond, timeout: float = 90, what: str = "the page"):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException)).until(cond)
    except TimeoutException:
        driver.shot("timeout")
        raise AssertionError(f"{what} did not show in {timeout:.0f}s (at {driver.current_url})") from None


def test_a_trainee_runs_her_notebook_and_sees_her_own_lab(klass, browser):
    me, neighbour = klass["names"]
    login(browser, klass, me)
    wait(browser, lambda d: f"/user/{me}/lab" in d.current_url, what="her JupyterLab")
    browser.get(f"{klass['url']}/user/{me}/lab/tree/dns-basics/dns-basics.ipynb")
    wait(browser, lambda d: any(e.is_displayed() for e in d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell"))
         and "Idle" in d.find_element(By.ID, "jp-main-statusbar").text, what="the notebook and her kernel")
    browser.shot("notebook")
    assert "Nbgrader" not in browser.find_element(By.ID, "jp-menu-panel").text  # the instructor's tools
    # the notebook's first code cell attaches to her lab; a cell of her own asks it
    first = browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")[0]
    first.find_element(By.CSS_SELECTOR, ".cm-content").click()
    first.find_element(By.CSS_SELECTOR, ".cm-content").send_keys(Keys.SHIFT, Keys.ENTER)
    wait(browser, lambda d: me in first.find_element(By.CSS_SELECTOR, ".jp-Cell-outputWrapper").text,
         what="the lab's description in the first cell's output")
    active = browser.switch_to.active_element
    active.send_keys(Keys.ESCAPE, "a")  # a new cell above the one now selected
    editor = wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell.jp-mod-selected .cm-content"),
                  what="a new cell")
    editor.click()
    editor.send_keys('print("MINE", lab.name, lab.dig("www.lab.test", "A", at="sld-nsd", rd=False).answer[0][0])')
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    www = Instance.open(me).plan.values["www_lab"]
    assert www != Instance.open(neighbour).plan.values["www_lab"]
    out = wait(browser, lambda d: next((o.text for o in d.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")
                                        if "MINE" in o.text), None), what="her cell's output")
    browser.shot("her-values")
    assert out.strip() == f"MINE {me} {www}", out
    # her neighbour's server, running, is not hers to open
    traineeclient.HubTrainee(klass["url"], neighbour, klass["passwords"][neighbour]).wait_server()
    browser.get(f"{klass['url']}/user/{neighbour}/lab")
    wait(browser, lambda d: "403" in d.find_element(By.TAG_NAME, "body").text, timeout=30, what="the refusal")
    browser.shot("neighbour-refused")
    assert "jp-Notebook" not in browser.page_source


def test_the_instructors_grid_turns_green_after_a_repair(klass, browser):
    me = klass["names"][1]
    login(browser, klass, "instructor")
    wait(browser, lambda d: d.current_url.rstrip("/").endswith("/services/class"), what="the class's live view")
    cell = f"{me}--lab-delegation"
    wait(browser, lambda d: d.find_elements(By.ID, cell), what="the grid")
    assert browser.find_element(By.ID, cell).get_attribute("class") == "no"  # the exercise's fault
    browser.shot("grid-broken")
    livelab.repair_glue(Instance.open(me))
    wait(browser, lambda d: d.find_element(By.ID, cell).get_attribute("class") == "ok", timeout=60,
         what="the green cell")
    browser.shot("grid-repaired")
    assert browser.find_element(By.ID, f"{me}--fix-delegation").get_attribute("class") == "ok"
    assert browser.find_element(By.ID, f"{klass['names'][0]}--lab-delegation").get_attribute("class") == "no"
