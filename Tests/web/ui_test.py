#!/usr/bin/env python3
"""Browser test of Trove's web UI (Sources/TroveServer/Web) against a running `trove daemon`.

Headless Chromium through Selenium (recipes.md §3). The Swift suite seeds the daemon and calls:

  python3 Tests/web/ui_test.py --url http://127.0.0.1:PORT --token TOKEN --project P \
      --shots DIR [--running-run RUNID] [--run RUNID] [--xss-run RUNID] [--xss-file PATH] \
      [--filter 'params.lr < 0.01'] [--sort-key metrics.loss] [--files-rev main] \
      [--big-project BIGP --big-token BIGTOKEN [--compare-runs ID1,ID2,...|@FILE]] \
      [--sweep SWEEPID] [--admin-token ADMINTOKEN] [--xss-param-run RUNID [--xss-param-text TEXT]] \
      [--model NAME [--model-version N]] \
      [--max-runs-seconds S] [--max-compare-seconds S] [--timeout S] [--stop-timeout S]

Flags:
  --url              the daemon's base URL (no trailing slash needed)
  --token            a token of --project; write or admin role for the Stop step
  --project          the seeded project (runs with a param used by --filter, a metric, files on --files-rev)
  --shots            directory for the screenshots (created): project.png runs.png run.png stopped.png
                     files.png sweep.png login.png members.png projects.png runs-10k.png compare-200.png
                     models.png model.png
                     (and fail-STEP.png on a failure)
  --running-run      a run that is running now; the test stops it with #stop-button (skipped if absent)
  --run              a run with metrics to open (default: the first run of the runs table)
  --xss-run          a run named --xss-text; its page must show that text literally
  --xss-text         default '<script>alert(1)</script>'
  --xss-file         a file PATH on --files-rev with an HTML-ish name; the browser must show it literally
  --xss-param-run    a run with a parameter whose value is --xss-param-text; its parameters table
                     (#run-params) must show that text literally and hold no img element (skipped if absent)
  --xss-param-text   default '<img src=x onerror=alert(2)>'
  --sweep            a finished sweep of --project with early stopping ('median:...') that cancelled at least
                     one member: #sweep-members must have one row per member (as the API lists them) and a
                     row.early-stopped saying "median" (skipped if absent)
  --model            a model of --project published from a run (so its lineage has the version and the run at
                     least) with a card: the models list (#registry-table) must have its row; its version page
                     must show #card with no script/img element, #lineage svg with 2 or more .lineage-node
                     boxes and the three #use-it snippets (skipped if absent)
  --model-version    the version of --model to open (default: its latest, as the models list shows it)
  --served-url       an endpoint announced for that version: the lineage graph must have a .kind-served box and
                     #version-served must list the URL as text
  --admin-token      an admin token of --project: log out, log in with it, the Members link, the members
                     page (token ids only, never a trv_ value), the projects list; then log back in with
                     --token (skipped if absent)
  --filter           default 'params.lr < 0.01': typed into #runs-filter; every row shown must satisfy it
  --sort-key         a data-sort column to click (default: the first metrics.* column shown)
  --files-rev        default 'main'
  --big-project, --big-token
                     a project with many runs (10,000), logged into in a second browser session
  --compare-runs     run ids of --big-project to compare (comma-separated, or @FILE with one per line
                     or comma-separated); default: the first 200 runs the API lists
  --max-runs-seconds, --max-compare-seconds
                     fail when the measured time is above (default: only report)
  --timeout          seconds to wait for a page (default 30); --stop-timeout for the stop (default 20)

Prints `key=value` lines for every measured figure (runs_page_seconds, compare_seconds, ...), and
`ok` at the end. Exit status 0 when every step passed; 1 with `FAIL step: why` on stderr otherwise;
2 for bad usage.
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


class Failure(Exception):
    pass


def q(s):
    """JavaScript's encodeURIComponent."""
    return urllib.parse.quote(s, safe="!*'()")


def make_driver():
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(a)
    # Leave dialogs open so that check_no_alert sees them (the default dismisses them silently).
    opts.set_capability("unhandledPromptBehavior", "ignore")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


class UI:
    """One browser session on the daemon."""

    def __init__(self, base, shots, timeout):
        self.base, self.shots, self.timeout = base.rstrip("/"), shots, timeout
        self.d = make_driver()

    def quit(self):
        try:
            self.d.quit()
        except WebDriverException:
            pass

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def status(self):
        try:
            return self.d.find_element(By.ID, "status").text
        except WebDriverException:
            return "?"

    def wait(self, what, cond, timeout=None):
        try:
            return WebDriverWait(self.d, timeout or self.timeout, poll_frequency=0.05).until(cond)
        except TimeoutException:
            raise Failure(f"timed out waiting for {what} (page {self.d.current_url}, status line {self.status()!r})")

    def ready(self, name, timeout=None):
        """Waits for body[data-ready=name]; the app sets 'error' when a page failed to load."""
        got = self.wait(f"body[data-ready={name}]",
                        lambda d: d.execute_script("return document.body.dataset.ready") in (name, "error") and
                        d.execute_script("return document.body.dataset.ready"), timeout)
        if got == "error":
            raise Failure(f"the page failed to load: {self.status()!r}")

    def open(self, hash_, ready=None, reload=False):
        if reload:
            self.d.get("about:blank")
        self.d.get(f"{self.base}/{hash_}")
        if ready:
            self.ready(ready)

    def shot(self, name):
        os.makedirs(self.shots, exist_ok=True)
        self.d.save_screenshot(os.path.join(self.shots, name))

    def text(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css).text

    def click(self, css):
        self.d.find_element(By.CSS_SELECTOR, css).click()

    def check_no_markup(self):
        """User data shown as text: no script, img or iframe element anywhere in the app."""
        if self.js("return document.querySelectorAll('#app script, #app img, #app iframe').length"):
            raise Failure("data became markup: a script/img/iframe element is in the page")

    def check_no_alert(self, where):
        try:
            a = self.d.switch_to.alert
            text = a.text
            a.dismiss()
            raise Failure(f"a JavaScript dialog was opened ({where}): {text!r}")
        except NoAlertPresentException:
            pass

    def check_console(self):
        try:
            logs = self.d.get_log("browser")
        except WebDriverException:
            return
        errors = [l["message"] for l in logs if l.get("level") == "SEVERE" and "Uncaught" in l.get("message", "")]
        if errors:
            raise Failure("uncaught JavaScript errors: " + " | ".join(errors[:5]))

    def login(self, token, project):
        self.open("#/login", "login", reload=True)
        box = self.d.find_element(By.ID, "login-token")
        box.clear()
        box.send_keys(token)
        self.click("#login-submit")
        got = self.wait("the project page after login", lambda d: d.execute_script(
            "return document.body.dataset.ready === 'project' ? 'ok'"
            " : document.getElementById('status').className === 'error' ? 'refused' : false"))
        if got == "refused":
            raise Failure(f"login refused: {self.status()!r}")
        if f"#/p/{q(project)}" not in self.d.current_url:
            raise Failure(f"after login the page is {self.d.current_url}, not project {project}")

    def column(self, key):
        """[(run id, value)] of the runs table for a data-col key; value from data-value or the cell text."""
        return self.js("""
            const key = arguments[0];
            return [...document.querySelectorAll('#runs-table tbody tr[data-run]')].map(tr => {
              const c = [...tr.children].find(td => td.getAttribute('data-col') === key);
              return [tr.getAttribute('data-run'), c ? (c.getAttribute('data-value') ?? c.textContent) : null];
            });""", key)


def number(x):
    try:
        n = float(x)
    except (TypeError, ValueError):
        return None
    return n if n == n and abs(n) != float("inf") else None


def holds(v, op, want):
    if v is None or v == "":
        return False
    a, b = number(v), number(want)
    if a is None or b is None:
        a, b = str(v), want
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "=": a == b, "==": a == b, "!=": a != b}[op]


def check_sorted(values, descending, key):
    """Values in order (numbers as numbers when all are); runs without the field come last."""
    n = next((i for i, v in enumerate(values) if v in (None, "")), len(values))
    if any(v not in (None, "") for v in values[n:]):
        raise Failure(f"sort by {key}: runs without a value are not last: {values[:10]}")
    present = values[:n]
    nums = [number(v) for v in present]
    seq = nums if all(n is not None for n in nums) else present
    want = sorted(seq, reverse=descending)
    if seq != want:
        raise Failure(f"sort by {'-' if descending else ''}{key}: rows are not in order: {seq[:10]}")


def step_runs(ui, a):
    P = a.project
    ui.open(f"#/p/{q(P)}/runs", "runs")
    ui.shot("runs.png")
    rows = ui.column("status")
    if not rows:
        raise Failure("the runs table has no rows")
    total = int(ui.text("#runs-total"))
    print(f"runs_total={total}")

    key = a.sort_key or ui.js("const th = document.querySelector('#runs-table th[data-sort^=\"metrics.\"]'); return th && th.getAttribute('data-sort');")
    if not key:
        raise Failure("no metrics column to sort by (give --sort-key)")
    firsts = []
    for descending in (False, True):
        th = [e for e in ui.d.find_elements(By.CSS_SELECTOR, "#runs-table th[data-sort]") if e.get_attribute("data-sort") == key]
        if not th:
            raise Failure(f"no header th[data-sort={key}]")
        th[0].click()
        ui.ready("runs")
        want = "descending" if descending else "ascending"
        got = [e.get_attribute("aria-sort") for e in ui.d.find_elements(By.CSS_SELECTOR, "#runs-table th[data-sort]") if e.get_attribute("data-sort") == key]
        if got != [want]:
            raise Failure(f"after clicking {key} the header says {got}, not {want}")
        col = ui.column(key)
        check_sorted([v for _, v in col], descending, key)
        firsts.append(col[0])
    if firsts[0][1] != firsts[1][1] and firsts[0][0] == firsts[1][0]:
        raise Failure(f"sorting by {key} both ways shows the same first run {firsts[0][0]}")
    print(f"sorted_by={key}")

    m = re.match(r"^\s*([^<>=!\s]+)\s*(<=|>=|==|!=|<|>|=)\s*(.*?)\s*$", a.filter)
    if not m:
        raise Failure(f"--filter {a.filter!r} is not FIELD OP VALUE")
    field, op, want = m.groups()
    box = ui.d.find_element(By.ID, "runs-filter")
    box.clear()
    box.send_keys(a.filter)
    ui.click("#runs-apply")
    ui.ready("runs")
    col = ui.column(field)
    if not col:
        raise Failure(f"the filter {a.filter!r} left no rows (the fixture should have some)")
    bad = [(rid, v) for rid, v in col if not holds(v, op, want)]
    if bad:
        raise Failure(f"rows shown for {a.filter!r} that do not satisfy it: {bad[:5]}")
    print(f"filtered_total={ui.text('#runs-total')}")

    # paging: Next shows other runs, Prev comes back
    ui.open(f"#/p/{q(P)}/runs", "runs")
    if ui.d.find_element(By.ID, "runs-next").is_enabled():
        first = ui.column("status")[0][0]
        ui.click("#runs-next")
        ui.ready("runs")
        if ui.column("status")[0][0] == first:
            raise Failure("Next shows the same first run")
        ui.click("#runs-prev")
        ui.ready("runs")
        if ui.column("status")[0][0] != first:
            raise Failure("Prev does not come back to the first page")
    return ui.column("status")[0][0]


def step_run(ui, a, first_run):
    rid = a.run or first_run
    ui.open(f"#/p/{q(a.project)}/runs/{q(rid)}", "run")
    ui.wait("svg.chart on the run page", lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    ui.wait("a chart line", lambda d: d.find_elements(By.CSS_SELECTOR, "svg.chart path.line"))
    ui.shot("run.png")


def step_stop(ui, a):
    ui.open(f"#/p/{q(a.project)}/runs/{q(a.running_run)}", "run")
    st = ui.text("#run-status")
    if st != "running":
        raise Failure(f"run {a.running_run} should be running, its page says {st!r}")
    ui.wait("#stop-button", lambda d: d.find_elements(By.ID, "stop-button"))
    t0 = time.monotonic()
    ui.click("#stop-button")

    def cancelled(d):
        try:
            return d.find_element(By.ID, "run-status").text == "cancelled"
        except WebDriverException:  # the page re-renders when the run ends
            return False
    ui.wait(f"#run-status = cancelled within {a.stop_timeout} s", cancelled, a.stop_timeout)
    print(f"stop_seconds={time.monotonic() - t0:.2f}")
    ui.shot("stopped.png")


def step_xss(ui, a):
    if a.xss_run:
        ui.open(f"#/p/{q(a.project)}/runs/{q(a.xss_run)}", "run")
        got = ui.text("#run-name")
        if got != a.xss_text:
            raise Failure(f"the run named {a.xss_text!r} shows as {got!r}")
        ui.check_no_markup()
        ui.open(f"#/p/{q(a.project)}/runs?q={q(a.xss_run)}", "runs")
        names = ui.js("return [...document.querySelectorAll('#runs-table td.name')].map(td => td.textContent)")
        if a.xss_text not in names:
            raise Failure(f"the runs table does not show {a.xss_text!r} literally: {names[:5]}")
    ui.check_no_alert("after the XSS pages")


def step_files(ui, a):
    P, rev = a.project, a.files_rev
    ui.open(f"#/p/{q(P)}/files/{q(rev)}/", "files")
    if not ui.d.find_elements(By.CSS_SELECTOR, "#files-table a.entry"):
        raise Failure(f"the file browser shows no entries at {rev}")
    ui.shot("files.png")
    if not a.xss_file:
        return
    parts = a.xss_file.split("/")
    ui.open(f"#/p/{q(P)}/files/{q(rev)}/" + "/".join(q(p) for p in parts[:-1]), "files")
    links = [e for e in ui.d.find_elements(By.CSS_SELECTOR, "#files-table a.entry") if e.text == parts[-1]]
    if not links:
        shown = [e.text for e in ui.d.find_elements(By.CSS_SELECTOR, "#files-table a.entry")]
        raise Failure(f"the file {parts[-1]!r} is not listed literally; entries: {shown}")
    links[0].click()
    ui.ready("file")
    if ui.text("#file-name") != parts[-1]:
        raise Failure(f"the file page names {ui.text('#file-name')!r}, not {parts[-1]!r}")
    href = ui.d.find_element(By.ID, "file-download").get_attribute("href")
    want = f"/api/v1/projects/{q(P)}/file/{q(rev)}?path={q(a.xss_file)}&download=1"
    if not href.endswith(want):
        raise Failure(f"download link {href} does not end with {want}")
    ui.check_no_alert("after the file pages")


def step_xss_param(ui, a):
    ui.open(f"#/p/{q(a.project)}/runs/{q(a.xss_param_run)}", "run")
    if not ui.d.find_elements(By.ID, "run-params"):
        raise Failure(f"run {a.xss_param_run} shows no parameters table (#run-params)")
    values = ui.js("return [...document.querySelectorAll('#run-params tbody tr')].map(tr => tr.lastElementChild.textContent)")
    if a.xss_param_text not in values:
        raise Failure(f"the parameters table does not show {a.xss_param_text!r} literally: {values[:5]}")
    imgs = ui.js("return document.querySelectorAll('#run-params img').length")
    if imgs:
        raise Failure(f"data became markup: {imgs} img element(s) in the parameters table")
    ui.check_no_markup()
    print(f"xss_param_rows={len(values)}")
    ui.check_no_alert("after the parameters table")


def api_get(ui, path):
    """GET /api/v1 + path with the browser's session cookie; the parsed JSON (or Failure)."""
    got = ui.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/v1' + arguments[0], {credentials: 'same-origin', headers: {Accept: 'application/json'}})
          .then(r => r.ok ? r.json().then(d => done({ok: d})) : done({err: r.status + ' ' + r.statusText}))
          .catch(e => done({err: String(e)}));""", path)
    if not isinstance(got, dict) or "ok" not in got:
        raise Failure(f"GET /api/v1{path}: {got.get('err') if isinstance(got, dict) else got}")
    return got["ok"]


def step_sweep(ui, a):
    P, S = a.project, a.sweep
    ui.open(f"#/p/{q(P)}/sweeps/{q(S)}", "sweep")
    if not ui.d.find_elements(By.ID, "sweep-members"):
        raise Failure(f"sweep {S} shows no #sweep-members table")
    rows = ui.js("""return [...document.querySelectorAll('#sweep-members tbody tr')].map(tr =>
        [tr.getAttribute('data-index'), tr.classList.contains('early-stopped'), tr.textContent])""")
    d = api_get(ui, f"/projects/{q(P)}/sweeps/{q(S)}")
    members = d.get("members") or []
    print(f"sweep_size={d.get('size')}")
    print(f"sweep_members={len(members)}")
    print(f"sweep_rows={len(rows)}")
    if not members:
        raise Failure(f"the API lists no members for sweep {S}")
    if len(rows) != len(members):
        raise Failure(f"#sweep-members has {len(rows)} rows for {len(members)} members")
    want = sorted(str(m.get("index")) for m in members)
    got = sorted(str(i) for i, _, _ in rows)
    if got != want:
        raise Failure(f"#sweep-members rows are members {got}, the API lists {want}")
    early = [t for _, e, t in rows if e]
    print(f"sweep_early_stopped={len(early)}")
    if not early:
        raise Failure(f"no row of #sweep-members has class early-stopped (early stop: {d.get('early_stop')!r})")
    if not any(re.search(r"\bmedian\b", t, re.I) for t in early):
        said = [" ".join(t.split()) for t in early]
        raise Failure(f"no early-stopped row says 'median': {said[:3]}")
    ui.shot("sweep.png")


def step_model(ui, a):
    P, name = a.project, a.model
    ui.open(f"#/p/{q(P)}/models", "registry")
    rows = ui.js("""return [...document.querySelectorAll('#registry-table tbody tr[data-name]')]
        .map(tr => [tr.getAttribute('data-name'), tr.getAttribute('data-latest')])""")
    print(f"models_listed={len(rows)}")
    row = [r for r in rows if r[0] == name]
    if not row:
        raise Failure(f"#registry-table has no row for model {name!r}: {[r[0] for r in rows][:10]}")
    ui.shot("models.png")
    n = a.model_version or row[0][1]
    if not n or not str(n).isdigit():
        raise Failure(f"no version of {name} to open (the row says latest={n!r}; give --model-version)")

    ui.open(f"#/p/{q(P)}/models/{q(name)}/v{n}", "registry-version")
    title = ui.text("#version-title")
    if title != f"{name}@v{n}":
        raise Failure(f"the version page is titled {title!r}, not {name}@v{n}")
    if not ui.d.find_elements(By.ID, "card"):
        raise Failure("the version page has no #card")
    bad = ui.js("return document.querySelectorAll('#card script, #card img, #card iframe').length")
    if bad:
        raise Failure(f"the card became markup: {bad} script/img/iframe element(s) in #card")
    ui.check_no_markup()
    print(f"card_chars={len(ui.text('#card'))}")
    if not ui.d.find_elements(By.CSS_SELECTOR, "#lineage svg"):
        raise Failure(f"no lineage graph (#lineage svg): {ui.text('#lineage')[:200]!r}" if ui.d.find_elements(By.ID, "lineage")
                      else "the version page has no #lineage")
    boxes = ui.js("return document.querySelectorAll('#lineage svg .lineage-node').length")
    print(f"lineage_boxes={boxes}")
    if boxes < 2:
        raise Failure(f"the lineage graph has {boxes} box(es), not 2 or more (version and run)")
    if a.served_url:
        served = ui.js("return document.querySelectorAll('#lineage svg .lineage-node.kind-served').length")
        listed = ui.js("return [...document.querySelectorAll('#version-served a')].map(x => x.textContent)")
        print(f"served_boxes={served}")
        if served < 1 or a.served_url not in listed:
            raise Failure(f"where the version is served is not shown: {served} served box(es), #version-served {listed!r}")
    snippets = ui.js("return [...document.querySelectorAll('#use-it pre')].map(p => p.textContent)")
    if len(snippets) != 3 or not all(f"{name}@v{n}" in t or f"revision='v{n}'" in t for t in snippets):
        raise Failure(f"#use-it does not hold the three snippets for {name}@v{n}: {snippets}")
    files = ui.js("return document.querySelectorAll('#version-files tbody a.download').length")
    print(f"model_files={files}")
    ui.shot("model.png")
    ui.check_no_alert("after the model pages")


def step_admin(ui, a):
    P = a.project
    if ui.d.find_elements(By.ID, "logout"):
        ui.click("#logout")
        ui.ready("login")
    ui.open("#/login", "login", reload=True)
    ui.shot("login.png")
    ui.login(a.admin_token, P)
    links = ui.d.find_elements(By.ID, "nav-members")
    if not links or not links[0].is_displayed():
        raise Failure("#nav-members is not shown to an admin")
    links[0].click()
    ui.ready("members")
    if f"#/p/{q(P)}/members" not in ui.d.current_url:
        raise Failure(f"the Members link goes to {ui.d.current_url}")
    if not ui.d.find_elements(By.ID, "members-table"):
        raise Failure(f"the members page has no #members-table: {ui.text('#app')[:200]!r}")
    rows = ui.js("return [...document.querySelectorAll('#members-table tbody tr')].map(tr => tr.textContent)")
    print(f"members_rows={len(rows)}")
    if not rows:
        raise Failure("#members-table has no rows")
    leaked = [r for r in rows if "trv_" in r]
    if leaked:
        raise Failure(f"the members table shows token values (trv_...): {len(leaked)} row(s)")
    ui.shot("members.png")
    ui.open("#/", "projects")
    names = ui.js("return [...document.querySelectorAll('#app table tbody tr')].map(tr => tr.firstElementChild.textContent)")
    print(f"projects_listed={len(names)}")
    if P not in names:
        raise Failure(f"the projects list does not show {P}: {names[:5]}")
    ui.shot("projects.png")
    ui.click("#logout")
    ui.ready("login")
    ui.login(a.token, P)


def step_logout(ui, a):
    ui.click("#logout")
    ui.ready("login")
    ui.open(f"#/p/{q(a.project)}/runs", reload=True)
    ui.wait("the redirect to #/login after logout", lambda d: d.current_url.endswith("#/login"))


def compare_ids(ui, a):
    if a.compare_runs:
        text = open(a.compare_runs[1:]).read() if a.compare_runs.startswith("@") else a.compare_runs
        return [x for x in re.split(r"[,\s]+", text) if x]
    ids = ui.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/v1/projects/' + encodeURIComponent(arguments[0]) + '/runs?limit=200', {credentials: 'same-origin'})
          .then(r => r.json()).then(d => done(d.runs.map(r => r.id))).catch(e => done(String(e)));""", a.big_project)
    if not isinstance(ids, list):
        raise Failure(f"could not list runs of {a.big_project}: {ids}")
    return ids


def step_big(ui, a):
    B = a.big_project
    ui.login(a.big_token, B)
    ui.open(f"#/p/{q(B)}/runs", "runs")  # warm: the page's files are cached as in normal use
    ui.d.get("about:blank")
    t0 = time.monotonic()
    ui.d.get(f"{ui.base}/#/p/{q(B)}/runs")
    ui.ready("runs", 120)
    secs = time.monotonic() - t0
    print(f"runs_page_seconds={secs:.2f}")
    rows, total = len(ui.column("status")), int(ui.text("#runs-total"))
    print(f"big_runs_total={total}")
    if rows != min(100, total):
        raise Failure(f"the runs page shows {rows} rows of {total}, not {min(100, total)}")
    ui.shot("runs-10k.png")
    if a.max_runs_seconds and secs > a.max_runs_seconds:
        raise Failure(f"the runs page took {secs:.2f} s (limit {a.max_runs_seconds})")

    ids = compare_ids(ui, a)
    ui.d.get("about:blank")
    t0 = time.monotonic()
    ui.d.get(f"{ui.base}/#/p/{q(B)}/compare?runs=" + ",".join(q(i) for i in ids))
    ui.ready("compare", 120)
    secs = time.monotonic() - t0
    print(f"compare_runs={len(ids)}")
    print(f"compare_seconds={secs:.2f}")
    charts = len(ui.d.find_elements(By.CSS_SELECTOR, "svg.chart"))
    curves = ui.js("return document.querySelectorAll('#compare-curves path.line').length")
    print(f"compare_curves={curves}")
    if charts < 3:
        raise Failure(f"the compare view shows {charts} charts, not 3")
    if curves < 1:
        raise Failure("the compare view draws no learning curve")
    ui.shot("compare-200.png")
    if a.max_compare_seconds and secs > a.max_compare_seconds:
        raise Failure(f"the compare view took {secs:.2f} s (limit {a.max_compare_seconds})")
    ui.check_no_alert("after the big project")


def run_step(ui, name, fn, *args):
    t0 = time.monotonic()
    try:
        out = fn(*args)
        ui.check_no_alert(name)
        print(f"step_{name}_seconds={time.monotonic() - t0:.2f}", flush=True)
        return out
    except Exception as e:
        try:
            ui.shot(f"fail-{name}.png")
        except Exception:
            pass
        if not isinstance(e, Failure):
            e = Failure(f"{type(e).__name__}: {e}")
        raise Failure(f"{name}: {e}") from None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--shots", required=True)
    p.add_argument("--running-run")
    p.add_argument("--run")
    p.add_argument("--xss-run")
    p.add_argument("--xss-text", default="<script>alert(1)</script>")
    p.add_argument("--xss-file")
    p.add_argument("--xss-param-run")
    p.add_argument("--xss-param-text", default="<img src=x onerror=alert(2)>")
    p.add_argument("--sweep")
    p.add_argument("--admin-token")
    p.add_argument("--model")
    p.add_argument("--model-version", type=int)
    p.add_argument("--served-url")
    p.add_argument("--filter", default="params.lr < 0.01")
    p.add_argument("--sort-key")
    p.add_argument("--files-rev", default="main")
    p.add_argument("--big-project")
    p.add_argument("--big-token")
    p.add_argument("--compare-runs")
    p.add_argument("--max-runs-seconds", type=float)
    p.add_argument("--max-compare-seconds", type=float)
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--stop-timeout", type=float, default=20)
    a = p.parse_args()
    if bool(a.big_project) != bool(a.big_token):
        p.error("--big-project and --big-token go together")
    if a.model_version is not None and not a.model:
        p.error("--model-version needs --model")

    ui = big = None
    try:
        ui = UI(a.url, a.shots, a.timeout)
        run_step(ui, "login", lambda: (ui.login(a.token, a.project), ui.shot("project.png")))
        first = run_step(ui, "runs", step_runs, ui, a)
        run_step(ui, "run", step_run, ui, a, first)
        if a.running_run:
            run_step(ui, "stop", step_stop, ui, a)
        else:
            print("stop=skipped (no --running-run)")
        run_step(ui, "xss", step_xss, ui, a)
        if a.xss_param_run:
            run_step(ui, "xss_param", step_xss_param, ui, a)
        else:
            print("xss_param=skipped (no --xss-param-run)")
        if a.sweep:
            run_step(ui, "sweep", step_sweep, ui, a)
        else:
            print("sweep=skipped (no --sweep)")
        run_step(ui, "files", step_files, ui, a)
        if a.model:
            run_step(ui, "model", step_model, ui, a)
        else:
            print("model=skipped (no --model)")
        if a.admin_token:
            run_step(ui, "admin", step_admin, ui, a)
        else:
            print("admin=skipped (no --admin-token)")
        run_step(ui, "console", ui.check_console)
        run_step(ui, "logout", step_logout, ui, a)
        if a.big_project:
            big = UI(a.url, a.shots, a.timeout)
            run_step(big, "big", step_big, big, a)
            run_step(big, "big_console", big.check_console)
        print("ok")
        return 0
    except Failure as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    except WebDriverException as e:
        print(f"FAIL browser: {e.msg or e}", file=sys.stderr)
        return 1
    finally:
        for u in (ui, big):
            if u:
                u.quit()


if __name__ == "__main__":
    sys.exit(main())
