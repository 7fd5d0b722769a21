// The dashboard's live layer: WebSockets for pushes, the JSON API for tables. No build step.
(function () {
  "use strict";
  const page = document.body.dataset.page;
  const token = document.body.dataset.token;
  const $ = (id) => document.getElementById(id);
  const fmt = (v, digits = 0) => v === null || v === undefined || v === "" ? "–" :
    Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const cls = (v) => Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : "";
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const api = (path) => fetch(path, { headers, credentials: "same-origin" }).then((r) => r.ok ? r.json() : Promise.reject(r.status));
  const cookie = (name) => (document.cookie.split("; ").find((c) => c.startsWith(name + "=")) || "").split("=")[1];
  let state = { kill: null };

  function socket(path, onMessage) {
    let delay = 500;
    const open = () => {
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
      const ws = token ? new WebSocket(url, ["kimp.token." + token]) : new WebSocket(url);
      ws.onopen = () => { delay = 500; $("conn").textContent = "live"; $("conn").className = "conn ok"; };
      ws.onmessage = (e) => onMessage(JSON.parse(e.data));
      ws.onclose = () => { $("conn").textContent = "reconnecting…"; $("conn").className = "conn"; setTimeout(open, delay); delay = Math.min(delay * 2, 10000); };
    };
    open();
  }

  function onMetrics(msg) {
    if (msg.type !== "metrics") return;
    state.kill = msg.kill_switch;
    const halt = $("halt");
    halt.hidden = !(msg.kill_switch || msg.circuit_breaker);
    halt.textContent = msg.kill_switch ? "KILL SWITCH ENGAGED" : msg.circuit_breaker ? "CIRCUIT BREAKER" : "";
    if (page !== "overview") return;
    const m = msg.metrics || {};
    for (const key of ["equity", "available_balance", "daily_loss", "flows", "realized", "unrealized"]) $(key).textContent = fmt(m[key]);
    $("pnl_total").textContent = fmt(m.pnl_total); $("pnl_total").className = "big " + cls(m.pnl_total);
    for (const key of ["trades_today", "positions_count", "orders_count"]) $(key).textContent = fmt(m[key]);
    $("pnl_today").textContent = fmt(msg.pnl_today); $("pnl_today").className = "big " + cls(msg.pnl_today);
    $("daily_loss_bar").value = Number(m.daily_loss || 0);
    $("trades_bar").value = Number(m.trades_today || 0);
    $("kill_state").textContent = msg.kill_switch ? "ENGAGED — no new pairs" : "released";
    $("kill_state").className = "big " + (msg.kill_switch ? "neg" : "pos");
    const button = $("kill_button");
    if (button) { button.textContent = msg.kill_switch ? "Release kill switch" : "Engage kill switch"; button.className = msg.kill_switch ? "safe" : "danger"; }
    const b = msg.circuit_breaker;
    $("breaker_state").textContent = b ? `tripped (${b.seconds_left} s left): ${b.reason}` : "armed";
    $("breaker_state").className = "big " + (b ? "neg" : "pos");
    const now = Date.now();
    $("health").querySelector("tbody").innerHTML = Object.entries(msg.heartbeats || {}).sort().map(([name, at]) => {
      const age = at ? (now - Date.parse(at)) / 1000 : null;
      const bad = age === null || age > 15;
      return `<tr><td>${name}</td><td class="${bad ? "neg" : "pos"}">${age === null ? "silent" : age.toFixed(1) + " s ago"}</td></tr>`;
    }).join("");
    $("balances").querySelector("tbody").innerHTML = (msg.balances || []).map(([venue, asset, amount]) =>
      `<tr><td>${venue}</td><td>${asset}</td><td>${fmt(amount, asset === "KRW" ? 0 : 8)}</td></tr>`).join("");
    $("rebalance").innerHTML = (msg.rebalance || []).length ? msg.rebalance.map((s) => `<li class="warn">${s.message}</li>`).join("") : "<li>none</li>";
  }

  function wireKillSwitch() {
    const button = $("kill_button");
    if (!button) return;
    button.addEventListener("click", async () => {
      const engage = !state.kill;
      const flatten = engage && $("kill_flatten").checked;
      if (!window.confirm(engage ? "Engage the kill switch? No new pairs will be sent." + (flatten ? " Open positions will be closed." : "") : "Release the kill switch and resume trading?")) return;
      const response = await fetch("/control/kill-switch", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": cookie("csrftoken") },
        body: JSON.stringify({ engaged: engage, reason: "dashboard", flatten }),
      });
      if (!response.ok) window.alert("The kill switch did not change: HTTP " + response.status);
    });
  }

  // --- premium board ---------------------------------------------------------------------
  let sortKey = "premium_pct", sortDir = -1;
  const sparks = {};
  async function refreshBoard() {
    const rows = await api("/premiums");
    rows.sort((a, b) => {
      const x = a[sortKey], y = b[sortKey];
      return (isNaN(Number(x)) ? String(x).localeCompare(String(y)) : Number(x) - Number(y)) * sortDir;
    });
    const body = $("board").querySelector("tbody");
    const existing = Object.fromEntries([...body.rows].map((r) => [r.dataset.symbol, r]));
    for (const p of rows) {
      let row = existing[p.symbol];
      if (!row) {
        row = body.insertRow();
        row.dataset.symbol = p.symbol;
        row.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td><td><canvas class='spark'></canvas></td>";
      }
      body.appendChild(row);
      const cells = row.cells;
      cells[0].textContent = p.symbol;
      cells[1].textContent = fmt(p.premium_pct, 3); cells[1].className = cls(p.premium_pct);
      cells[2].textContent = fmt(p.net_binance_to_upbit, 3); cells[2].className = cls(p.net_binance_to_upbit);
      cells[3].textContent = fmt(p.net_upbit_to_binance, 3); cells[3].className = cls(p.net_upbit_to_binance);
      cells[4].textContent = fmt(p.upbit_mid, 2);
      cells[5].textContent = fmt(p.binance_mid, 6);
      $("fx_rate").textContent = fmt(p.fx_rate, 2);
    }
  }
  async function refreshSparks() {
    if (!window.Chart) return;
    for (const row of $("board").querySelector("tbody").rows) {
      const symbol = row.dataset.symbol;
      const data = await api(`/premiums/${symbol}/history`);
      const points = data.points.map(([t, v]) => ({ x: t * 1000, y: Number(v) }));
      if (!sparks[symbol]) {
        sparks[symbol] = new Chart(row.querySelector("canvas"), {
          type: "line", data: { datasets: [{ data: points, borderWidth: 1, pointRadius: 0, borderColor: "#58a6ff" }] },
          options: { animation: false, responsive: false, plugins: { legend: { display: false }, tooltip: { enabled: false } },
                     scales: { x: { type: "linear", display: false }, y: { display: false } } },
        });
      } else { sparks[symbol].data.datasets[0].data = points; sparks[symbol].update("none"); }
    }
  }

  // --- activity ------------------------------------------------------------------------------
  let pnlChart = null;
  async function refreshActivity() {
    const [positions, signals, executions, orders] = await Promise.all([
      api("/positions"), api("/signals?history=true&limit=50"), api("/executions?limit=500"), api("/orders?limit=50")]);
    const t = (iso) => new Date(iso).toLocaleTimeString();
    $("positions").querySelector("tbody").innerHTML = positions.map((p) =>
      `<tr><td>${p.symbol}</td><td>${p.side}</td><td>${fmt(p.quantity, 8)}</td><td>${fmt(p.entry_price)}</td><td>${fmt(p.current_price)}</td><td class="${cls(p.pnl)}">${fmt(p.pnl)}</td><td class="${cls(p.pnl_pct)}">${fmt(p.pnl_pct, 3)}</td></tr>`).join("");
    $("signals").querySelector("tbody").innerHTML = signals.map((s) =>
      `<tr><td>${t(s.timestamp)}</td><td>${s.symbol}</td><td>${s.buy_exchange} → ${s.sell_exchange}</td><td>${fmt(s.quantity, 8)}</td><td>${fmt(s.net_spread_pct, 3)}</td><td class="${s.outcome === "executed" ? "pos" : "neg"}">${s.outcome}</td><td>${s.reason || ""}</td></tr>`).join("");
    $("executions").querySelector("tbody").innerHTML = executions.slice(0, 50).map((e) =>
      `<tr><td>${t(e.timestamp)}</td><td>${e.symbol}</td><td>${fmt(e.quantity, 8)}</td><td>${fmt(e.buy_price)}</td><td>${fmt(e.sell_price)}</td><td>${fmt(e.gross_pnl)}</td><td>${fmt(e.fees)}</td><td class="${cls(e.net_pnl)}">${fmt(e.net_pnl)}</td><td class="${cls(e.pnl_pct)}">${fmt(e.pnl_pct, 3)}</td></tr>`).join("");
    $("orders").querySelector("tbody").innerHTML = orders.map((o) =>
      `<tr><td>${t(o.created_at)}</td><td>${o.exchange}</td><td>${o.symbol}</td><td>${o.side}</td><td>${fmt(o.quantity, 8)}</td><td>${fmt(o.filled_quantity, 8)}</td><td>${fmt(o.price, 4)}</td><td>${o.status}</td></tr>`).join("");
    if (window.Chart) {
      let total = 0;
      const points = executions.slice().reverse().map((e) => ({ x: Date.parse(e.timestamp), y: (total += Number(e.net_pnl)) }));
      if (!pnlChart) {
        pnlChart = new Chart($("pnl_chart"), { type: "line", data: { datasets: [{ data: points, borderColor: "#3fb950", pointRadius: 0 }] },
          options: { animation: false, plugins: { legend: { display: false } }, scales: { x: { type: "linear", ticks: { callback: (v) => new Date(v).toLocaleTimeString() } } } } });
      } else { pnlChart.data.datasets[0].data = points; pnlChart.update("none"); }
    }
  }

  // --- equity and the day's decomposition (docs/ACCOUNTING.md) ----------------------------
  let equityChart = null;
  async function refreshEquity() {
    const [pnl, history] = await Promise.all([api("/pnl"), api("/equity/history?limit=1000")]);
    const d = pnl.today;
    const rows = [["trading (pairs closed)", d.trading], ["· spread captured", d.spread_captured], ["· slippage vs signal", d.slippage],
                  ["· hedges", d.hedges], ["· fees", d.fees], ["FX revaluation", d.fx], ["inventory revaluation", d.inventory],
                  ["PnL today", d.pnl]];
    $("decomposition").querySelector("tbody").innerHTML = rows.map(([name, v]) =>
      `<tr><td>${name}</td><td class="${cls(v)}">${fmt(v)}</td></tr>`).join("");
    if (!window.Chart) return;
    const points = history.map((p) => ({ x: Date.parse(p.timestamp), y: Number(p.equity) }));
    if (!equityChart) {
      equityChart = new Chart($("equity_chart"), { type: "line", data: { datasets: [{ data: points, borderColor: "#58a6ff", pointRadius: 0 }] },
        options: { animation: false, plugins: { legend: { display: false } }, scales: { x: { type: "linear", ticks: { callback: (v) => new Date(v).toLocaleTimeString() } } } } });
    } else { equityChart.data.datasets[0].data = points; equityChart.update("none"); }
  }

  socket("/ws/metrics", onMetrics);
  if (page === "overview") { wireKillSwitch(); refreshEquity().catch(() => {}); setInterval(() => refreshEquity().catch(() => {}), 5000); }
  if (page === "board") {
    document.querySelectorAll("#board th[data-key]").forEach((th) => th.addEventListener("click", () => {
      sortDir = sortKey === th.dataset.key ? -sortDir : -1; sortKey = th.dataset.key; refreshBoard();
    }));
    refreshBoard(); setInterval(refreshBoard, 1000);
    setTimeout(refreshSparks, 500); setInterval(refreshSparks, 10000);
  }
  if (page === "activity") {
    refreshActivity(); setInterval(refreshActivity, 2000);
    socket("/ws/signals", (msg) => { if (msg.type === "execution") refreshActivity(); });
  }
})();
