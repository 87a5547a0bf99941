/* Study page, population-based training: the lineage plot. Each trial is a line over the
   epochs it trained, at its number; a slanted line joins the trial whose checkpoint it copied,
   at the copied epoch, to where it went on. */
"use strict";
(() => {
  const el = document.getElementById("plot-lineage");
  if (!el) return;
  hp.ready(async () => {
    const result = await hp.get(el.dataset.url);
    if (!result.ok) return;
    const trials = result.data.trials;
    const byId = new Map(trials.map((t) => [t.trial_id, t]));
    const own = { x: [], y: [], text: [] };
    const copies = { x: [], y: [], text: [] };
    for (const t of trials) {
      const first = (t.step ?? 0) + 1;
      const last = t.last_step ?? first;
      own.x.push(first, last, null);
      own.y.push(t.number, t.number, null);
      own.text.push(`trial ${t.number}`, `trial ${t.number}`, "");
      const parent = byId.get(t.parent_trial_id);
      if (parent) {
        copies.x.push(t.step, first, null);
        copies.y.push(parent.number, t.number, null);
        copies.text.push(`trial ${t.number} copies ${parent.number} at epoch ${t.step}`, "", "");
      }
    }
    hp.plot(el, {
      data: [
        { ...own, name: "trained", mode: "lines+markers", hoverinfo: "text+x", type: "scatter" },
        { ...copies, name: "copied", mode: "lines", line: { dash: "dot" }, hoverinfo: "text", type: "scatter" },
      ],
      layout: {
        xaxis: { title: { text: "epoch" }, dtick: 1 },
        yaxis: { title: { text: "trial" } },
        margin: { t: 10, r: 10 },
      },
    });
  });
})();
