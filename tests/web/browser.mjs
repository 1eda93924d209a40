// Browser tests of the web page: the real gateway and the DHIS2 test server as processes, driven
// in headless Debian chromium (playwright-core, no bundled browser). Walks first boot → add a
// TCP ASTM device → a simulated GeneXpert result on the dashboard → DHIS2 test connection →
// builder Tempr from the cached metadata → live test → delivered record → a capture over a socat
// pty pair (live ASTM bytes, Stop, ASTM detected); screenshots of every
// page at phone (360 px) and desktop (1280 px) width under target/web-screenshots/.
// Run: `just web-test` (builds the binaries first).
import { chromium } from "playwright-core";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = path.join(root, "target/debug/pocketgate");
const SIM = path.join(root, "target/debug/dhis2-sim");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.join(root, "target/web-screenshots");
const TOKEN = "d2pat_qg8aTF459WO5LMr0uLi7P3wG8IXq683V1086477046";
const PASSWORD = "clinic-a-admin-2026";

for (const [what, file] of [["pocketgate binary (cargo build)", BIN], ["dhis2-sim binary", SIM], ["chromium (apt-get install chromium)", CHROMIUM]]) {
  if (!fs.existsSync(file)) { console.error(`missing ${what}: ${file}`); process.exit(2); }
}

function check(cond, msg) { if (!cond) throw new Error("check failed: " + msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function freePort() {
  return new Promise((resolve) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); }); });
}
async function waitPort(port, what) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => { const c = net.connect(port, "127.0.0.1", () => { c.end(); r(true); }); c.on("error", () => r(false)); });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`${what} never listened on ${port}`);
}

// Capture mode over a socat pty pair: start on the gateway's end, a fake analyzer writes a real
// ASTM transfer into the other, the live bytes appear, Stop, ASTM detected.
async function captureStep(p, shot) {
  const gwTty = path.join(dir, "capture-gw-tty"), devTty = path.join(dir, "capture-dev-tty");
  const socat = spawn("socat", [`pty,raw,echo=0,link=${gwTty}`, `pty,raw,echo=0,link=${devTty}`], { stdio: "ignore" });
  children.push(socat);
  for (let i = 0; i < 100 && !(fs.existsSync(gwTty) && fs.existsSync(devTty)); i++) await sleep(50);
  await p.goto(base + "/capture?port=" + encodeURIComponent(gwTty));
  await p.selectOption("select[name=baud]", "9600");
  await p.click("text=Start capture");
  await p.waitForSelector("#capture-log tr");  // the "baud: 9600 (given)" note: the port is open
  const dev = fs.openSync(devTty, "r+");
  const fixture = fs.readFileSync(path.join(root, "tests/fixtures/astm/s12-roche-cobas-c111.astm"));
  fs.writeSync(dev, Buffer.concat([Buffer.from([5]), fixture, Buffer.from([4])]));
  const want = String(fixture.length + 2);
  await p.waitForFunction((n) => document.getElementById("capture-count").textContent === n, want);
  check((await p.textContent("#capture-log")).includes("<ENQ>"), "the live view shows <ENQ>");
  await shot(p, "capture");
  await p.click("text=Stop");
  await p.waitForFunction(() => document.getElementById("capture-state").textContent === "finished");
  await p.waitForSelector("#capture-result pre");
  const result = await p.textContent("#capture-result");
  check(result.includes("Protocol: ASTM"), "capture detects ASTM: " + result);
  await shot(p, "capture-done");
  fs.closeSync(dev);
}

const children = [];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pg-web-test-"));
fs.mkdirSync(SHOTS, { recursive: true });
const temprs = path.join(dir, "temprs");
fs.mkdirSync(temprs);
for (const f of fs.readdirSync(path.join(root, "config/temprs"))) fs.copyFileSync(path.join(root, "config/temprs", f), path.join(temprs, f));

const [webPort, simPort, astmPort, fridgePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
// A fake Modbus fridge logger (pymodbus) for the dashboard's temperature chart.
const fridge = spawn("python3", [path.join(root, "tests/fixtures/modbus/fake_fridge_logger.py"), "tcp", "127.0.0.1", String(fridgePort)], { stdio: ["pipe", "ignore", "ignore"] });
children.push(fridge);
const sim = spawn(SIM, ["--listen", `127.0.0.1:${simPort}`, "--version", "2.41.3", "--token", TOKEN, "--user", "admin:district",
  "--metadata", path.join(root, "tests/fixtures/dhis2/metadata.json")], { stdio: "ignore" });
children.push(sim);
const config = path.join(dir, "pocketgate.toml");
fs.writeFileSync(config, `# browser test\n[gateway]\nname = "clinic-a"\ndata_dir = "${path.join(dir, "data")}"\n\n` +
  `[web]\nlisten = "127.0.0.1:${webPort}"\n\n` +
  `[[sources]]\nid = "fridge-1"\nenabled = false\nprotocol = "modbus"\ntransport = "tcp-client"\nconnect = "127.0.0.1:${fridgePort}"\nbackoff_min = "200ms"\nbackoff_max = "1s"\n` +
  `[sources.modbus]\nunit_id = 1\npoll_interval = "200ms"\ntimeout = "500ms"\nsummary_interval = "1s"\n` +
  `[[sources.modbus.registers]]\nname = "temperature"\naddress = 0\ntype = "i16"\nscale = 0.1\nunit = "Cel"\nmin = 2\nmax = 8\nhysteresis = 0.5\n\n` +
  `[dhis2]\nurl = "http://127.0.0.1:${simPort}"\ntoken_env = "PG_TEST_DHIS2_TOKEN"\ntemprs = "${temprs}"\norg_unit = "OuClinicA01"\nretry_min = "200ms"\nretry_max = "1s"\n`);
const log = fs.openSync(path.join(dir, "gateway.log"), "a");
const gw = spawn(BIN, ["run", "--config", config], { stdio: ["ignore", "ignore", log], env: { ...process.env, PG_TEST_DHIS2_TOKEN: TOKEN } });
children.push(gw);

const base = `http://127.0.0.1:${webPort}`;
let browser;
let failed = false;
try {
  await waitPort(simPort, "dhis2-sim");
  await waitPort(webPort, "the web page");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-background-networking"] });
  const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, deviceScaleFactor: 1 });
  const p = await phone.newPage();
  const shot = async (page, name) => page.screenshot({ path: path.join(SHOTS, `${name}-${page.viewportSize().width}.png`), fullPage: true });

  // First boot: every page leads to the password form.
  await p.goto(base + "/");
  check(p.url().endsWith("/setup"), "first visit goes to /setup, got " + p.url());
  await shot(p, "setup");
  await p.fill("input[name=password]", PASSWORD);
  await p.fill("input[name=confirm]", PASSWORD);
  await p.click("text=Set password");
  await p.waitForURL(base + "/");
  check((await p.textContent("h1")) === "Dashboard", "dashboard after setup");

  // Add a TCP ASTM device from the form (the serial fields are hidden for tcp-server).
  await p.goto(base + "/devices/new");
  await p.fill("input[name=id]", "genexpert-1");
  await p.selectOption("select[name=transport]", "tcp-server");
  check(!(await p.isVisible("input[name=port]")), "serial settings hidden for tcp-server");
  await p.fill("input[name=listen]", `127.0.0.1:${astmPort}`);
  await shot(p, "device-form");
  await p.click("text=Save");
  await p.waitForURL(base + "/devices");
  check((await p.content()).includes("genexpert-1"), "device listed");
  await shot(p, "devices");

  // A simulated GeneXpert sends its result; it appears on the dashboard and is delivered.
  await waitPort(astmPort, "the new ASTM source");
  const out = execFileSync(BIN, ["simulate", "--tcp", `127.0.0.1:${astmPort}`, path.join(root, "tests/fixtures/astm/s01-genexpert-mtb-rif-ultra.astm")]).toString();
  check(out.includes("1 of 1 messages acknowledged"), out);
  let dash = "";
  for (let i = 0; i < 100 && !dash.includes("delivered 1"); i++) { await sleep(200); await p.goto(base + "/"); dash = await p.textContent("main"); }
  check(dash.includes("genexpert-1") && dash.includes("delivered 1"), "dashboard shows the delivered result: " + dash);
  await shot(p, "dashboard");

  await p.goto(base + "/records");
  await shot(p, "records");
  await p.click("table a >> nth=0");
  check((await p.textContent("main")).includes("<STX>1H|"), "raw bytes on the record page");
  await shot(p, "record");

  await p.goto(base + "/dhis2");
  await p.click("text=Test connection");
  check((await p.textContent("main")).includes("DHIS2 2.41.3"), "test connection shows the version");
  await shot(p, "dhis2");

  // Builder: dropdowns from the cached metadata, then the live test of the new Tempr.
  await p.goto(base + "/temprs/new");
  await p.selectOption("select[name=stage]", "LabGxEvnt01/LabRsltStg1");
  await p.click("text=Choose");
  await p.fill("input[name=name]", "gx-browser");
  await p.selectOption("select[name=test_code]", "MTB-RIF/Xpert/MTB");
  await p.selectOption("select[name='de.LabSmplId01']", "sample_id");
  await p.selectOption("select[name='de.LabMtbRes01']", "results.MTB-RIF/Xpert/MTB.value");
  await shot(p, "builder");
  await p.click("text=Check and create");
  await p.waitForURL(/\/temprs\/gx-browser/);
  const test = await p.textContent("main");
  check(test.includes("The record matches this Tempr.") && test.includes("passes"), "live test passes: " + test);
  await shot(p, "tempr");
  await p.goto(base + "/temprs");
  await shot(p, "temprs");
  await p.goto(base + "/system");
  await shot(p, "system");
  await captureStep(p, shot);

  // Tempr versions: a save keeps the old text; version 1 diffs against the current file.
  await p.goto(base + "/temprs/gx-browser");
  const text = await p.inputValue("textarea[name=text]");
  await p.fill("textarea[name=text]", text.replace("version = 1", "version = 2"));
  await p.click("text=Check and save");
  await p.waitForURL(/\/temprs\/gx-browser$/);
  await p.goto(base + "/temprs/gx-browser/versions/1");
  const v1 = await p.textContent("main");
  check(v1.includes("Restore this version") && v1.includes("- version = 1") && v1.includes("+ version = 2"), "version 1 and its diff: " + v1);
  await shot(p, "tempr-version");
  await p.goto(base + "/temprs");
  check((await p.textContent("main")).includes("1. tracker-person"), "the chain view lists the person → event chain");

  // Fridge chart: switch the logger's source on (it is off so far, to keep record 1 the
  // GeneXpert's), a warm spell (9.4 °C) and back, then the dashboard card.
  const csrf = await p.getAttribute("input[name=csrf]", "value");
  const on = await p.evaluate(async (token) => (await fetch("/api/v1/sources/fridge-1/enabled", { method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": token }, body: JSON.stringify({ enabled: true }) })).status, csrf);
  check(on === 200, "fridge source switched on: " + on);
  await sleep(2500);
  fridge.stdin.write("set 0 94\n");
  await sleep(1500);
  fridge.stdin.write("set 0 47\n");
  await sleep(2500);
  await p.goto(base + "/");
  const card = await p.textContent("section.fridge");
  check(card.includes("fridge-1: temperature") && card.includes("1 excursion") && (await p.$("section.fridge svg")) !== null, "fridge chart: " + card);
  await shot(p, "dashboard-fridge");

  // Desktop width: log in as a new visitor and photograph every page.
  const desk = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await desk.goto(base + "/");
  check(desk.url().endsWith("/login"), "a new visitor must log in");
  await shot(desk, "login");
  await desk.fill("input[name=password]", PASSWORD);
  await desk.click("text=Log in");
  await desk.waitForURL(base + "/");
  for (const [name, url] of [["dashboard", "/"], ["records", "/records"], ["record", "/records/1"], ["devices", "/devices"],
    ["device-form", "/devices/genexpert-1"], ["temprs", "/temprs"], ["tempr", "/temprs/gx-browser?record=1"], ["tempr-version", "/temprs/gx-browser/versions/1"], ["builder", "/temprs/new?stage=LabGxEvnt01/LabRsltStg1"],
    ["dhis2", "/dhis2"], ["system", "/system"], ["capture-done", "/capture"]]) {
    await desk.goto(base + url);
    await shot(desk, name);
  }
  console.log(`browser tests passed; screenshots in ${path.relative(root, SHOTS)}/`);
} catch (e) {
  failed = true;
  console.error(e.stack || e);
  console.error("gateway log:\n" + fs.readFileSync(path.join(dir, "gateway.log"), "utf8").slice(-4000));
} finally {
  if (browser) await browser.close();
  for (const c of children) c.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
