// The agent-etl dashboard: runs, a run's DAG with live progress, agents and throughput.
// Plain ES modules, Preact + htm and uPlot vendored under ./vendor (no build step, no CDN).
// Live state comes from /ws: a hello (run snapshots + backlog), then frames of hub events, each
// folded here the way monitoring/live.py folds it on the server; a resync replaces the snapshots.
import { html, render, useState, useEffect, useRef } from "./vendor/preact-htm-3.1.1.module.js";

const fmt = new Intl.NumberFormat("en-US");
const n = (v) => (v == null ? "" : fmt.format(Math.round(v)));
const RATE_WINDOW = 5; // seconds of recent progress a task's rows/s is measured over, as live.RATE_WINDOW_SECONDS

// ---- session -----------------------------------------------------------------------------
// `agent-etl serve` prints the dashboard URL with the token in the fragment, which browsers never send.
// The page trades it at once for an HttpOnly, SameSite=Strict session cookie that no script can read,
// and drops the fragment: the token stays in no URL, no history entry and no storage.
const ROLES = ["viewer", "operator", "admin"];
const session = { holder: null };
const can = (role) => session.holder != null && ROLES.indexOf(session.holder.role) >= ROLES.indexOf(role);

async function signIn(token) {
  const response = await fetch("/api/v1/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  return response.ok;
}

async function whoAmI() {
  const response = await fetch("/api/v1/session");
  session.holder = response.ok ? await response.json() : null;
}

async function api(path, options = {}) {
  const headers = options.body ? { "Content-Type": "application/json" } : {};
  const response = await fetch(`/api/v1${path}`, { ...options, headers });
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.detail ? body.detail : `${response.status} ${response.statusText}`);
  return body;
}

// ---- live store --------------------------------------------------------------------------
const live = { runs: new Map(), connected: false, version: 0, seen: new Set(), seenOrder: [], series: [] };
const listeners = new Set();
let scheduled = false;
function changed() {
  live.version++;
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; listeners.forEach((fn) => fn(live.version)); });
}
function useLive() {
  const [, setVersion] = useState(0);
  useEffect(() => { listeners.add(setVersion); return () => listeners.delete(setVersion); }, []);
  return live;
}

function emptyRun(id) {
  return { run_id: id, pipeline: "", status: "running", tasks: [], decisions: [], commits: [], error: null, started_at: null, finished_at: null };
}

function fold(event) {
  if (event.id) {
    if (live.seen.has(event.id)) return; // a backlog message may also arrive on the subscription
    live.seen.add(event.id);
    live.seenOrder.push(event.id);
    if (live.seenOrder.length > 5000) live.seen.delete(live.seenOrder.shift());
  }
  if (!event.run_id) return;
  let run = live.runs.get(event.run_id);
  if (!run) { run = emptyRun(event.run_id); live.runs.set(event.run_id, run); }
  const task = event.task_id ? run.tasks.find((t) => t.id === event.task_id) : null;
  switch (event.kind) {
    case "run_started":
      Object.assign(run, { pipeline: event.pipeline, started_at: event.at });
      run.tasks = event.tasks.map((t) => ({ id: t.id, kind: t.kind, reads_source: t.kind !== "transform_load" || t.source != null, status: "pending", rows: 0, rows_written: 0, rows_quarantined: 0, rows_per_second: 0, depends_on: t.depends_on || [], checks: [] }));
      break;
    case "run_finished": Object.assign(run, { status: event.status, error: event.error, finished_at: event.at }); break;
    case "decision": run.decisions.push({ by: event.sender, at: event.at, subject: event.subject, choice: event.choice, reason: event.reason }); break;
    case "destination_committed": run.commits.push({ destination: event.destination, rows: event.rows, quarantined_rows: event.quarantined_rows }); break;
    case "task_started": if (task) Object.assign(task, { status: "running", agent: event.agent, attempt: event.attempt, rows: 0, started: Date.parse(event.at), rows_per_second: 0, samples: [] }); break;
    case "task_progress":
      if (task) {
        // Over the last RATE_WINDOW seconds of progress (as live.TaskState.rate), so the figure moves until the end.
        const at = Date.parse(event.at);
        const samples = (task.samples = task.samples || []);
        samples.push([at, event.rows]);
        while (samples.length > 2 && at - samples[1][0] >= RATE_WINDOW * 1000) samples.shift();
        let [since, before] = samples[0];
        if (at - since < RATE_WINDOW * 1000) [since, before] = [task.started || at, 0];
        const seconds = (at - since) / 1000;
        Object.assign(task, { rows: event.rows, bytes: event.bytes, rows_per_second: seconds > 0 ? (event.rows - before) / seconds : 0 });
      }
      break;
    case "task_finished":
      if (task) Object.assign(task, { status: "succeeded", rows: event.rows_read, rows_written: event.rows_written, rows_quarantined: event.rows_quarantined, seconds: event.seconds, checks: event.checks, rows_per_second: event.seconds > 0 ? event.rows_read / event.seconds : 0, error: null });
      break;
    case "task_failed":
      if (task) Object.assign(task, { status: event.remedy === "cancelled" ? "cancelled" : "failed", error: event.message, error_type: event.error_type, remedy: event.remedy });
      break;
  }
}

function adopt(snapshots) {
  for (const s of snapshots) live.runs.set(s.run_id, { ...s, tasks: s.tasks.map((t) => ({ ...t })) });
}

function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  socket.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "hello" || frame.type === "resync") {
      live.connected = true;
      adopt(frame.runs);
      (frame.backlog || []).forEach((e) => live.seen.add(e.id));
    } else if (frame.type === "events") {
      for (const event of frame.events) {
        fold(event);
        if (event.kind === "alert") live.alerts = [event, ...(live.alerts || [])].slice(0, 20);
        if (event.kind === "run_finished" || event.kind === "run_started") live.runsChanged = Date.now();
      }
    }
    changed();
  };
  socket.onclose = (closed) => {
    live.connected = false;
    live.closeReason = closed.code === 4401 ? "not signed in: open the link agent-etl serve printed, or enter a token" : "disconnected; reconnecting";
    changed();
    if (closed.code !== 4401) setTimeout(connect, 2000);
  };
}

// Rows read across all runs, sampled every second, for the throughput charts.
setInterval(() => {
  const now = Date.now() / 1000;
  const total = [...live.runs.values()].reduce((sum, run) => sum + run.tasks.reduce((s, t) => s + (t.rows || 0), 0), 0);
  live.series.push([now, total]);
  if (live.series.length > 300) live.series.shift();
  changed();
}, 1000);

// ---- components --------------------------------------------------------------------------
const Badge = ({ status }) => html`<span class="badge s-${status}" data-testid="status">${status}</span>`;

function seconds(run) {
  if (!run.started_at) return null;
  const end = run.finished_at ? Date.parse(run.finished_at) : Date.now();
  return (end - Date.parse(run.started_at)) / 1000;
}

function TokenBox() {
  const [value, setValue] = useState("");
  const [wrong, setWrong] = useState(false);
  return html`<div class="card token">
    <span>API token (needed to start runs and for live updates):</span>
    <input type="password" value=${value} onInput=${(e) => setValue(e.target.value)} placeholder="from AGENT_ETL_API_TOKEN or ~/.agent-etl/api-token" />
    <button onClick=${async () => { if (await signIn(value.trim())) location.reload(); else setWrong(true); }}>Sign in</button>
    ${wrong && html`<span class="error">that token is wrong</span>`}
  </div>`;
}

function RunsPage() {
  const state = useLive();
  const [runs, setRuns] = useState([]);
  const [pipelines, setPipelines] = useState([]);
  const [message, setMessage] = useState(null);
  const load = () => { api("/runs?limit=50").then((r) => setRuns(r.runs)).catch((e) => setMessage(e.message)); api("/pipelines").then(setPipelines).catch(() => {}); };
  useEffect(load, [state.runsChanged]);
  useEffect(() => { const timer = setInterval(load, 5000); return () => clearInterval(timer); }, []);
  const start = async (name) => {
    try { const run = await api("/runs", { method: "POST", body: JSON.stringify({ pipeline: name }) }); location.hash = `#/runs/${run.run_id}`; }
    catch (e) { setMessage(`could not start ${name}: ${e.message}`); }
  };
  return html`
    <h1>Pipelines</h1>
    ${message && html`<div class="card error">${message}</div>`}
    <div class="card"><table>
      <thead><tr><th>pipeline</th><th>schedule</th><th>next run</th><th>last run</th><th></th></tr></thead>
      <tbody>${pipelines.map((p) => html`<tr data-testid="pipeline-row">
        <td><b>${p.name}</b><div class="muted">${p.description || ""}</div></td>
        <td>${p.schedule ? p.schedule.cron : html`<span class="muted">none</span>`}</td>
        <td>${p.next_run_at ? new Date(p.next_run_at).toLocaleString() : ""}</td>
        <td>${p.last_run ? html`<a href="#/runs/${p.last_run.run_id}"><${Badge} status=${p.last_run.status} /></a>` : html`<span class="muted">never</span>`}</td>
        <td><button data-testid="start-${p.name}" disabled=${!can("operator")} onClick=${() => start(p.name)}>Start run</button></td>
      </tr>`)}
      ${pipelines.length === 0 && html`<tr><td colspan="5" class="muted">No pipeline registered: run <code>agent-etl serve pipeline.yaml</code>, or POST its YAML to /api/v1/pipelines.</td></tr>`}
      </tbody></table></div>
    <h1>Runs</h1>
    <div class="card"><table>
      <thead><tr><th>run</th><th>pipeline</th><th>status</th><th>started</th><th class="num">seconds</th><th class="num">rows written</th><th class="num">quarantined</th></tr></thead>
      <tbody>${runs.map((r) => {
        const current = state.runs.get(r.run_id);
        const status = current ? current.status : r.status;
        // The store's times once the run is over, as the run page shows them; the live clock while it runs.
        const duration = current && current.status === "running" && current.started_at ? seconds(current) : (r.seconds ?? (current ? seconds(current) : null));
        return html`<tr data-testid="run-row">
          <td><a href="#/runs/${r.run_id}">${r.run_id}</a></td><td>${r.pipeline}</td><td><${Badge} status=${status} /></td>
          <td>${new Date(r.started_at).toLocaleString()}</td><td class="num">${duration == null ? "" : duration.toFixed(1)}</td>
          <td class="num">${n(r.rows_written)}</td><td class="num">${n(r.rows_quarantined)}</td></tr>`;
      })}</tbody></table></div>`;
}

function Dag({ tasks }) {
  // Layers by longest path from a root; enough for plans, which are shallow (stage -> transform).
  if (!tasks.length) return html`<span class="muted">no tasks: the run stopped before planning</span>`;
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const depth = new Map();
  const level = (t) => {
    if (!depth.has(t.id)) depth.set(t.id, t.depends_on.length ? 1 + Math.max(...t.depends_on.map((d) => (byId.has(d) ? level(byId.get(d)) : 0))) : 0);
    return depth.get(t.id);
  };
  tasks.forEach(level);
  const columns = [];
  tasks.forEach((t) => (columns[depth.get(t.id)] ||= []).push(t));
  const W = 230, H = 46, GX = 60, GY = 12;
  const pos = new Map();
  columns.forEach((col, x) => {
    // A later column sits level with what it depends on, so edges run mostly straight.
    const wanted = (t) => (x === 0 || !t.depends_on.length ? 0 : t.depends_on.reduce((s, d) => s + (pos.get(d)?.y || 0), 0) / t.depends_on.length);
    let next = 10;
    [...col].sort((a, b) => wanted(a) - wanted(b)).forEach((t) => {
      const y = Math.max(next, x === 0 ? next : wanted(t));
      pos.set(t.id, { x: 10 + x * (W + GX), y });
      next = y + H + GY;
    });
  });
  const width = 20 + columns.length * (W + GX) - GX, height = 10 + Math.max(...[...pos.values()].map((p) => p.y + H));
  const color = { succeeded: "#1f8a4c", failed: "#c2352b", running: "#b7791f", cancelled: "#7a4fb5", pending: "#9aa3ad" };
  return html`<svg class="dag" width=${width} height=${height} data-testid="dag">
    ${tasks.flatMap((t) => t.depends_on.filter((d) => pos.has(d)).map((d) => {
      const a = pos.get(d), b = pos.get(t.id);
      return html`<path d="M${a.x + W} ${a.y + H / 2} C ${a.x + W + GX / 2} ${a.y + H / 2}, ${b.x - GX / 2} ${b.y + H / 2}, ${b.x} ${b.y + H / 2}" fill="none" stroke="#b5bdc6" />`;
    }))}
    ${tasks.map((t) => { const p = pos.get(t.id); return html`<g transform="translate(${p.x},${p.y})">
      <rect width=${W} height=${H} rx="5" fill="#fff" stroke=${color[t.status] || "#9aa3ad"} stroke-width="2" />
      <text x="8" y="17" font-weight="600">${t.id.length > 32 ? t.id.slice(0, 31) + "…" : t.id}</text>
      <text x="8" y="35" fill="#68717d">${t.status} · ${n(t.rows)} rows</text></g>`; })}
  </svg>`;
}

function Chart({ points, label }) {
  // points: [[unix seconds, cumulative rows]] -> rows/s between samples.
  const box = useRef(null), plot = useRef(null);
  const xs = [], ys = [];
  for (let i = 1; i < points.length; i++) {
    const dt = points[i][0] - points[i - 1][0];
    xs.push(points[i][0]); ys.push(dt > 0 ? Math.max(0, (points[i][1] - points[i - 1][1]) / dt) : 0);
  }
  useEffect(() => {
    if (!window.uPlot || !box.current) return;
    if (!plot.current) {
      plot.current = new window.uPlot({ width: Math.min(900, box.current.clientWidth || 600), height: 180, series: [{}, { label, stroke: "#2c6bd6", fill: "rgba(44,107,214,.12)" }], axes: [{}, { size: 90, values: (u, v) => v.map((x) => fmt.format(x)) }] }, [xs, ys], box.current);
    } else plot.current.setData([xs, ys]);
  });
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return html`<div ref=${box} data-testid="throughput-chart"></div>`;
}

function RunPage({ runId }) {
  const state = useLive();
  const [record, setRecord] = useState(null);
  const [error, setError] = useState(null);
  const current = state.runs.get(runId);
  const finished = current ? current.status !== "running" : null;
  const alertsSeen = (state.alerts || []).filter((a) => a.run_id === runId).length; // alerts are stored just after the run ends
  useEffect(() => { api(`/runs/${runId}`).then(setRecord).catch((e) => setError(e.message)); }, [runId, finished, alertsSeen]);
  if (error) return html`<div class="card error">${error}</div>`;
  const run = current && current.tasks.length ? current : record;
  if (!run) return html`<p class="muted">Loading run ${runId}…</p>`;
  const detail = record || {};
  const written = (run.commits || []).reduce((s, c) => s + c.rows, 0);
  const quarantined = (run.commits || []).reduce((s, c) => s + c.quarantined_rows, 0);
  const read = run.tasks.filter((t) => t.reads_source).reduce((s, t) => s + (t.rows || 0), 0); // from sources, as the API and /metrics count
  const rate = run.tasks.filter((t) => t.status === "running").reduce((s, t) => s + (t.rows_per_second || 0), 0);
  // Once the run is over, its recorded times (the run list's too), not the clock of the events seen.
  const duration = run.status !== "running" && detail.seconds != null ? detail.seconds : seconds(run);
  const cancel = () => api(`/runs/${runId}/cancel`, { method: "POST" }).catch((e) => setError(e.message));
  const resume = () => api(`/runs/${runId}/resume`, { method: "POST" }).catch((e) => setError(e.message));
  return html`
    <h1>Run <code>${runId}</code> · ${run.pipeline} <${Badge} status=${run.status} /></h1>
    <div class="card stats" data-testid="run-summary" data-status=${run.status}>
      <div class="stat"><div class="v" data-testid="rows-read">${n(read)}</div><div class="k">rows read</div></div>
      <div class="stat"><div class="v" data-testid="rows-written">${n(written)}</div><div class="k">rows written (committed)</div></div>
      <div class="stat"><div class="v" data-testid="rows-quarantined">${n(quarantined)}</div><div class="k">rows quarantined</div></div>
      <div class="stat"><div class="v" data-testid="rows-per-second-now">${run.status === "running" ? n(rate) : "–"}</div><div class="k">rows/s now</div></div>
      <div class="stat"><div class="v" data-testid="run-seconds">${duration == null ? "–" : duration.toFixed(1)}</div><div class="k">seconds</div></div>
      ${run.status === "running" && html`<div><button class="secondary" disabled=${!can("operator")} onClick=${cancel}>Cancel</button></div>`}
      ${["failed", "cancelled", "partial"].includes(run.status) && html`<div><button data-testid="resume" disabled=${!can("operator")} onClick=${resume}>Resume</button></div>`}
    </div>
    ${run.error && html`<div class="card error" data-testid="run-error">${run.error}</div>`}
    <h2>Plan</h2><div class="card"><${Dag} tasks=${run.tasks} /></div>
    <h2>Tasks</h2>
    <div class="card"><table>
      <thead><tr><th>task</th><th>kind</th><th>agent</th><th>status</th><th class="num">rows</th><th class="num">rows/s</th><th class="num">written</th><th class="num">quarantined</th><th class="num">attempt</th></tr></thead>
      <tbody>${run.tasks.map((t) => html`<tr data-testid="task-row" data-task=${t.id} data-status=${t.status} data-rows=${t.rows || 0}>
        <td>${t.id}</td><td>${t.kind}</td><td>${t.agent || ""}</td><td><${Badge} status=${t.status} /></td>
        <td class="num" data-testid="task-rows">${n(t.rows)}</td><td class="num">${n(t.rows_per_second)}</td>
        <td class="num">${n(t.rows_written)}</td><td class="num">${n(t.rows_quarantined)}</td><td class="num">${t.attempt || ""}</td></tr>`)}</tbody>
    </table></div>
    ${(detail.errors || []).length > 0 && html`<h2>Errors</h2><div class="card">${detail.errors.map((e) => html`<div data-testid="task-error">
      <div><b>${e.task_id}</b> (attempt ${e.attempt}) · ${e.error_type}</div><div class="error">${e.message}</div><div class="hint">How to fix: ${e.fix_hint}</div></div>`)}</div>`}
    <h2>Quality</h2>
    <div class="card">${(detail.quality || []).length === 0 ? html`<span class="muted">${run.status === "running" ? "checks report when their task finishes" : "no checks in this pipeline"}</span>` : html`<table>
      <thead><tr><th>task</th><th>check</th><th class="num">rows checked</th><th class="num">failed</th><th>threshold</th><th>verdict</th></tr></thead>
      <tbody>${detail.quality.map((q) => html`<tr><td>${q.task_id}</td><td>${q.check}</td><td class="num">${n(q.rows_checked)}</td><td class="num">${n(q.rows_failed)}</td><td>${q.threshold ?? ""}</td><td><${Badge} status=${q.passed ? "succeeded" : "failed"} /></td></tr>`)}</tbody></table>`}</div>
    ${(detail.alerts || []).length > 0 && html`<h2>Alerts</h2><div class="card">${detail.alerts.map((a) => html`<div class="alert ${a.severity}"><b>${a.rule}</b>: ${a.summary}</div>`)}</div>`}
    <h2>Decisions</h2>
    <div class="card"><ol class="timeline" data-testid="decisions">${run.decisions.map((d) => html`<li>
      <span class="muted">${d.at ? new Date(d.at).toLocaleTimeString() : ""} · ${d.by || d.sender}</span> · <b>${d.subject}</b>: ${d.choice} <span class="muted">— ${d.reason}</span></li>`)}</ol></div>`;
}

function AgentsPage() {
  const state = useLive();
  const [agents, setAgents] = useState([]);
  useEffect(() => { const load = () => api("/agents").then(setAgents).catch(() => {}); load(); const timer = setInterval(load, 2000); return () => clearInterval(timer); }, []);
  return html`
    <h1>Agents</h1>
    <div class="card"><table>
      <thead><tr><th>agent</th><th>role</th><th>status</th><th>load</th><th class="num">heartbeat age s</th><th class="num">CPU %</th><th class="num">RSS MB</th><th>capabilities</th></tr></thead>
      <tbody>${agents.map((a) => html`<tr data-testid="agent-row">
        <td><b>${a.name}</b></td><td>${a.role}</td><td><${Badge} status=${a.status} /></td>
        <td><div class="bar" title="${a.load}/${a.capacity}"><div style="width:${(100 * a.load) / Math.max(1, a.capacity)}%"></div></div>${a.load}/${a.capacity}</td>
        <td class="num">${a.heartbeat_age_seconds.toFixed(1)}</td><td class="num">${a.cpu_percent == null ? "off" : a.cpu_percent.toFixed(0)}</td><td class="num">${a.rss_bytes == null ? "off" : n(a.rss_bytes / 1048576)}</td>
        <td class="muted">${a.capabilities.join(", ")}</td></tr>`)}</tbody></table>
      <p class="muted">Agents in one process (the embedded runtime) share its CPU and memory, so they show the same figures.</p></div>
    <h2>Throughput, all runs (rows read per second)</h2>
    <div class="card"><${Chart} points=${state.series} label="rows/s" /></div>
    ${(state.alerts || []).length > 0 && html`<h2>Recent alerts</h2><div class="card">${state.alerts.map((a) => html`<div class="alert ${a.severity}"><b>${a.rule}</b>: ${a.summary}</div>`)}</div>`}`;
}

function App() {
  const state = useLive();
  const [route, setRoute] = useState(location.hash);
  useEffect(() => { const on = () => setRoute(location.hash); addEventListener("hashchange", on); return () => removeEventListener("hashchange", on); }, []);
  const match = route.match(/^#\/runs\/(.+)$/);
  const page = match ? html`<${RunPage} runId=${decodeURIComponent(match[1])} />` : route === "#/agents" ? html`<${AgentsPage} />` : html`<${RunsPage} />`;
  return html`
    <header><span class="brand">agent-etl</span>
      <a href="#/" class=${!match && route !== "#/agents" ? "active" : ""}>Runs</a>
      <a href="#/agents" class=${route === "#/agents" ? "active" : ""}>Agents</a>
      <a href="/docs">API</a><a href="/metrics">Metrics</a>
      <span class="conn" data-testid="connection">${state.connected ? "● live" : `○ ${state.closeReason || "connecting"}`}</span></header>
    <main>${!session.holder && html`<${TokenBox} />`}${page}</main>`;
}

async function main() {
  localStorage.removeItem("agent-etl-token"); // where versions before the session cookie kept the token
  if (location.hash.startsWith("#token=")) {
    const token = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, "", location.pathname + "#/");
    await signIn(token);
  }
  await whoAmI();
  const root = document.getElementById("app");
  root.textContent = ""; // Preact appends to what is there: drop the "Loading" placeholder
  render(html`<${App} />`, root);
  connect();
}
main();
