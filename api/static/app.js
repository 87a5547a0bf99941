/* hpsearch web view: small helpers shared by every page (no framework, no build step). */
"use strict";

const hp = (() => {
  async function request(method, url, body) {
    const options = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(url, options);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return { ok: response.ok, status: response.status, data };
  }

  /** The message of an API error body ({code, message, errors[]}). */
  function errorText(result) {
    const d = result.data;
    if (d && d.errors && d.errors.length) {
      return d.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    }
    return (d && d.message) || `request failed (HTTP ${result.status})`;
  }

  let toastTimer = null;
  function toast(message, kind = "info") {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = kind;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
  }

  const plotConfig = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"],
  };

  // Pages that plot at once load Plotly with a deferred script; the study page shows its
  // server-drawn posters first and loads Plotly after them (loadPlotly), so every draw waits
  // for it here.
  let plotlyArrived;
  const plotlyLoaded = new Promise((resolve) => { plotlyArrived = resolve; });
  let plotlyAsked = false;
  function loadPlotly(src) {
    if (window.Plotly) plotlyArrived();
    if (plotlyAsked || window.Plotly) return plotlyLoaded;
    plotlyAsked = true;
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => plotlyArrived();
    script.onerror = () => console.warn(`could not load ${src}`);
    document.head.appendChild(script);
    return plotlyLoaded;
  }

  async function plot(el, figure) {
    if (!el) return;
    if (!window.Plotly) await plotlyLoaded;
    // The "Loading…" line, an empty plot's note, or the poster this plot stands in for.
    for (const stale of el.querySelectorAll(":scope > .loading, :scope > .empty-plot, :scope > .poster")) {
      stale.remove();
    }
    await window.Plotly.react(el, figure.data, figure.layout, plotConfig);
  }

  function emptyPlot(el, message) {
    if (!el) return;
    if (window.Plotly && el.classList.contains("js-plotly-plot")) window.Plotly.purge(el);
    el.innerHTML = "";
    const p = document.createElement("p");
    p.className = "empty-plot";
    p.textContent = message;
    el.appendChild(p);
  }

  /** Calls fn every `ms` until it returns false; `now()` runs it at once (never twice at once). */
  function poller(fn, ms) {
    let timer = null;
    let busy = false;
    let stopped = false;
    async function tick() {
      clearTimeout(timer);
      if (busy) return;
      busy = true;
      let again = true;
      try {
        again = await fn();
      } catch (err) {
        console.warn("update failed", err);
      }
      busy = false;
      if (again === false) {
        stopped = true;
      } else if (!stopped) {
        timer = setTimeout(tick, ms);
      }
    }
    timer = setTimeout(tick, ms);
    return {
      now() { stopped = false; tick(); },
      stop() { stopped = true; clearTimeout(timer); },
      get running() { return !stopped; },
    };
  }

  /** Runs fn once the deferred Plotly bundle has run (it runs before DOMContentLoaded). */
  function ready(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  function config() {
    const el = document.getElementById("page-config");
    return el ? JSON.parse(el.textContent) : {};
  }

  /** Re-renders a table body from `url` ({html, active}) every `ms` while `active` holds. */
  function liveRows(bodyId, url, ms) {
    const body = document.getElementById(bodyId);
    if (!body) return;
    poller(async () => {
      const result = await request("GET", url);
      if (!result.ok) return true;
      if (body.innerHTML !== result.data.html) {
        // Ticked boxes (studies picked to compare) survive the rows being drawn again.
        const ticked = new Set([...body.querySelectorAll("input[type=checkbox]:checked")]
          .map((box) => `${box.name}=${box.value}`));
        body.innerHTML = result.data.html;
        for (const box of body.querySelectorAll("input[type=checkbox]")) {
          box.checked = ticked.has(`${box.name}=${box.value}`);
        }
      }
      return result.data.active;
    }, ms);
  }

  /** A form's parameter inputs as typed values; `changedOnly` keeps those the user edited. */
  function formParams(form, changedOnly = false) {
    const params = {};
    for (const input of form.querySelectorAll("[name][data-kind]")) {
      if (changedOnly && input.value === input.dataset.initial) continue;
      const kind = input.dataset.kind;
      params[input.name] = kind === "categorical" ? JSON.parse(input.value)
        : kind === "int" ? parseInt(input.value, 10) : parseFloat(input.value);
    }
    return params;
  }

  const number = new Intl.NumberFormat("en-US");
  function count(n) { return number.format(n); }

  // Stop buttons anywhere (trials table, trial page): one handler.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-stop-trial]");
    if (!button) return;
    const id = button.dataset.stopTrial;
    button.disabled = true;
    const result = await request("POST", `/api/v1/trials/${id}/stop`);
    if (result.ok) {
      toast(result.data.state === "running"
        ? `Trial ${result.data.number} will stop at its next report.`
        : `Trial ${result.data.number} stopped.`);
      document.dispatchEvent(new CustomEvent("hp:changed", { detail: result.data }));
    } else {
      button.disabled = false;
      toast(errorText(result), "error");
    }
  });

  return {
    get: (url) => request("GET", url),
    post: (url, body) => request("POST", url, body),
    errorText, toast, plot, loadPlotly, emptyPlot, poller, config, liveRows, count, formParams, ready,
  };
})();
