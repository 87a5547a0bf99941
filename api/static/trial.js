/* Trial page: learning curves, refreshed while the trial runs; reloads when its state changes. */
"use strict";
(() => {
  const cfg = hp.config();
  const el = document.getElementById("plot-curves");
  const select = document.getElementById("curve-family");
  let family = "";

  function setFamilies(available, current) {
    const wanted = available.join(",");
    if (select.dataset.options !== wanted) {
      select.innerHTML = "";
      for (const name of available) select.add(new Option(name.replace(/_/g, " "), name));
      select.dataset.options = wanted;
    }
    if (current) select.value = current;
    select.disabled = available.length < 2;
  }

  async function load() {
    const result = await hp.get(`/trials/${cfg.trial_id}/curves.json?family=${encodeURIComponent(family)}`);
    if (!result.ok) return true;
    const d = result.data;
    if (d.state !== cfg.state) {
      window.location.reload();
      return false;
    }
    setFamilies(d.families, d.family);
    if (d.figure.data.length) await hp.plot(el, d.figure);
    else hp.emptyPlot(el, "No steps reported yet.");
    return d.state === "running" || d.state === "queued";
  }

  const forkButton = document.getElementById("fork");
  const forkCard = document.getElementById("fork-card");
  if (forkCard) {
    forkButton.addEventListener("click", () => {
      forkCard.hidden = !forkCard.hidden;
      if (!forkCard.hidden) forkCard.scrollIntoView({ behavior: "smooth", block: "start" });
    });
    document.getElementById("fork-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.currentTarget;
      const out = document.getElementById("fork-result");
      const result = await hp.post(form.dataset.url, { params: hp.formParams(form, true) });
      if (result.ok) {
        out.className = "small ok";
        out.innerHTML = `Queued <a href="${result.data.url}">trial ${result.data.number}</a>, starting from this checkpoint.`;
      } else {
        out.className = "small error";
        out.textContent = hp.errorText(result);
      }
    });
  }

  // The output's live tail: what the attempt shown printed since the page was rendered.
  const logEl = document.getElementById("trial-log");
  const logEmpty = document.getElementById("trial-log-empty");
  async function tail() {
    const params = new URLSearchParams({ offset: logEl.dataset.offset });
    if (logEl.dataset.attempt) params.set("attempt", logEl.dataset.attempt);
    const result = await hp.get(`/api/v1/trials/${cfg.trial_id}/logs?${params}`);
    if (!result.ok) return true;
    const d = result.data;
    if (!logEl.dataset.attempt && d.attempt) logEl.dataset.attempt = d.attempt;
    if (d.text) {
      const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
      logEl.textContent += d.text;  // text, never markup
      logEl.hidden = false;
      logEmpty.hidden = true;
      if (atBottom) logEl.scrollTop = logEl.scrollHeight;
    }
    logEl.dataset.offset = d.next_offset;
    return d.state === "running" || d.state === "queued";
  }
  if (cfg.state === "running" || cfg.state === "queued") hp.ready(() => hp.poller(tail, 2000));

  select.addEventListener("change", () => { family = select.value; load(); });
  document.addEventListener("hp:changed", () => window.location.reload());
  hp.ready(() => load().then((again) => { if (again) hp.poller(load, 2000); }));
})();
