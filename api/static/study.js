/* Study page: plots (figures come shaped from the server), learning-curve selection,
   coarse-to-fine regions, controls, the enqueue form, and live updates while trials run. */
"use strict";
(() => {
  const cfg = hp.config();
  const sid = cfg.study_id;
  const $ = (id) => document.getElementById(id);
  const selected = new Set();
  let state = cfg.state;
  let bestId = cfg.best_id;
  let lastEnded = null;
  let plotsEnded = null; // how many ended trials the drawn plots were made from
  let refreshedFor = null;
  let family = "";
  let regions = null;
  let paramFigures = [];
  let historyFigure = null;

  // -- plots --------------------------------------------------------------------------------
  // Every plot is first shown as a poster: a static SVG the server draws at the plot's size
  // (api/views/poster.py), there as soon as one small request returns. Plotly, whose bundle
  // takes about a second to parse without a code cache and a tenth of a second or more per
  // plot, loads after the posters are on screen and draws each plot over its poster, one per
  // task, in the page's order, so the page answers clicks and scrolls between them.

  // Asked for at once: the figures arrive while the posters are drawn and Plotly parses.
  let plotPoints = 0; // 0: the server's first-paint sample; more once the reader asks
  const plotsUrl = () => `/studies/${sid}/plots.json${plotPoints ? `?points=${plotPoints}` : ""}`;
  let earlyPlots = hp.get(plotsUrl());
  let earlyCurves = hp.get(`/studies/${sid}/curves.json?selected=&family=`);
  let plotsAt = 0;
  let plotsCost = 0;
  let plotsPending = null;
  let drawChain = Promise.resolve();

  /** Runs `draw` in a task of its own, after the draws queued before it. */
  function queueDraw(draw) {
    drawChain = drawChain
      .then(() => new Promise((resolve) => setTimeout(resolve, 0)))
      .then(draw)
      .catch((err) => console.warn("plot failed", err));
    return drawChain;
  }

  // -- posters: the plots as the server draws them, shown before Plotly is loaded ---------

  const posterSlots = () => ({
    history: $("plot-history"),
    curves: $("plot-curves"),
    importance: $("plot-importance"),
    parallel: $("plot-parallel"),
    contour: $("plot-contour"),
    edf: $("plot-edf"),
    timeline: $("plot-timeline"),
    param: document.querySelector("#param-plots .plot"),
  });

  async function showPosters() {
    const sizes = Object.entries(posterSlots())
      .filter(([, el]) => el && el.clientWidth > 0)
      .map(([name, el]) => `${name}:${el.clientWidth}x${el.clientHeight}`);
    const result = await hp.get(`/studies/${sid}/posters?sizes=${sizes.join(",")}`);
    if (!result.ok) return;
    const d = result.data;
    const put = (el, svg) => {
      // Plotly, or an empty plot's note, may have got there first.
      if (!el || !svg || el.classList.contains("js-plotly-plot") || el.querySelector(".empty-plot")) return;
      el.innerHTML = svg;
    };
    const slots = posterSlots();
    for (const name of ["history", "curves", "importance", "parallel", "contour", "edf", "timeline"]) {
      put(slots[name], d[name]);
    }
    for (const el of document.querySelectorAll("#param-plots .plot")) put(el, d.params[el.dataset.param]);
  }

  // A point of a poster selects its trial's learning curve, as it will once Plotly has drawn:
  // the nearest marker within 8 px. A trace's markers are one path, "M x,y" at each centre,
  // its trials listed in the same order (api/views/poster.py).
  document.addEventListener("click", (event) => {
    const svg = event.target.closest("svg.poster");
    if (!svg) return;
    const box = svg.getBoundingClientRect();
    const [x, y] = [event.clientX - box.left, event.clientY - box.top];
    let nearest = null;
    let distance = 64;
    for (const marks of svg.querySelectorAll("path[data-ids]")) {
      const ids = marks.dataset.ids.split(" ");
      const centres = marks.getAttribute("d").matchAll(/M(-?[\d.]+),(-?[\d.]+)/g);
      let k = 0;
      for (const [, cx, cy] of centres) {
        const d = (cx - x) ** 2 + (cy - y) ** 2;
        if (d < distance) [distance, nearest] = [d, ids[k]];
        k += 1;
      }
    }
    if (nearest !== null) toggle(Number(nearest));
  });

  /** Loads Plotly once the posters are on screen (the frame after they were put in). */
  async function loadPlotly() {
    try {
      await showPosters();
    } finally {
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      hp.loadPlotly(cfg.plotly_src);
    }
  }

  async function loadPlots() {
    const started = performance.now();
    const result = await (earlyPlots || hp.get(plotsUrl()));
    earlyPlots = null;
    plotsCost = performance.now() - started;
    plotsAt = Date.now();
    if (!result.ok) return;
    const d = result.data;
    plotsEnded = d.ended;
    const failed = d.failed ? ` · ${hp.count(d.failed)} failed (no value)` : "";
    $("history-note").textContent = d.shown < d.valued
      ? `showing ${hp.count(d.shown)} of ${hp.count(d.valued)} trials (the best, and a spread of the rest); the best-so-far line uses all${failed}`
      : `${hp.count(d.valued)} trials with a value${failed}`;
    const more = $("more-points");
    more.hidden = !(d.shown < d.valued && d.shown < d.more && plotPoints < d.more);
    more.dataset.points = Math.min(d.more, d.valued);
    more.textContent = `draw up to ${hp.count(Number(more.dataset.points))}`;
    historyFigure = d.valued ? d.history : null;
    if (historyFigure) await drawHistory();
    else hp.emptyPlot($("plot-history"), "No trial has a value yet.");
    bindClicks($("plot-history"));
    paramFigures = d.params;
    drawParams();
    $("importance-note").textContent = d.importance_note;
    const lines = d.parallel ? d.parallel.layout.meta.lines : 0;
    $("parallel-note").textContent = lines < d.completed
      ? `${hp.count(lines)} of ${hp.count(d.completed)} completed trials (the best, and a spread of the rest)`
      : `${hp.count(lines)} completed trials`;
    $("edf-note").textContent = d.edf
      ? `${hp.count(d.edf.layout.meta.trials)} feasible completed trials` : "";
    // Parallel coordinates are drawn as SVG lines; their WebGL form, whose axes filter,
    // takes seconds to set up without a GPU, so it is drawn when the reader asks for it.
    const brush = $("parallel-brush");
    brush.hidden = !d.parallel || parallelBrushed;
    $("parallel-how").hidden = !parallelBrushed;
    parallelFigure = d.parallel;
    // In the page's order, top to bottom.
    queueDraw(() => d.importance
      ? hp.plot($("plot-importance"), d.importance)
      : hp.emptyPlot($("plot-importance"), `Importance: ${d.importance_note}. Below that,`
        + " a parameter's share is about as uncertain as the share itself."));
    queueDraw(async () => {
      await firstCurves;
      const figure = parallelBrushed ? d.parallel : d.parallel_lines;
      if (figure) await hp.plot($("plot-parallel"), figure);
      else hp.emptyPlot($("plot-parallel"), "Shown once two trials have completed.");
    });
    queueDraw(drawContour);
    queueDraw(() => d.edf ? hp.plot($("plot-edf"), d.edf)
      : hp.emptyPlot($("plot-edf"), "Shown once two feasible trials have completed."));
    queueDraw(drawTimeline);
    // What a refresh costs counts the drawing: a running study's page redraws at most a
    // sixth of the time (refreshPlotsSoon).
    drawChain.then(() => { plotsCost = performance.now() - started; });
  }

  async function drawContour() {
    const query = new URLSearchParams({ x: $("contour-x").value, y: $("contour-y").value });
    const result = await hp.get(`/studies/${sid}/contour.json?${query}`);
    const el = $("plot-contour");
    if (!result.ok) return hp.emptyPlot(el, hp.errorText(result));
    const figure = result.data.figure;
    if (!figure) return hp.emptyPlot(el, "Shown once two feasible trials have completed.");
    // A square per cell, the larger of a cell's width and height, so neighbours touch rather
    // than leave gaps. Sized from the plot's margins and its colour bar (about 60 px) first;
    // drawn again only if the axes Plotly laid out are much other than that.
    const [nx, ny] = figure.layout.meta.bins;
    const cell = (width, height) => Math.max(2, width / (nx + 0.8), height / (ny + 0.8));
    const m = figure.layout.margin;
    const guess = cell(el.clientWidth - m.l - m.r - 60, el.clientHeight - m.t - m.b);
    figure.data[0].marker.size = guess;
    await hp.plot(el, figure);
    const size = cell(el._fullLayout.xaxis._length, el._fullLayout.yaxis._length);
    if (Math.abs(size - guess) > 0.1 * guess) {
      await window.Plotly.restyle(el, { "marker.size": size }, [0]);
    }
  }
  for (const id of ["contour-x", "contour-y"]) {
    $(id).addEventListener("change", () => queueDraw(drawContour));
  }

  async function drawTimeline() {
    const result = await hp.get(`/studies/${sid}/timeline.json`);
    if (!result.ok) return;
    const t = result.data;
    $("timeline-note").textContent = t.shown < t.started
      ? `the ${hp.count(t.shown)} trials that started last, of ${hp.count(t.started)}`
      : `${hp.count(t.shown)} trials`;
    if (t.figure) await hp.plot($("plot-timeline"), t.figure);
    else hp.emptyPlot($("plot-timeline"), "No trial has started yet.");
  }

  /** Refreshes plots when trials end, but never busier than 5× what a refresh costs. */
  function refreshPlotsSoon() {
    if (plotsPending) return false;
    const wait = Math.max(0, plotsAt + Math.max(2000, 5 * plotsCost) - Date.now());
    plotsPending = setTimeout(async () => {
      try {
        await loadPlots();
      } finally {
        plotsPending = null;
      }
    }, wait);
    return true;
  }

  function drawParams() {
    const grid = $("param-plots");
    for (const figure of paramFigures) {
      const name = figure.layout.meta.param;
      let el = grid.querySelector(`[data-param="${CSS.escape(name)}"]`);
      if (!el) {
        el = document.createElement("div");
        el.className = "plot small";
        el.dataset.param = name;
        grid.appendChild(el);
      }
      queueDraw(async () => {
        figure.layout.shapes = regionShapes(figure.layout.meta);
        await hp.plot(el, withGroups(figure));
        bindClicks(el);
      });
    }
  }

  let parallelBrushed = false;
  let parallelFigure = null;
  $("parallel-brush").addEventListener("click", (event) => {
    event.currentTarget.hidden = true;
    parallelBrushed = true;
    $("parallel-how").hidden = false;
    queueDraw(async () => {
      const el = $("plot-parallel");
      window.Plotly.purge(el);
      await hp.plot(el, parallelFigure);
    });
  });

  $("more-points").addEventListener("click", (event) => {
    event.currentTarget.hidden = true;
    plotPoints = Math.max(100, Number(event.currentTarget.dataset.points));
    loadPlots();
  });

  function drawHistory() {
    historyFigure.layout.shapes = roundMarks();
    return hp.plot($("plot-history"), withGroups(historyFigure));
  }

  // -- groups a reader hides (the legend chips) ---------------------------------------------

  const hidden = new Set();
  const groupOf = (name) => name.startsWith("feasible (") ? "feasible"
    : name.startsWith("broke ") ? "infeasible"
      : name.startsWith("pruned") ? "pruned"
        : name === "best feasible" ? "best" : null;

  /** The figure with the hidden groups' traces hidden (still listed in a legend). */
  function withGroups(figure) {
    for (const trace of figure.data) {
      const group = trace.name ? groupOf(trace.name) : null;
      if (group) trace.visible = hidden.has(group) ? "legendonly" : true;
    }
    return figure;
  }

  document.querySelector(".legend-chips").addEventListener("click", (event) => {
    const chip = event.target.closest("button[data-group]");
    if (!chip) return;
    const group = chip.dataset.group;
    if (hidden.has(group)) hidden.delete(group);
    else hidden.add(group);
    chip.setAttribute("aria-pressed", String(!hidden.has(group)));
    for (const el of [$("plot-history"), ...document.querySelectorAll("#param-plots .plot")]) {
      if (!el.data) continue;
      const shown = el.data.map((t) => {
        const g = t.name ? groupOf(t.name) : null;
        return g ? (hidden.has(g) ? "legendonly" : true) : (t.visible ?? true);
      });
      queueDraw(() => window.Plotly.restyle(el, { visible: shown }));
    }
  });

  function bindClicks(el) {
    if (!el || el.dataset.bound || !el.on) return;
    el.dataset.bound = "1";
    el.on("plotly_click", (event) => {
      const point = event.points && event.points[0];
      if (point && point.customdata != null) toggle(Number(point.customdata));
    });
  }

  // -- coarse-to-fine regions ---------------------------------------------------------------

  async function loadRegions() {
    if (!cfg.regions_url) return;
    const result = await hp.get(cfg.regions_url);
    if (!result.ok) return;
    regions = normalizeRegions(result.data);
    $("regions-key").hidden = !regions.length;
    if (regions.length) {
      drawParams();
      if (historyFigure) queueDraw(drawHistory);
    }
  }

  /** Accepts [{round, params: {name: {low, high} | [low, high] | {choices}}}] or {rounds: …}. */
  function normalizeRegions(body) {
    const rounds = Array.isArray(body) ? body : (body && (body.rounds || body.regions)) || [];
    return rounds.map((r, i) => ({
      round: r.round ?? r.index ?? i + 1,
      first: r.first_trial,
      last: r.last_trial,
      params: r.params || r.region || r.bounds || r.space || {},
    }));
  }

  function extent(entry) {
    if (entry == null) return null;
    if (Array.isArray(entry)) return { low: entry[0], high: entry[1] };
    if (Array.isArray(entry.choices)) return { choices: entry.choices };
    if (Array.isArray(entry.values)) return { low: entry.values[0], high: entry.values[1] };
    const low = entry.low ?? entry.lo ?? entry.min;
    const high = entry.high ?? entry.hi ?? entry.max;
    return low != null && high != null ? { low, high } : null;
  }

  /** A dashed line where each coarse-to-fine round after the first begins. */
  function roundMarks() {
    if (!regions) return [];
    return regions.filter((r) => r.round > 1 && r.first != null).map((r) => ({
      type: "line", xref: "x", yref: "paper", x0: r.first - 0.5, x1: r.first - 0.5, y0: 0, y1: 1,
      layer: "below", line: { color: "#CC79A7", width: 1.5, dash: "dash" },
      label: { text: `round ${r.round}`, textposition: "start", yanchor: "top",
        font: { size: 10, color: "#8b3a6b" } },
    }));
  }

  function regionShapes(meta) {
    if (!regions || !meta) return [];
    const shapes = [];
    const n = regions.length;
    regions.forEach((r, i) => {
      const e = extent(r.params[meta.param]);
      if (!e) return;
      const style = {
        type: "rect", xref: "x", yref: "paper", y0: 0, y1: 1, layer: "below",
        fillcolor: `rgba(204,121,167,${(0.06 + 0.1 * (i + 1) / n).toFixed(3)})`,
        line: { color: "#CC79A7", width: 1, dash: "dot" },
      };
      if (e.choices) {
        // Choice k sits at x = k; shade the kept ones.
        for (const c of e.choices) {
          const k = (meta.choices || []).map(String).indexOf(String(c));
          if (k >= 0) shapes.push({ ...style, x0: k - 0.45, x1: k + 0.45 });
        }
        return;
      }
      const levels = meta.choices || [];
      if (levels.length) {
        // An int drawn as levels: its k-th value sits at x = k.
        const at = (v) => levels.findIndex((l) => Number(l) >= Number(v) - 1e-9);
        const [i, j] = [at(e.low), at(e.high)];
        if (i >= 0 && j >= 0) shapes.push({ ...style, x0: i - 0.45, x1: j + 0.45 });
        return;
      }
      let [a, b] = [Number(e.low), Number(e.high)];
      // Shapes take data values on log axes too (unlike annotations); the reverse-log
      // axis plots 1 - value.
      if (meta.scale === "reverse_log") [a, b] = [1 - b, 1 - a];
      const shape = { ...style, x0: a, x1: b };
      // Only the latest round is labelled: nested regions would print on top of each other.
      if (i === n - 1) {
        shape.label = { text: `round ${r.round}`, textposition: "top left",
          font: { size: 10, color: "#8b3a6b" } };
      }
      shapes.push(shape);
    });
    return shapes;
  }

  // -- learning curves ----------------------------------------------------------------------

  async function loadCurves() {
    const query = new URLSearchParams({ selected: [...selected].join(","), family });
    const early = String(query) === "selected=&family=" ? earlyCurves : null;
    earlyCurves = null;
    const result = await (early || hp.get(`/studies/${sid}/curves.json?${query}`));
    if (!result.ok) return;
    const d = result.data;
    const select = $("curve-family");
    const options = d.families.join(",");
    if (select.dataset.options !== options) {
      select.innerHTML = "";
      for (const name of d.families) select.add(new Option(name.replace(/_/g, " "), name));
      select.dataset.options = options;
    }
    if (d.family) select.value = d.family;
    if (d.figure.data.length) {
      await hp.plot($("plot-curves"), d.figure);
      bindClicks($("plot-curves"));
    } else {
      hp.emptyPlot($("plot-curves"), "No trial has reported a step yet.");
    }
  }

  function toggle(id) {
    if (selected.has(id)) selected.delete(id);
    else selected.add(id);
    syncChecks();
    loadCurves();
  }

  function syncChecks() {
    for (const box of document.querySelectorAll("input.pick")) {
      box.checked = selected.has(Number(box.dataset.id));
    }
  }

  document.addEventListener("change", (event) => {
    if (event.target.matches("input.pick")) toggle(Number(event.target.dataset.id));
  });
  $("curve-family").addEventListener("change", (event) => {
    family = event.target.value;
    loadCurves();
  });

  // -- live updates -------------------------------------------------------------------------

  const parts = { progress: "progress", best: "best", diagnosis: "diagnosis", trials: "trials-table" };

  function applyState(next, reason) {
    state = next;
    $("study-state").innerHTML = `<span class="state ${next}">${next}</span>`;
    const controls = $("controls");
    controls.dataset.state = next;
    for (const button of controls.querySelectorAll("button[data-when]")) {
      button.hidden = !button.dataset.when.split(" ").includes(next);
      button.disabled = false;
    }
    // A stopped or completed study takes no new trials.
    $("enqueue-card").hidden = !["running", "paused"].includes(next);
    const why = $("study-reason");
    why.textContent = reason || "";
    why.hidden = !reason;
  }

  async function updateLive() {
    const result = await hp.get(`/studies/${sid}/live${cfg.live ? "?" + cfg.live : ""}`);
    if (!result.ok) return true;
    const d = result.data;
    for (const [name, id] of Object.entries(parts)) {
      const el = $(id);
      if (el.dataset.html !== d.html[name]) {
        el.innerHTML = d.html[name];
        el.dataset.html = d.html[name];
      }
    }
    syncChecks();
    if (d.state !== state) applyState(d.state, d.reason);
    // Against what the plots were drawn from, not the previous poll: a trial that ended
    // between the plot data and the first poll still refreshes them.
    if (plotsEnded !== null && d.ended !== plotsEnded && d.ended !== refreshedFor) {
      if (refreshPlotsSoon()) refreshedFor = d.ended;
    }
    if (d.ended !== lastEnded || d.best_id !== bestId) {
      lastEnded = d.ended;
      bestId = d.best_id;
      loadCurves();
    } else if (d.running) {
      loadCurves(); // curves of running trials grow between endings
    }
    return d.state === "running" || d.running > 0 || d.evaluating
      || (d.queued > 0 && d.state !== "paused");
  }

  const live = hp.poller(updateLive, 2000);
  document.addEventListener("hp:changed", () => live.now());

  // -- controls -----------------------------------------------------------------------------

  $("controls").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action === "stop" && !window.confirm("Stop this study? Running trials are told to stop; it cannot be resumed.")) return;
    button.disabled = true;
    const result = await hp.post(`/api/v1/studies/${sid}/${action}`);
    if (result.ok) {
      applyState(result.data.state, result.data.reason);
      hp.toast(`Study ${result.data.state}.`);
      live.now();
    } else {
      button.disabled = false;
      hp.toast(hp.errorText(result), "error");
    }
  });
  applyState(state, $("study-reason").textContent);

  // -- the trials table: sorted by a header, filtered, paged in place ------------------------
  // The table alone is fetched again (the live fragment, for the new query); the plots stay.
  // The address follows, so a reload or a shared link shows the same rows.

  const tableForm = $("trial-filter");
  let tableAsked = 0;
  async function showTable(query) {
    const asked = ++tableAsked;
    const result = await hp.get(`/studies/${sid}/live?${query}`);
    if (!result.ok || asked !== tableAsked) return;
    cfg.live = query;
    history.replaceState(null, "", `?${query}#trials-card`);
    const el = $("trials-table");
    el.innerHTML = el.dataset.html = result.data.html.trials;
    syncChecks();
    const error = $("trial-filter-error");
    error.textContent = result.data.table_error || "";
    error.hidden = !result.data.table_error;
    const sort = new URLSearchParams(query).get("sort") || "";
    tableForm.elements.sort.value = result.data.table_error ? "" : sort;
    showOrder(tableForm.elements.sort.value);
    $("rank-note").hidden = Boolean(tableForm.elements.sort.value)
      || tableForm.elements.order.value !== "rank";
  }
  /** The "order" menu says the column the table is sorted by, while one is. */
  function showOrder(sort) {
    const order = tableForm.elements.order;
    let byColumn = order.querySelector("option[data-column]");
    if (!sort) {
      if (byColumn) byColumn.remove();
      if (!order.value) order.value = "rank";
      return;
    }
    if (!byColumn) {
      byColumn = new Option("", "");
      byColumn.dataset.column = "";
      order.prepend(byColumn);
    }
    byColumn.textContent = `by ${sort.replace(/^-/, "")} ${sort.startsWith("-") ? "▼" : "▲"}`;
    order.value = "";
  }
  function formQuery() {
    const query = new URLSearchParams(new FormData(tableForm));
    for (const [key, value] of [...query]) if (!value) query.delete(key);
    return query.toString();
  }
  tableForm.addEventListener("change", (event) => {
    // Choosing an order drops a column sort, which would otherwise take precedence.
    if (event.target.name === "order") tableForm.elements.sort.value = "";
    showTable(formQuery());
  });
  tableForm.addEventListener("submit", (event) => {
    event.preventDefault();
    showTable(formQuery());
  });
  $("trials-card").addEventListener("click", (event) => {
    const link = event.target.closest("th.sortable a, nav.pager a");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    showTable(new URL(link.href).searchParams.toString());
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-evaluate-test]");
    if (!button) return;
    button.disabled = true;
    const result = await hp.post(`/api/v1/studies/${sid}/evaluate-test`, {});
    if (result.ok) {
      hp.toast("Test evaluation queued: a worker evaluates the trial on the test set once.");
      live.now();
    } else {
      button.disabled = false;
      hp.toast(hp.errorText(result), "error");
    }
  });

  // -- enqueue ------------------------------------------------------------------------------

  $("enqueue").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const params = hp.formParams(form);
    const out = $("enqueue-result");
    const result = await hp.post(form.dataset.url, { params });
    if (result.ok) {
      out.className = "small ok";
      out.innerHTML = `Queued <a href="${result.data.url}">trial ${result.data.number}</a>.`;
      live.now();
    } else {
      out.className = "small error";
      out.textContent = hp.errorText(result);
    }
  });

  // -- start --------------------------------------------------------------------------------

  let firstCurves = null;
  function start() {
    loadPlotly();
    firstCurves = loadCurves();
    loadPlots().then(loadRegions);
  }
  hp.ready(start);
})();
